"""Every setting the deployment files use exists in the binaries.

Reads deploy/Dockerfile, deploy/docker-compose.yml and the rendered deploy/k8s, and
checks each environment variable, flag, port and probe path they give a service against
what the binary itself says (`--help`, the release build the image would hold); for NATS,
against `nats-server --help`. The paths are checked live, on the running binaries, by
test_native_stack.py. A binary that is not part of the build yet (CMakeLists.txt does not
add it) has its checks skipped, by name.
"""
import re
import shlex

import pytest

from deploylib import (PROBE_PATHS, SERVICES, build_release, flags_in, help_options,
                       image_config, image_target, load_compose, nats_server_flags,
                       pod_spec, render_k8s)


@pytest.fixture(scope="module")
def helps():
    prefix, _ = build_release()
    out = {}
    for svc in SERVICES + ["sbctl"]:
        path = prefix / "bin" / svc
        if path.exists():
            out[svc] = help_options(path)
    return out


def _need(helps, svc):
    if svc not in helps:
        pytest.skip(f"{svc} is not built yet (CMakeLists.txt does not add it)")
    return helps[svc]


def _port(addr):
    return int(addr.rsplit(":", 1)[1])


LISTEN_ENV = {"gateway": "SB_LISTEN", "auth-svc": "SB_HTTP_LISTEN",
              "chat-svc": "SB_HTTP_LISTEN", "notify-svc": "SB_HTTP_LISTEN"}


@pytest.mark.parametrize("svc", SERVICES)
def test_compose_settings_exist(helps, svc):
    opts = _need(helps, svc)
    envs = {e for e in opts.values() if e}
    compose = load_compose()["services"][svc]
    image = image_config(compose["build"]["target"])
    env = dict(image["env"])
    env.update(compose["environment"])
    unknown = set(env) - envs
    assert not unknown, f"{svc}: {sorted(unknown)} are not settings of {svc} (--help)"
    argv = (compose.get("entrypoint") or image["entrypoint"]) + (compose.get("command") or image["cmd"] or [])
    assert argv[0] == svc
    bad = [f for f in flags_in(argv[1:]) if f not in opts]
    assert not bad, f"{svc}: flags {bad} are not in {svc} --help"
    # The port it listens on is the port the file exposes, publishes and probes.
    port = _port(env[LISTEN_ENV[svc]])
    exposed = {int(p) for p in compose.get("expose", [])} | set(image["expose"])
    exposed |= {int(p.rsplit(":", 1)[-1]) for p in compose.get("ports", [])}
    assert port in exposed, f"{svc}: listens on {port}, exposes {exposed}"
    hc = (compose.get("healthcheck") or {}).get("test") or ["CMD"] + image["healthcheck"]
    assert hc[1] == "sb-healthcheck" and hc[2].split("?")[0] in PROBE_PATHS, hc
    if len(hc) > 3:
        assert _port(hc[3]) == port, hc


def test_compose_nats_flags_exist():
    flags = nats_server_flags()
    nats = load_compose()["services"]["nats"]
    image = image_config("nats")
    argv = image["entrypoint"] + (nats.get("command") or image["cmd"])
    assert argv[0] == "nats-server"
    bad = [a for a in argv[1:] if a.startswith("-") and a.split("=")[0] not in flags]
    assert not bad, f"nats-server does not know {bad}"
    port = argv[argv.index("--http_port") + 1]
    hc = nats["healthcheck"]["test"]
    assert hc[1] == "sb-healthcheck" and hc[3].endswith(":" + port), hc
    assert {"4222", port} <= set(nats["expose"])


@pytest.fixture(scope="module")
def rendered():
    return render_k8s()


def _containers(rendered):
    for o in rendered:
        spec = pod_spec(o)
        if spec:
            for c in spec["containers"]:
                yield o, c


@pytest.mark.parametrize("svc", SERVICES)
def test_k8s_settings_exist(helps, rendered, svc):
    opts = _need(helps, svc)
    envs = {e for e in opts.values() if e}
    cms = {o["metadata"]["name"]: o for o in rendered if o["kind"] in ("ConfigMap", "Secret")}
    found = False
    for obj, c in _containers(rendered):
        if image_target(c["image"]) != svc:
            continue
        found = True
        image = image_config(svc)
        # A variable that only feeds another one's value ($(NATS_PASSWORD) inside
        # SB_NATS_URL) is Kubernetes plumbing, not a setting of the binary.
        helpers = {m for e in c.get("env", []) for m in
                   re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e.get("value") or "")}
        helpers = {h for h in helpers if not h.startswith("SB_")}
        names = (set(image["env"]) | {e["name"] for e in c.get("env", [])}) - helpers
        for ef in c.get("envFrom", []):
            ref = (ef.get("configMapRef") or ef.get("secretRef"))["name"]
            names |= set(cms[ref].get("data", {}))
        unknown = names - envs
        assert not unknown, f"{obj['metadata']['name']}: {sorted(unknown)} unknown to {svc}"
        argv = c.get("command", image["entrypoint"]) + c.get("args", [])
        bad = [f for f in flags_in(argv[1:]) if f not in opts]
        assert not bad, f"{svc}: flags {bad} are not in {svc} --help"
        listen = next(e["value"] for e in c.get("env", []) if e["name"] == LISTEN_ENV[svc])
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert _port(listen) in ports.values(), (svc, listen, ports)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in c:
                get = c[kind]["httpGet"]
                assert get["path"] in PROBE_PATHS, (svc, kind, get)
                assert ports[get["port"]] == _port(listen), (svc, kind, get)
        ann = obj["spec"]["template"]["metadata"]["annotations"]
        assert int(ann["prometheus.io/port"]) == _port(listen)
    assert found, f"no container runs {svc}"


def test_k8s_nats_flags_exist(rendered):
    flags = nats_server_flags()
    for obj, c in _containers(rendered):
        if image_target(c["image"]) == "nats":
            argv = ["nats-server"] + c.get("args", [])
            bad = [a for a in argv[1:] if a.startswith("-") and a.split("=")[0] not in flags]
            assert not bad, bad
            pre = shlex.split(c["lifecycle"]["preStop"]["exec"]["command"][2])
            assert pre[0] == "nats-server" and pre[1] in flags, pre


def test_compose_sbctl_tool_settings_exist(helps):
    """The `tools` profile's sbctl service: its variables are sbctl's."""
    opts = _need(helps, "sbctl")
    envs = {e for e in opts.values() if e}
    svc = load_compose()["services"]["sbctl"]
    unknown = set(svc["environment"]) - envs
    assert not unknown, f"sbctl: {sorted(unknown)} are not settings of sbctl (--help)"
    assert svc["entrypoint"] == ["sbctl"]
