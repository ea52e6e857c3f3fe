"""deploylib: what the deployment tests share.

Readers for the deployment files (deploy/Dockerfile, deploy/docker-compose.yml, the
rendered Kubernetes manifests), the binaries' own description of their settings
(`--help`), the release build (scripts/build-release.sh, the Dockerfile's build step),
and process/port helpers for running the compose set natively.

Run with Debian's /usr/bin/python3 (PyYAML from python3-yaml, websockets from
python3-websockets). SB_BUILD_DIR names the CMake build directory (default: build/).
"""
import fcntl
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
HEALTHCHECK = DEPLOY / "healthcheck.sh"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
TESTS = Path(__file__).resolve().parent
BUILD_DIR = Path(os.environ.get("SB_BUILD_DIR", REPO / "build")).resolve()

SERVICES = ["gateway", "auth-svc", "chat-svc", "notify-svc"]
NATS_AUTH_CONF = DEPLOY / "nats" / "switchboard-auth.conf"
# NATS user -> the variable holding its password (deploy/nats/switchboard-auth.conf)
NATS_USERS = {"gateway": "SB_NATS_GATEWAY_PASSWORD", "auth-svc": "SB_NATS_AUTH_PASSWORD",
              "chat-svc": "SB_NATS_CHAT_PASSWORD", "notify-svc": "SB_NATS_NOTIFY_PASSWORD",
              "sbctl": "SB_NATS_SBCTL_PASSWORD", "injector": "SB_NATS_INJECTOR_PASSWORD"}
# What an operator puts in deploy/.env (deploy/nats/passwords.sh): the tests' stand-ins.
TEST_NATS_ENV = {var: f"test-{user}-pw" for user, var in NATS_USERS.items()}
BINARIES = SERVICES + ["sbctl"]
# Paths a deployment may probe; the native run checks each one it finds answers 200.
PROBE_PATHS = {"/healthz", "/readyz", "/metrics"}


# ----------------------------------------------------------------------- release build

def release_dirs():
    work = BUILD_DIR / "deploy-release"
    return work / "build", work / "prefix"


def dockerfile_build_command():
    """The RUN line of the Dockerfile's build stage that calls build-release.sh, split
    into (environment assignments, argv)."""
    for op, arg in dockerfile_stages()["build"]["instructions"]:
        if op == "RUN" and "scripts/build-release.sh" in arg:
            words = shlex.split(arg)
            env = {}
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                k, v = words.pop(0).split("=", 1)
                env[k] = v
            return env, words
    raise AssertionError("deploy/Dockerfile: no RUN scripts/build-release.sh in the build stage")


def build_release():
    """Run the Dockerfile's own build command (its build-release.sh line) with the prefix
    and build directory moved under SB_BUILD_DIR. Incremental after the first run; a lock
    keeps parallel test processes from building the same tree at once. Returns the
    prefix (binaries in prefix/bin) and the script's output."""
    env_over, argv = dockerfile_build_command()
    assert argv[0] == "scripts/build-release.sh" and len(argv) == 2, argv
    build, prefix = release_dirs()
    build.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(env_over)
    env["SB_RELEASE_BUILD_DIR"] = str(build)
    with open(build.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = subprocess.run([str(REPO / argv[0]), str(prefix)], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=600)
    assert r.returncode == 0, f"scripts/build-release.sh failed:\n{r.stdout[-4000:]}"
    return prefix, r.stdout


# ---------------------------------------------------------------------- the binaries

def help_options(binary):
    """{flag: env or None} from `binary --help` (the settings table every binary prints)."""
    r = subprocess.run([str(binary), "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=10)
    assert r.returncode == 0, f"{binary} --help exited {r.returncode}: {r.stdout}"
    opts = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^\s+--([a-z0-9][a-z0-9-]*)\s+(SB_[A-Z0-9_]+)?", line)
        if m:
            opts[m.group(1)] = m.group(2)
    assert opts, f"{binary} --help lists no options:\n{r.stdout}"
    return opts


def nats_server_flags():
    """Long and short flags nats-server accepts, from its --help."""
    r = subprocess.run([nats_server(), "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=10)
    flags = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", r.stdout))
    assert "--jetstream" in flags, r.stdout
    return flags


def nats_server():
    path = shutil.which("nats-server") or "/usr/sbin/nats-server"
    assert os.access(path, os.X_OK), "nats-server is not installed (Debian package nats-server)"
    return path


def flags_in(argv):
    """The --flags (without --, and without =value) in an argument list."""
    out = []
    for a in argv:
        if a.startswith("--"):
            out.append(a[2:].split("=", 1)[0])
    return out


# ------------------------------------------------------------------------ Dockerfile

def _dockerfile_lines():
    text = DOCKERFILE.read_text()
    joined, cur = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if cur and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        joined.append(cur + line)
        cur = ""
    if cur:
        joined.append(cur)
    return joined


def dockerfile_stages():
    """{stage: {"from": base, "instructions": [(OP, argument text)]}} in file order;
    ARG defaults before the first FROM are substituted in FROM lines."""
    args, stages, cur = {}, {}, None
    for line in _dockerfile_lines():
        op, _, arg = line.strip().partition(" ")
        op, arg = op.upper(), arg.strip()
        if op == "ARG" and cur is None:
            k, _, v = arg.partition("=")
            args[k] = v
            continue
        if op == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), arg)
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", base, re.I)
            name = m.group(2) or f"stage{len(stages)}"
            cur = stages[name] = {"from": m.group(1), "instructions": []}
            continue
        cur["instructions"].append((op, arg))
    return stages


def _exec_form(arg):
    arg = arg.strip()
    assert arg.startswith("["), f"use the exec (JSON) form: {arg}"
    return json.loads(arg)


def image_config(target):
    """What a container of `target` starts with: {"env", "entrypoint", "cmd",
    "healthcheck" (argv after CMD, or None), "expose" (ints), "user", "copies",
    "stopsignal"},
    following FROM through earlier stages."""
    stages = dockerfile_stages()
    chain, name = [], target
    while name in stages:
        chain.append(stages[name])
        name = stages[name]["from"]
    cfg = {"env": {}, "entrypoint": None, "cmd": None, "healthcheck": None, "expose": [],
           "user": None, "copies": [], "base": name, "stopsignal": "SIGTERM"}
    for st in reversed(chain):
        for op, arg in st["instructions"]:
            if op == "ENV":
                for word in shlex.split(arg):
                    k, _, v = word.partition("=")
                    cfg["env"][k] = v
            elif op == "ENTRYPOINT":
                cfg["entrypoint"], cfg["cmd"] = _exec_form(arg), None
            elif op == "CMD":
                cfg["cmd"] = _exec_form(arg)
            elif op == "HEALTHCHECK":
                m = re.search(r"\bCMD\s+(\[.*\])\s*$", arg)
                cfg["healthcheck"] = json.loads(m.group(1)) if m else None
            elif op == "EXPOSE":
                cfg["expose"] += [int(p.split("/")[0]) for p in arg.split()]
            elif op == "USER":
                cfg["user"] = arg
            elif op == "STOPSIGNAL":
                cfg["stopsignal"] = arg
            elif op == "COPY":
                cfg["copies"].append(arg)
    return cfg


def apt_packages(stage):
    """Packages a stage's RUN lines install with apt-get install."""
    pkgs = []
    for op, arg in dockerfile_stages()[stage]["instructions"]:
        if op != "RUN":
            continue
        for part in re.split(r"&&|;", arg):
            words = part.split()
            if "apt-get" in words and "install" in words:
                pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


# --------------------------------------------------------------------------- compose

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value, env):
    """Compose's variable substitution: ${V}, ${V:-default}, ${V-default}, $V, $$."""
    if isinstance(value, str):
        def sub(m):
            if m.group(0) == "$$":
                return "$"
            name = m.group(1) or m.group(4)
            op, arg = m.group(2), m.group(3) or ""
            have = name in env
            if op == ":-":
                return env[name] if have and env[name] != "" else arg
            if op == "-":
                return env[name] if have else arg
            if op in (":?", "?"):
                assert have and (op == "?" or env[name] != ""), f"${{{name}}} is required: {arg}"
            return env.get(name, "")
        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def load_compose(env=None):
    """deploy/docker-compose.yml as compose sees it with `env` as the shell environment
    (default: only the NATS passwords set, TEST_NATS_ENV, so every ${VAR:-default} takes
    its default). YAML anchors and merge keys are resolved by the loader."""
    raw = yaml.safe_load(COMPOSE.read_text())
    shell = dict(TEST_NATS_ENV)
    shell.update(env or {})
    doc = interpolate(raw, shell)
    for svc in doc["services"].values():
        envv = svc.get("environment") or {}
        if isinstance(envv, list):
            envv = dict(e.split("=", 1) if "=" in e else (e, "") for e in envv)
        svc["environment"] = {k: "" if v is None else str(v) for k, v in envv.items()}
    return doc


def compose_duration(text, default=10.0):
    """Seconds in a compose duration (10s, 1m30s, 500ms)."""
    if text is None:
        return default
    total = 0.0
    for num, unit in re.findall(r"([\d.]+)(ms|us|h|m|s)", str(text)):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total


def compose_order(services):
    """Service names so that each comes after what it depends on."""
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        deps = services[name].get("depends_on") or {}
        for d in (deps if isinstance(deps, list) else deps.keys()):
            if d in services:
                visit(d)
        order.append(name)

    for name in services:
        visit(name)
    return order


# ------------------------------------------------------------------------ Kubernetes

def kubectl():
    """A kubectl with a built-in kustomize: the one on PATH (the machine image's), or
    Debian's kubernetes-client."""
    for cand in (shutil.which("kubectl"), "/usr/bin/kubectl"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def render_k8s(directory=K8S, kubectl_path=None):
    k = kubectl_path or kubectl()
    assert k, "no kubectl (Debian package kubernetes-client) to run `kubectl kustomize`"
    r = subprocess.run([k, "kustomize", str(directory)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 0, f"kubectl kustomize {directory} failed:\n{r.stderr}"
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def pod_spec(obj):
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "Pod":
        return obj["spec"]
    return None


def image_target(image):
    """switchboard/chat-svc:1.2 -> chat-svc (the Dockerfile target of our images)."""
    name = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return name


# ------------------------------------------------------------------ ports, processes

_given_ports = set()


def free_port():
    """A free loopback port never handed out before in this process: a random one below
    the ephemeral range, checked by binding it (bind(0) was seen handing out the same
    port twice on a crowded machine, so nats-server's monitor port collided)."""
    import random
    for _ in range(500):
        p = random.randint(20000, 32000)
        if p in _given_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        _given_ports.add(p)
        return p
    raise RuntimeError("no free port found")


def http_get(host, port, path, timeout=3.0):
    """(status, body) of a plain GET, or (None, error text)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            s.settimeout(timeout)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                m = re.search(rb"content-length:\s*(\d+)", head, re.I)
                if sep and m and len(body) >= int(m.group(1)):
                    break
    except OSError as e:
        return None, str(e)
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return (int(m.group(1)) if m else None), body.decode("utf-8", "replace")


class Proc:
    """A started process with its log file; stopped by its own pid only."""

    def __init__(self, name, argv, env, log_path, cwd=None):
        self.name, self.argv, self.log_path = name, argv, Path(log_path)
        self.log = open(self.log_path, "ab")
        self.p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self.log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def logs(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self):
        if self.alive():
            self.p.kill()
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.log.close()
