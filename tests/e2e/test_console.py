"""The seed guide's "Browser Console Test", played against the real binaries.

User 1 (Alice) opens /ws/chat/?token=T and sends {"receiver_id": 2, "message": "Test
message"} while user 2 (Bob) is connected; Bob gets a chat_message, Alice a message_sent
with the same id. Plus attachment passthrough, string receiver ids, health endpoints.
"""

import time

import sb
from sb import Clients, check_timestamp, is_pos_int, run


def test_healthz_and_readyz(cluster):
    assert sb.http_get(cluster.port, "/healthz")[0] == 200
    assert sb.http_get(cluster.port, "/readyz")[0] == 200


def test_browser_console_test(cluster):
    t_alice = cluster.issue_token(1)
    t_bob = cluster.issue_token(2)

    async def go():
        async with Clients() as cs:
            alice = await cs.connect(cluster.url("chat", t_alice), "alice")
            bob = await cs.connect(cluster.url("chat", t_bob), "bob")
            # exactly the seed's frame: no attachment key at all
            await alice.send_json({"receiver_id": 2, "message": "Test message"})

            sent = await alice.next("message_sent", timeout=5)
            got = await bob.next("chat_message", timeout=5)

            assert got["type"] == "chat_message"
            assert got["sender_id"] == 1
            assert got["sender_name"] == "Alice"
            assert got["message"] == "Test message"
            assert "attachment" in got and got["attachment"] is None
            assert is_pos_int(got["id"]), got
            check_timestamp(got["timestamp"])

            assert sent["type"] == "message_sent"
            assert sent["id"] == got["id"]
            assert sent["receiver_id"] == 2
            check_timestamp(sent["timestamp"])

            # the receiver is not acknowledged, the sender does not get its own message
            await bob.collect(0.3)
            assert bob.take_all() == [], "receiver got extra frames"
            assert alice.take_all() == [], "sender got extra frames"
    run(go())


def test_attachment_passthrough_and_null(cluster):
    t_alice = cluster.issue_token(1)
    t_bob = cluster.issue_token(2)
    url = "https://example.com/file.pdf"

    async def go():
        async with Clients() as cs:
            alice = await cs.connect(cluster.url("chat", t_alice), "alice")
            bob = await cs.connect(cluster.url("chat", t_bob), "bob")

            s1 = await alice.send_ok(2, "Hello!", url)
            m1 = await bob.next("chat_message", pred=lambda f: f.get("id") == s1["id"])
            assert m1["attachment"] == url
            assert m1["message"] == "Hello!"
            assert m1["id"] == s1["id"]

            s2 = await alice.send_ok(2, "plain http", "http://example.org/a?b=c&d=%20")
            m2 = await bob.next("chat_message", pred=lambda f: f.get("id") == s2["id"])
            assert m2["attachment"] == "http://example.org/a?b=c&d=%20"
            assert m2["id"] == s2["id"]

            # explicit null, as the seed's sendMessage() sends it
            s3 = await alice.send_ok(2, "no file", None)
            m3 = await bob.next("chat_message", pred=lambda f: f.get("id") == s3["id"])
            assert m3["attachment"] is None
            assert m3["id"] == s3["id"]

            assert s1["id"] < s2["id"] < s3["id"], "ids must increase"
    run(go())


def test_string_receiver_id(cluster):
    """The seed's form sends the receiver id as a string (input value)."""
    t_alice = cluster.issue_token(1)
    t_bob = cluster.issue_token(2)

    async def go():
        async with Clients() as cs:
            alice = await cs.connect(cluster.url("chat", t_alice), "alice")
            bob = await cs.connect(cluster.url("chat", t_bob), "bob")
            sent = await alice.send_ok("2", "via a form")
            assert sent["receiver_id"] == 2, "receiver_id in message_sent is an integer"
            got = await bob.next("chat_message", pred=lambda f: f.get("id") == sent["id"])
            assert got["sender_id"] == 1 and got["message"] == "via a form"
    run(go())


def test_reply_in_both_directions_and_unicode(cluster):
    t_alice = cluster.issue_token(1)
    t_bob = cluster.issue_token(2)
    text = "h\u00e9llo \u4e16\u754c \U0001F600 \"quoted\" back\\slash\nnewline"

    async def go():
        async with Clients() as cs:
            alice = await cs.connect(cluster.url("chat", t_alice), "alice")
            bob = await cs.connect(cluster.url("chat", t_bob), "bob")
            sent = await bob.send_ok(1, text)
            got = await alice.next("chat_message", pred=lambda f: f.get("id") == sent["id"])
            assert got["sender_id"] == 2 and got["sender_name"] == "Bob"
            assert got["message"] == text
            assert sent["receiver_id"] == 1
    run(go())


def test_services_exit_cleanly_on_sigterm(cluster):
    """Keep last: stops the module's services. SPEC: every service exits cleanly on
    SIGTERM (status 0, well before the harness's SIGKILL at 5 s)."""
    for proc in (cluster.gateway, cluster.chat, cluster.auth):
        t = time.monotonic()
        status = proc.stop()
        took = time.monotonic() - t
        assert status == 0, f"{proc.name} exited with {status} after SIGTERM ({took:.1f}s)"
        assert took < sb.STOP_GRACE, f"{proc.name} took {took:.1f}s to stop"
