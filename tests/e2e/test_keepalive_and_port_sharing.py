"""Keepalive and port sharing (issue #5): the gateway pings a silent client after
--ping-interval and drops one that stays silent (no PONG) for --idle-timeout, from one
sweep instead of a timer per socket; a client that answers pings stays. With
--reuse-port several gateway processes listen on one port (SO_REUSEPORT), the kernel
spreads connections over them, and a message crosses from a socket on one to a socket
on the other; a process without --reuse-port cannot take the port.
"""

import json
import os
import re
import socket
import time

import sb
from sb import RawWS

PING_S, IDLE_S = 1, 3
CLUSTER_OPTIONS = {"gateway_args": ["--ping-interval", str(PING_S), "--idle-timeout", str(IDLE_S),
                                    "--reuse-port", "--log-level", "debug"]}


def metric(port, name):
    status, body = sb.http_get(port, "/metrics")
    assert status == 200
    m = re.search(rf"^{name} (\d+)$", body.decode() if isinstance(body, bytes) else body, re.M)
    assert m, f"{name} not in /metrics"
    return int(m.group(1))


def read_until(ws, want_op, seconds, answer_pings):
    """Frames until one with opcode want_op (returned with the time it came), EOF (None)
    or the deadline (AssertionError). Answers PINGs when asked to."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no frame with opcode {want_op:#x} within {seconds} s"
        ws.sock.settimeout(left)
        try:
            fr = ws.recv_frame()
        except socket.timeout:
            raise AssertionError(f"no frame with opcode {want_op:#x} within {seconds} s")
        except (ConnectionResetError, BrokenPipeError):
            return None
        if fr is None:
            return None
        op, payload = fr
        if op == 0x9 and answer_pings:
            ws.send_frame(0xA, payload)
        if op == want_op:
            return op, payload, time.monotonic()


def test_silent_client_is_pinged_then_dropped(cluster):
    (u,) = cluster.new_users(1, "Silent")
    before = metric(cluster.port, "sb_gateway_idle_closes_total")
    t0 = time.monotonic()
    ws = RawWS(cluster.port, f"/ws/chat/?token={u.token}")
    assert ws.status == 101
    try:
        got = read_until(ws, 0x9, PING_S + 3, answer_pings=False)
        assert got is not None, "closed before the first PING"
        assert got[2] - t0 >= PING_S - 0.1, "pinged before --ping-interval of silence"
        # no PONG: dropped after --idle-timeout (the sweep runs once a second)
        end = read_until(ws, -1, IDLE_S + 4, answer_pings=False)
        assert end is None
        elapsed = time.monotonic() - t0
        assert IDLE_S - 0.1 <= elapsed <= IDLE_S + 2.5, f"dropped after {elapsed:.1f} s"
    finally:
        ws.close()
    assert metric(cluster.port, "sb_gateway_idle_closes_total") >= before + 1


def test_client_answering_pings_stays_connected(cluster):
    a, b = cluster.new_users(2, "Ponger")
    ws = RawWS(cluster.port, f"/ws/chat/?token={a.token}")
    assert ws.status == 101
    try:
        pings = 0
        deadline = time.monotonic() + IDLE_S + 3
        while time.monotonic() < deadline:
            got = read_until(ws, 0x9, PING_S + 3, answer_pings=True)
            assert got is not None, f"dropped after {pings} answered PINGs"
            pings += 1
        assert pings >= 2
        # still a working chat socket, well past --idle-timeout
        ws.send_text(json.dumps({"type": "send_message", "receiver_id": b.id,
                                 "message": "still here"}))
        reply = ws.recv_json(timeout=5)
        assert reply["type"] == "message_sent", reply
    finally:
        ws.close()


def test_gateways_share_one_port_and_route_between_them(cluster):
    port2 = cluster.add_gateway(port=cluster.port)
    assert port2 == cluster.port
    gw1, gw2 = cluster.gateway, cluster.last_gateway
    opened1 = gw1.log_since_start().count("event=ws_open")
    opened2 = gw2.log_since_start().count("event=ws_open")
    users = cluster.new_users(40, "Shared")
    socks = []
    try:
        for u in users:
            ws = RawWS(cluster.port, f"/ws/chat/?token={u.token}")
            assert ws.status == 101
            socks.append(ws)
        def opened():
            return (gw1.log_since_start().count("event=ws_open") - opened1,
                    gw2.log_since_start().count("event=ws_open") - opened2)
        # the 101 can reach the client before the gateway has logged the socket
        deadline = time.monotonic() + 5
        while sum(opened()) < len(users) and time.monotonic() < deadline:
            time.sleep(0.05)
        n1, n2 = opened()
        assert n1 + n2 == len(users), (n1, n2)
        # SO_REUSEPORT hashes connections over the listeners: 40 all on one has
        # probability 2 * 2^-40
        assert n1 > 0 and n2 > 0, f"one gateway took every connection: {n1} / {n2}"
        # every sender reaches its receiver, whichever gateways hold the two sockets
        for i in range(0, len(users), 2):
            s, r = socks[i], socks[i + 1]
            s.send_text(json.dumps({"type": "send_message", "receiver_id": users[i + 1].id,
                                    "message": f"across {i}"}))
            assert s.recv_json(timeout=5)["type"] == "message_sent"
            msg = r.recv_json(timeout=5)
            assert msg["type"] == "chat_message" and msg["message"] == f"across {i}", msg
    finally:
        for ws in socks:
            ws.close()


def test_port_taken_without_reuse_port_is_refused(cluster):
    proc = sb.Proc("gateway-intruder", [
        sb.binary("gateway"), "--nats", cluster.nats_url,
        "--listen", f"127.0.0.1:{cluster.port}"], cluster.dir)
    proc.start()
    try:
        deadline = time.monotonic() + 10
        while proc.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not proc.running(), "a second gateway without --reuse-port took the port"
        assert "event=listen_failed" in proc.log_since_start()
        assert "Address already in use" in proc.log_since_start()
    finally:
        proc.stop()


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_pauses_accepting_instead_of_spinning(cluster):
    port = sb.free_port()
    proc = sb.Proc("gateway-fdlimit", [
        "prlimit", "--nofile=48:48", sb.binary("gateway"), "--nats", cluster.nats_url,
        "--listen", f"127.0.0.1:{port}"], cluster.dir)
    proc.start()
    socks = []
    try:
        proc.wait_ready()
        sb.wait_http(port, "/readyz", 200, proc=proc)
        # connections that never send a request head: they hold a descriptor each
        for _ in range(60):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        assert proc.wait_log("out of descriptors", timeout=5), "never ran out of descriptors"
        t0, c0 = time.monotonic(), _cpu_seconds(proc.pid)
        time.sleep(1.5)
        busy = (_cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0)
        assert busy < 0.3, f"gateway used {busy:.0%} of a core while out of descriptors"
        for s in socks:
            s.close()
        socks = []
        # the descriptors come back: a normal client gets in again
        (u,) = cluster.new_users(1, "AfterEmfile")
        deadline = time.monotonic() + 5
        status = None
        while time.monotonic() < deadline:
            try:
                ws = RawWS(port, f"/ws/chat/?token={u.token}")
                status = ws.status
                ws.close()
                if status == 101:
                    break
            except (OSError, AssertionError):
                pass
            time.sleep(0.2)
        assert status == 101, f"no upgrade after descriptors were freed: {status}"
    finally:
        for s in socks:
            s.close()
        proc.stop()
