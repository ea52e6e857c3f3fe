"""deploy/docker-compose.yml, run natively: same environment, same commands, same health
checks, same stop order, with the compose host names mapped to 127.0.0.1, every
container port to a free port on loopback, and every volume to a directory.

What a container would run is read from the files, not restated here: the command is the
Dockerfile target's ENTRYPOINT/CMD (or compose's `command`), the environment is the
target's ENV plus compose's `environment`, readiness is compose's (or the image's)
health check run through deploy/healthcheck.sh, the binaries are those
scripts/build-release.sh installs (the Dockerfile's build step), and each service gets
its compose stop_grace_period to exit after SIGTERM.

The run: start in depends_on order, waiting for each health check; check every probe
path the compose file and the Kubernetes manifests use answers 200 on the real
endpoints, and every metric the Grafana dashboard plots is served; add users and issue
tokens with sbctl in auth-svc's environment ("inside the stack"); chat over real
WebSockets and inject notifications; SIGTERM everything in reverse order (the gateway
must close its sockets with 1001) and check each exits 0 in time; start again on the
same volumes and check that what was acknowledged for an offline user arrives, once.
notify-svc's part runs when notify-svc is built (CMakeLists.txt adds it).
"""
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import websockets

from deploylib import (DASHBOARD, DEPLOY, HEALTHCHECK, PROBE_PATHS, SERVICES, Proc, build_release,
                       compose_duration, compose_order, free_port, http_get, image_config,
                       image_target, load_compose, nats_server, pod_spec, render_k8s)

LOOPBACK = "127.0.0.1"


class Stack:
    """The compose services as native processes. Data directories persist across
    start()/stop() pairs, as named volumes do; ports are picked anew each start."""

    def __init__(self, prefix, workdir):
        self.prefix, self.workdir = prefix, workdir
        doc = load_compose()
        self.services, self.missing = {}, []
        for name, svc in doc["services"].items():
            if svc.get("profiles"):
                continue  # lb: only with --profile lb
            target = svc["build"]["target"]
            if target in SERVICES and not (prefix / "bin" / target).exists():
                self.missing.append(name)
                continue
            self.services[name] = svc
        self.order = compose_order(self.services)
        self.procs, self.ports, self.results = {}, {}, {}

    # ----------------------------------------------------------------- what to run
    def container_ports(self, name):
        svc = self.services[name]
        ports = {int(p) for p in svc.get("expose", [])}
        ports |= {int(str(p).rsplit(":", 1)[-1]) for p in svc.get("ports", [])}
        ports |= set(image_config(svc["build"]["target"])["expose"])
        return ports

    def mounts(self, name):
        out = {}
        for v in self.services[name].get("volumes", []):
            vol, cpath = v.split(":")[:2]
            if vol.startswith((".", "/")):   # a bind mount: a file of the repository
                out[cpath] = str((DEPLOY / vol).resolve())
                continue
            host = self.workdir / "volumes" / vol
            host.mkdir(parents=True, exist_ok=True)
            out[cpath] = str(host)
        return out

    def rewrite(self, name, value):
        def hostport(m):
            host, port = m.group(1), int(m.group(2))
            owner = name if host in ("0.0.0.0", LOOPBACK, "localhost", "") else host
            if (owner, port) in self.ports:
                return f"{LOOPBACK}:{self.ports[(owner, port)]}"
            return m.group(0)
        value = re.sub(r"([A-Za-z0-9_.-]*):(\d{2,5})\b", hostport, value)
        for cpath, hpath in self.mounts(name).items():
            if value == cpath or value.startswith(cpath + "/"):
                value = hpath + value[len(cpath):]
        return value

    def argv(self, name):
        svc = self.services[name]
        image = image_config(svc["build"]["target"])
        argv = (svc.get("entrypoint") or image["entrypoint"]) + \
            (svc.get("command") or image["cmd"] or [])
        out = []
        for i, a in enumerate(argv):
            a = self.rewrite(name, str(a))
            # A bare container port given to a flag (--port 4222) moves too.
            if i > 0 and a.isdigit() and argv[i - 1].startswith("-") and \
                    (name, int(a)) in self.ports:
                a = str(self.ports[(name, int(a))])
            out.append(a)
        exe = out[0]
        out[0] = nats_server() if exe == "nats-server" else str(self.prefix / "bin" / exe)
        return out

    def env(self, name):
        svc = self.services[name]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "HOME": str(self.workdir)}
        for k, v in image_config(svc["build"]["target"])["env"].items():
            env[k] = self.rewrite(name, v)
        for k, v in svc["environment"].items():
            env[k] = self.rewrite(name, v)
        return env

    def healthcheck(self, name):
        svc = self.services[name]
        test = (svc.get("healthcheck") or {}).get("test") or \
            ["CMD"] + image_config(svc["build"]["target"])["healthcheck"]
        assert test[0] == "CMD" and test[1] == "sb-healthcheck", test
        return [str(HEALTHCHECK)] + [self.rewrite(name, a) for a in test[2:]]

    def healthy(self, name):
        r = subprocess.run(self.healthcheck(name), env=self.env(name), timeout=10,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return r.returncode == 0

    def grace(self, name):
        return compose_duration(self.services[name].get("stop_grace_period"), 10.0)

    def http_port(self, name, container_port):
        return self.ports[(name, container_port)]

    # ---------------------------------------------------------------- start / stop
    def start(self):
        self.ports = {}
        for name in self.services:
            for p in self.container_ports(name):
                self.ports[(name, p)] = free_port()
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        for name in self.order:
            cwd = self.workdir / "cwd" / name
            cwd.mkdir(parents=True, exist_ok=True)
            proc = Proc(name, self.argv(name), self.env(name), logs / f"{name}.log", cwd=cwd)
            self.procs[name] = proc
            deadline = time.monotonic() + 30
            while not self.healthy(name):
                assert proc.alive(), f"{name} exited ({proc.p.returncode}):\n{proc.logs()[-3000:]}"
                assert time.monotonic() < deadline, f"{name} never healthy:\n{proc.logs()[-3000:]}"
                time.sleep(0.1)
            if name != "nats":
                # Each service logs event=ready when serving (the health check may answer
                # a moment before the line reaches the log).
                while "event=ready" not in proc.logs():
                    assert time.monotonic() < deadline + 2, f"{name}: no event=ready logged"
                    time.sleep(0.05)

    def stop_signal(self, name):
        """What `docker compose stop` sends: compose's stop_signal, else the image's
        STOPSIGNAL (SIGTERM for the services; SIGINT, the clean one, for nats-server)."""
        svc = self.services[name]
        sig = svc.get("stop_signal") or image_config(svc["build"]["target"])["stopsignal"]
        return getattr(signal, sig if sig.startswith("SIG") else "SIG" + sig)

    def sigterm(self, name):
        proc = self.procs[name]
        proc.t_term = time.monotonic()
        proc.p.send_signal(self.stop_signal(name))

    async def wait_exit(self, name):
        proc, grace = self.procs[name], self.grace(name)
        while proc.alive() and time.monotonic() - proc.t_term < grace:
            await asyncio.sleep(0.02)
        took = time.monotonic() - proc.t_term
        rc = proc.p.poll()
        self.results[name] = (rc, took)
        return rc, took

    def kill_all(self):
        for proc in self.procs.values():
            proc.kill()
        self.procs = {}

    def assert_clean_exits(self):
        for name, (rc, took) in self.results.items():
            log = self.procs[name].logs()[-2000:] if name in self.procs else ""
            assert rc is not None, f"{name} still running {took:.1f}s after SIGTERM " \
                f"(stop_grace_period {self.grace(name)}s): Docker would SIGKILL it\n{log}"
            assert rc == 0, f"{name} exited {rc} after SIGTERM\n{log}"

    # --------------------------------------------------------------------- helpers
    def sbctl(self, *args):
        """sbctl as `docker compose run --rm sbctl ...` runs it: the `tools` profile's sbctl
        service (the operator's NATS user), host names mapped like the others'."""
        tool = load_compose()["services"]["sbctl"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        for k, v in tool["environment"].items():
            env[k] = re.sub(r"@nats:4222\b", f"@{LOOPBACK}:{self.ports[('nats', 4222)]}", v)
        r = subprocess.run([str(self.prefix / "bin" / "sbctl"), *args], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
        assert r.returncode == 0, f"sbctl {' '.join(args)}: {r.stderr}"
        return r.stdout.strip()

    def gateway_url(self, path, token):
        port = self.ports[("gateway", 8000)]
        return f"ws://{LOOPBACK}:{port}{path}?token={token}"

    def nats_pub(self, subject, payload):
        """A plain PUB from 'any system' (the NATS text protocol, no client library), as
        the NATS user `injector` with the password deploy/.env gives nats."""
        port = self.ports[("nats", 4222)]
        password = self.services["nats"]["environment"]["SB_NATS_INJECTOR_PASSWORD"]
        connect = json.dumps({"verbose": False, "pedantic": False, "user": "injector",
                              "pass": password})
        with socket.create_connection((LOOPBACK, port), timeout=5) as s:
            f = s.makefile("rb")
            assert f.readline().startswith(b"INFO ")
            data = json.dumps(payload).encode()
            s.sendall(f"CONNECT {connect}\r\n".encode() +
                      f"PUB {subject} {len(data)}\r\n".encode() + data + b"\r\nPING\r\n")
            line = f.readline()
            assert line.startswith(b"PONG"), line


async def recv_type(ws, kind, timeout=10.0):
    """The next frame of type `kind` (others are collected and returned too)."""
    deadline = time.monotonic() + timeout
    others = []
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {kind} frame within {timeout}s (got {others})"
        frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        if frame.get("type") == kind:
            return frame, others
        others.append(frame)


async def quiet(ws, seconds):
    """Frames that arrive within `seconds` (a check that nothing does)."""
    got = []
    try:
        while True:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), seconds)))
    except asyncio.TimeoutError:
        return got


def connect(url):
    return websockets.connect(url, open_timeout=5, close_timeout=2, ping_interval=None)


def metric_names(text):
    names = set()
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{|\s)", line)
        if m and not line.startswith("#"):
            names.add(m.group(1))
    return names


def dashboard_metrics():
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    found = set()
    for e in exprs:
        found |= set(re.findall(r"\b(sb_[a-z0-9_]+)", e))
    return found


METRIC_OWNER = {"sb_gateway_": "gateway", "sb_auth_": "auth-svc", "sb_chat_": "chat-svc",
                "sb_notify_": "notify-svc"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    prefix, _ = build_release()
    s = Stack(prefix, tmp_path_factory.mktemp("stack"))
    yield s
    s.kill_all()


def test_whole_set_runs_from_the_compose_file(stack):
    t0 = time.monotonic()
    try:
        stack.start()
        check_probe_paths(stack)
        check_dashboard_metrics(stack)
        state = asyncio.run(first_run(stack))
        stack.assert_clean_exits()
        stack.procs = {}
        stack.start()
        asyncio.run(second_run(stack, state))
        stack.assert_clean_exits()
    finally:
        stack.kill_all()
    assert time.monotonic() - t0 < 90
    if stack.missing:
        print(f"not run (not built yet): {stack.missing}")


def check_probe_paths(stack):
    """Every path the compose file and the manifests probe answers 200 on the real
    service, on the port the file says."""
    for name in stack.services:
        target = stack.services[name]["build"]["target"]
        if target not in SERVICES:
            continue
        listen = stack.env(name)["SB_LISTEN" if target == "gateway" else "SB_HTTP_LISTEN"]
        port = int(listen.rsplit(":", 1)[1])
        for path in sorted(PROBE_PATHS):
            status, body = http_get(LOOPBACK, port, path)
            assert status == 200, f"{name} GET {path}: {status} {body[:200]}"
    for obj in render_k8s():
        spec = pod_spec(obj)
        if not spec:
            continue
        for c in spec["containers"]:
            target = image_target(c["image"])
            name = next((n for n, s in stack.services.items()
                         if s["build"]["target"] == target), None)
            if not name:
                continue
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if kind not in c:
                    continue
                get = c[kind]["httpGet"]
                port = stack.http_port(name, ports[get["port"]])
                status, body = http_get(LOOPBACK, port, get["path"])
                assert status == 200, f"k8s {target} {kind} GET {get['path']}: {status} {body[:200]}"


def check_dashboard_metrics(stack):
    served = {}
    for name in stack.services:
        target = stack.services[name]["build"]["target"]
        if target in SERVICES:
            listen = stack.env(name)["SB_LISTEN" if target == "gateway" else "SB_HTTP_LISTEN"]
            status, body = http_get(LOOPBACK, int(listen.rsplit(":", 1)[1]), "/metrics")
            assert status == 200
            served[target] = metric_names(body)
    for metric in sorted(dashboard_metrics()):
        owner = next(o for p, o in METRIC_OWNER.items() if metric.startswith(p))
        if owner not in served:
            continue  # not built yet
        base = re.sub(r"_(bucket|sum|count)$", "", metric)
        assert metric in served[owner] or base in {re.sub(r"_(bucket|sum|count)$", "", m)
                                                   for m in served[owner]}, \
            f"the dashboard plots {metric}, which {owner} does not serve"


async def first_run(stack):
    for uid, name in ((1, "Alice"), (2, "Bob"), (3, "Carol")):
        stack.sbctl("user", "add", "--id", str(uid), "--name", name)
    tokens = {uid: stack.sbctl("token", "issue", "--user", str(uid), "--ttl", "1h")
              for uid in (1, 2, 3)}
    notify = "notify-svc" in stack.services
    state = {"tokens": tokens, "notify": notify}

    alice = await connect(stack.gateway_url("/ws/chat/", tokens[1]))
    bob = await connect(stack.gateway_url("/ws/chat/", tokens[2]))
    bob_n = await connect(stack.gateway_url("/ws/notifications/", tokens[2])) if notify else None

    await alice.send(json.dumps({"receiver_id": 2, "message": "hi bob"}))
    sent, _ = await recv_type(alice, "message_sent")
    got, _ = await recv_type(bob, "chat_message")
    assert got["id"] == sent["id"] and got["sender_id"] == 1 and got["message"] == "hi bob"
    assert got["sender_name"] == "Alice" and got["attachment"] is None
    state["bob_id"] = sent["id"]

    # To Carol, who is offline: acknowledged now, delivered after the restart.
    await alice.send(json.dumps({"receiver_id": "3", "message": "hi carol"}))
    sent3, _ = await recv_type(alice, "message_sent")
    assert sent3["receiver_id"] == 3
    state["carol_id"] = sent3["id"]

    if notify:
        sbctl_help = subprocess.run([str(stack.prefix / "bin" / "sbctl"), "--help"],
                                    stdout=subprocess.PIPE, text=True).stdout
        if re.search(r"^\s+notify\b", sbctl_help, re.M):
            stack.sbctl("notify", "--user", "2", "--title", "Deploy", "--message", "to bob")
        else:
            stack.nats_pub("notify.send.json", {"user_id": 2, "title": "Deploy",
                                                "message": "to bob"})
        n, _ = await recv_type(bob_n, "notify")
        assert n["title"] == "Deploy" and n["message"] == "to bob"
        # Any system's plain PUB, for Carol while she is offline.
        stack.nats_pub("notify.send.json", {"user_id": 3, "title": "Later",
                                            "message": "to carol", "notification_type": "notice"})

    # docker compose stop: dependents first. The gateway drains: its sockets close 1001.
    socks = [ws for ws in (alice, bob, bob_n) if ws]
    for name in reversed(stack.order):
        stack.sigterm(name)
        if name == "gateway":
            grace = stack.grace(name)
            for ws in socks:
                await asyncio.wait_for(ws.wait_closed(), grace)
                assert ws.close_code == 1001, f"gateway closed a socket with {ws.close_code}"
        await stack.wait_exit(name)
    return state


async def second_run(stack, state):
    tokens = state["tokens"]
    carol = await connect(stack.gateway_url("/ws/chat/", tokens[3]))
    got, _ = await recv_type(carol, "chat_message")
    assert got["id"] == state["carol_id"] and got["message"] == "hi carol", got
    bob = await connect(stack.gateway_url("/ws/chat/", tokens[2]))
    again = [f for f in await quiet(bob, 1.0) if f.get("type") == "chat_message"]
    assert not again, f"Bob got delivered messages a second time: {again}"
    extra = [f for f in await quiet(carol, 0.5) if f.get("type") == "chat_message"]
    assert not extra, f"Carol got {extra} twice"
    socks = [carol, bob]
    if state["notify"]:
        carol_n = await connect(stack.gateway_url("/ws/notifications/", tokens[3]))
        n, _ = await recv_type(carol_n, "notify")
        assert n["title"] == "Later" and n["notification_type"] == "notice", n
        socks.append(carol_n)
    for name in reversed(stack.order):
        stack.sigterm(name)
        if name == "gateway":
            for ws in socks:
                await asyncio.wait_for(ws.wait_closed(), stack.grace(name))
                assert ws.close_code == 1001
        await stack.wait_exit(name)
