"""chat-svc's group commit: `--batch-max` caps the sends committed in one transaction.

With chat-svc frozen (SIGSTOP), 200 sends from 20 sockets wait on its bus socket; when it
thaws, its writer finds them all at once. With `--batch-max 8` it must commit them in
batches of at most 8 (and, since they were all waiting, of exactly 8 at least once),
acknowledge and deliver every one, once, in order per sender. chat-svc's shutdown line
`writer_stats` reports the batches it committed.
"""

import asyncio
import os
import re
import signal

import sb
from sb import Clients, run

BATCH_MAX = 8
SENDERS = 20
PER_SENDER = 10

CLUSTER_OPTIONS = {"chat_args": ("--batch-max", str(BATCH_MAX))}


def writer_stats(cluster):
    """The fields of chat-svc's writer_stats line (logged when it stops)."""
    lines = [ln for ln in cluster.chat.log_since_start().splitlines()
             if "event=writer_stats" in ln]
    assert lines, "chat-svc logged no writer_stats line at shutdown"
    return {k: int(float(v)) for k, v in re.findall(r"(\w+)=([0-9.]+)", lines[-1])}


def test_batch_max_caps_each_transaction(cluster):
    senders = cluster.new_users(SENDERS, "Batcher")
    receiver = cluster.new_user("BatchReceiver")
    total = SENDERS * PER_SENDER

    async def go():
        async with Clients() as cs:
            inbox = await cs.connect(cluster.url("chat", receiver.token), "receiver")
            socks = await asyncio.gather(*(cs.connect(cluster.url("chat", u.token), f"s{u.id}")
                                           for u in senders))
            # one message first, so the receiver is known to chat-svc's cache and no send
            # parks for a look-up while the rest queue
            await socks[0].send_ok(receiver.id, "warm-up")
            await inbox.next("chat_message", timeout=10)
            sb.freeze(cluster.chat.pid)
            try:
                for i in range(PER_SENDER):
                    for u, ws in zip(senders, socks):
                        await ws.send_json({"receiver_id": receiver.id,
                                            "message": f"{u.id}:{i}"})
                await asyncio.sleep(0.5)  # everything reaches chat-svc's socket
            finally:
                os.kill(cluster.chat.pid, signal.SIGCONT)
            replies = []
            for ws in socks:
                for _ in range(PER_SENDER):
                    replies.append(await ws.next(timeout=15))
            got = []
            while len(got) < total:
                got.append(await inbox.next("chat_message", timeout=15))
            await asyncio.sleep(0.3)
            return replies, got, inbox.take_all("chat_message")

    replies, got, extra = run(go(), timeout=60)
    refused = [r for r in replies if r.get("type") != "message_sent"]
    assert refused == [], f"{len(refused)} sends refused, first: {refused[:3]}"
    assert extra == [], f"delivered more than once: {extra[:3]}"
    texts = [m["message"] for m in got]
    assert sorted(texts) == sorted(f"{u.id}:{i}" for u in senders for i in range(PER_SENDER))
    for u in senders:
        seqs = [int(t.split(":")[1]) for t in texts if t.startswith(f"{u.id}:")]
        assert seqs == sorted(seqs), f"sender {u.id}'s messages arrived out of order: {seqs}"

    assert cluster.chat.stop() == 0
    try:
        st = writer_stats(cluster)
    finally:
        cluster.restart_chat()
    assert st["max_batch"] == BATCH_MAX, \
        f"with {total} sends waiting, the largest batch was {st['max_batch']}, not {BATCH_MAX}"
    # every send and receipt is a job; the 200 waiting sends alone need 25 batches
    assert st["batches"] >= total // BATCH_MAX, st
