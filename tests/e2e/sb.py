"""sb: the Switchboard end-to-end harness.

Starts a real nats-server (JetStream on, store in a temp dir) and the real binaries
(auth-svc, chat-svc, gateway) on free ports, each with its output in a log file, waits
for each one by probing (TCP for NATS, an `event=ready` log line for the services, plus
GET /readyz == 200 for the gateway), and kills everything it started by PID.

Clients: `Clients`/`WS` wrap the `websockets` (10.x) asyncio client with a background
reader so a test can wait for "the next frame of type X" with a deadline; `RawWS` is a
minimal blocking WebSocket client that can send what a well-behaved library refuses to
(invalid UTF-8, oversized frames), masking included.

Every wait in here is bounded; a timeout raises AssertionError naming what was awaited.
"""

import asyncio
import atexit
import base64
import calendar
import glob
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import websockets
import websockets.client
import websockets.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_DIR = os.path.abspath(
    os.environ.get("SB_BUILD_DIR") or os.path.join(HERE, "..", "..", "build"))

READY_TIMEOUT = 10.0   # seconds a service gets to log event=ready
STOP_GRACE = 5.0       # seconds between SIGTERM and SIGKILL
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

UNAVAILABLE = "chat service unavailable, try again later"


# --------------------------------------------------------------------------- processes

def binary(name):
    path = os.path.join(BUILD_DIR, name, name)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"binary not built: {path} (set SB_BUILD_DIR)")
    return path


def built(name):
    return os.access(os.path.join(BUILD_DIR, name, name), os.X_OK)


def nats_server():
    for cand in (shutil.which("nats-server"), "/usr/bin/nats-server",
                 "/usr/sbin/nats-server", "/usr/local/bin/nats-server"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise RuntimeError("nats-server not found")


_given_ports = set()


def free_port():
    """A free loopback port, never one handed out before in this process. Not bind(0):
    with the ephemeral range crowded (other sessions' tests on this machine), bind(0)
    was seen returning the same port on consecutive calls. A random port below the
    ephemeral range (32768+), checked by binding it."""
    import random
    for _ in range(500):
        p = random.randint(20000, 32000)
        if p in _given_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        _given_ports.add(p)
        return p
    raise RuntimeError("no free port found")


def clean_env(extra=None):
    """The environment for a child: ours minus any SB_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SB_")}
    env.update(extra or {})
    return env


def tail(path, lines=60):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


class Proc:
    """One child process whose stdout+stderr go to `<logdir>/<name>.log`.

    A restart appends to the same log (with a marker line) and readiness is then looked
    for only in what was written after the restart."""

    def __init__(self, name, argv, logdir, ready_word="event=ready", env=None):
        self.name = name
        self.argv = list(argv)
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.ready_word = ready_word
        self.env = env if env is not None else clean_env()
        self.p = None
        self.offset = 0
        self.starts = 0

    @property
    def pid(self):
        return self.p.pid if self.p else None

    def running(self):
        return self.p is not None and self.p.poll() is None

    def start(self):
        assert not self.running(), f"{self.name} already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            if self.starts > 1:
                log.write(f"\n===== harness: restart #{self.starts - 1} of {self.name} "
                          f"at {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            self.offset = log.tell()
            self.p = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=self.env)

    def log_since_start(self):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def is_ready(self):
        """True once the ready line is in the log; raises if the process died."""
        if self.p.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with status {self.p.returncode} before it was ready; "
                f"argv={self.argv}\n--- tail of {self.log_path} ---\n{tail(self.log_path)}")
        return self.ready_word in self.log_since_start()

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def wait_log(self, word, since=0, timeout=READY_TIMEOUT):
        """True once `word` appears in the log after byte offset `since`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(self.log_path, "rb") as f:
                    f.seek(since)
                    if word.encode() in f.read():
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} did not log {self.ready_word!r} within {timeout}s; "
                    f"argv={self.argv}\n--- tail of {self.log_path} ---\n{tail(self.log_path)}")
            time.sleep(0.02)

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_GRACE seconds. Returns the exit status."""
        if self.p is None:
            return None
        if self.p.poll() is None:
            try:
                os.kill(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                with open(self.log_path, "ab") as log:
                    log.write(f"\n===== harness: {self.name} ignored SIGTERM for "
                              f"{STOP_GRACE}s, sending SIGKILL =====\n".encode())
                self.kill()
        return self.p.returncode

    def kill(self):
        """SIGKILL and reap."""
        if self.p is None:
            return None
        if self.p.poll() is None:
            try:
                os.kill(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(timeout=10)
        return self.p.returncode


def freeze(pid):
    """SIGSTOP pid and wait until every thread of it is stopped (state T)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while True:
        states = set()
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    states.add(f.read().rsplit(")", 1)[1].split()[0])
            except OSError:
                pass
        if states <= {"T", "t"}:
            return
        assert time.monotonic() < deadline, f"pid {pid} not stopped: {states}"
        time.sleep(0.01)


def wait_tcp(port, timeout=READY_TIMEOUT, proc=None):
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.running():
            raise RuntimeError(f"{proc.name} exited ({proc.p.returncode})\n"
                               f"--- tail of {proc.log_path} ---\n{tail(proc.log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")
            time.sleep(0.02)


def http_get(port, path, headers=None, timeout=5.0):
    """GET http://127.0.0.1:port/path -> (status, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_http(port, path, status=200, timeout=READY_TIMEOUT, proc=None):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if proc is not None and not proc.running():
            raise RuntimeError(f"{proc.name} exited ({proc.p.returncode})\n"
                               f"--- tail of {proc.log_path} ---\n{tail(proc.log_path)}")
        try:
            last = http_get(port, path, timeout=1.0)[0]
            if last == status:
                return
        except OSError as e:
            last = repr(e)
        if time.monotonic() > deadline:
            raise RuntimeError(f"GET {path} on :{port} did not return {status} within "
                               f"{timeout}s (last: {last})")
        time.sleep(0.05)


NOTES = []   # measurements shown in pytest's terminal summary (see conftest.py)


def note(text):
    """Record a measurement (throughput, timings) for the end-of-run summary."""
    NOTES.append(text)
    print(text)


@atexit.register
def _kill_leftovers():
    """Last resort if pytest dies without running fixture teardown."""
    for c in list(Cluster.running):
        for proc in c.procs:
            try:
                proc.kill()
            except Exception:
                pass


# --------------------------------------------------------------------------- the cluster

class User:
    def __init__(self, uid, name, token):
        self.id = uid
        self.name = name
        self.token = token

    def __repr__(self):
        return f"User({self.id}, {self.name!r})"


class Cluster:
    """nats-server + auth-svc + chat-svc + gateway, private to one test module."""

    running = []   # every started, not yet stopped cluster (for failure reports)

    def __init__(self, name, gateway_args=(), chat_args=(), auth_args=()):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"sb-e2e-{name}-")
        self.gateway_args = list(gateway_args)
        self.chat_args = list(chat_args)
        self.auth_args = list(auth_args)
        self.procs = []
        self.next_uid = 1000
        self.nats_port = None
        self.port = None
        self.failed = False    # set by conftest when a test fails: keep the logs
        self.tokens = []       # every token issued, to check none is ever logged

    # -- lifecycle

    @property
    def nats_url(self):
        return f"nats://127.0.0.1:{self.nats_port}"

    def _mkdir(self, sub):
        path = os.path.join(self.dir, sub)
        os.makedirs(path, exist_ok=True)
        return path

    def start(self):
        Cluster.running.append(self)
        self.nats_port = free_port()
        self.port = free_port()
        self.nats = Proc("nats-server", [
            nats_server(), "-js", "-sd", self._mkdir("nats"),
            "-a", "127.0.0.1", "-p", str(self.nats_port)], self.dir)
        self.auth = Proc("auth-svc", [
            binary("auth-svc"), "--nats", self.nats_url, "--data-dir", self._mkdir("auth"),
            "--log-level", "debug", *self.auth_args], self.dir)
        self.chat = Proc("chat-svc", [
            binary("chat-svc"), "--nats", self.nats_url, "--data-dir", self._mkdir("chat"),
            "--partitions", "1", *self.chat_args], self.dir)
        self.gateway = Proc("gateway", [
            binary("gateway"), "--nats", self.nats_url,
            "--listen", f"127.0.0.1:{self.port}", *self.gateway_args], self.dir)
        self.procs = [self.nats, self.auth, self.chat]
        self.notify = None
        if built("notify-svc"):   # optional: the notification backlog service
            self.notify = Proc("notify-svc", [
                binary("notify-svc"), "--nats", self.nats_url,
                "--data-dir", self._mkdir("notify")], self.dir)
            self.procs.append(self.notify)
        self.procs.append(self.gateway)

        self.nats.start()
        wait_tcp(self.nats_port, proc=self.nats)
        services = [p for p in self.procs if p not in (self.nats, self.gateway)]
        for p in services:
            p.start()
        self._wait_all_ready(services)
        self.gateway.start()
        self.gateway.wait_ready()
        wait_http(self.port, "/readyz", 200, proc=self.gateway)

    def _wait_all_ready(self, procs, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        pending = list(procs)
        while pending:
            pending = [p for p in pending if not p.is_ready()]
            if pending and time.monotonic() > deadline:
                raise RuntimeError("not ready within %ss: %s\n%s" % (
                    timeout, [p.name for p in pending], self.log_tails()))
            time.sleep(0.02)

    def stop(self):
        """Stop everything we started, services first, NATS last. Never raises.
        Returns the sanitizer reports found in the logs (the temp dir is then kept)."""
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as e:  # keep going: every process must be reaped
                print(f"harness: stopping {proc.name} pid {proc.pid}: {e!r}")
        if self in Cluster.running:
            Cluster.running.remove(self)
        reports = self.sanitizer_reports()
        if reports:
            self.failed = True
        if not self.failed:
            shutil.rmtree(self.dir, ignore_errors=True)
        return reports

    def add_gateway(self, *extra_args, port=None):
        """Start one more gateway (same NATS) on its own free port, or on `port` (with
        --reuse-port, the port of a gateway already running); returns its port. It is
        stopped with the rest of the cluster."""
        port = port or free_port()
        n = sum(1 for p in self.procs if p.name.startswith("gateway"))
        gw = Proc(f"gateway{n + 1}", [
            binary("gateway"), "--nats", self.nats_url, "--listen", f"127.0.0.1:{port}",
            *self.gateway_args, *extra_args], self.dir)
        self.procs.append(gw)
        gw.start()
        gw.wait_ready()
        wait_http(port, "/readyz", 200, proc=gw)
        self.last_gateway = gw
        return port

    def heal(self):
        """Restart whatever a fault test left dead (NATS first, gateways last), so one
        failing test does not cascade into the next. Returns the names restarted."""
        restarted = []
        for proc in self.procs:
            if proc.running():
                continue
            restarted.append(proc.name)
            proc.start()
            if proc is self.nats:
                wait_tcp(self.nats_port, proc=proc)
            else:
                proc.wait_ready()
        if "gateway" in restarted:
            wait_http(self.port, "/readyz", 200, proc=self.gateway)
        return restarted

    def restart_chat(self):
        self.chat.start()
        self.chat.wait_ready()

    def restart_notify(self):
        """Start notify-svc again after a test stopped or killed it (cluster.notify.stop()
        or .kill()), and wait for its event=ready."""
        assert self.notify is not None, "notify-svc is not built"
        self.notify.start()
        self.notify.wait_ready()

    SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                         "runtime error:", "WARNING: ThreadSanitizer")

    def sanitizer_reports(self):
        """[(log, first lines of each sanitizer report)] found in any log of the cluster's
        directory: its services and every process a test started there on its own (a
        gateway that was meant to fail, an extra client)."""
        found = []
        paths = {proc.log_path for proc in self.procs}
        paths |= set(glob.glob(os.path.join(self.dir, "*.log")))
        for path in sorted(paths):
            try:
                with open(path, "rb") as f:
                    lines = f.read().decode("utf-8", "replace").splitlines()
            except OSError:
                continue
            name = os.path.basename(path)[:-len(".log")]
            for i, line in enumerate(lines):
                if any(m in line for m in self.SANITIZER_MARKERS):
                    found.append((name, "\n".join(lines[i:i + 12])))
        return found

    def log_tails(self, lines=60):
        out = []
        for proc in self.procs:
            out.append(f"--- {proc.name} (pid {proc.pid}) {proc.log_path} ---\n"
                       f"{tail(proc.log_path, lines)}")
        return "\n".join(out)

    # -- sbctl

    def sbctl(self, *args, stdin=None, check=True, timeout=15):
        argv = [binary("sbctl"), "--nats", self.nats_url, *[str(a) for a in args]]
        r = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                           timeout=timeout, env=clean_env())
        if check and r.returncode != 0:
            raise AssertionError(f"sbctl {' '.join(map(str, args))} exited {r.returncode}\n"
                                 f"stdout: {r.stdout!r}\nstderr: {r.stderr!r}")
        return r

    def add_user(self, uid, name):
        r = self.sbctl("user", "add", "--id", uid, "--name", name)
        assert r.stdout == "", f"sbctl user add printed {r.stdout!r}"

    def add_users(self, pairs):
        r = self.sbctl("user", "add", "--stdin",
                       stdin="".join(f"{uid} {name}\n" for uid, name in pairs))
        assert r.stdout == "", f"sbctl user add --stdin printed {r.stdout!r}"

    def remove_user(self, uid):
        self.sbctl("user", "remove", "--id", uid)

    def issue_token(self, uid, ttl=None):
        args = ["token", "issue", "--user", uid]
        if ttl is not None:
            args += ["--ttl", ttl]
        token = self.sbctl(*args).stdout.strip()
        self.tokens.append(token)
        assert token and "\n" not in token and " " not in token, f"bad token output {token!r}"
        return token

    def issue_tokens(self, uids):
        out = self.sbctl("token", "issue", "--stdin",
                         stdin="".join(f"{u}\n" for u in uids)).stdout
        tokens = out.split()
        self.tokens += tokens
        assert len(tokens) == len(uids), f"asked {len(uids)} tokens, got {len(tokens)}"
        assert len(set(tokens)) == len(tokens), "sbctl issued duplicate tokens"
        return tokens

    def revoke_token(self, token):
        self.sbctl("token", "revoke", "--token", token)

    def revoke_user(self, uid):
        self.sbctl("token", "revoke", "--user", uid)

    def new_users(self, n, prefix="User"):
        """n fresh users (ids never used before in this cluster), each with one token."""
        uids = list(range(self.next_uid, self.next_uid + n))
        self.next_uid += n
        names = [f"{prefix} {u}" for u in uids]
        if n == 1:
            self.add_user(uids[0], names[0])
            tokens = [self.issue_token(uids[0])]
        else:
            self.add_users(zip(uids, names))
            tokens = self.issue_tokens(uids)
        return [User(u, nm, t) for u, nm, t in zip(uids, names, tokens)]

    def new_user(self, prefix="User"):
        return self.new_users(1, prefix)[0]

    # -- urls

    def url(self, kind="chat", token=None, slash=True, port=None):
        path = f"/ws/{kind}/" if slash else f"/ws/{kind}"
        if token is not None:
            path += f"?token={token}"   # raw, exactly as the seed's client builds it
        return f"ws://127.0.0.1:{port or self.port}{path}"


# --------------------------------------------------------------------------- async clients

def run(coro, timeout=30.0):
    """Run a coroutine to completion with an overall deadline (sync tests call this)."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


MISSING = object()


class WS:
    """A websockets connection with a background reader that buffers parsed frames."""

    def __init__(self, ws, label):
        self.ws = ws
        self.label = label
        self.buf = []          # frames not yet taken by next()/collect()
        self.seen = []         # every frame ever received, in order
        self.done = False
        self._ev = asyncio.Event()
        self._task = asyncio.ensure_future(self._reader())

    async def _reader(self):
        try:
            async for raw in self.ws:
                if isinstance(raw, bytes):
                    frame = {"_binary": raw}
                else:
                    try:
                        frame = json.loads(raw)
                    except ValueError:
                        frame = {"_unparseable": raw}
                self.buf.append(frame)
                self.seen.append(frame)
                self._ev.set()
        except websockets.exceptions.ConnectionClosed:
            pass
        except Exception as e:  # recorded, surfaced by next()
            self.seen.append({"_reader_error": repr(e)})
        finally:
            self.done = True
            self._ev.set()

    @property
    def close_code(self):
        return self.ws.close_code

    async def send_raw(self, data, timeout=5.0):
        await asyncio.wait_for(self.ws.send(data), timeout)

    async def send_json(self, obj, timeout=5.0):
        await self.send_raw(json.dumps(obj, ensure_ascii=False), timeout)

    async def next(self, type=None, timeout=5.0, pred=None):
        """Take the first buffered frame matching `type` (a str or a set) and `pred`."""
        types = {type} if isinstance(type, str) else type
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, f in enumerate(self.buf):
                if (types is None or f.get("type") in types) and (pred is None or pred(f)):
                    del self.buf[i]
                    return f
            what = f"frame of type {sorted(types) if types else 'any'}"
            if self.done:
                raise AssertionError(
                    f"{self.label}: connection closed (code {self.close_code}) while waiting "
                    f"for a {what}; unconsumed frames: {self.buf[:10]}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{self.label}: no {what} within {timeout}s; "
                                     f"unconsumed frames: {self.buf[:10]}")
            self._ev.clear()
            try:
                await asyncio.wait_for(self._ev.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def reply(self, timeout=5.0):
        """The next message_sent or error frame (the answer to a chat frame)."""
        return await self.next({"message_sent", "error"}, timeout)

    async def send_chat(self, receiver_id, message, attachment=MISSING, timeout=5.0):
        obj = {"receiver_id": receiver_id, "message": message}
        if attachment is not MISSING:
            obj["attachment"] = attachment
        await self.send_json(obj)
        return await self.reply(timeout)

    async def send_ok(self, receiver_id, message, attachment=MISSING, timeout=5.0):
        """Send and insist on message_sent; returns the reply."""
        r = await self.send_chat(receiver_id, message, attachment, timeout)
        assert r.get("type") == "message_sent", \
            f"{self.label}: sending {message!r} to {receiver_id} got {r}"
        return r

    def take_all(self, type=None):
        if type is None:
            out, self.buf = self.buf, []
            return out
        out = [f for f in self.buf if f.get("type") == type]
        self.buf = [f for f in self.buf if f.get("type") != type]
        return out

    async def collect(self, seconds, type=None):
        """Wait `seconds` and take every buffered frame (of `type`)."""
        await asyncio.sleep(seconds)
        return self.take_all(type)

    async def wait_closed(self, timeout=5.0):
        """Wait until the server closes us; returns the close code."""
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.label}: still open after {timeout}s; "
                                 f"frames: {self.buf[:10]}") from None
        return self.close_code

    async def close(self, timeout=3.0):
        try:
            await asyncio.wait_for(self.ws.close(), timeout)
        except Exception:
            pass
        self._task.cancel()
        try:
            await asyncio.wait_for(self._task, 1.0)
        except BaseException:
            pass


async def ws_connect(url, label="ws", origin=None, timeout=5.0, **kw):
    ws = await asyncio.wait_for(
        websockets.client.connect(url, origin=origin, open_timeout=timeout,
                                  close_timeout=2, ping_interval=None,
                                  max_size=4 * 1024 * 1024, **kw),
        timeout + 1)
    return WS(ws, label)


async def handshake_status(url, origin=None, timeout=5.0):
    """101 if the upgrade succeeded (the socket is then closed), else the HTTP status."""
    try:
        ws = await ws_connect(url, "probe", origin=origin, timeout=timeout)
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code
    except (websockets.exceptions.InvalidHandshake, OSError, asyncio.TimeoutError) as e:
        return f"handshake failed: {e!r}"
    await ws.close()
    return 101


class Clients:
    """async with Clients() as cs: a = await cs.connect(url, "alice") -- closes all on exit."""

    def __init__(self):
        self.all = []
        self.tasks = []    # background tasks to cancel on exit

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        for t in self.tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.all), return_exceptions=True)

    def spawn(self, coro):
        t = asyncio.ensure_future(coro)
        self.tasks.append(t)
        return t

    async def connect(self, url, label="ws", origin=None, timeout=5.0, **kw):
        c = await ws_connect(url, label, origin, timeout, **kw)
        self.all.append(c)
        return c


def check_timestamp(ts, slack=120):
    """An RFC 3339 UTC timestamp (YYYY-MM-DDTHH:MM:SSZ), within `slack` s of now."""
    assert isinstance(ts, str) and TIMESTAMP_RE.match(ts), f"bad timestamp {ts!r}"
    t = calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(t - time.time()) < slack, f"timestamp {ts} is not close to now"


def is_pos_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


# --------------------------------------------------------------------------- raw client

class RawWS:
    """A blocking, minimal RFC 6455 client for abuse cases. Frames it sends are masked
    (as a client must), and it can send anything: bad UTF-8, oversized frames."""

    def __init__(self, port, path, origin=None, timeout=5.0, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.rbuf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"]
        if origin is not None:
            lines.append(f"Origin: {origin}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.rbuf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"connection closed during handshake: {self.rbuf!r}")
            self.rbuf += chunk
        head, self.rbuf = self.rbuf.split(b"\r\n\r\n", 1)
        head = head.decode("latin-1").split("\r\n")
        self.status = int(head[0].split()[1])
        self.headers = {}
        for h in head[1:]:
            k, _, v = h.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        if self.status == 101:
            want = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            assert self.headers.get("sec-websocket-accept") == want, "bad Sec-WebSocket-Accept"

    def send_frame(self, opcode, payload, fin=True):
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", b0, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", b0, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else \
            _mask_fast(payload, mask)
        try:
            self.sock.sendall(head + mask + masked)
        except (BrokenPipeError, ConnectionResetError):
            pass   # the server may close mid-send (e.g. an oversized frame); read the close

    def send_text(self, data):
        self.send_frame(0x1, data if isinstance(data, bytes) else data.encode())

    def _read(self, n):
        while len(self.rbuf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.rbuf += chunk
        out, self.rbuf = self.rbuf[:n], self.rbuf[n:]
        return out

    def recv_frame(self):
        """(opcode, payload) or None at EOF. Raises socket.timeout."""
        h = self._read(2)
        if h is None:
            return None
        b0, b1 = h
        n = b1 & 0x7F
        if n == 126:
            ext = self._read(2)
            if ext is None:
                return None
            n = struct.unpack("!H", ext)[0]
        elif n == 127:
            ext = self._read(8)
            if ext is None:
                return None
            n = struct.unpack("!Q", ext)[0]
        mask = self._read(4) if b1 & 0x80 else None
        payload = self._read(n) if n else b""
        if payload is None:
            return None
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return b0 & 0x0F, payload

    def recv_json(self, timeout=5.0):
        """Next text frame, parsed (pings are answered and skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            fr = self.recv_frame()
            if fr is None:
                raise AssertionError("raw: EOF while waiting for a text frame")
            op, payload = fr
            if op == 0x9:
                self.send_frame(0xA, payload)
                continue
            if op == 0x8:
                raise AssertionError(f"raw: closed with {close_code(payload)} "
                                     f"while waiting for a text frame")
            if op == 0x1:
                return json.loads(payload.decode())

    def wait_close(self, timeout=5.0):
        """Read until the server's close frame; returns (code, frames before it).
        code is None when the TCP connection ended without a close frame."""
        deadline = time.monotonic() + timeout
        frames = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"raw: no close within {timeout}s; frames: {frames}")
            self.sock.settimeout(remaining)
            try:
                fr = self.recv_frame()
            except socket.timeout:
                continue
            except ConnectionResetError:
                return None, frames
            if fr is None:
                return None, frames
            op, payload = fr
            if op == 0x8:
                return close_code(payload), frames
            frames.append((op, payload[:200]))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _mask_fast(payload, mask):
    n = len(payload)
    m = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ m).to_bytes(n, "big")


def close_code(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
