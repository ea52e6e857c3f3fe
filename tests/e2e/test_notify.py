"""Notifications end to end (SPEC sections 2 and 3): injection over NATS, fan-out to
notification sockets, offline backlog, durability while notify-svc is down, poison
refusal, the operator path, and the read-only notification socket; then notify-svc
SIGKILLed mid-burst, a backlog replay racing live injections, and two gateways.

Injections are published by a minimal NATS client of our own (natsproto.py): plain PUB
(what "any system" does, no JetStream API) on notify.send.json (JSON) or notify.send (a
bare protobuf sb.NotifyRequest); HPUB with the header "Sb-Reply: <subject>" when a test
wants notify-svc's outcome ({"ok":true,"ids":[...]} or {"ok":false,"error":...}).
Every test uses fresh users, so inboxes and delivery cursors start empty.
"""

import asyncio
import json
import time

import pytest

import faultlib
import sb
from natsproto import (Nats, decode_delivered_batch, envelope_delivered,
                       envelope_delivered_batch, new_inbox, notify_request)
from sb import Clients, check_timestamp, is_pos_int, run

READONLY = "notification sockets do not accept messages"
QUIET = 0.8           # seconds we listen to be sure nothing (more) arrives
# A notification socket confirms what it was sent 5 s later (the PONG to a PING the
# gateway writes behind it, GW_PROBE_DELAY_NOTIFY_MS); only then is it receipted.
CONFIRMED = 5.8
OUTCOME_TIMEOUT = 8.0
KILL_WINDOW = 10.0    # seconds after a restart by which a killed burst must be through

# notify-svc's refusal sentences (notify-svc/injection.h: "the sentences are an
# interface"; publishers see them in their Sb-Reply outcome)
E_JSON = "invalid JSON"
E_PROTOBUF = "invalid protobuf"
E_NOT_OBJECT = "payload must be a JSON object"
E_TARGET = "exactly one of user_id, user_ids or all is required"
E_TITLE_LONG = "title is too long"
MAX_TITLE_BYTES = 256   # notify-svc's default --max-title-bytes


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def nc(cluster):
    assert cluster.notify is not None, \
        f"notify-svc is not built in {sb.BUILD_DIR}: nothing to test"
    conn = Nats(cluster.nats_url)
    yield conn
    conn.close()


@pytest.fixture(autouse=True)
def heal(cluster):
    """Restart whatever a test left dead (notify-svc after test 5), even if it failed."""
    yield
    restarted = cluster.heal()
    if restarted:
        print(f"harness: restarted {restarted} after the test")


# --------------------------------------------------------------------------- helpers

def pub_json(nc, obj, reply=None):
    """Plain PUB on notify.send.json (HPUB with Sb-Reply when reply is given)."""
    data = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
    nc.publish("notify.send.json", data, headers={"Sb-Reply": reply} if reply else None)


def pub_proto(nc, data, reply=None):
    nc.publish("notify.send", data, headers={"Sb-Reply": reply} if reply else None)


def inject(nc, subject, data, timeout=OUTCOME_TIMEOUT):
    """Publish with Sb-Reply and return notify-svc's outcome (parsed), insisting on
    exactly one answer."""
    inbox = new_inbox("e2e.outcome")
    sub = nc.subscribe(inbox)
    try:
        nc.flush()
        if isinstance(data, dict):
            data = json.dumps(data)
        nc.publish(subject, data, headers={"Sb-Reply": inbox})
        msg = sub.next(timeout)
        out = msg.json()
        assert isinstance(out, dict) and isinstance(out.get("ok"), bool), \
            f"malformed outcome on {inbox}: {msg.data!r}"
        return out
    finally:
        sub.unsubscribe()


def inject_ok(nc, subject, data, n_ids=1):
    out = inject(nc, subject, data)
    assert out.get("ok") is True, f"injection {data!r} refused: {out}"
    ids = out.get("ids")
    assert isinstance(ids, list) and len(ids) == n_ids and all(map(is_pos_int, ids)), \
        f"outcome should carry {n_ids} positive ids: {out}"
    return ids


def stream_messages(nc):
    """How many messages the NOTIFY stream holds (JetStream API, plain request)."""
    r = nc.request("$JS.API.STREAM.INFO.NOTIFY", b"", timeout=5).json()
    assert "state" in r, f"stream info for NOTIFY: {r}"
    return r["state"]["messages"]


async def in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


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


def check_notify(f, title, message, ntype, id=None):
    assert f.get("type") == "notify", f
    assert set(f) == {"type", "id", "title", "message", "notification_type",
                      "timestamp"}, f"unexpected keys: {f}"
    assert is_pos_int(f["id"]), f
    if id is not None:
        assert f["id"] == id, f"notify id {f['id']} != outcome id {id}: {f}"
    assert f["title"] == title and f["message"] == message, f
    assert f["notification_type"] == ntype, f
    check_timestamp(f["timestamp"])


async def notify_socket(cs, cluster, user, label):
    return await cs.connect(cluster.url("notifications", user.token), label)


# --------------------------------------------------------------------------- 1

def test_json_injection_reaches_every_socket_of_the_user_only(cluster, nc):
    x, y = cluster.new_users(2, "NJson")
    title, message = "New Notice ✓", "Exam schedule released — «room 4»"

    async def go():
        async with Clients() as cs:
            x1 = await notify_socket(cs, cluster, x, "x-notify#1")
            x2 = await notify_socket(cs, cluster, x, "x-notify#2")
            xc = await cs.connect(cluster.url("chat", x.token), "x-chat")
            y1 = await notify_socket(cs, cluster, y, "y-notify")
            await asyncio.sleep(0.3)     # backlog syncs (empty) settle
            assert [w.take_all() for w in (x1, x2, xc, y1)] == [[]] * 4, \
                "fresh users got frames before any injection"

            pub_json(nc, {"user_id": x.id, "title": title, "message": message})
            nc.flush()
            f1 = await x1.next("notify", timeout=5)
            f2 = await x2.next("notify", timeout=5)
            check_notify(f1, title, message, "info")
            check_notify(f2, title, message, "info", id=f1["id"])

            await asyncio.sleep(QUIET)
            assert x1.take_all() == [] and x2.take_all() == [], "extra frames / duplicates"
            assert y1.take_all() == [], "another user's notification socket got it"
            assert xc.take_all() == [], "a notification leaked onto a chat socket"
    run(go())


# --------------------------------------------------------------------------- 2

def test_protobuf_injection_with_outcome(cluster, nc):
    x, y = cluster.new_users(2, "NProto")

    async def go():
        async with Clients() as cs:
            wx = await notify_socket(cs, cluster, x, "x-notify")
            wy = await notify_socket(cs, cluster, y, "y-notify")
            await asyncio.sleep(0.3)

            body = notify_request(user_ids=[x.id], title="Proto", message="via notify.send",
                                  notification_type="notice")
            ids = await in_thread(inject_ok, nc, "notify.send", body)
            f = await wx.next("notify", timeout=5)
            check_notify(f, "Proto", "via notify.send", "notice", id=ids[0])

            # proto3 has no "absent": an empty notification_type means the default
            body = notify_request(user_ids=[x.id], message="no type given")
            ids2 = await in_thread(inject_ok, nc, "notify.send", body)
            f2 = await wx.next("notify", timeout=5)
            check_notify(f2, "", "no type given", "info", id=ids2[0])
            assert ids2[0] > ids[0], f"ids not increasing: {ids} then {ids2}"

            await asyncio.sleep(QUIET)
            assert wx.take_all() == [], "duplicates"
            assert wy.take_all() == [], "another user got it"
    run(go())


# --------------------------------------------------------------------------- 3

def test_user_ids_and_broadcast(cluster, nc):
    a, b, c = cluster.new_users(3, "NMulti")

    async def go():
        async with Clients() as cs:
            wa = await notify_socket(cs, cluster, a, "a-notify")
            wb = await notify_socket(cs, cluster, b, "b-notify")
            wc = await notify_socket(cs, cluster, c, "c-notify")
            wc_chat = await cs.connect(cluster.url("chat", c.token), "c-chat")
            await asyncio.sleep(0.3)

            # user_ids: one row (one id) per user, ascending by user id
            ids = await in_thread(inject_ok, nc, "notify.send.json", {
                "user_ids": [b.id, a.id], "title": "Two", "message": "for a and b",
                "notification_type": "notice"}, 2)
            fa = await wa.next("notify", timeout=5)
            fb = await wb.next("notify", timeout=5)
            check_notify(fa, "Two", "for a and b", "notice")
            check_notify(fb, "Two", "for a and b", "notice")
            assert sorted([fa["id"], fb["id"]]) == sorted(ids), \
                f"delivered ids {fa['id']}, {fb['id']} vs outcome {ids}"
            assert fa["id"] != fb["id"]
            await asyncio.sleep(QUIET)
            assert wc.take_all() == [], "a user not in user_ids got it"
            assert wa.take_all() == [] and wb.take_all() == [], "duplicates"

            # all: every connected notification socket, the same id everywhere
            [bid] = await in_thread(inject_ok, nc, "notify.send.json", {
                "all": True, "title": "Everyone", "message": "broadcast"}, 1)
            for w in (wa, wb, wc):
                f = await w.next("notify", timeout=5)
                check_notify(f, "Everyone", "broadcast", "info", id=bid)
            assert bid > max(ids)
            await asyncio.sleep(QUIET)
            for w in (wa, wb, wc):
                assert w.take_all() == [], f"{w.label}: broadcast twice / extras"
            assert wc_chat.take_all() == [], "a broadcast leaked onto a chat socket"
    run(go())


def test_receipts_of_a_broadcast_leave_as_a_batch(cluster, nc):
    """A gateway that writes one notification to many users' sockets reports them in
    a DeliveredBatch per flush (a broadcast to 20,000 sockets used to cost 20,000
    notify.delivered messages), and notify-svc applies every receipt in it: none of
    those users gets the notification again on reconnect."""
    users = cluster.new_users(30, "NBatch")
    key = "sb_gateway_receipt_messages_total"

    async def go():
        async with Clients() as cs:
            ws = [await notify_socket(cs, cluster, u, f"u{i}") for i, u in enumerate(users)]
            await asyncio.sleep(0.3)
            receipts = nc.subscribe("notify.delivered")
            nc.flush()
            before = faultlib.metrics(cluster.port)[key]
            ids = await in_thread(inject_ok, nc, "notify.send.json", {
                "user_ids": [u.id for u in users], "title": "Batch", "message": "many"},
                len(users))
            got = [await w.next("notify", timeout=5) for w in ws]
            assert sorted(f["id"] for f in got) == sorted(ids)
            await asyncio.sleep(CONFIRMED)
            msgs = receipts.take_all()
            receipts.unsubscribe()
            sent = faultlib.metrics(cluster.port)[key] - before
            by_user = {}
            for m in msgs:
                for uid, rids in decode_delivered_batch(m.data).items():
                    by_user.setdefault(uid, []).extend(rids)
            want = {u.id: [f["id"]] for u, f in zip(users, got)}
            assert {u: by_user.get(u) for u in want} == want, \
                f"receipts on notify.delivered: {by_user}"
            assert len(msgs) <= 3 and sent == len(msgs), \
                f"{len(users)} users' receipts took {len(msgs)} messages " \
                f"(gateway counted {sent})"
            for w in ws:
                await w.close()
            again = [await notify_socket(cs, cluster, u, f"u{i}'") for i, u in enumerate(users)]
            await asyncio.sleep(QUIET)
            replayed = {u.id: [f.get("id") for f in w.take_all()] for u, w in zip(users, again)
                        if w.buf}
            assert replayed == {}, f"replayed although their receipts were in the batch: {replayed}"
    run(go())


def test_receipts_from_other_gateway_versions_are_applied(cluster, nc):
    """A single-user Delivered (what gateways sent before batching, so during a rolling
    upgrade) still moves the user's cursor; a batch naming user 0 is refused whole."""
    x, y = cluster.new_users(2, "NLegacy")

    async def go():
        async with Clients() as cs:
            for u in (x, y):   # a cursor exists once a socket has connected
                w = await notify_socket(cs, cluster, u, f"{u.id}#0")
                await w.close()
            [x1] = await in_thread(inject_ok, nc, "notify.send.json",
                                   {"user_id": x.id, "title": "x1", "message": "m"})
            [x2] = await in_thread(inject_ok, nc, "notify.send.json",
                                   {"user_id": x.id, "title": "x2", "message": "m"})
            [y1] = await in_thread(inject_ok, nc, "notify.send.json",
                                   {"user_id": y.id, "title": "y1", "message": "m"})
            nc.publish("notify.delivered", envelope_delivered(x.id, [x1]))
            nc.publish("notify.delivered", envelope_delivered_batch([(y.id, [y1]), (0, [y1])]))
            nc.flush()
            await asyncio.sleep(0.5)
            wx = await notify_socket(cs, cluster, x, "x")
            wy = await notify_socket(cs, cluster, y, "y")
            fx = await wx.collect(QUIET, "notify")
            fy = await wy.collect(0.1, "notify")
            assert [f["id"] for f in fx] == [x2], \
                f"after a Delivered for {x1}, the backlog should be [{x2}]: {fx}"
            assert [f["id"] for f in fy] == [y1], \
                f"a batch with user 0 in it must be refused whole: {fy}"
    run(go())


# --------------------------------------------------------------------------- 4

def test_offline_backlog_once(cluster, nc):
    x = cluster.new_user("NOffline")

    async def go():
        async with Clients() as cs:
            # x has connected before (so has a delivery cursor), then goes offline
            w = await notify_socket(cs, cluster, x, "x#0")
            assert await w.collect(0.3) == []
            await w.close()

            [nid] = await in_thread(inject_ok, nc, "notify.send.json", {
                "user_id": x.id, "title": "Missed", "message": "while offline",
                "notification_type": "alert"})

            w1 = await notify_socket(cs, cluster, x, "x#1")
            f = await w1.next("notify", timeout=5)
            check_notify(f, "Missed", "while offline", "alert", id=nid)
            rest = await w1.collect(CONFIRMED)
            assert rest == [], f"backlog replay: expected exactly one notify, also got {rest}"
            await w1.close()

            w2 = await notify_socket(cs, cluster, x, "x#2")
            again = await w2.collect(1.0)
            assert again == [], f"backlog replayed again on a later connect: {again}"
    run(go())


def test_never_connected_user_gets_own_not_old_broadcasts(cluster, nc):
    z = cluster.new_user("NNever")

    async def go():
        async with Clients() as cs:
            # z has never had a notification socket: one addressed to z, a broadcast,
            # another addressed to z -- all stored before z's first connection
            [d0] = await in_thread(inject_ok, nc, "notify.send.json", {
                "user_id": z.id, "title": "Welcome", "message": "first"})
            [b1] = await in_thread(inject_ok, nc, "notify.send.json", {
                "all": True, "title": "Old news", "message": "before you joined"})
            [d1] = await in_thread(inject_ok, nc, "notify.send.json", {
                "user_id": z.id, "title": "Welcome", "message": "second"})
            assert d0 < b1 < d1, f"ids not in storage order: {d0}, {b1}, {d1}"

            w = await notify_socket(cs, cluster, z, "z#1")
            got = await wait_count(w, "notify", 2, timeout=5)
            got += await w.collect(1.0)
            assert [f.get("id") for f in got] == [d0, d1], \
                f"first connect should replay exactly [{d0}, {d1}] (not broadcast {b1}): {got}"
            check_notify(got[0], "Welcome", "first", "info", id=d0)
            check_notify(got[1], "Welcome", "second", "info", id=d1)
    run(go())


# --------------------------------------------------------------------------- 5

def test_injections_kept_while_notify_svc_is_down(cluster, nc):
    x = cluster.new_user("NDown")
    n = 100

    async def go():
        async with Clients() as cs:
            w = await notify_socket(cs, cluster, x, "x-notify")
            # the socket works before the outage
            [pre] = await in_thread(inject_ok, nc, "notify.send.json",
                                    {"user_id": x.id, "message": "before"})
            f = await w.next("notify", timeout=5)
            assert f["id"] == pre

            before = await in_thread(stream_messages, nc)
            rc = await in_thread(cluster.notify.stop)
            assert rc == 0, f"notify-svc exited with {rc} on SIGTERM"

            for i in range(n):
                pub_json(nc, {"user_id": x.id, "title": "Queued", "message": f"q{i:03d}"})
            await in_thread(nc.flush)
            after = await in_thread(stream_messages, nc)
            assert after - before == n, \
                f"the NOTIFY stream captured {after - before} of {n} plain PUBs"
            down = await w.collect(0.5)
            assert down == [], f"deliveries while notify-svc was down: {down[:5]}"

            await in_thread(cluster.restart_notify)
            got = await wait_count(w, "notify", n, timeout=15)
            got += await w.collect(QUIET)
            msgs = [f.get("message") for f in got]
            ids = [f.get("id") for f in got]
            dups = sorted({i for i in ids if ids.count(i) > 1})
            assert not dups, f"ids delivered twice: {dups}"
            missing = sorted(set(f"q{i:03d}" for i in range(n)) - set(msgs))
            assert not missing, f"{len(missing)} of {n} never arrived: {missing[:10]}"
            assert msgs == [f"q{i:03d}" for i in range(n)], f"out of publish order: {msgs}"
            assert ids == sorted(ids) and ids[0] > pre, f"ids not ascending: {ids}"
            for f in got:
                check_notify(f, "Queued", f["message"], "info")
    run(go(), timeout=45)


# --------------------------------------------------------------------------- 6

def test_poison_refused_with_reason_and_no_stall(cluster, nc):
    x = cluster.new_user("NPoison")
    base = new_inbox("e2e.poison")
    big_title = "T" * (MAX_TITLE_BYTES + 44)
    # (subject, payload, expected outcome: None = good, else the refusal sentence)
    seq = [
        ("notify.send.json", {"user_id": x.id, "message": "g0"}, None),
        ("notify.send.json", b'{"user_id": ', E_JSON),
        ("notify.send.json", b'[1, 2, 3]', E_NOT_OBJECT),
        ("notify.send.json", b'"just a string"', E_NOT_OBJECT),
        ("notify.send.json", {"title": "no target", "message": "m"}, E_TARGET),
        ("notify.send.json", {"user_id": x.id, "title": big_title, "message": "m"},
         E_TITLE_LONG),
        ("notify.send", b"\x0a\xff", E_PROTOBUF),
        ("notify.send", notify_request(title="no target", message="m"), E_TARGET),
        ("notify.send.json", {"user_id": x.id, "message": "g1"}, None),
        ("notify.send.json", b"\xff\xfe not even utf-8", E_JSON),
        ("notify.send.json", {"user_id": x.id, "message": "g2"}, None),
    ]

    async def go():
        async with Clients() as cs:
            w = await notify_socket(cs, cluster, x, "x-notify")
            await asyncio.sleep(0.3)
            outcomes = nc.subscribe(f"{base}.*")
            await in_thread(nc.flush)

            # a poison message without Sb-Reply first: must not block what follows
            pub_json(nc, b"{{{ no reply wanted")
            t0 = time.monotonic()
            for i, (subject, data, _) in enumerate(seq):
                if isinstance(data, dict):
                    data = json.dumps(data)
                nc.publish(subject, data, headers={"Sb-Reply": f"{base}.{i}"})
            await in_thread(nc.flush)

            good = [d["message"] for _, d, why in seq if why is None]
            got = await wait_count(w, "notify", len(good), timeout=5)
            elapsed = time.monotonic() - t0
            assert [f.get("message") for f in got] == good, \
                f"good injections around the poison: expected {good}, got {got}"
            assert elapsed < 4.0, f"good injections took {elapsed:.1f}s (redelivery stall?)"

            replies = {}
            deadline = time.monotonic() + OUTCOME_TIMEOUT
            while len(replies) < len(seq) and time.monotonic() < deadline:
                try:
                    m = await in_thread(outcomes.next, max(0.05, deadline - time.monotonic()))
                except AssertionError:
                    break
                i = int(m.subject.rsplit(".", 1)[1])
                assert i not in replies, f"two outcomes for injection {i}: " \
                    f"{replies[i]} and {m.data!r}"
                replies[i] = json.loads(m.data)
            late = await in_thread(outcomes.collect, QUIET)
            outcomes.unsubscribe()
            assert late == [], f"more outcomes than injections (redelivered?): {late}"
            assert sorted(replies) == list(range(len(seq))), \
                f"outcomes missing for {sorted(set(range(len(seq))) - set(replies))}"

            good_ids = []
            for i, (_, data, why) in enumerate(seq):
                r = replies[i]
                if why is None:
                    assert r.get("ok") is True and len(r.get("ids", [])) == 1, (i, r)
                    good_ids.append(r["ids"][0])
                else:
                    assert r.get("ok") is False, f"poison #{i} {data!r:.60} accepted: {r}"
                    assert isinstance(r.get("error"), str) and r["error"], (i, r)
                    assert r["error"] == why, f"poison #{i}: reason {r['error']!r}, " \
                        f"expected {why!r}"
                    assert "ids" not in r, (i, r)
            assert [f["id"] for f in got] == good_ids, (got, good_ids)

            extra = await w.collect(QUIET)
            assert extra == [], f"poison turned into notifications: {extra}"
    run(go())


# --------------------------------------------------------------------------- 7

def test_sbctl_notify(cluster, nc):
    x = cluster.new_user("NSbctl")

    async def go():
        async with Clients() as cs:
            w = await notify_socket(cs, cluster, x, "x-notify")
            await asyncio.sleep(0.3)

            r = await in_thread(lambda: cluster.sbctl(
                "notify", "--user", x.id, "--title", "Operator", "--message", "maintenance"))
            assert r.returncode == 0
            out = r.stdout.strip()
            assert out.startswith("notification ") and out.endswith(" stored"), \
                f"sbctl notify printed {r.stdout!r} (stderr {r.stderr!r})"
            nid = int(out.split()[1])
            f = await w.next("notify", timeout=5)
            check_notify(f, "Operator", "maintenance", "info", id=nid)

            r = await in_thread(lambda: cluster.sbctl(
                "notify", "--user", x.id, "--message", "typed", "--type", "notice"))
            f = await w.next("notify", timeout=5)
            check_notify(f, "", "typed", "notice", id=int(r.stdout.split()[1]))

            await asyncio.sleep(QUIET)
            assert w.take_all() == []
    run(go())


def test_sbctl_notify_while_notify_svc_is_down(cluster, nc):
    """The operator path when notify-svc is down: captured by the stream (exit 0,
    "queued"), delivered once notify-svc is back."""
    x = cluster.new_user("NSbctlDown")

    async def go():
        async with Clients() as cs:
            w = await notify_socket(cs, cluster, x, "x-notify")
            await asyncio.sleep(0.3)
            rc = await in_thread(cluster.notify.stop)
            assert rc == 0, f"notify-svc exited with {rc} on SIGTERM"
            r = await in_thread(lambda: cluster.sbctl(
                "--timeout-ms", "1000", "notify", "--user", x.id, "--message", "queued"))
            assert r.returncode == 0
            assert r.stdout.startswith("notification queued (stream sequence "), \
                f"sbctl notify with notify-svc down printed {r.stdout!r} ({r.stderr!r})"
            assert await w.collect(0.3) == []
            await in_thread(cluster.restart_notify)
            f = await w.next("notify", timeout=8)
            check_notify(f, "", "queued", "info")
            assert await w.collect(QUIET) == [], "delivered twice"
    run(go())


# --------------------------------------------------------------------------- 8

def test_notification_socket_is_read_only(cluster, nc):
    x = cluster.new_user("NReadOnly")

    async def go():
        async with Clients() as cs:
            w = await notify_socket(cs, cluster, x, "x-notify")
            await asyncio.sleep(0.3)
            for frame in ('{"receiver_id": 1, "message": "hi"}', "not json", "{}"):
                await w.send_raw(frame)
                e = await w.next(timeout=5)
                assert e == {"type": "error", "error": READONLY}, f"{frame!r} -> {e}"
            # a binary frame is refused too (the README lists "binary frames are not
            # supported" for binary frames on any socket)
            await w.send_raw(b"\x00\x01binary")
            e = await w.next(timeout=5)
            assert e.get("type") == "error" and e.get("error") in (
                READONLY, "binary frames are not supported"), f"binary frame -> {e}"

            assert not w.done, f"socket closed ({w.close_code}) after client frames"
            [nid] = await in_thread(inject_ok, nc, "notify.send.json", {
                "user_id": x.id, "title": "Still", "message": "usable"})
            f = await w.next("notify", timeout=5)
            check_notify(f, "Still", "usable", "info", id=nid)
            await asyncio.sleep(0.3)
            assert w.take_all() == [] and not w.done
    run(go())


# --------------------------------------------------------------------------- beyond the list

def test_sigkill_mid_stream_loses_nothing_repeats_nothing(cluster, nc):
    """notify-svc SIGKILLed while it works through a burst, then restarted: every
    notification reaches the socket (connected throughout) once, within KILL_WINDOW
    seconds of event=ready. The kill lands wherever it lands (between batches, between
    a batch's commit and its publishes, with a batch fetched but not stored), so the
    burst-and-kill is repeated a few times; each round must be clean."""
    x = cluster.new_user("NKill")
    n, rounds = 600, 3

    async def go():
        async with Clients() as cs:
            w = await notify_socket(cs, cluster, x, "x-notify")
            await asyncio.sleep(0.3)
            seen_ids = []
            for r in range(rounds):
                want = [f"k{r}-{i:03d}" for i in range(n)]
                for m in want:
                    pub_json(nc, {"user_id": x.id, "message": m})
                await in_thread(nc.flush)
                first = [await w.next("notify", timeout=5)]
                await in_thread(cluster.notify.kill)
                first += w.take_all("notify")
                await in_thread(cluster.restart_notify)
                got = first + await wait_count(w, "notify", n - len(first), timeout=KILL_WINDOW)
                got += await w.collect(0.3)
                msgs = [f.get("message") for f in got]
                ids = [f.get("id") for f in got]
                seen_ids += ids
                dups = sorted({i for i in seen_ids if seen_ids.count(i) > 1})
                assert not dups, f"round {r}: ids delivered twice: {dups[:10]}"
                missing = [m for m in want if m not in set(msgs)]
                assert not missing, (
                    f"round {r}: {len(missing)} of {n} not delivered within {KILL_WINDOW}s "
                    f"of notify-svc's restart ({len(first)} had arrived before the kill): "
                    f"{missing[:3]}..{missing[-3:]}")
                assert sorted(msgs) == sorted(want), f"round {r}: unexpected {msgs[:5]}"
    run(go(), timeout=rounds * (KILL_WINDOW + 15))


def test_backlog_replay_racing_live_notifications(cluster, nc):
    """A socket connects while injections to its user are flowing and a backlog waits:
    every notification once, in order."""
    x = cluster.new_user("NRace")
    n_old, n_live = 40, 80

    async def go():
        async with Clients() as cs:
            w0 = await notify_socket(cs, cluster, x, "x#0")
            await asyncio.sleep(0.3)
            await w0.close()
            for i in range(n_old):
                pub_json(nc, {"user_id": x.id, "message": f"m{i:03d}"})
            await in_thread(nc.flush)
            await asyncio.sleep(0.5)

            async def pump():
                for i in range(n_old, n_old + n_live):
                    pub_json(nc, {"user_id": x.id, "message": f"m{i:03d}"})
                    await asyncio.sleep(0.003)
            t = cs.spawn(pump())
            await asyncio.sleep(0.05)
            w1 = await notify_socket(cs, cluster, x, "x#1")
            await asyncio.wait_for(t, 10)
            await in_thread(nc.flush)
            got = await wait_count(w1, "notify", n_old + n_live, timeout=10)
            got += await w1.collect(QUIET)
            msgs = [f.get("message") for f in got]
            ids = [f.get("id") for f in got]
            assert len(ids) == len(set(ids)), "an id twice on one socket"
            assert msgs == [f"m{i:03d}" for i in range(n_old + n_live)], \
                f"missing {sorted(set(f'm{i:03d}' for i in range(n_old + n_live)) - set(msgs))}"
    run(go())


def test_offline_broadcast_and_two_gateways(cluster, nc):
    """Broadcasts and multi-user injections reach sockets on any gateway; a broadcast
    sent while a (previously connected) user is offline is replayed once, in id order
    with their own notifications, on another gateway."""
    a, b = cluster.new_users(2, "NGw")
    port2 = cluster.add_gateway()

    async def go():
        async with Clients() as cs:
            wa = await notify_socket(cs, cluster, a, "a@gw1")
            wb = await cs.connect(cluster.url("notifications", b.token, port=port2), "b@gw2")
            await asyncio.sleep(0.3)
            await wa.close()
            [bid] = await in_thread(inject_ok, nc, "notify.send.json",
                                    {"all": True, "message": "to everyone"})
            ids = await in_thread(inject_ok, nc, "notify.send.json",
                                  {"user_ids": [b.id, a.id, b.id], "message": "to a and b"}, 2)
            fb = await wait_count(wb, "notify", 2, timeout=5)
            assert [f["id"] for f in fb] == [bid, ids[1]], fb

            wa2 = await cs.connect(cluster.url("notifications", a.token, port=port2), "a@gw2")
            got = await wait_count(wa2, "notify", 2, timeout=5)
            got += await wa2.collect(QUIET)
            assert [f["id"] for f in got] == [bid, ids[0]], got
            assert [f["message"] for f in got] == ["to everyone", "to a and b"]
            assert wb.take_all() == [], "duplicates on b"
    run(go())
