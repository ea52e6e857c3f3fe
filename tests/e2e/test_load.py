"""Load: 200 concurrent chat clients, each sending 20 messages to random other clients
(each waits for its message_sent before the next send, like a person typing fast).

Checks: every acknowledged id reaches its receiver exactly once, with the right sender
and text; nothing lost, nothing duplicated, ids unique; per (sender, receiver) the order
of arrival is the order of sending; all within a bounded time. Prints throughput.
"""

import asyncio
import random
import time
from collections import defaultdict

import sb
from sb import Clients, run

CLIENTS = 200
PER_CLIENT = 20
DEADLINE = 60.0


def test_200_clients(cluster):
    users = cluster.new_users(CLIENTS, "Load")
    rng = random.Random(20260106)
    plan = {u.id: [rng.choice([v.id for v in users if v.id != u.id])
                   for _ in range(PER_CLIENT)] for u in users}
    expected_total = CLIENTS * PER_CLIENT

    async def go():
        async with Clients() as cs:
            t0 = time.monotonic()
            sockets = await asyncio.gather(*(
                cs.connect(cluster.url("chat", u.token), f"u{u.id}", timeout=10)
                for u in users))
            by_uid = {u.id: ws for u, ws in zip(users, sockets)}
            t_connected = time.monotonic()

            acks = {}                # text -> (sender, receiver, id)
            errors = []
            latencies = []
            received = defaultdict(list)   # receiver uid -> chat_message frames

            async def client(u):
                ws = by_uid[u.id]
                for seq, rid in enumerate(plan[u.id]):
                    text = f"{u.id}:{seq}"
                    t = time.monotonic()
                    r = await ws.send_chat(rid, text, timeout=15)
                    latencies.append(time.monotonic() - t)
                    if r.get("type") != "message_sent":
                        errors.append((text, r))
                        continue
                    assert r["receiver_id"] == rid, r
                    acks[text] = (u.id, rid, r["id"])

            async def drain():
                loop = asyncio.get_running_loop()
                while True:
                    for u in users:
                        received[u.id] += by_uid[u.id].take_all("chat_message")
                    if sum(map(len, received.values())) >= expected_total:
                        return
                    await asyncio.sleep(0.05)
                    if loop.time() > deadline:
                        return

            loop = asyncio.get_running_loop()
            deadline = loop.time() + DEADLINE
            t_send = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*(client(u) for u in users)), DEADLINE)
            t_acked = time.monotonic()
            await drain()
            t_done = time.monotonic()
            await asyncio.sleep(0.5)   # give duplicates a chance to show up
            for u in users:
                received[u.id] += by_uid[u.id].take_all("chat_message")
            others = [(u.id, f) for u in users for f in by_uid[u.id].take_all()]

            lat = sorted(latencies)
            sb.note(f"load: {CLIENTS} clients connected in {t_connected - t0:.2f}s; "
                  f"{expected_total} messages sent+acked in {t_acked - t_send:.2f}s "
                  f"({expected_total / max(1e-9, t_acked - t_send):.0f} msg/s), "
                  f"all delivered after {t_done - t_send:.2f}s "
                  f"({expected_total / max(1e-9, t_done - t_send):.0f} msg/s end to end); "
                  f"ack latency p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
                  f"p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms")
            return acks, errors, received, others

    acks, errors, received, others = run(go(), timeout=DEADLINE + 30)

    assert errors == [], f"{len(errors)} sends refused, first: {errors[:5]}"
    assert len(acks) == expected_total
    all_ids = [v[2] for v in acks.values()]
    assert len(set(all_ids)) == len(all_ids), "message_sent ids are not unique"
    assert others == [], f"unexpected non-chat frames: {others[:5]}"

    by_id = {v[2]: (text, v[0], v[1]) for text, v in acks.items()}
    lost, dup, wrong, order = [], [], [], []
    seen = set()
    names = {u.id: u.name for u in users}
    last_seq = {}
    for rid, frames in received.items():
        for f in frames:
            mid = f["id"]
            if mid in seen:
                dup.append(mid)
                continue
            seen.add(mid)
            if mid not in by_id:
                wrong.append(("unknown id", rid, f))
                continue
            text, sender, want_rid = by_id[mid]
            if (want_rid != rid or f["sender_id"] != sender or f["message"] != text
                    or f["sender_name"] != names[sender]):
                wrong.append((rid, f, by_id[mid]))
            seq = int(text.split(":")[1])
            prev_seq, prev_id = last_seq.get((sender, rid), (-1, 0))
            if prev_seq > seq:
                order.append(("arrived out of send order", sender, rid, text))
            if prev_id > mid:
                order.append(("id lower than an earlier message", sender, rid, mid))
            last_seq[(sender, rid)] = (seq, mid)
    lost = sorted(set(by_id) - seen)
    assert dup == [], f"{len(dup)} duplicate deliveries, e.g. {dup[:10]}"
    assert lost == [], f"{len(lost)} acknowledged messages never delivered, e.g. " \
                       f"{[by_id[i] for i in lost[:10]]}"
    assert wrong == [], f"{len(wrong)} misdelivered/garbled, e.g. {wrong[:5]}"
    assert order == [], f"{len(order)} order violations, e.g. {order[:5]}"
