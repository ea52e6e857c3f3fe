"""Delivery guarantees (SPEC section 2, "Delivery guarantees"): offline backlog delivered
once, in order; every socket of a receiver gets every live message; nobody else does;
only the sending socket is acknowledged; backlog replay racing live delivery never
duplicates. Every test uses fresh users so inboxes start empty.
"""

import asyncio
import socket
import struct
import time

import faultlib

from natsproto import (Nats, decode_delivered_batch, envelope_delivered,
                       envelope_delivered_batch)
from sb import Clients, RawWS, check_timestamp, is_pos_int, run


def chat_ids(frames):
    return [f["id"] for f in frames if f.get("type") == "chat_message"]


async def wait_count(ws, type, n, timeout):
    """Take frames of `type` until n are collected or the deadline passes."""
    got = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(got) < n and loop.time() < deadline:
        try:
            got.append(await ws.next(type, timeout=max(0.01, deadline - loop.time())))
        except AssertionError:
            break
    return got


def test_offline_receiver_gets_message_once(cluster):
    a, b = cluster.new_users(2, "Offline")

    async def go():
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token), "a")
            sent = await wa.send_ok(b.id, "while you were away",
                                    "https://example.com/x.png")
            assert sent["receiver_id"] == b.id

            wb = await cs.connect(cluster.url("chat", b.token), "b#1")
            frames = await wb.collect(1.0)
            msgs = [f for f in frames if f.get("type") == "chat_message"]
            assert len(msgs) == 1, f"expected exactly one message, got {frames}"
            m = msgs[0]
            assert m["id"] == sent["id"]
            assert m["sender_id"] == a.id and m["sender_name"] == a.name
            assert m["message"] == "while you were away"
            assert m["attachment"] == "https://example.com/x.png"
            check_timestamp(m["timestamp"])
            assert frames == msgs, f"unexpected extra frames: {frames}"
            await wb.close()

            wb2 = await cs.connect(cluster.url("chat", b.token), "b#2")
            again = await wb2.collect(1.0)
            assert again == [], f"backlog replayed again on a later connect: {again}"
    run(go())


def test_ten_offline_messages_arrive_in_order(cluster):
    a, b = cluster.new_users(2, "Order")

    async def go():
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token), "a")
            acks = [await wa.send_ok(b.id, f"m{i}") for i in range(10)]
            ids = [r["id"] for r in acks]
            assert ids == sorted(ids) and len(set(ids)) == 10, f"ids not increasing: {ids}"

            wb = await cs.connect(cluster.url("chat", b.token), "b")
            got = await wait_count(wb, "chat_message", 10, timeout=5)
            got += await wb.collect(0.7, "chat_message")
            assert [m["message"] for m in got] == [f"m{i}" for i in range(10)], got
            assert [m["id"] for m in got] == ids
            await wb.close()

            wb2 = await cs.connect(cluster.url("chat", b.token), "b#2")
            assert await wb2.collect(0.7) == []
    run(go())


def test_quick_reconnect_after_backlog_is_not_replayed(cluster):
    """The gateway's delivery receipt leaves a few milliseconds after the frames (it
    once waited for the gateway's next one-second keepalive tick when the loop was
    quiet: lws 4.1 on libev did not wake up for it), so a client that reads its backlog
    and reconnects 0.3 s later is not given it again."""
    a, b = cluster.new_users(2, "Quick")

    async def go():
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token), "a")
            for round in range(3):
                ids = [(await wa.send_ok(b.id, f"r{round}m{i}"))["id"] for i in range(3)]
                await asyncio.sleep(0.3)   # whatever the gateway had to do has settled
                wb = await cs.connect(cluster.url("chat", b.token), f"b#{round}")
                got = await wait_count(wb, "chat_message", 3, timeout=5)
                assert chat_ids(got) == ids, f"round {round}: backlog {got}"
                await asyncio.sleep(0.3)
                await wb.close()
                again = await cs.connect(cluster.url("chat", b.token), f"b#{round}'")
                replay = await again.collect(0.5)
                assert replay == [], \
                    f"round {round}: a reconnect 0.3 s after the backlog got it again: {replay}"
                await again.close()
    run(go())


def test_deliveries_a_vanished_client_never_read_replay_on_its_next_connect(cluster):
    """A frame handed to the kernel is not a frame read. Bob's socket neither reads nor
    answers PINGs (a phone gone out of coverage); Alice's five messages are written to
    it and acknowledged to her, then Bob's connection is reset with them unread. Their
    receipts waited for Bob to answer a PING written after them, so the messages are
    still in his backlog: his next socket gets all five, in order, and the gateway
    counts them in sb_gateway_receipts_unconfirmed_at_close_total. That socket answers
    PINGs, so it confirms them: they are marked delivered and a third socket gets
    nothing again."""
    a, b = cluster.new_users(2, "Vanish")
    lost = "sb_gateway_receipts_unconfirmed_at_close_total"
    before = faultlib.metrics(cluster.port)[lost]
    raw = RawWS(cluster.port, f"/ws/chat/?token={b.token}")
    assert raw.status == 101

    def unread_frames(want, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                seen = raw.sock.recv(1 << 20, socket.MSG_PEEK)
            except socket.timeout:
                seen = b""
            if seen.count(b'"chat_message"') >= want:
                return True
            time.sleep(0.05)
        return False

    async def go():
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token), "a")
            ids = [(await wa.send_ok(b.id, f"unread {i}"))["id"] for i in range(5)]
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, unread_frames, 5, 5.0), (
                "the five messages never reached Bob's socket buffer")
            await asyncio.sleep(0.5)   # receipts leave 5 ms after a confirmation
            raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.sock.close()           # RST: what was unread is gone
            await asyncio.sleep(0.3)
            wb = await cs.connect(cluster.url("chat", b.token), "b again")
            got = await wait_count(wb, "chat_message", 5, timeout=5)
            assert chat_ids(got) == ids, (
                f"Bob's next socket got {chat_ids(got)} of {ids}: messages his vanished "
                f"socket never read were taken out of his backlog")
            assert faultlib.metrics(cluster.port)[lost] >= before + 5
            deadline = loop.time() + 5
            while not await loop.run_in_executor(None, faultlib.chat_delivered, cluster, ids):
                assert loop.time() < deadline, "a socket that answers PINGs did not confirm"
                await asyncio.sleep(0.05)
            await wb.close()
            third = await cs.connect(cluster.url("chat", b.token), "b third")
            assert await third.collect(0.5, "chat_message") == []
    run(go())


def test_a_probe_the_client_did_not_answer_is_asked_again(cluster):
    """A client may answer only the last of several PINGs (lws' own client drops a PING
    while its PONG is pending). Bob reads Alice's three messages and ignores the PING
    behind them: they stay unconfirmed (not marked delivered), and about five seconds
    later the gateway asks again; Bob answers that one, and they are marked delivered."""
    a, b = cluster.new_users(2, "Deaf")
    raw = RawWS(cluster.port, f"/ws/chat/?token={b.token}")
    assert raw.status == 101

    def next_probe(timeout):
        """Read until a delivery probe (a PING with an "sr" payload); answers nothing."""
        deadline = time.monotonic() + timeout
        chats = 0
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no probe within {timeout} s ({chats} chat frames meanwhile)"
            raw.sock.settimeout(left)
            fr = raw.recv_frame()
            assert fr is not None, "closed by the gateway"
            op, payload = fr
            if op == 0x1 and b'"chat_message"' in payload:
                chats += 1
            if op == 0x9 and payload[:2] == b"sr":
                return payload, chats, time.monotonic()

    async def go():
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token), "a")
            ids = [(await wa.send_ok(b.id, f"deaf {i}"))["id"] for i in range(3)]
            return ids

    try:
        ids = run(go())
        first, chats, t1 = next_probe(5)
        assert chats == 3, f"the probe came after {chats} of the 3 messages"
        time.sleep(1.0)
        assert not faultlib.chat_delivered(cluster, ids), "marked delivered without a PONG"
        second, _, t2 = next_probe(10)
        assert second != first and 4.0 <= t2 - t1 <= 8.0, (first, second, t2 - t1)
        raw.send_frame(0xA, second)
        deadline = time.monotonic() + 5
        while not faultlib.chat_delivered(cluster, ids):
            assert time.monotonic() < deadline, "the PONG to the second probe confirmed nothing"
            time.sleep(0.05)
    finally:
        raw.close()


def test_receipts_leave_batched_and_every_version_is_applied(cluster):
    """The gateway reports what it wrote to several receivers in one DeliveredBatch on
    chat.delivered.0; chat-svc applies such batches and the single-user Delivered of
    older gateways (a rolling upgrade runs both), and refuses a batch that names a user
    outside the partition as a whole."""
    a, b, c, d = cluster.new_users(4, "Receipt")

    async def go():
        with Nats(cluster.nats_url) as nc:
            async with Clients() as cs:
                wa = await cs.connect(cluster.url("chat", a.token), "a")
                wb = await cs.connect(cluster.url("chat", b.token), "b")
                wc = await cs.connect(cluster.url("chat", c.token), "c")
                receipts = nc.subscribe("chat.delivered.0")
                nc.flush()
                live = {}
                for w, u in ((wb, b), (wc, c)):
                    live[u.id] = [(await wa.send_ok(u.id, f"live {i}"))["id"] for i in range(2)]
                    assert chat_ids(await wait_count(w, "chat_message", 2, timeout=5)) == live[u.id]
                await asyncio.sleep(0.3)
                msgs = receipts.take_all()
                receipts.unsubscribe()
                seen = {}
                for m in msgs:
                    for uid, ids in decode_delivered_batch(m.data).items():
                        seen.setdefault(uid, []).extend(ids)
                assert seen == live, f"receipts on chat.delivered.0: {seen} (wrote {live})"
                await wb.close()
                await wc.close()

                # offline now: receipts published by "other gateways"
                b1, b2 = [(await wa.send_ok(b.id, f"off {i}"))["id"] for i in range(2)]
                [c1] = [(await wa.send_ok(c.id, "off"))["id"]]
                [d1] = [(await wa.send_ok(d.id, "off"))["id"]]
                nc.publish("chat.delivered.0", envelope_delivered(b.id, [b1]))
                nc.publish("chat.delivered.0", envelope_delivered_batch([(c.id, [c1])]))
                nc.publish("chat.delivered.0",
                           envelope_delivered_batch([(d.id, [d1]), (0, [d1])]))
                nc.flush()
                await asyncio.sleep(0.5)
                backlog = {}
                for u in (b, c, d):
                    w = await cs.connect(cluster.url("chat", u.token), f"{u.id}'")
                    backlog[u.id] = w
                await asyncio.sleep(0.7)
                got = {uid: chat_ids(w.take_all()) for uid, w in backlog.items()}
                assert got == {b.id: [b2], c.id: [], d.id: [d1]}, \
                    f"backlogs after Delivered({b1}), a batch for {c1}, a batch with " \
                    f"user 0 for {d1}: {got}"
    run(go())


def test_frame_bigger_than_a_write_batch_is_delivered(cluster):
    """A delivery larger than the gateway's 32 KiB write batch (an operator may allow
    long messages) is written on its own, and what follows it still arrives: the loop
    must not spin on a frame that fits no batch."""
    port = cluster.add_gateway("--max-message-chars", "40000")
    a, b = cluster.new_users(2, "Big")

    async def go():
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token, port=port), "a")
            wb = await cs.connect(cluster.url("chat", b.token, port=port), "b")
            big = await wa.send_ok(b.id, "x" * 40000)
            small = await wa.send_ok(b.id, "after the big one")
            got = await wait_count(wb, "chat_message", 2, timeout=5)
            assert [m["id"] for m in got] == [big["id"], small["id"]], \
                [(m["id"], len(m["message"])) for m in got]
            assert got[0]["message"] == "x" * 40000
    run(go())


def test_every_socket_of_receiver_gets_it_and_nobody_else(cluster):
    a, b, c = cluster.new_users(3, "Fanout")

    async def go():
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token), "a")
            wb1 = await cs.connect(cluster.url("chat", b.token), "b#1")
            wb2 = await cs.connect(cluster.url("chat", b.token), "b#2")
            wc = await cs.connect(cluster.url("chat", c.token), "c")
            wc_notify = await cs.connect(cluster.url("notifications", c.token), "c-notify")
            wb_notify = await cs.connect(cluster.url("notifications", b.token), "b-notify")

            ids = [(await wa.send_ok(b.id, f"both {i}"))["id"] for i in range(3)]
            assert len(set(ids)) == 3 and all(is_pos_int(i) for i in ids)
            for wb in (wb1, wb2):
                got = await wait_count(wb, "chat_message", 3, timeout=5)
                assert [m["id"] for m in got] == ids, f"{wb.label}: {got}"
                assert [m["message"] for m in got] == [f"both {i}" for i in range(3)]
            await asyncio.sleep(0.7)
            assert wb1.take_all() == [] and wb2.take_all() == [], "duplicates/extras"
            assert wc.take_all() == [], "a third user received someone else's message"
            assert wc_notify.take_all() == [] and wb_notify.take_all() == [], \
                "a chat message leaked onto a notification socket"
            assert wa.take_all() == [], "the sender got more than its acks"
    run(go())


def test_only_sending_socket_gets_message_sent(cluster):
    a, b = cluster.new_users(2, "TwoTabs")

    async def go():
        async with Clients() as cs:
            wa1 = await cs.connect(cluster.url("chat", a.token), "a#1")
            wa2 = await cs.connect(cluster.url("chat", a.token), "a#2")
            wb = await cs.connect(cluster.url("chat", b.token), "b")

            s1 = await wa1.send_ok(b.id, "from tab 1")
            s2 = await wa2.send_ok(b.id, "from tab 2")
            assert s1["id"] != s2["id"]
            got = await wait_count(wb, "chat_message", 2, timeout=5)
            assert [m["id"] for m in got] == [s1["id"], s2["id"]]
            await asyncio.sleep(0.5)
            assert wa1.take_all() == [], "tab 1 got tab 2's ack"
            assert wa2.take_all() == [], "tab 2 got tab 1's ack"
    run(go())


def test_backlog_replay_racing_live_delivery(cluster):
    """The receiver connects while the sender is mid-stream: its first socket must get
    all 60 messages, once each, in order; a second socket opened later must get every
    message sent after it opened, once each, in order."""
    a, b = cluster.new_users(2, "Race")
    n = 60

    async def go():
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token), "a")
            acks = []
            opened = {}

            async def sender():
                for i in range(n):
                    if i == 20:
                        opened[1] = cs.spawn(
                            cs.connect(cluster.url("chat", b.token), "b#1"))
                    if i == 40:
                        opened[2] = cs.spawn(
                            cs.connect(cluster.url("chat", b.token), "b#2"))
                    if 2 in opened and opened[2].done() and "first2" not in opened:
                        opened["first2"] = i   # first message sent after b#2 was open
                    acks.append(await wa.send_ok(b.id, f"r{i}"))

            await sender()
            wb1 = await asyncio.wait_for(opened[1], 6)
            wb2 = await asyncio.wait_for(opened[2], 6)
            ids = [r["id"] for r in acks]
            assert ids == sorted(ids), "ids not increasing for one receiver"

            got1 = await wait_count(wb1, "chat_message", n, timeout=8)
            got1 += await wb1.collect(0.7, "chat_message")
            assert len(chat_ids(got1)) == len(set(chat_ids(got1))), "duplicate on b#1"
            assert chat_ids(got1) == ids, (
                f"b#1 missing {sorted(set(ids) - set(chat_ids(got1)))} "
                f"extra {sorted(set(chat_ids(got1)) - set(ids))}")

            got2 = chat_ids(await wb2.collect(0.3, "chat_message"))
            assert len(got2) == len(set(got2)), f"duplicate on b#2: {got2}"
            assert got2 == sorted(got2), f"b#2 out of order: {got2}"
            first = opened.get("first2", n)
            must = ids[first:]
            assert set(must) <= set(got2), \
                f"b#2 missed live messages {sorted(set(must) - set(got2))}"
            assert set(got2) <= set(ids)
    run(go(), timeout=40)


def test_ids_unique_across_receivers(cluster):
    a, b, c = cluster.new_users(3, "Ids")

    async def go():
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token), "a")
            ids = []
            for i in range(6):
                r = await wa.send_ok(b.id if i % 2 else c.id, f"u{i}")
                ids.append(r["id"])
            assert len(set(ids)) == len(ids), f"ids reused across receivers: {ids}"
    run(go())


def test_gateways_side_by_side(cluster):
    """SPEC 3: gateways are stateless and any number run side by side; NATS routes.
    The receiver's two sockets sit on different gateways, the sender on a third path.
    The second gateway runs lws' poll() loop instead of libev, so both loops carry the bus
    socket (busloop.c) and the writes after a hand-off (conn.c)."""
    port2 = cluster.add_gateway("--event-lib", "poll")
    a, b = cluster.new_users(2, "TwoGw")

    async def go():
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token, port=port2), "a@gw2")
            wb1 = await cs.connect(cluster.url("chat", b.token), "b@gw1")
            wb2 = await cs.connect(cluster.url("chat", b.token, port=port2), "b@gw2")
            ids = [(await wa.send_ok(b.id, f"x{i}"))["id"] for i in range(5)]
            for wb in (wb1, wb2):
                got = await wait_count(wb, "chat_message", 5, timeout=5)
                assert [m["id"] for m in got] == ids, f"{wb.label}: {got}"
            await asyncio.sleep(0.5)
            assert wb1.take_all() == [] and wb2.take_all() == []
            await wb1.close()
            await wb2.close()

            # offline now: stored via gw2, replayed once through gw1
            s = await wa.send_ok(b.id, "while offline")
            wb3 = await cs.connect(cluster.url("chat", b.token), "b@gw1#2")
            got = await wait_count(wb3, "chat_message", 1, timeout=5)
            got += await wb3.collect(0.7, "chat_message")
            assert [m["id"] for m in got] == [s["id"]], got
    run(go())
