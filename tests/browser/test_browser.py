"""The client guide's React hooks and components, unchanged, in a real browser.

The guide (shared/seed/*.txt beside the repository) promises that its useChatWebSocket and
useNotificationWebSocket hooks, used by its ChatComponent and NotificationComponent, work
against the backend. This test takes those four code blocks out of the guide at run time
(they are not copied into the repository: guideapp.py), builds them with Vite into a tiny
app whose only setting is the guide's REACT_APP_WS_URL, serves it with python's
http.server on 127.0.0.1, and drives it in Debian's Chromium (headless, through
playwright-core: drive.mjs) against a real cluster (tests/e2e/sb.py): nats-server -js,
auth-svc, chat-svc, notify-svc, and a gateway whose SB_ALLOWED_ORIGINS is the app's
origin.

Alice types Bob's id and a message into the ChatComponent and clicks Send, as a person
would; Bob's page shows it, Alice's console logs the guide's 'Message delivered:'; a
notification injected with `sbctl notify` shows in Bob's NotificationComponent. A page of
the same app served from another origin never gets its WebSocket open.

Every wait is bounded (at most 20 s); every process started here is stopped by PID.
Needs node and npm (node_modules is installed from package-lock.json by `npm ci` when
missing) and /usr/bin/chromium (Debian package chromium; CHROMIUM overrides the path).
"""

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import guideapp
import sb

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVE = os.path.join(HERE, "drive.mjs")
BUILD = os.path.join(HERE, "build.mjs")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

WAIT = 15.0           # seconds for any one thing the page should do
MESSAGE = "Hello Bob, from the guide's ChatComponent"
CONNECTED = r"Status: [^\n]*(?<![A-Za-z])Connected"   # not "Disconnected"

GUIDE = guideapp.find_guide()
pytestmark = pytest.mark.skipif(
    GUIDE is None,
    reason=f"the client guide is absent: no *.txt with the React hooks in {guideapp.SEED_DIR} "
           "(shared/ must sit beside the repository, as in CI)")


# --------------------------------------------------------------------------- tools

def ensure_node_modules():
    """npm ci from the committed lock file when node_modules is missing."""
    mods = os.path.join(HERE, "node_modules")
    if all(os.path.isdir(os.path.join(mods, p)) for p in ("vite", "playwright-core", "react")):
        return
    t0 = time.monotonic()
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=HERE, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, \
        f"npm ci in tests/browser failed ({r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
    sb.note(f"browser: npm ci {time.monotonic() - t0:.1f} s")


def vite_build(app_dir, out_dir, ws_url):
    t0 = time.monotonic()
    r = subprocess.run(["node", BUILD, app_dir, out_dir, ws_url], cwd=HERE,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"vite build failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    sb.note(f"browser: vite build {time.monotonic() - t0:.1f} s")
    bundle = ""
    for root, _, files in os.walk(out_dir):
        for name in files:
            if name.endswith(".js"):
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    bundle += f.read()
    assert ws_url in bundle, "the built app does not contain REACT_APP_WS_URL's value"
    assert "REACT_APP_WS_URL" not in bundle, "process.env.REACT_APP_WS_URL was not replaced"


class Browser:
    """drive.mjs (playwright-core + Chromium) as a child: call(cmd, **args) -> reply."""

    def __init__(self, logdir, tmpdir):
        self.log_path = os.path.join(logdir, "browser.log")
        self.log = open(self.log_path, "ab")
        os.makedirs(tmpdir, exist_ok=True)
        # TMPDIR: where Playwright makes the fresh profile (--user-data-dir) it removes on close
        env = dict(os.environ, TMPDIR=tmpdir, CHROMIUM=CHROMIUM, DEBUG="pw:browser")
        self.p = subprocess.Popen(["node", DRIVE], cwd=HERE, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.log, env=env)
        self.replies = queue.Queue()
        self.seq = 0
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def pid(self):
        return self.p.pid

    def _read(self):
        for raw in self.p.stdout:
            if raw.startswith(b"@@rpc "):
                self.replies.put(json.loads(raw[6:]))
        self.replies.put(None)

    def call(self, cmd, timeout=20.0, **args):
        self.seq += 1
        try:
            self.p.stdin.write((json.dumps(dict(args, id=self.seq, cmd=cmd)) + "\n").encode())
            self.p.stdin.flush()
        except BrokenPipeError:
            raise AssertionError(f"browser driver is gone ({self.p.poll()}) before {cmd}\n"
                                 f"{sb.tail(self.log_path)}") from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = self.replies.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"browser: no answer to {cmd} within {timeout} s; "
                                     f"log {self.log_path}") from None
            if r is None:
                raise AssertionError(f"browser driver exited ({self.p.poll()}) during {cmd}\n"
                                     f"{sb.tail(self.log_path)}")
            if r.get("id") != self.seq:
                continue   # the late answer to a request that already timed out
            if not r.get("ok"):
                raise AssertionError(f"browser: {cmd} {args.get('name', '')}: {r.get('error')}")
            return r

    def close(self):
        """Close the browser (Playwright ends Chromium), then make sure the driver is gone."""
        if self.p.poll() is None:
            try:
                self.call("quit", timeout=15)
            except AssertionError as e:
                print(f"harness: closing the browser: {e}")
            try:
                self.p.stdin.close()
            except OSError:
                pass
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGTERM)   # Playwright closes Chromium on SIGTERM
                try:
                    self.p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.kill(self.p.pid, signal.SIGKILL)
                    self.p.wait(timeout=5)
        self.log.close()


def frames(state, kind, path):
    """Parsed frames of `kind` ('sent'/'received') on the page's sockets to `path`."""
    out = []
    for s in state["sockets"]:
        if path in s["url"]:
            out += [json.loads(e["payload"]) for e in s["events"] if e["kind"] == kind]
    return out


def refused_origin(port):
    status, body = sb.http_get(port, "/metrics")
    assert status == 200, f"/metrics answered {status}"
    m = re.search(r'^sb_gateway_handshakes_refused_total\{reason="origin"\} (\d+)$',
                  body.decode(), re.M)
    assert m, "no origin refusal counter in /metrics"
    return int(m.group(1))


# --------------------------------------------------------------------------- the stage

class Stage:
    pass


def start_static_server(cluster, name, directory):
    """python -m http.server on 127.0.0.1, stopped (by PID) with the cluster. It binds
    port 0 and we read the port it got from its first line: no window in which another
    process can take a port we picked."""
    proc = sb.Proc(name, [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                          "--directory", directory], cluster.dir)
    cluster.procs.append(proc)
    proc.start()
    deadline = time.monotonic() + sb.READY_TIMEOUT
    while not (m := re.search(r"Serving HTTP on \S+ port (\d+)", proc.log_since_start())):
        assert proc.running(), f"{name} exited:\n{sb.tail(proc.log_path)}"
        assert time.monotonic() < deadline, f"{name} did not start:\n{sb.tail(proc.log_path)}"
        time.sleep(0.02)
    port = int(m.group(1))
    sb.wait_http(port, "/", 200, proc=proc)
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    t0 = time.monotonic()
    for tool in ("node", "npm"):
        assert shutil.which(tool), f"{tool} is not installed (scripts/deps.sh installs it)"
    assert os.access(CHROMIUM, os.X_OK), \
        f"{CHROMIUM} is missing: apt-get install chromium (scripts/deps.sh installs it)"
    ensure_node_modules()

    st = Stage()
    st.tmp = str(tmp_path_factory.mktemp("browser"))
    dist = os.path.join(st.tmp, "dist")
    os.makedirs(dist)
    cluster = st.cluster = sb.Cluster("browser")
    browser = None
    try:
        cluster.start()
        cluster.add_user(1, "Alice")
        cluster.add_user(2, "Bob")
        st.alice = cluster.issue_token(1)
        st.bob = cluster.issue_token(2)

        # the app's origin, and a second origin serving the very same files
        st.origin = start_static_server(cluster, "http-app", dist)
        st.foreign = start_static_server(cluster, "http-foreign", dist)

        # a gateway that lets only the app's origin in, set the way an operator would
        st.gw_port = sb.free_port()
        gw = sb.Proc("gateway-origins", [
            sb.binary("gateway"), "--nats", cluster.nats_url,
            "--listen", f"127.0.0.1:{st.gw_port}"], cluster.dir,
            env=sb.clean_env({"SB_ALLOWED_ORIGINS": st.origin}))
        cluster.procs.append(gw)
        gw.start()
        gw.wait_ready()
        sb.wait_http(st.gw_port, "/readyz", 200, proc=gw)
        st.gateway = gw

        app = os.path.join(st.tmp, "app")
        guideapp.assemble(GUIDE, app)
        vite_build(app, dist, f"ws://127.0.0.1:{st.gw_port}")

        browser = st.browser = Browser(cluster.dir, os.path.join(st.tmp, "chromium-tmp"))
        version = browser.call("launch")["version"]
        sb.note(f"browser: Chromium {version}, pid of the driver {browser.pid}; "
                f"setup {time.monotonic() - t0:.1f} s")
        yield st
    finally:
        if browser is not None:
            browser.close()
        reports = cluster.stop()
        sb.note(f"browser: whole module {time.monotonic() - t0:.1f} s")
    assert not reports, f"sanitizer reports (logs kept in {cluster.dir}):\n" + "\n\n".join(
        f"[{name}]\n{text}" for name, text in reports)


# --------------------------------------------------------------------------- tests

def test_guide_components_chat_and_notifications(stage):
    b = stage.browser
    t0 = time.monotonic()
    b.call("open", name="alice", url=f"{stage.origin}/?show=chat", token=stage.alice)
    b.call("open", name="bob", url=f"{stage.origin}/?show=chat,notifications", token=stage.bob)

    for name in ("alice", "bob"):
        b.call("wait_text", name=name, regex=CONNECTED, timeout=WAIT * 1000)
        b.call("wait_console", name=name, regex="^Chat WebSocket connected$",
               timeout=WAIT * 1000)
    b.call("wait_console", name="bob", regex="^Notification WebSocket connected$",
           timeout=WAIT * 1000)
    # the browser sent its Origin and the allow-list let it in
    assert refused_origin(stage.gw_port) == 0

    # Alice uses the component as a person would: two inputs, one button
    b.call("type", name="alice", selector='input[placeholder="Receiver ID"]', text="2")
    b.call("type", name="alice", selector='input[placeholder="Type a message..."]', text=MESSAGE)
    b.call("click", name="alice", selector='button:text-is("Send")')

    b.call("wait_text", name="bob", regex=r"Alice:\s*" + re.escape(MESSAGE),
           timeout=WAIT * 1000)
    ack = b.call("wait_console", name="alice", regex=r"^Message delivered: \d+$",
                 timeout=WAIT * 1000)["message"]["text"]
    msg_id = int(ack.split()[-1])

    alice, bob = b.call("state", name="alice"), b.call("state", name="bob")
    # exactly what the guide's sendMessage builds: the id as the input's string
    assert frames(alice, "sent", "/ws/chat/") == \
        [{"receiver_id": "2", "message": MESSAGE, "attachment": None}]
    acks = [f for f in frames(alice, "received", "/ws/chat/") if f.get("type") == "message_sent"]
    assert [f["id"] for f in acks] == [msg_id], acks
    got = [f for f in frames(bob, "received", "/ws/chat/") if f.get("type") == "chat_message"]
    assert len(got) == 1, got
    assert (got[0]["id"], got[0]["sender_id"], got[0]["sender_name"], got[0]["message"]) == \
        (msg_id, 1, "Alice", MESSAGE), got
    sb.check_timestamp(got[0]["timestamp"])

    stage.cluster.sbctl("notify", "--user", 2, "--title", "New Notice",
                        "--message", "Exam schedule released", "--type", "notice")
    b.call("wait_text", name="bob", regex=r"New Notice\s+Exam schedule released",
           timeout=WAIT * 1000)
    cards = b.call("html", name="bob", selector="#notifications .notification")["html"]
    assert len(cards) == 1 and 'class="notification notice"' in cards[0], cards
    notes = [f for f in frames(b.call("state", name="bob"), "received", "/ws/notifications/")]
    assert [(f["type"], f["title"], f["message"], f["notification_type"]) for f in notes] == \
        [("notify", "New Notice", "Exam schedule released", "notice")], notes

    shot = os.path.join(stage.tmp, "bob.png")
    b.call("screenshot", name="bob", path=shot)
    assert os.path.getsize(shot) > 0
    sb.note(f"browser: screenshot of Bob's page: {shot}")

    for name in ("alice", "bob"):
        st = b.call("state", name=name)
        bad = [m for m in st["console"] if m["type"] in ("error", "pageerror")]
        assert not bad, f"{name}'s console has errors: {bad}"
    sb.note(f"browser: chat + notification scenario {time.monotonic() - t0:.1f} s")


def test_foreign_origin_is_refused(stage):
    """The same app served from another origin: the gateway refuses the handshake (403),
    ReconnectingWebSocket retries, and the socket never opens."""
    b = stage.browser
    before = refused_origin(stage.gw_port)
    offset = stage.gateway.log_size()
    b.call("open", name="eve", url=f"{stage.foreign}/?show=chat", token=stage.alice)

    # two handshakes refused: the first, and ReconnectingWebSocket's retry (1-5 s later)
    deadline = time.monotonic() + WAIT
    while True:
        st = b.call("state", name="eve")
        failed = [s for s in st["sockets"]
                  if "/ws/chat/" in s["url"] and any(e["kind"] in ("error", "close")
                                                     for e in s["events"])]
        if len(failed) >= 2:
            break
        assert time.monotonic() < deadline, \
            f"eve: fewer than 2 failed handshakes within {WAIT} s: {st['sockets']}"
        time.sleep(0.2)

    assert stage.gateway.wait_log("reason=origin", since=offset, timeout=WAIT), \
        "the gateway did not log an origin refusal"
    assert refused_origin(stage.gw_port) - before >= 2
    st = b.call("state", name="eve")
    assert not [m for m in st["console"] if "WebSocket connected" in m["text"]], st["console"]
    assert not any(e["kind"] == "received" for s in st["sockets"] for e in s["events"])
    assert re.search(r"Status: [^\n]*Disconnected", st["text"]), st["text"]
    # Chromium's own report of the refused upgrade
    assert any("403" in m["text"] for m in st["console"]), st["console"]
    b.call("close_page", name="eve")
