"""Fault tests: kill and restart services mid-traffic (SPEC sections 2 and 6).

chat-svc is SIGKILLed while clients stay connected: during the downtime every frame gets
"chat service unavailable, try again later" within the request timeout (500 ms here) plus
a margin, never silence; after the restart (event=ready) messages flow again; every
message acknowledged before the kill reaches its receiver (live or on reconnect), and no
socket ever sees an id twice. Then the gateway is drained with SIGTERM (sockets closed
with 1001) and restarted, and last NATS itself is restarted under the services.
"""

import asyncio
import time

import pytest

import sb
from sb import Clients, UNAVAILABLE, run

REQUEST_TIMEOUT_MS = 500
REPLY_BOUND = REQUEST_TIMEOUT_MS / 1000 + 2.0   # timeout + margin: never silence
DOWNTIME = 2 * REPLY_BOUND                      # seconds chat-svc stays dead
CLUSTER_OPTIONS = {"gateway_args": ["--request-timeout-ms", str(REQUEST_TIMEOUT_MS)]}


async def wait_count(ws, type, n, timeout):
    got = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(got) < n and loop.time() < deadline:
        try:
            got.append(await ws.next(type, timeout=max(0.01, deadline - loop.time())))
        except AssertionError:
            break
    return got


def ids_of(frames):
    return [f["id"] for f in frames if f.get("type") == "chat_message"]


def no_dups(label, ids):
    dups = sorted({i for i in ids if ids.count(i) > 1})
    assert not dups, f"{label}: ids delivered twice on one socket: {dups}"


@pytest.fixture(autouse=True)
def heal(cluster):
    """After each fault test, restart anything it left dead (even if it failed)."""
    yield
    restarted = cluster.heal()
    if restarted:
        print(f"harness: restarted {restarted} after the test")


def test_chat_svc_sigkill_mid_traffic(cluster):
    a, b, c = cluster.new_users(3, "Fault")

    async def go():
        loop = asyncio.get_running_loop()
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token), "a#1")
            wa2 = await cs.connect(cluster.url("chat", a.token), "a#2")
            wb = await cs.connect(cluster.url("chat", b.token), "b#1")

            # phase 1: acknowledged and delivered live well before the kill
            pre_b, pre_c = [], []
            for i in range(5):
                pre_b.append((await wa.send_ok(b.id, f"pre-b{i}"))["id"])
                pre_c.append((await wa.send_ok(c.id, f"pre-c{i}"))["id"])
            live1 = await wait_count(wb, "chat_message", 5, timeout=5)
            assert ids_of(live1) == pre_b, f"phase 1 live delivery: {live1}"
            await asyncio.sleep(1.0)   # let delivery receipts be recorded

            # phase 2: a second tab pumps messages to b through the kill and the restart
            traffic = []   # (seq, t_sent, reply, t_reply)
            stop = asyncio.Event()

            async def pump():
                seq = 0
                while not stop.is_set():
                    t = loop.time()
                    await wa2.send_json({"receiver_id": b.id, "message": f"mid{seq}"})
                    r = await wa2.reply(timeout=REPLY_BOUND)   # raises on silence
                    traffic.append((seq, t, r, loop.time()))
                    seq += 1
                    # under the gateway's 50 frames/s limit however fast the replies
                    # come (an unavailable answer takes well under a millisecond)
                    await asyncio.sleep(0.025)

            pumping = cs.spawn(pump())
            await asyncio.sleep(0.5)
            await loop.run_in_executor(None, cluster.chat.kill)
            t_dead = loop.time()

            # downtime: every frame gets the sentence, promptly
            down = []
            for k in range(3):
                t = loop.time()
                await wa.send_json({"receiver_id": c.id, "message": f"down{k}"})
                down.append((await wa.reply(timeout=REPLY_BOUND), loop.time() - t))
            # validation does not need chat-svc
            await wa.send_raw("not json")
            bad_json = await wa.reply(timeout=REPLY_BOUND)
            # stay down long enough that the pump's request in flight at the kill has
            # been answered and later frames meet a dead service too
            await asyncio.sleep(max(0.0, t_dead + DOWNTIME - loop.time()))

            t_restart = loop.time()
            await loop.run_in_executor(None, cluster.restart_chat)
            t_ready = loop.time()

            # after event=ready the very next message goes through
            after_b = await wa.send_chat(b.id, "after restart", timeout=REPLY_BOUND)
            after_c = await wa.send_chat(c.id, "post-c", timeout=REPLY_BOUND)
            await asyncio.sleep(0.5)    # the pump runs against the new chat-svc too
            stop.set()
            await asyncio.wait_for(pumping, REPLY_BOUND + 1)

            assert after_b.get("type") == "message_sent", \
                f"first send after chat-svc logged event=ready: {after_b}"
            assert after_c.get("type") == "message_sent", after_c
            for r, dt in down:
                assert r == {"type": "error", "error": UNAVAILABLE}, \
                    f"send while chat-svc is down got {r}"
                assert dt <= REPLY_BOUND
            assert bad_json == {"type": "error", "error": "invalid JSON"}, bad_json

            bad = [x for x in traffic
                   if x[2].get("type") != "message_sent" and x[2] != {
                       "type": "error", "error": UNAVAILABLE}]
            assert not bad, f"unexpected replies during the fault: {bad[:5]}"
            dead = [x for x in traffic if x[1] > t_dead and x[3] < t_restart]
            assert dead, "the pump sent nothing while chat-svc was down"
            assert all(x[2].get("error") == UNAVAILABLE for x in dead), \
                f"replies while chat-svc was dead: {[x[2] for x in dead][:5]}"
            post = [x for x in traffic if x[1] > t_ready]
            assert post, "the pump sent nothing after the restart"
            assert all(x[2].get("type") == "message_sent" for x in post), \
                f"sends after the restart failed: {[x[2] for x in post if x[2].get('type') != 'message_sent'][:5]}"
            pre_kill_acked = [x[2]["id"] for x in traffic
                              if x[2].get("type") == "message_sent" and x[3] < t_dead]
            assert pre_kill_acked, "the pump got no ack before the kill"

            acked_b = pre_b + [x[2]["id"] for x in traffic
                               if x[2].get("type") == "message_sent"] + [after_b["id"]]
            # b#1 stayed connected all along
            await wb.next("chat_message", timeout=5,
                          pred=lambda f: f.get("id") == after_b["id"])
            await asyncio.sleep(0.5)
            live = ids_of(wb.seen)
            no_dups("b#1 (live)", live)
            await wb.close()

            wb2 = await cs.connect(cluster.url("chat", b.token), "b#2")
            replay = ids_of(await wb2.collect(1.0))
            no_dups("b#2 (reconnect)", replay)
            assert replay == sorted(replay), f"replay out of order: {replay}"
            replayed_phase1 = sorted(set(replay) & set(pre_b))
            assert not replayed_phase1, \
                f"messages delivered live before the kill were replayed: {replayed_phase1}"
            lost = sorted(set(acked_b) - set(live) - set(replay))
            assert not lost, f"acknowledged messages to b never delivered: {lost}"

            # c was offline throughout: exactly its acknowledged messages, in order, once
            wc = await cs.connect(cluster.url("chat", c.token), "c#1")
            want_c = pre_c + [after_c["id"]]
            got_c = await wait_count(wc, "chat_message", len(want_c), timeout=5)
            got_c += await wc.collect(0.7, "chat_message")
            assert ids_of(got_c) == want_c, f"offline receiver got {ids_of(got_c)}, want {want_c}"
            assert [m["message"] for m in got_c] == \
                [f"pre-c{i}" for i in range(5)] + ["post-c"]
            await wc.close()
            wc2 = await cs.connect(cluster.url("chat", c.token), "c#2")
            assert await wc2.collect(0.7) == [], "backlog delivered twice"

            sb.note(f"restart: chat-svc back in {t_ready - t_restart:.2f}s; pump sent "
                  f"{len(traffic)} frames ({len(dead)} while down); b got {len(live)} live, "
                  f"{len(replay)} on reconnect")
    run(go(), timeout=60)


def test_socket_opened_while_chat_svc_down_is_not_half_dead(cluster):
    """A chat socket opened while chat-svc is down cannot get its backlog. Whatever the
    gateway does about it, the socket must not be left half-dead: it is either closed
    (so the seed's ReconnectingWebSocket reconnects) or it answers every frame."""
    a, c = cluster.new_users(2, "Halfdead")

    async def go():
        loop = asyncio.get_running_loop()
        async with Clients() as cs:
            w, late = None, "not reached"
            await loop.run_in_executor(None, cluster.chat.kill)
            try:
                w = await cs.connect(cluster.url("chat", c.token), "c-during-downtime")
                late = "ok"
                for k in range(3):   # a sync error may answer the first frame
                    if w.done:
                        break
                    try:
                        await w.send_json({"receiver_id": a.id, "message": f"fresh {k}"})
                        await w.reply(timeout=2 * REPLY_BOUND)
                    except Exception as e:
                        if not w.done:
                            late = f"frame {k}: {e}"
                            break
            finally:
                await loop.run_in_executor(None, cluster.restart_chat)
            assert late == "ok", (
                f"socket opened while chat-svc was down is half-dead: not closed, and "
                f"silent for {2 * REPLY_BOUND}s ({late}); all frames it got: {w and w.seen}")
            # and once chat-svc is back, a new socket works
            wa = await cs.connect(cluster.url("chat", a.token), "a")
            await wa.send_ok(c.id, "back")
    run(go(), timeout=40)


def test_gateway_sigterm_drains_with_1001_and_restarts(cluster):
    a, b = cluster.new_users(2, "Drain")

    async def go():
        loop = asyncio.get_running_loop()
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token), "a")
            wb = await cs.connect(cluster.url("chat", b.token), "b")
            s1 = await wa.send_ok(b.id, "before drain")
            await wb.next("chat_message", pred=lambda f: f.get("id") == s1["id"])

            t = loop.time()
            status = await loop.run_in_executor(None, cluster.gateway.stop)
            took = loop.time() - t
            codes = []
            for ws in (wa, wb):
                try:
                    codes.append(await ws.wait_closed(timeout=3))
                except AssertionError as e:
                    codes.append(str(e))
            await loop.run_in_executor(None, cluster.heal)   # restart before asserting

            assert took < sb.STOP_GRACE, "gateway ignored SIGTERM"
            assert codes == [1001, 1001], f"close codes on drain: {codes}"
            assert status == 0, (f"gateway exit status after SIGTERM: {status} "
                                 f"(see the sanitizer report, if any, in its log)")

            wa2 = await cs.connect(cluster.url("chat", a.token), "a#2")
            s2 = await wa2.send_ok(b.id, "while b reconnects")
            wb2 = await cs.connect(cluster.url("chat", b.token), "b#2")
            got = await wait_count(wb2, "chat_message", 1, timeout=5)
            got += await wb2.collect(0.7, "chat_message")
            assert ids_of(got) == [s2["id"]], \
                f"after the gateway restart b got {ids_of(got)}, want [{s2['id']}]"
    run(go(), timeout=40)


def test_nats_restart_readyz_and_recovery(cluster):
    """/readyz follows the bus; every service reconnects to NATS by itself."""
    a, b = cluster.new_users(2, "Bus")

    marks = {p: p.log_size() for p in (cluster.auth, cluster.chat)}
    cluster.nats.kill()
    deadline = time.monotonic() + 10
    code = None
    while time.monotonic() < deadline:
        code = sb.http_get(cluster.port, "/readyz")[0]
        if code == 503:
            break
        time.sleep(0.1)
    assert code == 503, f"/readyz with NATS down returned {code}"
    assert sb.http_get(cluster.port, "/healthz")[0] == 200, "/healthz must not follow the bus"

    cluster.nats.start()
    sb.wait_tcp(cluster.nats_port, proc=cluster.nats)
    sb.wait_http(cluster.port, "/readyz", 200, timeout=20, proc=cluster.gateway)
    # Not a contract, a courtesy: if the services log their reconnection, wait for it
    # so the checks below do not race it (the retry loop still covers silent services).
    for p, mark in marks.items():
        p.wait_log("bus_reconnected", since=mark, timeout=10)

    async def go():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        last = None
        async with Clients() as cs:
            wb = None
            # services reconnect at their own pace; until chat-svc is back, a socket
            # whose backlog sync fails is closed with 1011 and must be reopened
            while loop.time() < deadline:
                try:
                    if wb is None or wb.done:
                        wb = await cs.connect(cluster.url("chat", b.token), "b")
                    wa = await cs.connect(cluster.url("chat", a.token), "a")
                    last = await wa.send_chat(b.id, "after the bus came back", timeout=3)
                    if last.get("type") == "message_sent":
                        break
                except Exception as e:   # 403/5xx while auth-svc reconnects
                    last = repr(e)
                await asyncio.sleep(0.5)
            assert isinstance(last, dict) and last.get("type") == "message_sent", \
                f"no successful send within 20s of NATS coming back; last: {last}"
            while True:   # live on b's socket, or from the backlog on a reconnect
                try:
                    got = await wb.next("chat_message", timeout=5,
                                        pred=lambda f: f.get("id") == last["id"])
                    break
                except AssertionError:
                    if not wb.done or loop.time() > deadline:
                        raise
                    wb = await cs.connect(cluster.url("chat", b.token), "b")
            assert got["message"] == "after the bus came back"
    run(go(), timeout=60)
