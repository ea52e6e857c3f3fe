"""deploy/k8s: renders, validates against the Kubernetes API schema, and holds together.

`kubectl kustomize deploy/k8s` renders the kustomization (offline). Every rendered object
and the Ingress example go through validate-k8s.mjs: the Kubernetes OpenAPI schema from
the npm package kubernetes-models (types, required fields, enums, formats), plus the
strict-field check the API server does (no field the schema does not know). Then what
the schema cannot see: selectors match pods, probe and Service ports name real container
ports, scrape annotations point at the metrics port, the gateway's grace period covers
preStop + drain, chat-svc runs one pod per partition, the NATS configuration passes
`nats-server -t`, and the pieces the issue asks for are all there.
"""
import json
import re
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from deploylib import (K8S, NATS_AUTH_CONF, NATS_USERS, TEST_NATS_ENV, TESTS, Proc, free_port,
                       http_get, image_target, nats_server, pod_spec, render_k8s)


@pytest.fixture(scope="module")
def rendered():
    return render_k8s()


def by_kind(objs, kind):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def ensure_node_modules():
    if (TESTS / "node_modules" / "kubernetes-models").is_dir():
        return
    assert shutil.which("npm"), "npm is not installed (Debian package npm)"
    # Installs exactly package-lock.json; scripts/deps.sh normally did this already.
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=TESTS,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=300)
    assert r.returncode == 0, f"npm ci in tests/deploy failed:\n{r.stdout[-3000:]}"


def validate(objs):
    assert shutil.which("node"), "node is not installed (Debian package nodejs)"
    ensure_node_modules()
    r = subprocess.run(["node", str(TESTS / "validate-k8s.mjs")], input=json.dumps(objs),
                       cwd=TESTS, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_kustomize_renders(rendered):
    kinds = {o["kind"] for o in rendered}
    assert {"Namespace", "Deployment", "StatefulSet", "Service", "PodDisruptionBudget",
            "HorizontalPodAutoscaler", "Secret", "ConfigMap"} <= kinds, kinds
    for o in rendered:
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == "switchboard", o["metadata"]


def test_every_object_validates_against_the_api_schema(rendered):
    example = [d for d in yaml.safe_load_all((K8S / "ingress-example.yaml").read_text()) if d]
    results = validate(rendered + example)
    problems = [f"{r['kind']}/{r['name']}: {e}" for r in results for e in r["errors"]]
    problems += [f"{r['kind']}/{r['name']}: unknown field {u}" for r in results for u in r["unknown"]]
    assert not problems, "\n".join(problems)
    assert all(r["schema"] for r in results)


def test_the_validator_catches_mistakes(rendered):
    """The validator is only worth something if it fails: a typo and a wrong type."""
    dep = json.loads(json.dumps(by_kind(rendered, "Deployment")["gateway"]))
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["readinessprobe"] = c.pop("readinessProbe")
    bad_type = json.loads(json.dumps(dep))
    bad_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"
    r1, r2 = validate([dep, bad_type])
    assert any(u.endswith("/readinessprobe") for u in r1["unknown"]), r1
    assert any("containerPort" in e for e in r2["errors"]), r2


def _workloads(objs):
    return [o for o in objs if pod_spec(o) is not None]


def _labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def test_selectors_ports_and_probes_line_up(rendered):
    work = _workloads(rendered)
    for svc in by_kind(rendered, "Service").values():
        pods = [w for w in work if _labels_match(svc["spec"]["selector"],
                                                 w["spec"]["template"]["metadata"]["labels"])]
        assert pods, f"Service {svc['metadata']['name']} selects no pods"
        names = {p["name"] for w in pods for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in names, (svc["metadata"]["name"], port)
    for w in work:
        assert _labels_match(w["spec"]["selector"]["matchLabels"],
                             w["spec"]["template"]["metadata"]["labels"]), w["metadata"]["name"]
        for c in pod_spec(w)["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for kind in ("readinessProbe", "livenessProbe"):
                assert kind in c, f"{w['metadata']['name']}: no {kind}"
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if kind in c:
                    assert c[kind]["httpGet"]["port"] in ports, (w["metadata"]["name"], kind)
            res = c.get("resources", {})
            assert {"cpu", "memory"} <= set(res.get("requests", {})), w["metadata"]["name"]
            assert "memory" in res.get("limits", {}) and "cpu" in res.get("limits", {}), \
                w["metadata"]["name"]
    for sts in by_kind(rendered, "StatefulSet").values():
        assert sts["spec"]["serviceName"] in by_kind(rendered, "Service")
        claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
        mounts = {m["name"] for c in pod_spec(sts)["containers"] for m in c.get("volumeMounts", [])}
        assert claims and claims <= mounts, sts["metadata"]["name"]


def test_every_workload_has_a_disruption_budget(rendered):
    pdbs = by_kind(rendered, "PodDisruptionBudget").values()
    for w in _workloads(rendered):
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert any(_labels_match(p["spec"]["selector"]["matchLabels"], labels) for p in pdbs), \
            w["metadata"]["name"]


def test_scrape_annotations_point_at_metrics(rendered):
    scraped = set()
    for w in _workloads(rendered):
        ann = w["spec"]["template"]["metadata"].get("annotations", {})
        if ann.get("prometheus.io/scrape") != "true":
            continue
        c = pod_spec(w)["containers"][0]
        assert ann.get("prometheus.io/path") == "/metrics"
        assert int(ann["prometheus.io/port"]) in {p["containerPort"] for p in c["ports"]}
        scraped.add(image_target(c["image"]))
    assert scraped == {"gateway", "auth-svc", "chat-svc", "notify-svc"}, scraped


def _env(container, name):
    for e in container.get("env", []):
        if e["name"] == name:
            return e.get("value")
    return None


def test_gateway_scales_and_drains(rendered):
    gw = by_kind(rendered, "Deployment")["gateway"]
    spec = pod_spec(gw)
    c = spec["containers"][0]
    pre = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre[0] == "sleep", pre
    drain_s = int(_env(c, "SB_DRAIN_TIMEOUT_MS")) / 1000
    need = int(pre[1]) + drain_s + 5
    assert spec["terminationGracePeriodSeconds"] >= need, \
        f"terminationGracePeriodSeconds {spec['terminationGracePeriodSeconds']} < {need}"
    hpa = by_kind(rendered, "HorizontalPodAutoscaler")["gateway"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "gateway"}
    assert hpa["spec"]["minReplicas"] >= 2
    assert "replicas" not in gw["spec"], "the HPA owns the replica count"
    assert gw["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_chat_svc_runs_one_pod_per_partition(rendered):
    cms = by_kind(rendered, "ConfigMap")
    parts = [cm["data"]["SB_PARTITIONS"] for cm in cms.values() if "SB_PARTITIONS" in cm.get("data", {})]
    assert len(parts) == 1, parts
    chat = by_kind(rendered, "StatefulSet")["chat-svc"]
    assert chat["spec"]["replicas"] == int(parts[0])
    gw = pod_spec(by_kind(rendered, "Deployment")["gateway"])["containers"][0]
    refs = {e["configMapRef"]["name"] for e in gw.get("envFrom", [])}
    assert any("SB_PARTITIONS" in cms[r]["data"] for r in refs), "gateway must read the same P"


def test_jwt_secret_comes_from_a_secret(rendered):
    auth = pod_spec(by_kind(rendered, "StatefulSet")["auth-svc"])["containers"][0]
    ref = [e for e in auth["env"] if e["name"] == "SB_JWT_SECRET"][0]["valueFrom"]["secretKeyRef"]
    secret = by_kind(rendered, "Secret")[ref["name"]]
    assert ref["key"] in secret["data"]
    # The committed value is empty (JWTs refused), never a guessable key.
    assert secret["data"][ref["key"]] == ""


def test_pods_meet_the_restricted_pod_security_standard(rendered):
    for w in _workloads(rendered):
        spec = pod_spec(w)
        psc = spec.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, w["metadata"]["name"]
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False
            assert sc.get("capabilities", {}).get("drop") == ["ALL"]
            assert sc.get("readOnlyRootFilesystem") is True


def test_nats_is_a_three_node_jetstream_cluster(rendered, tmp_path):
    sts = by_kind(rendered, "StatefulSet")["nats"]
    assert sts["spec"]["replicas"] == 3
    headless = by_kind(rendered, "Service")[sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    conf = by_kind(rendered, "ConfigMap")["nats-config"]["data"]["nats.conf"]
    assert "jetstream" in conf and "cluster" in conf
    for i in range(3):
        assert f"nats-{i}.{headless['metadata']['name']}:6222" in conf
    path = tmp_path / "nats.conf"
    path.write_text(conf)
    for name, text in by_kind(rendered, "ConfigMap")["nats-config"]["data"].items():
        (tmp_path / name).write_text(text)
    r = subprocess.run([nats_server(), "-c", str(path), "-t"],
                       env=dict(TEST_NATS_ENV, POD_NAME="nats-0"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    assert r.returncode == 0, r.stdout
    c = pod_spec(sts)["containers"][0]
    assert c["args"] == ["--config", "/etc/nats/nats.conf"]
    assert any(m["mountPath"] == "/etc/nats" for m in c["volumeMounts"])
    pre = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre[:2] == ["sh", "-c"], pre
    m = re.match(r"nats-server --signal ldm=(\S+) && sleep (\d+)$", pre[2])
    assert m and f"pid_file: {m.group(1)}" in conf, pre
    ldm = int(re.search(r"lame_duck_duration: (\d+)s", conf).group(1))
    assert ldm < int(m.group(2)) < pod_spec(sts)["terminationGracePeriodSeconds"], pre
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert "/var/run/nats" in mounts and "/data" in mounts


def test_nats_cluster_forms_from_the_configmap(rendered, tmp_path):
    """The three nodes of the StatefulSet, run natively from the rendered nats.conf (pod
    names and ports mapped to loopback): they find each other through the routes, elect a
    JetStream meta leader (/healthz answers 200 on each), and stop cleanly (SIGINT, the
    image's STOPSIGNAL, exit 0)."""
    sts = by_kind(rendered, "StatefulSet")["nats"]
    headless = sts["spec"]["serviceName"]
    conf = by_kind(rendered, "ConfigMap")["nats-config"]["data"]["nats.conf"]
    c = pod_spec(sts)["containers"][0]
    cports = {p["name"]: p["containerPort"] for p in c["ports"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    n = sts["spec"]["replicas"]
    ports = [{name: free_port() for name in cports} for _ in range(n)]
    procs = []
    try:
        for i in range(n):
            text = conf
            for name, cport in cports.items():
                text = text.replace(f"0.0.0.0:{cport}", f"127.0.0.1:{ports[i][name]}")
            for j in range(n):
                text = text.replace(f"nats-{j}.{headless}:{cports['cluster']}",
                                    f"127.0.0.1:{ports[j]['cluster']}")
            node = tmp_path / f"nats-{i}"
            for name, path in mounts.items():
                (node / name).mkdir(parents=True, exist_ok=True)
                text = text.replace(f"{path}/", f"{node / name}/").replace(f": {path}\n", f": {node / name}\n")
            assert "0.0.0.0" not in text and headless not in text, text
            (node / "nats.conf").write_text(text)
            for name, other in by_kind(rendered, "ConfigMap")["nats-config"]["data"].items():
                if name != "nats.conf":
                    (node / name).write_text(other)
            procs.append(Proc(f"nats-{i}", [nats_server()] + [
                a if a != "/etc/nats/nats.conf" else str(node / "nats.conf") for a in c["args"]],
                dict(TEST_NATS_ENV, POD_NAME=f"nats-{i}"), node / "log"))
        deadline = time.monotonic() + 30
        for i, p in enumerate(procs):
            while http_get("127.0.0.1", ports[i]["monitor"], "/healthz")[0] != 200:
                assert p.alive(), p.logs()[-3000:]
                assert time.monotonic() < deadline, p.logs()[-3000:]
                time.sleep(0.2)
        # healthz answers before every route is up: wait (within the deadline) for both
        while True:
            routes = json.loads(http_get("127.0.0.1", ports[0]["monitor"], "/routez")[1])
            if routes["num_routes"] == n - 1:
                break
            assert routes["num_routes"] < n - 1, routes
            assert time.monotonic() < deadline, routes
            time.sleep(0.2)
        while True:
            meta = json.loads(http_get("127.0.0.1", ports[0]["monitor"], "/jsz")[1]).get("meta_cluster", {})
            if meta.get("leader") and meta.get("cluster_size") == n:
                break
            assert time.monotonic() < deadline, meta
            time.sleep(0.2)
        for p in procs:
            p.p.send_signal(signal.SIGINT)
        for p in procs:
            assert p.p.wait(timeout=15) == 0, p.logs()[-2000:]
    finally:
        for p in procs:
            p.kill()


def test_nats_users_and_passwords(rendered):
    """NATS runs deploy/nats/switchboard-auth.conf (a verbatim copy in the ConfigMap),
    its passwords come from the Secret switchboard-nats-passwords, and each service logs
    in as its own user with its own password. The Secret is not in the base: no password
    is committed, pods wait for the operator's."""
    data = by_kind(rendered, "ConfigMap")["nats-config"]["data"]
    assert data["switchboard-auth.conf"] == NATS_AUTH_CONF.read_text(), \
        "deploy/k8s/nats.yaml's switchboard-auth.conf differs from deploy/nats/switchboard-auth.conf"
    assert re.search(r"^\s*include \./switchboard-auth\.conf$", data["nats.conf"], re.M)
    nats = pod_spec(by_kind(rendered, "StatefulSet")["nats"])["containers"][0]
    refs = [e["secretRef"]["name"] for e in nats.get("envFrom", []) if "secretRef" in e]
    assert refs == ["switchboard-nats-passwords"], nats.get("envFrom")
    assert "switchboard-nats-passwords" not in by_kind(rendered, "Secret"), \
        "the base must not ship NATS passwords"
    for obj in rendered:
        spec = pod_spec(obj)
        if not spec:
            continue
        c = spec["containers"][0]
        svc = image_target(c["image"])
        if svc not in NATS_USERS:
            continue
        env = {e["name"]: e for e in c.get("env", [])}
        ref = env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "switchboard-nats-passwords", "key": NATS_USERS[svc]}, (svc, ref)
        assert env["SB_NATS_URL"]["value"] == f"nats://{svc}:$(NATS_PASSWORD)@nats:4222", svc
        names = [e["name"] for e in c["env"]]
        assert names.index("NATS_PASSWORD") < names.index("SB_NATS_URL"), \
            "Kubernetes expands $(NATS_PASSWORD) only when it is defined first"
    for cm in by_kind(rendered, "ConfigMap").values():
        assert "SB_NATS_URL" not in cm.get("data", {}), "SB_NATS_URL is per service (its own NATS user), never in a shared ConfigMap"
