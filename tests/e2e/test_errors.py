"""Bad input on the client protocol (SPEC section 2): every error sentence, the close
codes, and every way a handshake is refused.

After each bad frame the same connection must still work: a good message sent next gets
its message_sent.
"""

import asyncio
import json
import time

import pytest

import sb
from sb import Clients, RawWS, run

ALLOWED = ["http://good.example", "http://also.example:3000"]
CLUSTER_OPTIONS = {"gateway_args": ["--allowed-origins", ",".join(ALLOWED)]}

BAD_JSON = "invalid JSON"
NOT_OBJECT = "message must be a JSON object"
RID_REQUIRED = "receiver_id is required"
RID_POSITIVE = "receiver_id must be a positive integer"
MSG_REQUIRED = "message is required"
MSG_STRING = "message must be a string"
MSG_EMPTY = "message must not be empty"
MSG_LONG = "message is too long"
BAD_ATTACHMENT = "attachment must be an http(s) URL or null"
BINARY = "binary frames are not supported"
UNKNOWN = "unknown receiver"
NOTIFY_RO = "notification sockets do not accept messages"


def frame(**kw):
    return json.dumps(kw, ensure_ascii=False)


def rid(v):
    return frame(receiver_id=v, message="hi")


def msg(v):
    return frame(receiver_id=2, message=v)


def att(v):
    return frame(receiver_id=2, message="hi", attachment=v)


# (case id, text frame -- or bytes for a binary frame, expected error sentence)
CASES = [
    ("json-truncated", '{"receiver_id": 2,', BAD_JSON),
    ("json-garbage", "not json at all", BAD_JSON),
    ("json-unquoted-keys", "{receiver_id: 2, message: 'x'}", BAD_JSON),
    ("json-trailing-garbage", '{"receiver_id": 2, "message": "x"} extra', BAD_JSON),
    ("json-empty-frame", "", BAD_JSON),
    ("not-object-array", "[1]", NOT_OBJECT),
    ("not-object-string", '"x"', NOT_OBJECT),
    ("not-object-number", "3", NOT_OBJECT),
    ("not-object-null", "null", NOT_OBJECT),
    ("not-object-true", "true", NOT_OBJECT),
    ("rid-missing", frame(message="hi"), RID_REQUIRED),
    ("rid-null", rid(None), RID_REQUIRED),
    ("rid-zero", rid(0), RID_POSITIVE),
    ("rid-negative", rid(-1), RID_POSITIVE),
    ("rid-float", rid(1.5), RID_POSITIVE),
    ("rid-abc", rid("abc"), RID_POSITIVE),
    ("rid-12a", rid("12a"), RID_POSITIVE),
    ("rid-string-zero", rid("0"), RID_POSITIVE),
    ("rid-string-negative", rid("-2"), RID_POSITIVE),
    ("rid-string-float", rid("1.5"), RID_POSITIVE),
    ("rid-true", rid(True), RID_POSITIVE),
    ("rid-object", rid({}), RID_POSITIVE),
    ("rid-array", rid([2]), RID_POSITIVE),
    ("msg-missing", frame(receiver_id=2), MSG_REQUIRED),
    ("msg-int", msg(123), MSG_STRING),
    ("msg-null", msg(None), MSG_STRING),
    ("msg-array", msg([]), MSG_STRING),
    ("msg-object", msg({"a": 1}), MSG_STRING),
    ("msg-bool", msg(True), MSG_STRING),
    ("msg-empty", msg(""), MSG_EMPTY),
    ("msg-spaces", msg("   "), MSG_EMPTY),
    ("msg-whitespace", msg(" \t\r\n "), MSG_EMPTY),
    ("msg-4097-ascii", msg("a" * 4097), MSG_LONG),
    ("msg-4097-2byte", msg("\u00e9" * 4097), MSG_LONG),
    ("msg-4097-4byte", msg("\U0001F600" * 4097), MSG_LONG),
    ("msg-60000-bytes", msg("a" * 60000), MSG_LONG),
    ("att-ftp", att("ftp://x"), BAD_ATTACHMENT),
    ("att-javascript", att("javascript:alert(1)"), BAD_ATTACHMENT),
    ("att-number", att(5), BAD_ATTACHMENT),
    ("att-empty", att(""), BAD_ATTACHMENT),
    ("att-relative", att("/files/a.pdf"), BAD_ATTACHMENT),
    ("att-no-colon", att("http//example.com"), BAD_ATTACHMENT),
    ("att-data", att("data:text/html,<script>alert(1)</script>"), BAD_ATTACHMENT),
    ("att-object", att({"url": "http://x"}), BAD_ATTACHMENT),
    ("att-array", att(["http://x"]), BAD_ATTACHMENT),
    ("att-bool", att(True), BAD_ATTACHMENT),
    ("binary", b'{"receiver_id": 2, "message": "hi"}', BINARY),
    ("unknown-receiver", rid(999999), UNKNOWN),
    ("unknown-receiver-string", rid("999998"), UNKNOWN),
]


@pytest.fixture(scope="module")
def alice_token(cluster):
    return cluster.issue_token(1)


async def send_bad_then_good(ws, payload, sentence, n):
    await ws.send_raw(payload)
    r = await ws.reply(timeout=5)
    assert r == {"type": "error", "error": sentence} or (
        r.get("type") == "error" and r.get("error") == sentence), \
        f"sent {payload[:80]!r}: expected error {sentence!r}, got {r}"
    ok = await ws.send_chat(2, f"good after bad #{n}")
    assert ok.get("type") == "message_sent", f"connection unusable after {payload[:80]!r}: {ok}"
    assert sb.is_pos_int(ok["id"]) and ok["receiver_id"] == 2


@pytest.mark.parametrize("payload,sentence", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_sentence(cluster, alice_token, payload, sentence):
    async def go():
        async with Clients() as cs:
            ws = await cs.connect(cluster.url("chat", alice_token), "alice")
            await send_bad_then_good(ws, payload, sentence, 1)
    run(go())


def test_all_errors_on_one_connection(cluster, alice_token):
    async def go():
        async with Clients() as cs:
            ws = await cs.connect(cluster.url("chat", alice_token), "alice")
            for n, (_, payload, sentence) in enumerate(CASES):
                await send_bad_then_good(ws, payload, sentence, n)
    run(go(), timeout=60)


@pytest.mark.parametrize("text", [
    "a" * 4096,
    "\u00e9" * 4096,
    "\U0001F600" * 4096,
    "x" + " " * 4094 + "y",
], ids=["4096-ascii", "4096-2byte", "4096-4byte", "4096-inner-spaces"])
def test_message_at_limit_is_delivered_intact(cluster, alice_token, text):
    bob_token = cluster.issue_token(2)

    async def go():
        async with Clients() as cs:
            alice = await cs.connect(cluster.url("chat", alice_token), "alice")
            bob = await cs.connect(cluster.url("chat", bob_token), "bob")
            sent = await alice.send_ok(2, text)
            got = await bob.next("chat_message", pred=lambda f: f.get("id") == sent["id"])
            assert got["message"] == text
    run(go())


def test_escaped_surrogate_pairs_count_as_one_character(cluster, alice_token):
    """4096 emoji written as JSON \\ud83d\\ude00 escapes: 4096 code points, so accepted."""
    async def go():
        async with Clients() as cs:
            ws = await cs.connect(cluster.url("chat", alice_token), "alice")
            payload = json.dumps({"receiver_id": 2, "message": "\U0001F600" * 4096},
                                 ensure_ascii=True)
            assert "\\ud83d\\ude00" in payload
            await ws.send_raw(payload)
            r = await ws.reply()
            assert r.get("type") == "message_sent", r
    run(go())


# ---------------------------------------------------------------- frame-level limits

def raw_chat(cluster, token, **kw):
    ws = RawWS(cluster.port, f"/ws/chat/?token={token}", **kw)
    assert ws.status == 101, f"handshake status {ws.status}"
    return ws


def padded_frame(size):
    """A JSON chat frame of exactly `size` bytes (an over-long message)."""
    head, tail = '{"receiver_id":2,"message":"', '"}'
    return (head + "a" * (size - len(head) - len(tail)) + tail).encode()


def test_oversized_frame_closes_1009(cluster, alice_token):
    ws = raw_chat(cluster, alice_token)
    try:
        ws.send_text(padded_frame(70000))
        code, frames = ws.wait_close(timeout=5)
        assert code == 1009, f"expected close 1009, got {code} (frames before: {frames})"
    finally:
        ws.close()


def test_frame_one_byte_over_limit_closes_1009(cluster, alice_token):
    ws = raw_chat(cluster, alice_token)
    try:
        ws.send_text(padded_frame(65537))
        code, frames = ws.wait_close(timeout=5)
        assert code == 1009, f"expected close 1009, got {code} (frames before: {frames})"
    finally:
        ws.close()


def test_frame_exactly_at_limit_is_not_closed(cluster, alice_token):
    ws = raw_chat(cluster, alice_token)
    try:
        ws.send_text(padded_frame(65536))
        r = ws.recv_json(timeout=5)
        assert r == {"type": "error", "error": MSG_LONG}, r
        ws.send_text(json.dumps({"receiver_id": 2, "message": "still here"}))
        r = ws.recv_json(timeout=5)
        assert r.get("type") == "message_sent", r
    finally:
        ws.close()


@pytest.mark.parametrize("payload", [
    b"\xff\xfe\xfd",
    b'{"receiver_id": 2, "message": "\xc3\x28"}',
    b'{"receiver_id": 2, "message": "overlong \xc0\xaf"}',
    b'{"receiver_id": 2, "message": "surrogate \xed\xa0\x80"}',
    b'{"receiver_id": 2, "message": "truncated \xe2\x82',
    b'{"receiver_id": 2, "message": "beyond U+10FFFF \xf4\x90\x80\x80"}',
], ids=["garbage", "bad-continuation", "overlong", "surrogate", "truncated", "too-big"])
def test_invalid_utf8_closes_1007(cluster, alice_token, payload):
    ws = raw_chat(cluster, alice_token)
    try:
        ws.send_text(payload)
        code, frames = ws.wait_close(timeout=5)
        assert code == 1007, f"expected close 1007, got {code} (frames before: {frames})"
    finally:
        ws.close()


def test_raw_client_sanity(cluster, alice_token):
    """The raw client itself works (so the close-code tests above mean something)."""
    ws = raw_chat(cluster, alice_token)
    try:
        ws.send_text(json.dumps({"receiver_id": 2, "message": "raw hello \u00e9"}))
        r = ws.recv_json(timeout=5)
        assert r.get("type") == "message_sent", r
    finally:
        ws.close()


# ---------------------------------------------------------------- refused handshakes

def status(cluster, kind, token, slash=True, origin=None):
    """The HTTP status of the handshake, read on a raw socket (101 = upgraded)."""
    path = f"/ws/{kind}/" if slash else f"/ws/{kind}"
    if token is not None:
        path += f"?token={token}"
    ws = RawWS(cluster.port, path, origin=origin)
    ws.close()
    return ws.status


def test_refusal_is_seen_as_403_by_a_websocket_library(cluster, alice_token):
    """A stock client library must see the 403: the refusal has to be a well-formed
    HTTP/1.1 response (websockets, like browsers' dev tools, reports its status)."""
    for url, origin in [(cluster.url("chat", "unknown-token"), None),
                        (cluster.url("chat", None), None),
                        (cluster.url("notifications", ""), None),
                        (cluster.url("chat", alice_token), "http://evil.example")]:
        got = run(sb.handshake_status(url, origin=origin))
        assert got == 403, f"{url} origin={origin}: websockets client saw {got}"


@pytest.mark.parametrize("kind", ["chat", "notifications"])
@pytest.mark.parametrize("slash", [True, False], ids=["slash", "noslash"])
def test_missing_and_bad_tokens_403(cluster, kind, slash):
    assert status(cluster, kind, None, slash) == 403, "no token"
    assert status(cluster, kind, "", slash) == 403, "empty token"
    assert status(cluster, kind, "0123456789abcdef0123456789abcdef", slash) == 403, "unknown"
    assert status(cluster, kind, "x" * 300, slash) == 403, "long unknown"


def test_valid_token_is_accepted_on_every_path(cluster, alice_token):
    for kind in ("chat", "notifications"):
        for slash in (True, False):
            assert status(cluster, kind, alice_token, slash) == 101, (kind, slash)


def test_chat_without_trailing_slash_works(cluster, alice_token):
    async def go():
        async with Clients() as cs:
            ws = await cs.connect(cluster.url("chat", alice_token, slash=False), "alice")
            await ws.send_ok(2, "no slash")
    run(go())


def test_unknown_path_is_not_upgraded(cluster, alice_token):
    for path in ("/ws/other/", "/ws/chat/x/", "/ws/", "/"):
        ws = RawWS(cluster.port, f"{path}?token={alice_token}")
        ws.close()
        assert ws.status != 101, f"{path} was upgraded"


def test_revoked_token_403(cluster):
    u = cluster.new_user("Revokee")
    other = cluster.issue_token(u.id)
    assert status(cluster, "chat", u.token) == 101
    cluster.revoke_token(u.token)
    assert status(cluster, "chat", u.token) == 403
    assert status(cluster, "notifications", u.token) == 403
    assert status(cluster, "chat", other) == 101, "revoking one token revoked another"


def test_revoke_all_tokens_of_user_403(cluster):
    u = cluster.new_user("Revokee")
    second = cluster.issue_token(u.id)
    assert status(cluster, "chat", u.token) == 101
    assert status(cluster, "chat", second) == 101
    cluster.revoke_user(u.id)
    assert status(cluster, "chat", u.token) == 403
    assert status(cluster, "chat", second) == 403


def test_revocation_closes_live_sockets(cluster):
    """SPEC 3: auth.revoked makes every gateway close that token's sockets; sockets of
    the same user on another token stay open."""
    u = cluster.new_user("LiveRevoke")
    other = cluster.issue_token(u.id)

    async def go():
        async with Clients() as cs:
            w1 = await cs.connect(cluster.url("chat", u.token), "revoked-chat")
            w2 = await cs.connect(cluster.url("notifications", u.token), "revoked-notify")
            keep = await cs.connect(cluster.url("chat", other), "other-token")
            await asyncio.get_running_loop().run_in_executor(
                None, cluster.revoke_token, u.token)
            codes = [await w.wait_closed(timeout=3) for w in (w1, w2)]
            assert all(c is not None and c != 1000 for c in codes), codes
            await keep.send_ok(2, "my other token still works")
            await asyncio.get_running_loop().run_in_executor(None, cluster.revoke_user, u.id)
            await keep.wait_closed(timeout=3)
    run(go())


def test_expired_token_403(cluster):
    u = cluster.new_user("Shortlived")
    issued = time.monotonic()
    token = cluster.issue_token(u.id, ttl="2s")
    assert status(cluster, "chat", token) == 101, "a fresh --ttl 2s token must work"
    assert time.monotonic() - issued < 1.5, "too slow to check the fresh token"
    time.sleep(max(0.0, issued + 3.0 - time.monotonic()))
    assert status(cluster, "chat", token) == 403
    assert status(cluster, "notifications", token) == 403
    assert status(cluster, "chat", u.token) == 101, "expiry of one token hit another"


def test_removed_user_403(cluster):
    u = cluster.new_user("Leaver")
    assert status(cluster, "chat", u.token) == 101
    cluster.remove_user(u.id)
    assert status(cluster, "chat", u.token) == 403
    assert status(cluster, "notifications", u.token) == 403


def test_removed_user_is_unknown_receiver(cluster, alice_token):
    u = cluster.new_user("Gone")
    cluster.remove_user(u.id)

    async def go():
        async with Clients() as cs:
            ws = await cs.connect(cluster.url("chat", alice_token), "alice")
            await send_bad_then_good(ws, rid(u.id), UNKNOWN, 1)
    run(go())


# ---------------------------------------------------------------- origins

@pytest.mark.parametrize("origin", ALLOWED)
def test_allowed_origin_ok(cluster, alice_token, origin):
    assert status(cluster, "chat", alice_token, origin=origin) == 101
    assert status(cluster, "notifications", alice_token, origin=origin) == 101


def test_no_origin_ok(cluster, alice_token):
    assert status(cluster, "chat", alice_token, origin=None) == 101


@pytest.mark.parametrize("origin", [
    "http://evil.example",
    "https://good.example",             # scheme differs
    "http://good.example.evil.example",  # prefix match would let this in
    "http://also.example",               # port differs
    "null",
])
def test_bad_origin_403(cluster, alice_token, origin):
    assert status(cluster, "chat", alice_token, origin=origin) == 403
    assert status(cluster, "notifications", alice_token, origin=origin) == 403


def test_bad_origin_with_raw_client(cluster, alice_token):
    ws = RawWS(cluster.port, f"/ws/chat/?token={alice_token}", origin="http://evil.example")
    try:
        assert ws.status == 403
    finally:
        ws.close()


# ---------------------------------------------------------------- notification socket

@pytest.mark.skipif(not sb.built("notify-svc"),
                    reason="notify-svc is not built: without it the gateway closes "
                           "notification sockets with 1011 (backlog sync fails)")
def test_notification_socket_rejects_frames(cluster, alice_token):
    async def go():
        async with Clients() as cs:
            ws = await cs.connect(cluster.url("notifications", alice_token), "alice-notify")
            for payload in ("hello", json.dumps({"receiver_id": 2, "message": "x"}), "{}"):
                await ws.send_raw(payload)
                r = await ws.next("error", timeout=5)
                assert r.get("error") == NOTIFY_RO, r
            assert not ws.done, "notification socket was closed after a frame"
    run(go())


# ---------------------------------------------------------------- hygiene (keep last)

def test_tokens_never_logged(cluster):
    """SPEC: the token never appears in a log line (auth-svc runs at debug level here,
    and this module has used valid, revoked, expired and unknown tokens)."""
    secrets = set(cluster.tokens) | {"0123456789abcdef0123456789abcdef", "x" * 300}
    leaks = []
    for proc in cluster.procs:
        with open(proc.log_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        for t in secrets:
            tail = t[-24:]   # catches a token logged whole or cut at the front
            if tail in log:
                line = next(ln for ln in log.splitlines() if tail in ln)
                leaks.append(f"{proc.name}: {line[:200]}")
    assert len(cluster.tokens) > 5
    assert not leaks, "tokens found in logs:\n" + "\n".join(leaks[:10])
