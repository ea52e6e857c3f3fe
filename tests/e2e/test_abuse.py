"""Abuse (issue #6): WebSocket protocol abuse on a raw socket, slow and half-open
connections, token floods, rate limits, the per-user connection cap and slow consumers.

Protocol cases use the module's gateway; each cap is tested on a gateway of its own
(started with that cap small), so that blocking 127.0.0.1 or a user does not leak into
other tests. Every case ends by showing that a well-behaved client on the same gateway is
still served.
"""

import asyncio
import collections
import json
import os
import re
import signal
import socket
import statistics
import threading
import time

import pytest

import faultlib
import sb
from faultlib import Raw, frame_bytes, handshake_status, rss_kb
from sb import Clients, run

RATE_LIMITED = "rate limit exceeded"



@pytest.fixture(scope="module", autouse=True)
def _fresh_ports():
    """Before the module's cluster: ports that cannot collide (faultlib.free_port)."""
    with faultlib.fresh_ports():
        yield

@pytest.fixture(scope="module")
def alice(cluster):
    return cluster.issue_token(1)


def raw_chat(cluster, token, port=None, **kw):
    w = Raw(port or cluster.port, f"/ws/chat/?token={token}", **kw)
    assert w.status == 101, f"handshake: {w.status}"
    return w


def expect_close(w, codes, what, timeout=5.0):
    code, frames = w.wait_close(timeout=timeout)
    codes = codes if isinstance(codes, (set, tuple, list)) else {codes}
    assert code in codes, f"{what}: expected close {sorted(codes)}, got {code} " \
                          f"(frames before it: {frames[:5]})"
    return code


def still_serves(cluster, port=None, token=None):
    """A fresh client on that gateway: handshake + one acknowledged message; seconds."""
    async def go():
        t = time.monotonic()
        async with Clients() as cs:
            ws = await cs.connect(cluster.url("chat", token or cluster._abuse_token, port=port),
                                  "bystander")
            await ws.send_ok(2, "still served?")
        return time.monotonic() - t
    return run(go(), timeout=20)


@pytest.fixture(autouse=True)
def bystander_token(cluster, alice):
    cluster._abuse_token = alice


def chat_json(text, rid=2):
    return json.dumps({"receiver_id": rid, "message": text}, ensure_ascii=False).encode()


# --------------------------------------------------------------------------- framing

def test_fragmented_message_is_accepted(cluster, alice):
    """A text message split into continuation frames (a 4-byte character split across
    two fragments, a ping between fragments) is one message."""
    bob = cluster.issue_token(2)
    w = raw_chat(cluster, alice)
    rb = raw_chat(cluster, bob)
    try:
        data = chat_json("frag \U0001F600 ment")
        cut = data.index("\U0001F600".encode()) + 2       # inside the emoji
        parts = [data[:10], data[10:cut], data[cut:]]
        w.send_bytes(frame_bytes(0x1, parts[0], fin=False))
        w.send_bytes(frame_bytes(0x0, parts[1], fin=False))
        w.send_bytes(frame_bytes(0x9, b"mid-ping"))
        w.send_bytes(frame_bytes(0x0, parts[2], fin=True))
        pong = None
        reply = None
        deadline = time.monotonic() + 5
        while (pong is None or reply is None) and time.monotonic() < deadline:
            w.sock.settimeout(deadline - time.monotonic())
            op, payload = w.recv_frame()
            if op == 0xA:
                pong = payload
            elif op == 0x1:
                reply = json.loads(payload)
        assert pong == b"mid-ping", f"ping between fragments: pong {pong!r}"
        assert reply and reply.get("type") == "message_sent", reply
        got = rb.recv_json(timeout=5)
        assert got["message"] == "frag \U0001F600 ment" and got["id"] == reply["id"], got
    finally:
        w.close()
        rb.close()


@pytest.mark.parametrize("case", ["split-invalid", "overlong-in-continuation"])
def test_invalid_utf8_across_fragments_closes_1007(cluster, alice, case):
    w = raw_chat(cluster, alice)
    try:
        if case == "split-invalid":
            # \xe2\x82 then \x28: a 3-byte sequence broken across the fragment boundary
            w.send_bytes(frame_bytes(0x1, b'{"receiver_id":2,"message":"\xe2\x82', fin=False))
            w.send_bytes(frame_bytes(0x0, b'\x28"}', fin=True))
        else:
            w.send_bytes(frame_bytes(0x1, b'{"receiver_id":2,', fin=False))
            w.send_bytes(frame_bytes(0x0, b'"message":"\xc0\xaf"}', fin=True))
        expect_close(w, 1007, case)
    finally:
        w.close()
    still_serves(cluster)


def test_fragments_over_frame_limit_close_1009(cluster, alice):
    """Many small fragments adding up to more than --max-frame-bytes (65536)."""
    w = raw_chat(cluster, alice)
    try:
        # 28 + 66 * 1000 bytes > 65536: the 66th fragment crosses the limit. Nothing is
        # sent after it (data the server never reads would turn its close into a reset).
        w.send_bytes(frame_bytes(0x1, b'{"receiver_id":2,"message":"', fin=False))
        for _ in range(66):
            w.send_bytes(frame_bytes(0x0, b"a" * 1000, fin=False))
        expect_close(w, 1009, "fragments over the limit")
    finally:
        w.close()


@pytest.mark.parametrize("case", [
    "continuation-without-start", "text-inside-fragmented",
    # RFC 6455 5.1: a server MUST close on an unmasked client frame. libwebsockets 4.1.6
    # (Debian 12) accepts it and has no hook to refuse it; strict, so this turns into a
    # failure the day the library starts enforcing it and the mark can go.
    pytest.param("unmasked", marks=pytest.mark.xfail(
        strict=True, reason="libwebsockets 4.1.6 does not enforce client masking")),
    "rsv1", "rsv3", "opcode-3", "opcode-b", "ping-126-bytes", "close-126-bytes",
    "fragmented-ping",
])
def test_protocol_errors_close_1002(cluster, alice, case):
    w = raw_chat(cluster, alice)
    try:
        send = {
            "continuation-without-start": lambda: w.send_bytes(frame_bytes(0x0, b"x")),
            "text-inside-fragmented": lambda: w.send_bytes(
                frame_bytes(0x1, b'{"receiver_id":', fin=False) +
                frame_bytes(0x1, chat_json("again"))),
            "unmasked": lambda: w.send_bytes(frame_bytes(0x1, chat_json("no mask"), mask=False)),
            "rsv1": lambda: w.send_bytes(frame_bytes(0x1, chat_json("rsv"), rsv=4)),
            "rsv3": lambda: w.send_bytes(frame_bytes(0x1, chat_json("rsv"), rsv=1)),
            "opcode-3": lambda: w.send_bytes(frame_bytes(0x3, b"x")),
            "opcode-b": lambda: w.send_bytes(frame_bytes(0xB, b"x")),
            "ping-126-bytes": lambda: w.send_bytes(frame_bytes(0x9, b"p" * 126)),
            "close-126-bytes": lambda: w.send_bytes(frame_bytes(0x8, b"\x03\xe8" + b"c" * 124)),
            "fragmented-ping": lambda: w.send_bytes(frame_bytes(0x9, b"p", fin=False)),
        }[case]
        send()
        # An oversized control frame makes libwebsockets fail the connection (TCP
        # closed, no close frame): RFC 6455 7.1.7 allows failing without a close frame.
        codes = {1002, None} if case.endswith("-126-bytes") else {1002}
        expect_close(w, codes, case)
    finally:
        w.close()
    still_serves(cluster)


@pytest.mark.parametrize("length,codes", [
    (2 ** 62, {1009}),
    (2 ** 63 + 5, {1002, 1009, None}),   # MSB must be 0 (RFC 6455 5.2): failing the
                                         # connection without a close frame is fine too
    (2 ** 32 + 1, {1009}),
], ids=["2^62", "msb-set", "2^32+1"])
def test_huge_length_header(cluster, alice, length, codes):
    """A 64-bit length field far over the limit: closed at once, no allocation."""
    before = rss_kb(cluster.gateway.pid)
    w = raw_chat(cluster, alice)
    try:
        w.send_bytes(frame_bytes(0x1, b'{"receiver_id":2,"message":"' + b"a" * 1000,
                                 length=length))
        expect_close(w, codes, f"length {length}")
    finally:
        w.close()
    after = rss_kb(cluster.gateway.pid)
    assert after - before < 64 * 1024, f"gateway RSS grew {before} -> {after} kB"
    still_serves(cluster)


# --------------------------------------------------------------------------- slow / idle

def test_slowloris_handshakes_do_not_block_others(cluster, alice):
    """30 clients send their upgrade request one byte at a time; meanwhile a normal client
    keeps connecting and chatting with its usual latency."""
    path = f"/ws/chat/?token={alice}"
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           f"Sec-WebSocket-Version: 13\r\nX-Padding: {'p' * 200}\r\n\r\n").encode()
    socks = [socket.create_connection(("127.0.0.1", cluster.port), timeout=5) for _ in range(30)]
    stop = threading.Event()
    sent = [0]
    dropped = set()

    def drip():
        i = 0
        while not stop.is_set() and i < len(req):
            for k, s in enumerate(socks):
                if k in dropped:
                    continue
                try:
                    s.send(req[i:i + 1])
                except OSError:
                    dropped.add(k)
            i += 1
            sent[0] = i
            stop.wait(0.05)

    t = threading.Thread(target=drip, daemon=True)
    t.start()
    try:
        baseline = [still_serves(cluster) for _ in range(3)]
        during = []
        t_end = time.monotonic() + 4.0
        while time.monotonic() < t_end:
            during.append(still_serves(cluster))
    finally:
        stop.set()
        t.join(5)
        for s in socks:
            s.close()
    sb.note(f"abuse/slowloris: 30 byte-by-byte handshakes ({sent[0]} bytes each so far, "
            f"{len(dropped)} dropped by the gateway); a normal client connect+ack: "
            f"baseline {max(baseline) * 1000:.0f} ms, during max {max(during) * 1000:.0f} ms "
            f"over {len(during)} rounds")
    assert len(during) >= 3, f"only {len(during)} normal rounds in 4 s: {during}"
    assert max(during) < 2.0, f"normal clients stalled during the slowloris: {during}"


def test_two_thousand_half_open_connections(cluster, alice):
    """2000 TCP connections that never send a byte: other clients are unaffected and the
    gateway's memory stays bounded; the gateway survives their sudden close."""
    n = 2000
    before = rss_kb(cluster.gateway.pid)
    base = [still_serves(cluster) for _ in range(3)]
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", cluster.port))
            socks.append(s)
        time.sleep(0.5)
        during = [still_serves(cluster) for _ in range(5)]
        health = sb.http_get(cluster.port, "/healthz")[0]
        peak = rss_kb(cluster.gateway.pid)
    finally:
        for s in socks:
            s.close()
    time.sleep(0.3)
    after = [still_serves(cluster) for _ in range(3)]
    grew_mb = (peak - before) / 1024
    sb.note(f"abuse/half-open: {n} silent connections: gateway RSS +{grew_mb:.1f} MB "
            f"({before // 1024} -> {peak // 1024} MB); connect+ack baseline "
            f"{max(base) * 1000:.0f} ms, during max {max(during) * 1000:.0f} ms, after "
            f"{max(after) * 1000:.0f} ms")
    assert health == 200
    assert max(during) < 2.0, f"clients stalled by half-open connections: {during}"
    limit = 400 if faultlib.sanitized(sb.binary("gateway")) else 100
    assert grew_mb < limit, f"{n} idle connections cost {grew_mb:.1f} MB"


# --------------------------------------------------------------------------- handshake caps

def _window_id():
    # the gateway counts failures in fixed minutes of CLOCK_MONOTONIC, as time.monotonic()
    return int(time.monotonic() * 1000) // 60000


def test_bad_token_flood_gets_429_per_ip(cluster, alice):
    cap = 20
    proc, port = faultlib.start_gateway(cluster, "--max-failed-handshakes", str(cap))
    a, b = cluster.new_users(2, "Flood")
    alice, bob = a.token, b.token
    for attempt in range(2):
        w0 = _window_id()
        statuses = [handshake_status(port, f"/ws/chat/?token=bad{i}x{attempt}")
                    for i in range(cap)]
        blocked_bad = handshake_status(port, "/ws/chat/?token=bad-again")
        blocked_good = handshake_status(port, f"/ws/chat/?token={alice}")
        if _window_id() == w0 or blocked_bad == 429:
            break     # else the minute rolled over mid-way: once more
    assert statuses == [403] * cap, f"the first {cap} bad tokens: {statuses}"
    assert blocked_bad == 429, f"bad token #{cap + 1}: {blocked_bad}"
    assert blocked_good == 429, f"a valid token from the blocked IP: {blocked_good}"
    # a flood goes on: still cheap 429s; another IP is not affected
    t = time.monotonic()
    flood = [handshake_status(port, f"/ws/notifications/?token=f{i}") for i in range(200)]
    flood_s = time.monotonic() - t
    assert set(flood) == {429}, set(flood)
    other_bad = handshake_status(port, "/ws/chat/?token=nope", source="127.0.0.2")
    w = Raw(port, f"/ws/chat/?token={alice}", source="127.0.0.2")
    rb = Raw(port, f"/ws/chat/?token={bob}", source="127.0.0.2")
    try:
        assert w.status == 101 and rb.status == 101, (w.status, rb.status)
        w.send_text(chat_json("from another IP", b.id))
        r = w.recv_json(timeout=5)
        assert r.get("type") == "message_sent", r
        assert rb.recv_json(timeout=5)["message"] == "from another IP"
    finally:
        w.close()
        rb.close()
    assert other_bad == 403, f"a bad token from 127.0.0.2 got {other_bad}"
    m = faultlib.metrics(port)
    assert m.get('sb_gateway_handshakes_refused_total{reason="ip_failures"}', 0) >= 201, m
    sb.note(f"abuse/token flood: {cap} refusals then 429 for 127.0.0.1 (valid tokens too); "
            f"200 more handshakes refused in {flood_s:.2f}s; 127.0.0.2 served")


def test_connections_per_user_cap(cluster):
    u, v = cluster.new_users(2, "Cap")
    proc, port = faultlib.start_gateway(cluster, "--max-conns-per-user", "3")

    async def go():
        loop = asyncio.get_running_loop()
        async with Clients() as cs:
            held = [await cs.connect(cluster.url("chat", u.token, port=port), "u1"),
                    await cs.connect(cluster.url("chat", u.token, port=port), "u2"),
                    await cs.connect(cluster.url("notifications", u.token, port=port), "u3")]
            fourth = await sb.handshake_status(cluster.url("chat", u.token, port=port))
            fourth_n = await sb.handshake_status(cluster.url("notifications", u.token, port=port))
            other = await sb.handshake_status(cluster.url("chat", v.token, port=port))
            await held[0].close()
            deadline = loop.time() + 5
            again = None
            while loop.time() < deadline:
                again = await sb.handshake_status(cluster.url("chat", u.token, port=port))
                if again == 101:
                    break
                await asyncio.sleep(0.1)
            await held[1].send_ok(v.id, "the held sockets still work")
            return fourth, fourth_n, other, again

    fourth, fourth_n, other, again = run(go(), timeout=30)
    assert fourth == 429 and fourth_n == 429, f"4th socket of one user: {fourth}, {fourth_n}"
    assert other == 101, f"another user: {other}"
    assert again == 101, f"after one of the 3 closed: {again}"


# --------------------------------------------------------------------------- rate limit

def test_rate_limit_errors_then_1008(cluster):
    u, v = cluster.new_users(2, "Rate")
    proc, port = faultlib.start_gateway(cluster, "--rate-limit", "5", "--rate-burst", "10")
    w = raw_chat(cluster, u.token, port=port)
    w2 = raw_chat(cluster, u.token, port=port)
    try:
        # the burst: 10 at once are fine, the 11th is refused
        w.send_bytes(b"".join(frame_bytes(0x1, chat_json(f"burst{i}", v.id)) for i in range(11)))
        replies = [w.recv_json(timeout=5) for _ in range(11)]
        acks = [r for r in replies if r.get("type") == "message_sent"]
        refused = [r for r in replies if r == {"type": "error", "error": RATE_LIMITED}]
        assert len(acks) == 10 and len(refused) == 1, replies
        # the rate: after 1.2 s about 6 more are allowed
        time.sleep(1.2)
        w.send_bytes(b"".join(frame_bytes(0x1, chat_json(f"rate{i}", v.id)) for i in range(5)))
        replies = [w.recv_json(timeout=5) for _ in range(5)]
        assert all(r.get("type") == "message_sent" for r in replies), replies
        # the same user's other socket has its own bucket
        w2.send_text(chat_json("other socket", v.id))
        assert w2.recv_json(timeout=5).get("type") == "message_sent"
        # abuse: 150 at once; after 100 refused in a row the socket is closed with 1008
        w.send_bytes(b"".join(frame_bytes(0x1, chat_json(f"flood{i}", v.id))
                              for i in range(150)))
        code, frames = w.wait_close(timeout=10)
        texts = [json.loads(p) for op, p in frames if op == 0x1]
        limited = sum(1 for t in texts if t == {"type": "error", "error": RATE_LIMITED})
        assert code == 1008, f"close after the flood: {code}; frames {texts[-3:]}"
        assert 90 <= limited <= 100, f"{limited} 'rate limit exceeded' before the close"
        w2.send_text(chat_json("other socket after", v.id))
        assert w2.recv_json(timeout=5).get("type") == "message_sent"
    finally:
        w.close()
        w2.close()
    still_serves(cluster, port=port)


# --------------------------------------------------------------------------- slow consumer

SLOW_QUEUE = 8
BIG = "\u00e9" * 4000      # 4000 characters, 8 kB of UTF-8


def _proc_of(cluster, port):
    return next(p for p in cluster.procs if f"127.0.0.1:{port}" in " ".join(p.argv))


def _slow_gateway(cluster):
    return faultlib.start_gateway(cluster, "--max-queue", str(SLOW_QUEUE), "--rate-limit", "0")


def _flood_slow_reader(cluster, port, victim, sender, n=1000):
    """Big messages to a victim that never reads (its socket on gateway `port`, with a
    4 kB receive buffer), in chunks of 50 through the module's gateway (the first 180
    within its rate burst of 200, then at 45/s, under its 50/s), until the victim's
    gateway counts a slow-consumer close or n were sent: how many it takes depends on how
    much the kernel lets that gateway's send buffer grow (up to tcp_wmem's 4 MB) and on
    how fast it writes; meanwhile a pair of clients on the victim's gateway measures ack
    latency, before and during the flood."""
    probe_a, probe_b = cluster.new_users(2, "Probe")
    v = Raw(port, f"/ws/chat/?token={victim.token}", rcvbuf=4096)
    assert v.status == 101
    gw = _proc_of(cluster, port)
    res = {"victim": v, "rss0": rss_kb(gw.pid)}

    async def go():
        loop = asyncio.get_running_loop()
        async with Clients() as cs:
            pa = await cs.connect(cluster.url("chat", probe_a.token, port=port), "probe-a")
            pb = await cs.connect(cluster.url("chat", probe_b.token, port=port), "probe-b")
            snd = await cs.connect(cluster.url("chat", sender.token), "flooder")
            await asyncio.sleep(0.3)      # the victim's backlog sync is long done

            async def probe(samples, until):
                while not until():
                    t = loop.time()
                    await pa.send_ok(probe_b.id, f"probe{len(samples)}", timeout=10)
                    samples.append(loop.time() - t)
                    await asyncio.sleep(0.05)

            before, during = [], []
            await probe(before, lambda: len(before) >= 15)
            flooding = asyncio.Event()
            prober = asyncio.ensure_future(probe(
                during, lambda: not flooding.is_set() and len(during) >= 10))
            flooding.set()
            acked, t0, rss_peak, t_detect = {}, loop.time(), res["rss0"], None
            refused = []
            for chunk in range(0, n, 50):
                if t_detect is not None:
                    break
                todo = range(chunk, min(n, chunk + 50))
                for i in todo:
                    if i >= 180:
                        await asyncio.sleep(1 / 45)
                    await snd.send_json({"receiver_id": victim.id, "message": f"{i}:{BIG}"})
                for _ in todo:
                    r = await snd.reply(timeout=20)
                    if r.get("type") == "message_sent":
                        acked[r["id"]] = r
                    else:
                        refused.append(r.get("error"))
                rss_peak = max(rss_peak, rss_kb(gw.pid) or 0)
                if t_detect is None and faultlib.metrics(port).get(
                        "sb_gateway_slow_consumer_closes_total", 0) >= 1:
                    t_detect = loop.time() - t0
            deadline = loop.time() + 20
            while t_detect is None and loop.time() < deadline:
                if faultlib.metrics(port).get("sb_gateway_slow_consumer_closes_total", 0) >= 1:
                    t_detect = loop.time() - t0
                await asyncio.sleep(0.1)
            flooding.clear()
            await prober
            res.update(before=before, during=during, acked=acked, rss_peak=rss_peak,
                       t_detect=t_detect, metrics=faultlib.metrics(port),
                       probe_seen=len(pb.seen), refused=refused)
    run(go(), timeout=120)
    return res


async def _take_backlog(cluster, user, want, port=None, label="again"):
    """Connect and take chat_message frames until every id in `want` came (bounded)."""
    loop = asyncio.get_running_loop()
    async with Clients() as cs:
        w = await cs.connect(cluster.url("chat", user.token, port=port), label)
        deadline = loop.time() + 20
        while loop.time() < deadline and not w.done:
            got = {f["id"] for f in w.seen if f.get("type") == "chat_message"}
            if set(want) <= got:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
        return [f["id"] for f in w.seen if f.get("type") == "chat_message"], w.done, \
            w.close_code


def test_slow_consumer_capped_closed_1008_and_backlog(cluster):
    """A reader that stops reading: its queue is capped, it is closed with 1008, its
    messages wait in the backlog, and its neighbours on the gateway do not notice. It
    never answered a PING, so nothing written to it counts as read: the backlog holds
    every acknowledged message, those it then found in its kernel buffers included
    (receipts wait for the client's PONG; a reader that vanished there would have lost
    them)."""
    victim, sender = cluster.new_users(2, "Slow")
    proc, port = _slow_gateway(cluster)
    res = _flood_slow_reader(cluster, port, victim, sender)
    v = res["victim"]
    try:
        assert res["t_detect"] is not None, \
            f"no slow-consumer close after {len(res['acked'])} big messages"
        code, frames = v.wait_close(timeout=15)    # now it reads: kernel buffers, close
    finally:
        v.close()
    raw_ids = [int(json.loads(p[:200].split(b',"sender_id"')[0] + b"}")["id"])
               for op, p in frames if op == 0x1]
    backlog, _, _ = run(_take_backlog(cluster, victim, list(res["acked"])), timeout=60)
    lost = sorted(set(res["acked"]) - set(raw_ids) - set(backlog))
    unconfirmed = sorted(set(res["acked"]) - set(backlog))
    p50_before = statistics.median(res["before"])
    p50_during = statistics.median(res["during"]) if res["during"] else float("nan")
    grew = (res["rss_peak"] - res["rss0"]) / 1024
    sb.note(f"abuse/slow consumer (--max-queue {SLOW_QUEUE}, 8 kB messages): closed "
            f"{res['t_detect']:.2f}s into the flood; {len(res['acked'])} acked, refused "
            f"{collections.Counter(res['refused'])}; the reader got "
            f"{len(raw_ids)} from its kernel buffers then close {code}, {len(backlog)} from "
            f"the backlog on reconnect (all unconfirmed), lost {len(lost)}; gateway RSS +{grew:.1f} MB; "
            f"neighbour ack p50 {p50_before * 1000:.1f} ms before, {p50_during * 1000:.1f} ms "
            f"during ({len(res['during'])} samples, max {max(res['during'] or [0]) * 1000:.0f} ms)")
    assert code == 1008, f"slow consumer closed with {code}"
    assert len(raw_ids) == len(set(raw_ids)) and len(backlog) == len(set(backlog))
    assert not lost, f"acknowledged messages neither delivered nor in the backlog: {lost[:10]}"
    assert not unconfirmed, (
        f"written to a reader that never answered a PING, yet taken out of its backlog: "
        f"{unconfirmed[:10]}")
    assert set(raw_ids) <= set(res["acked"])
    assert len(res["during"]) >= 3, f"the neighbour got {len(res['during'])} acks in the flood"
    assert p50_during < max(10 * p50_before, 0.5), \
        f"neighbour latency: p50 {p50_before:.3f}s before, {p50_during:.3f}s during"
    assert max(res["during"]) < 3.0, f"a neighbour ack took {max(res['during']):.2f}s"
    limit = 400 if faultlib.sanitized(sb.binary("gateway")) else 64
    assert grew < limit, f"gateway RSS grew {grew:.1f} MB for one slow consumer"


def test_slow_consumer_is_dropped_while_it_still_does_not_read(cluster):
    """Once over the cap the gateway lets go of the socket (its slot, subscription and
    kernel buffers) even though the client never reads again."""
    victim, sender = cluster.new_users(2, "Stuck")
    proc, port = _slow_gateway(cluster)
    res = _flood_slow_reader(cluster, port, victim, sender)
    v = res["victim"]
    try:
        assert res["t_detect"] is not None
        key = 'sb_gateway_connections{endpoint="chat"}'
        gone = faultlib.wait_until(lambda: faultlib.metrics(port).get(key) == 0, 5.0,
                                   "the slow consumer's socket released by the gateway")
    finally:
        v.close()
    assert gone


def test_backlog_larger_than_max_queue_is_delivered(cluster):
    """A backlog bigger than --max-queue is not a slow consumer: a client that reads
    normally must get all of it from a gateway with a small queue cap (at worst over a
    few reconnects), not be closed 1008 on every attempt before a single message."""
    u, sender = cluster.new_users(2, "Backlog")
    proc, port = _slow_gateway(cluster)
    n = SLOW_QUEUE * 5

    async def fill():
        async with Clients() as cs:
            s = await cs.connect(cluster.url("chat", sender.token), "sender")
            return [(await s.send_ok(u.id, f"b{i}"))["id"] for i in range(n)]
    want = run(fill(), timeout=30)

    got, attempts, codes = [], 0, []
    while set(want) - set(got) and attempts < 10:
        attempts += 1
        ids, closed, code = run(_take_backlog(cluster, u, sorted(set(want) - set(got)),
                                              port=port, label=f"try{attempts}"), timeout=40)
        got += ids
        codes.append(code if closed else "open")
    missing = sorted(set(want) - set(got))
    assert not missing, (
        f"{n} undelivered messages, gateway --max-queue {SLOW_QUEUE}: after {attempts} "
        f"connections the client still misses {len(missing)} (close codes {codes}); the "
        f"backlog replay is queued a page (500) at a time and trips the slow-consumer cap")
    assert len(got) == len(set(got)), "backlog delivered twice"


# --------------------------------------------------------------------------- a slow auth-svc

def _loop_lag(port):
    """(samples, samples over 0.25 s, sb_gateway_loop_stalls_total) from /metrics."""
    m = faultlib.metrics(port)
    total = m['sb_gateway_loop_lag_seconds_bucket{le="+Inf"}']
    return total, total - m['sb_gateway_loop_lag_seconds_bucket{le="0.25"}'], \
        m["sb_gateway_loop_stalls_total"]


def test_a_stalled_loop_is_measured_and_logged(cluster):
    """The gateway's loop-lag probe, a timer due every 100 ms, reports how long the loop
    went without running: a gateway frozen for 0.6 s (SIGSTOP, as a loop busy for that
    long looks from inside) logs loop_stall with late_ms of about 600, counts it in
    sb_gateway_loop_stalls_total and puts a sample over 0.25 s into
    sb_gateway_loop_lag_seconds; before the freeze the probe was running."""
    proc, port = faultlib.start_gateway(cluster)
    time.sleep(0.5)
    samples, slow, stalls = _loop_lag(port)
    assert samples >= 2, f"the probe ran {samples} times in its first 0.5 s or more"
    since = proc.log_size()
    sb.freeze(proc.pid)
    time.sleep(0.6)
    os.kill(proc.pid, signal.SIGCONT)
    assert proc.wait_log("event=loop_stall", since=since, timeout=5), (
        "a gateway frozen for 0.6 s logged no loop_stall")
    with open(proc.log_path, "rb") as f:
        f.seek(since)
        lates = [int(x) for x in re.findall(rb"event=loop_stall late_ms=(\d+)", f.read())]
    assert lates and 450 <= max(lates) <= 5000, lates
    after = _loop_lag(port)
    assert after[0] > samples and after[1] >= slow + 1 and after[2] >= stalls + 1, (
        (samples, slow, stalls), after)
    sb.note(f"abuse/loop lag: frozen 0.6 s, logged late_ms={max(lates)}")


def test_handshakes_waiting_for_auth_do_not_stall_other_sockets(cluster):
    """SPEC 3: the gateway never blocks its event loop on the bus. With auth-svc frozen
    (SIGSTOP), handshakes with well-formed tokens wait for auth.verify (then get 503);
    meanwhile a chat pair already connected to the same gateway must keep its usual ack
    latency, not stall for --auth-timeout-ms (1 s) per handshake."""
    a, b = cluster.new_users(2, "Stall")
    fake = "sb_" + "0" * (len(a.token) - 3)      # well formed, unknown: costs a look-up
    assert len(fake) == len(a.token) and a.token.startswith("sb_")
    stop = threading.Event()
    statuses = []

    def knock():
        while not stop.is_set():
            try:
                statuses.append(handshake_status(cluster.port, f"/ws/chat/?token={fake}"))
            except (AssertionError, OSError) as e:
                statuses.append(repr(e))

    async def go():
        loop = asyncio.get_running_loop()
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token), "a")
            await cs.connect(cluster.url("chat", b.token), "b")
            before = []
            for i in range(10):
                t = loop.time()
                await wa.send_ok(b.id, f"before{i}")
                before.append(loop.time() - t)
            os.kill(cluster.auth.pid, signal.SIGSTOP)
            t_knock = threading.Thread(target=knock, daemon=True)
            try:
                t_knock.start()
                during = []
                t_end = loop.time() + 3.0
                while loop.time() < t_end:
                    t = loop.time()
                    await wa.send_ok(b.id, f"during{len(during)}", timeout=10)
                    during.append(loop.time() - t)
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                os.kill(cluster.auth.pid, signal.SIGCONT)
                await loop.run_in_executor(None, t_knock.join, 10)
            return before, during

    before, during = run(go(), timeout=60)
    sb.note(f"abuse/auth-svc frozen: {len(statuses)} handshakes with unknown well-formed "
            f"tokens ({collections.Counter(statuses)}); neighbour ack max "
            f"{max(before) * 1000:.0f} ms before, {max(during) * 1000:.0f} ms during "
            f"(p50 {statistics.median(during) * 1000:.0f} ms)")
    assert statuses and all(s in (503, 403, 429) for s in statuses), statuses[:10]
    assert max(during) < 0.5, (
        f"while handshakes waited for the frozen auth-svc, an already open socket's "
        f"message took {max(during):.2f}s to be acknowledged (before: max "
        f"{max(before):.3f}s): the auth.verify request blocks the gateway's event loop")


def test_sends_waiting_for_a_receiver_look_up_do_not_stall_other_senders(cluster):
    """chat-svc asks auth-svc whether a receiver exists the first time it sees them (then
    caches the answer). With auth-svc frozen, sends to a receiver not yet known must
    wait for that look-up without holding up the partition's writer: another sender's
    message to a known receiver is stored and acknowledged at its usual speed. The
    waiting sends go out in order once the answer comes; if none comes within the
    look-up timeout (1 s) they are refused, each with an error, and nothing is stored."""
    a, b, c, d, e = cluster.new_users(5, "Park")
    # The test before this one leaves auth-svc working off thousands of handshakes.
    deadline = time.monotonic() + 30
    while handshake_status(cluster.port, f"/ws/chat/?token={a.token}") != 101:
        assert time.monotonic() < deadline, "auth-svc did not catch up within 30 s"
        time.sleep(0.2)

    async def go():
        loop = asyncio.get_running_loop()
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token), "a")
            wb = await cs.connect(cluster.url("chat", b.token), "b")
            wc = await cs.connect(cluster.url("chat", c.token), "c")
            wd = await cs.connect(cluster.url("chat", d.token), "d")
            we = await cs.connect(cluster.url("chat", e.token), "e")
            await we.send_ok(b.id, "warm")           # b is known to chat-svc now
            await wb.next("chat_message")
            stalls = []

            async def neighbour(label):
                t = loop.time()
                await we.send_ok(b.id, label, timeout=10)
                stalls.append(loop.time() - t)
                got = await wb.next("chat_message")
                assert got["message"] == label, got

            # 1. auth-svc answers late (after 0.4 s): c1, c2 wait, then go out in order
            sb.freeze(cluster.auth.pid)
            try:
                await wa.send_json({"receiver_id": c.id, "message": "c1"})
                await wa.send_json({"receiver_id": c.id, "message": "c2"})
                await asyncio.sleep(0.1)             # their look-up is out
                await neighbour("meanwhile1")
                await asyncio.sleep(0.3)
                early = wa.take_all()
            finally:
                os.kill(cluster.auth.pid, signal.SIGCONT)
            assert early == [], f"answered while auth-svc was frozen: {early}"
            r1, r2 = await wa.reply(5), await wa.reply(5)
            assert [r1.get("type"), r2.get("type")] == ["message_sent"] * 2, (r1, r2)
            assert r1["receiver_id"] == r2["receiver_id"] == c.id and r1["id"] < r2["id"]
            m1, m2 = await wc.next("chat_message"), await wc.next("chat_message")
            assert [m1["message"], m2["message"]] == ["c1", "c2"], (m1, m2)
            assert [m1["id"], m2["id"]] == [r1["id"], r2["id"]]

            # 2. auth-svc silent past the look-up timeout: d1, d2 refused, in order
            sb.freeze(cluster.auth.pid)
            try:
                await wa.send_json({"receiver_id": d.id, "message": "d1"})
                await wa.send_json({"receiver_id": d.id, "message": "d2"})
                await asyncio.sleep(0.1)
                await neighbour("meanwhile2")
                e1, e2 = await wa.reply(5), await wa.reply(5)
            finally:
                os.kill(cluster.auth.pid, signal.SIGCONT)
            assert [e1.get("type"), e2.get("type")] == ["error"] * 2, (e1, e2)
            assert all("try again" in x["error"] for x in (e1, e2)), (e1, e2)
            r3 = await wa.send_ok(d.id, "d3")        # auth-svc is back: d is reachable
            m3 = await wd.next("chat_message")
            assert m3["message"] == "d3" and m3["id"] == r3["id"], m3
            assert wd.take_all("chat_message") == [], "a refused send was delivered"
            return stalls

    stalls = run(go(), timeout=60)
    sb.note(f"abuse/receiver look-up with auth-svc frozen: another sender's ack took "
            f"{stalls[0] * 1000:.0f} / {stalls[1] * 1000:.0f} ms meanwhile")
    assert max(stalls) < 0.3, (
        f"while chat-svc waited for auth-svc about a new receiver, another sender's "
        f"message to a known receiver took {max(stalls):.2f}s: the look-up holds the "
        f"partition's writer")


def test_sigterm_refuses_sends_still_waiting_for_a_receiver_look_up(cluster):
    """A send that waits for its receiver's first auth look-up when chat-svc is told to
    stop is refused (the client may retry), never stored, and does not hold chat-svc's
    exit: with auth-svc frozen and a 20 s look-up timeout, chat-svc still exits cleanly
    within its drain deadline (about 3 s), not by SIGKILL after 5."""
    a, c = cluster.new_users(2, "Parkstop")
    orig = list(cluster.chat.argv)

    async def go():
        loop = asyncio.get_running_loop()
        async with Clients() as cs:
            await loop.run_in_executor(None, cluster.chat.stop)
            cluster.chat.argv = orig + ["--auth-timeout-ms", "20000"]
            try:
                await loop.run_in_executor(None, cluster.restart_chat)
                wa = await cs.connect(cluster.url("chat", a.token), "a")
                since = cluster.chat.log_size()
                sb.freeze(cluster.auth.pid)
                try:
                    await wa.send_json({"receiver_id": c.id, "message": "parked"})
                    await asyncio.sleep(0.3)
                    early = wa.take_all()
                    t = loop.time()
                    status = await loop.run_in_executor(None, cluster.chat.stop)
                    took = loop.time() - t
                    answer = await wa.reply(10)
                finally:
                    os.kill(cluster.auth.pid, signal.SIGCONT)
                with open(cluster.chat.log_path, "rb") as f:
                    f.seek(since)
                    log = f.read().decode("utf-8", "replace")
            finally:
                cluster.chat.argv = orig
                await loop.run_in_executor(None, cluster.restart_chat)
            assert early == [], f"answered before the stop: {early}"
            assert status == 0 and took < 4.5, (
                f"chat-svc with a send parked took {took:.1f}s to stop, exit status "
                f"{status}: its shutdown waited for the auth look-up")
            assert answer.get("type") == "error" and "try again" in answer["error"], answer
            assert "event=drain_parked" in log, "the parked send was not there at stop"
            # nothing was stored: c's backlog is empty, and a new send reaches c
            wc = await cs.connect(cluster.url("chat", c.token), "c")
            r = await wa.send_ok(c.id, "after")
            got = await wc.next("chat_message")
            assert got["message"] == "after" and got["id"] == r["id"], got
            assert [m["message"] for m in wc.take_all("chat_message")] == []
            return took

    took = run(go(), timeout=60)
    sb.note(f"abuse/chat-svc SIGTERM with a send parked on a frozen auth-svc: exited "
            f"in {took:.1f}s")
