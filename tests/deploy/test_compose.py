"""deploy/docker-compose.yml: valid for docker-compose, and shaped as the issue asks.

`docker-compose config` (Debian's docker-compose 1.29) parses and validates the file
against the Compose schema, with no Docker engine. Then the shape: NATS with JetStream
and a volume; the four services, each stateful one with its own volume where its
SQLite files live; the gateway published on 8000; restart policies and health checks
everywhere; stop grace periods that cover the gateway's drain. The lb profile (HAProxy
in front of scaled gateways) is checked too, its configuration with `haproxy -c`.
"""
import os
import re
import shutil
import subprocess
import tempfile

import yaml

from deploylib import (COMPOSE, DEPLOY, NATS_AUTH_CONF, NATS_USERS, TEST_NATS_ENV,
                       compose_duration, image_config, load_compose)

LB_ENV = {"SB_GATEWAY_PORTS": "127.0.0.1::8000"}


def docker_compose(*args, env=None, passwords=True):
    """docker-compose -f deploy/docker-compose.yml ARGS in a clean environment: no SB_ or
    COMPOSE_ variables but `env`, plus the NATS passwords an operator's deploy/.env holds
    (TEST_NATS_ENV) unless passwords=False."""
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed (Debian package docker-compose)"
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SB_", "COMPOSE_"))}
    e.update(TEST_NATS_ENV if passwords else {})
    e.update(env or {})
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        # without passwords, not even an operator's deploy/.env may supply them
        files = ["-f", str(COMPOSE)] + ([] if passwords else ["--env-file", empty.name])
        return subprocess.run([exe, *files, *args], cwd=DEPLOY, env=e,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=60)


def test_docker_compose_config_accepts_the_file():
    r = docker_compose("config")
    assert r.returncode == 0, r.stderr
    services = yaml.safe_load(r.stdout)["services"]
    assert {"nats", "auth-svc", "chat-svc", "notify-svc", "gateway"} <= set(services)


def test_docker_compose_config_accepts_the_lb_profile():
    r = docker_compose("--profile", "lb", "config", env=LB_ENV)
    assert r.returncode == 0, r.stderr
    services = yaml.safe_load(r.stdout)["services"]
    assert services["lb"]["depends_on"]["gateway"]["condition"] == "service_healthy"


def _env(svc, name):
    return svc["environment"].get(name) or image_config(svc["build"]["target"])["env"].get(name)


def test_nats_has_jetstream_and_a_volume():
    nats = load_compose()["services"]["nats"]
    cmd = nats.get("command") or image_config("nats")["cmd"]
    assert "--jetstream" in cmd or "-js" in cmd, cmd
    store = cmd[cmd.index("--store_dir") + 1]
    assert any(v.split(":")[1] == store for v in nats["volumes"]), (store, nats["volumes"])


def test_each_service_keeps_its_data_on_its_own_volume():
    doc = load_compose()
    services, named = doc["services"], set(doc["volumes"])
    used = {}
    for name in ("auth-svc", "chat-svc", "notify-svc"):
        svc = services[name]
        data_dir = _env(svc, "SB_DATA_DIR")
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", [])}
        assert data_dir in mounts, f"{name}: SB_DATA_DIR {data_dir} is not a volume"
        vol = mounts[data_dir]
        assert vol in named, f"{name}: {vol} is not a named volume"
        assert vol not in used, f"{name} shares volume {vol} with {used.get(vol)}"
        used[vol] = name
    assert not services["gateway"].get("volumes"), "the gateway is stateless"


def test_gateway_is_published_on_8000():
    gw = load_compose()["services"]["gateway"]
    listen = _env(gw, "SB_LISTEN")
    port = int(listen.rsplit(":", 1)[1])
    assert gw["ports"] == ["8000:8000"] and port == 8000, (gw["ports"], listen)
    lb = load_compose(LB_ENV)["services"]["gateway"]
    assert lb["ports"] == ["127.0.0.1::8000"], lb["ports"]


def test_restart_policies_health_checks_and_grace_periods():
    services = load_compose()["services"]
    for name, svc in services.items():
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), name
        if name != "lb":
            hc = (svc.get("healthcheck") or {}).get("test") or \
                ["CMD"] + (image_config(svc["build"]["target"])["healthcheck"] or [])
            assert hc[:2] == ["CMD", "sb-healthcheck"], (name, hc)
    gw = services["gateway"]
    drain_s = int(_env(gw, "SB_DRAIN_TIMEOUT_MS")) / 1000
    grace = compose_duration(gw.get("stop_grace_period"))
    assert grace >= drain_s + 5, f"gateway: stop_grace_period {grace}s < drain {drain_s}s + 5s"
    for name in ("auth-svc", "chat-svc", "notify-svc", "nats"):
        assert compose_duration(services[name].get("stop_grace_period")) >= 10, name


def test_containers_are_locked_down():
    for name, svc in load_compose()["services"].items():
        assert svc.get("read_only") is True, name
        assert svc.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in svc.get("security_opt", []), name


def test_lb_balances_over_gateway_readiness():
    cfg = (DEPLOY / "haproxy.cfg").read_text()
    assert re.search(r"server-template\s+\S+\s+\d+\s+gateway:8000\b.*\bresolvers\b", cfg), cfg
    assert re.search(r"http-check send meth GET uri /readyz", cfg)
    assert "timeout tunnel" in cfg
    exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert os.access(exe, os.X_OK), "haproxy is not installed (Debian package haproxy)"
    r = subprocess.run([exe, "-c", "-f", str(DEPLOY / "haproxy.cfg")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    assert r.returncode == 0, r.stdout
    lb = load_compose()["services"]["lb"]
    assert lb["profiles"] == ["lb"] and lb["ports"] == ["8000:8000"], lb


def test_nats_requires_a_password_per_service():
    """NATS runs deploy/nats/switchboard-auth.conf; every service logs in as its own user
    with its own password, which has no default: compose refuses to start without them."""
    doc = load_compose()
    nats = doc["services"]["nats"]
    cmd = nats.get("command") or image_config("nats")["cmd"]
    conf = cmd[cmd.index("--config") + 1]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in nats["volumes"]}
    assert conf in mounts, (conf, nats["volumes"])
    assert (DEPLOY / mounts[conf]).resolve() == NATS_AUTH_CONF.resolve(), mounts[conf]
    assert nats["volumes"][[v.split(":")[1] for v in nats["volumes"]].index(conf)].endswith(":ro")
    for user, var in NATS_USERS.items():
        assert nats["environment"].get(var) == TEST_NATS_ENV[var], (var, nats["environment"])
        assert f"${var}" in NATS_AUTH_CONF.read_text(), var
    who = {"gateway": "gateway", "auth-svc": "auth-svc", "chat-svc": "chat-svc",
           "notify-svc": "notify-svc", "sbctl": "sbctl"}
    for svc, user in who.items():
        url = doc["services"][svc]["environment"]["SB_NATS_URL"]
        assert url == f"nats://{user}:{TEST_NATS_ENV[NATS_USERS[user]]}@nats:4222", (svc, url)
    r = docker_compose("config", passwords=False)
    assert r.returncode != 0 and "passwords.sh" in r.stderr, (r.returncode, r.stderr[-500:])


def test_sbctl_tool_runs_as_the_operator_user():
    doc = load_compose({})
    sbctl = doc["services"]["sbctl"]
    assert sbctl["profiles"] == ["tools"] and sbctl["entrypoint"] == ["sbctl"], sbctl
    assert sbctl["build"]["target"] == "auth-svc", "the auth-svc image carries sbctl"
    r = docker_compose("--profile", "tools", "config")
    assert r.returncode == 0, r.stderr
