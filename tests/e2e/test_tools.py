"""The benchmark tools (issue #5) against real servers: sb-loadgen's four scenarios
against this module's cluster, and against sb-relay, the bare bound. Small and short:
these check that the tools speak the protocol and count correctly (every message sent
is acknowledged and delivered exactly once, in order), not how fast anything is.
"""

import json
import os
import subprocess

import pytest

import sb

CLUSTER_OPTIONS = {"gateway_args": ["--rate-limit", "0"]}


def tool(name):
    path = os.path.join(sb.BUILD_DIR, "tools", name)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"tool not built: {path}")
    return path


@pytest.fixture(scope="module")
def tokens(cluster, tmp_path_factory):
    users = cluster.new_users(60, "Tool")
    path = tmp_path_factory.mktemp("tools") / "tokens.txt"
    path.write_text("".join(f"{u.id} {u.token}\n" for u in users))
    os.chmod(path, 0o600)
    return str(path)


@pytest.fixture(scope="module")
def relay(cluster, tokens):
    port = sb.free_port()
    proc = sb.Proc("sb-relay", [tool("sb-relay"), "--listen", f"127.0.0.1:{port}",
                                "--tokens", tokens], cluster.dir)
    proc.start()
    try:
        proc.wait_ready()
        yield port
    finally:
        proc.stop()


def loadgen(tokens, *args, timeout=60):
    out = subprocess.run([tool("sb-loadgen"), *args, "--tokens", tokens, "--max-seconds", "40"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert b"conn " in out.stderr, "no progress line on stderr"
    return json.loads(out.stdout)


def assert_exact(res, pairs):
    m = res["messages"]
    assert res["connections"]["connected"] == 2 * pairs
    assert m["sent"] > 0
    assert m["acked"] == m["sent"] and m["delivered"] == m["sent"], m
    for k in ("lost", "unanswered", "duplicated", "out_of_order", "foreign", "refused"):
        assert m[k] == 0, (k, m)
    for k in ("p50", "p99", "max"):
        assert res["e2e_us"][k] > 0


@pytest.mark.parametrize("target", ["switchboard", "relay"])
def test_chat_max_counts_every_message_once(cluster, tokens, relay, target):
    port = cluster.port if target == "switchboard" else relay
    res = loadgen(tokens, "chat-max", "--target", f"127.0.0.1:{port}", "--pairs", "10",
                  "--window", "8", "--duration", "2", "--drain", "3")
    assert_exact(res, 10)


@pytest.mark.parametrize("pacing", ["tick", "timer"])
def test_chat_rate_offers_the_rate_it_was_asked_for(cluster, tokens, pacing):
    extra = ["--pace-timer"] if pacing == "timer" else []
    res = loadgen(tokens, "chat-rate", "--target", f"127.0.0.1:{cluster.port}", "--pairs", "10",
                  "--rate", "200", "--duration", "2", "--drain", "3", *extra)
    assert res["params"]["pace_timer"] == (pacing == "timer"), res["params"]
    assert_exact(res, 10)
    assert 300 <= res["messages"]["sent"] <= 450, res["messages"]
    # the machine's CPU over the run, and the hypervisor's share of it (part of busy)
    cpu = res["cpu"]
    assert 0 < cpu["machine_busy_pct"] <= 100 * cpu["cpus"] + 1, cpu
    assert 0 <= cpu["machine_steal_pct"] <= cpu["machine_busy_pct"], cpu


def test_idle_holds_sockets_and_reports_gateway_memory(cluster, tokens):
    res = loadgen(tokens, "idle", "--target", f"127.0.0.1:{cluster.port}", "--users", "20",
                  "--user-offset", "20", "--hold", "1", "--settle-ms", "200",
                  "--gateway-pids", str(cluster.gateway.pid))
    c = res["connections"]
    assert c["connected"] == 40 and c["failed"] == 0 and c["dropped"] == 0, c
    assert res["memory"]["rss_kb_loaded"] > 0


def test_fanout_reaches_every_socket(cluster, tokens):
    if not cluster.notify:
        pytest.skip("notify-svc not built")
    res = loadgen(tokens, "fanout", "--target", f"127.0.0.1:{cluster.port}", "--users", "20",
                  "--user-offset", "40", "--nats", cluster.nats_url, "--rounds", "2",
                  "--settle-ms", "300")
    assert len(res["rounds"]) == 2
    for r in res["rounds"]:
        assert r["received"] == 20 and r["t100_ms"] is not None, r


def natsbench(*args, timeout=60):
    out = subprocess.run([tool("sb-natsbench"), *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=timeout)
    return out.returncode, out.stdout, out.stderr.decode()


def report(tmp_path, results, manifest):
    """bench/report.py on raw results ({file name: bytes}) and a manifest: latest.md."""
    res = tmp_path / "res"
    res.mkdir()
    for name, data in results.items():
        (res / name).write_bytes(data)
    (res / "manifest.tsv").write_text(manifest)
    script = os.path.join(sb.HERE, "..", "..", "bench", "report.py")
    done = subprocess.run(["python3", script, "--dir", str(res), "--out", str(tmp_path / "out")],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return (tmp_path / "out" / "latest.md").read_text()


def test_natsbench_paced_answers_every_request_and_the_report_reads_it(cluster, tmp_path):
    rc, out, err = natsbench("--nats", cluster.nats_url, "--rate", "400", "--seconds", "2")
    assert rc == 0, err[-2000:]
    res = json.loads(out)
    # open loop: exactly rate x seconds requests, each answered once by the echo responder
    assert res["mode"] == "paced" and res["offered_per_s"] == 400, res
    assert res["requests"] == 800 and res["replies"] == 800 and res["lost"] == 0, res
    lat = res["latency_us"]
    assert lat["count"] == 800, lat
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"], lat
    cpu = res["cpu"]
    assert 0 < cpu["self_pct"] and 0 <= cpu["machine_steal_pct"] <= cpu["machine_busy_pct"], cpu

    # bench/report.py shows it as the "bus" row of chat-rate, between the relay and
    # Switchboard, and as the plot's bus columns
    md = report(tmp_path, {"rate-bus-400.json": out},
                "rate-bus-400\tchat-rate\tbus\t400\n")
    row = next(line for line in md.splitlines() if line.startswith("| 400 | bus |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == f"{lat['p50'] / 1000:.2f}" and cells[4] == f"{lat['p99'] / 1000:.2f}", row
    assert cells[9] == "0", row  # lost
    dat = [line.split() for line in (tmp_path / "out" / "latency.dat").read_text().splitlines()
           if not line.startswith("#")]
    assert dat == [["400", "NaN", "NaN", "NaN", "NaN", "NaN", "NaN",
                    f"{lat['p50'] / 1000:.3f}", f"{lat['p99'] / 1000:.3f}"]], dat


@pytest.mark.parametrize("args", [["--rate", "-1"], ["--rate", "2000000"],
                                  ["--rate", "100", "--payload", "4"]])
def test_natsbench_refuses_options_out_of_range(args):
    rc, out, err = natsbench("--nats", "nats://127.0.0.1:1", *args, timeout=10)
    assert rc == 2 and out == b"" and "out of range" in err, (rc, err)


def test_wakebench_times_hand_offs_on_two_cpus_and_on_one(tmp_path):
    out = subprocess.run([tool("sb-wakebench"), "--seconds", "1"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=30)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    res = json.loads(out.stdout)
    runs = {r["mode"]: r for r in res["runs"]}
    assert set(runs) == ({"across", "same"} if res["cpus"] >= 2 else {"same"}), res
    for mode, r in runs.items():
        assert (r["cpu"] == r["echo_cpu"]) == (mode == "same"), r
        # every round trip is timed, and there are plenty in a second on any machine
        assert r["round_trips"] > 100 and r["round_trip_ns"]["count"] == r["round_trips"], r
        assert 0 <= r["machine_steal_pct"] <= r["machine_busy_pct"], r

    # bench/report.py gives each a raw-stage row
    md = report(tmp_path, {"wake.json": out.stdout}, "")
    for mode, where in (("across", "on two CPUs"), ("same", "on one CPU")):
        if mode in runs:
            row = next(line for line in md.splitlines()
                       if line.startswith("| hand-off between two processes") and where in line)
            assert f"p50 {runs[mode]['round_trip_ns']['p50'] / 1000:.1f} µs" in row, row


def test_wakebench_refuses_options_out_of_range():
    out = subprocess.run([tool("sb-wakebench"), "--seconds", "0"], capture_output=True,
                         timeout=10)
    assert out.returncode == 2 and out.stdout == b"", out
    assert b"out of range" in out.stderr
