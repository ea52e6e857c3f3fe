"""Security and isolation (issue #6): a logged-in user cannot read or inject another
user's messages, spoof who they are, steer the gateway onto other users' delivery
subjects or onto internal subjects through anything a client controls (frame fields, the
URL, the token); revoked tokens lose their live sockets within a second; HS256 JWTs
(simplejwt's shape) are accepted only when well signed, unexpired and for a real user;
no token ever reaches a log.

A spy subscribed to every subject (">") on the bus records what the module's traffic
publishes; the last test checks that nothing was published on a subject outside the bus
contract, and no delivery subject of a user nobody legitimately wrote to.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time

import pytest

import faultlib
import sb
from faultlib import Bus, Raw, handshake_status
from sb import Clients, run

SECRET = "e2e-isolation-secret-2b7f0c1d"
CLUSTER_OPTIONS = {"auth_args": ["--jwt-secret", SECRET]}
RID_POSITIVE = "receiver_id must be a positive integer"
UNKNOWN = "unknown receiver"
BAD_JSON = "invalid JSON"     # jansson refuses NUL in strings and integers over 2^63-1

LEGIT_RECEIVERS = set()   # users someone legitimately wrote to in this module
EXTRA_SECRETS = set()     # tokens minted here (JWTs, junk) that must never be logged



@pytest.fixture(scope="module", autouse=True)
def _fresh_ports():
    """Before the module's cluster: ports that cannot collide (faultlib.free_port)."""
    with faultlib.fresh_ports():
        yield

@pytest.fixture(scope="module")
def spy(cluster):
    bus = Bus(cluster.nats_url, name="spy")
    sub = bus.subscribe(">")
    bus.flush()
    yield sub
    bus.close()


@pytest.fixture(scope="module")
def trio(cluster, spy):
    """Alice-like sender, a receiver and a bystander victim, fresh, all connected later."""
    return cluster.new_users(3, "Iso")


async def quiet(ws, seconds=0.6):
    await asyncio.sleep(seconds)
    return [f for f in ws.seen if f.get("type") in ("chat_message", "notify")]


# --------------------------------------------------------------------------- frames

def test_spoofed_sender_fields_are_ignored(cluster, trio):
    a, b, victim = trio
    LEGIT_RECEIVERS.add(b.id)

    async def go():
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token), "a")
            wb = await cs.connect(cluster.url("chat", b.token), "b")
            wv = await cs.connect(cluster.url("chat", victim.token), "victim")
            await wa.send_json({"receiver_id": b.id, "message": "who am I?",
                                "sender_id": victim.id, "sender_name": "Administrator",
                                "id": 1, "type": "chat_message", "user_id": victim.id,
                                "timestamp": "2000-01-01T00:00:00Z", "attachment": None})
            sent = await wa.reply()
            assert sent.get("type") == "message_sent", sent
            got = await wb.next("chat_message", timeout=5)
            return sent, got, await quiet(wv), await quiet(wa, 0.1)

    sent, got, victim_saw, a_saw = run(go())
    assert got["sender_id"] == a.id and got["sender_name"] == a.name, \
        f"the receiver was told the message came from {got['sender_id']} {got['sender_name']!r}"
    assert got["id"] == sent["id"] and got["message"] == "who am I?"
    sb.check_timestamp(got["timestamp"])
    assert not victim_saw and not a_saw, (victim_saw, a_saw)


BAD_RECEIVERS = ["*", ">", "2.*", "2.>", "deliver.chat.2", "deliver.chat.*", "chat.send.0",
                 "_INBOX.x", "2 ", " 2", "2\n", "+2", "0x2", "1e3", "2.0", "２", "٢",
                 "2\u0000", "-0", "", 2.5, 1e300, -(2 ** 63), [2], {"id": 2}, True,
                 "99999999999999999999999999", "18446744073709551616",
                 "18446744073709551615", 2 ** 64, 2 ** 63, "9223372036854775808"]


def test_receiver_id_cannot_name_a_subject_or_overflow(cluster, trio, spy):
    a, b, victim = trio

    async def go():
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token), "a")
            wv = await cs.connect(cluster.url("chat", victim.token), "victim")
            out = []
            for rid in BAD_RECEIVERS:
                raw = json.dumps({"receiver_id": rid, "message": "x"}, ensure_ascii=False)
                if isinstance(rid, int) and not isinstance(rid, bool) and abs(rid) >= 2 ** 63:
                    raw = '{"receiver_id": %d, "message": "x"}' % rid
                await wa.send_raw(raw)
                out.append((rid, await wa.reply(timeout=5)))
            ok = await wa.send_chat(b.id, "still fine")
            return out, await quiet(wv), ok

    out, victim_saw, ok = run(go(), timeout=60)
    bad = [(rid, r) for rid, r in out
           if r.get("type") != "error" or r.get("error") not in (RID_POSITIVE, UNKNOWN, BAD_JSON)]
    assert not bad, f"receiver_id values that were not refused: {bad}"
    assert ok.get("type") == "message_sent"
    assert not victim_saw, f"the victim received {victim_saw}"


def test_wildcards_and_protocol_text_in_message_and_attachment_are_plain_text(cluster, trio):
    a, b, victim = trio
    nasty = "deliver.chat.%d > * \r\nPUB deliver.chat.%d 5\r\nhello\r\n" % (victim.id, victim.id)
    attachment = "https://example.com/deliver.chat.*/>?x=%d" % victim.id

    async def go():
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", a.token), "a")
            wb = await cs.connect(cluster.url("chat", b.token), "b")
            wv = await cs.connect(cluster.url("chat", victim.token), "victim")
            s = await wa.send_ok(b.id, nasty, attachment)
            got = await wb.next("chat_message", timeout=5, pred=lambda f: f["id"] == s["id"])
            return s, got, await quiet(wv)

    s, got, victim_saw = run(go())
    assert got["id"] == s["id"] and got["message"] == nasty and got["attachment"] == attachment
    assert not victim_saw, f"the victim received {victim_saw}"


# --------------------------------------------------------------------------- the URL

def status(port, path):
    """The handshake's HTTP status, or "closed" when the gateway hung up without one
    (an over-long request line, for instance)."""
    try:
        return handshake_status(port, path)
    except (AssertionError, ConnectionResetError):
        return "closed"


def test_url_tricks_never_change_who_you_are(cluster, trio):
    """Whatever the URL, a socket is the token's user or nobody."""
    a, b, victim = trio
    junk = ["*", ">", "deliver.chat.%d" % victim.id, "..", "%00", a.token + "%00",
            a.token + "*", a.token + ".>", "x" * 5000]
    EXTRA_SECRETS.update(j for j in junk if len(j) > 20)
    refused = {f"/ws/chat/?token={j[:40]}": status(cluster.port, f"/ws/chat/?token={j}")
               for j in junk}
    refused["/ws/chat/?user_id=%d" % victim.id] = status(
        cluster.port, "/ws/chat/?user_id=%d" % victim.id)
    refused["/ws/chat/%d/?token=A" % victim.id] = status(
        cluster.port, f"/ws/chat/{victim.id}/?token={a.token}")
    refused["/ws/deliver.chat.%d/?token=A" % victim.id] = status(
        cluster.port, f"/ws/deliver.chat.{victim.id}/?token={a.token}")
    wrong = {p: s for p, s in refused.items() if s == 101}
    assert not wrong, f"upgraded: {wrong}"
    assert all(s in (400, 403, 404, 414, 431, "closed") for s in refused.values()), refused

    # Accepted variants must still be Alice, and only Alice.
    variants = [f"/ws/chat/?token={a.token}&user_id={victim.id}",
                f"/ws/chat/?user_id={victim.id}&token={a.token}",
                f"/ws/chat/?token={a.token}&sender_id={victim.id}",
                f"/ws/chat/?token={a.token}&token={victim.token}",
                f"/ws/chat/?token={victim.token}&token={a.token}"]
    who = {}
    for path in variants:
        w = Raw(cluster.port, path)
        try:
            if w.status != 101:
                who[path] = w.status
                continue
            w.send_text(json.dumps({"receiver_id": b.id, "message": path}))
            r = w.recv_json(timeout=5)
            assert r.get("type") == "message_sent", (path, r)
            who[path] = r["id"]
        finally:
            w.close()
    LEGIT_RECEIVERS.add(b.id)

    async def check():
        async with Clients() as cs:
            wb = await cs.connect(cluster.url("chat", b.token), "b")
            await asyncio.sleep(0.8)
            return {f["message"]: f for f in wb.seen if f.get("type") == "chat_message"}
    seen = run(check())
    for path, v in who.items():
        if not isinstance(v, int) or v in (400, 403, 404):
            continue
        f = seen.get(path)
        assert f and f["id"] == v, f"{path}: message not delivered ({v})"
        # two tokens in one URL: either one, never a mixture
        expect = {a.id, victim.id} if "token=" + victim.token in path else {a.id}
        assert f["sender_id"] in expect, f"{path}: delivered as sender {f['sender_id']}"


# --------------------------------------------------------------------------- tokens

def test_revocation_closes_live_sockets_within_a_second(cluster):
    u = cluster.new_user("Revoked")
    keep = cluster.issue_token(u.id)
    port2 = faultlib.start_gateway(cluster)[1]

    async def go():
        loop = asyncio.get_running_loop()
        async with Clients() as cs:
            socks = [await cs.connect(cluster.url(k, u.token, port=p), f"{k}@{p}")
                     for k in ("chat", "notifications") for p in (cluster.port, port2)]
            other = await cs.connect(cluster.url("chat", keep, port=port2), "other-token")
            await asyncio.sleep(0.3)
            t0 = loop.time()
            await loop.run_in_executor(None, cluster.revoke_token, u.token)
            t_cli = loop.time() - t0
            closed_at = []
            for s in socks:
                code = await s.wait_closed(timeout=5)
                closed_at.append((loop.time() - t0, code))
            LEGIT_RECEIVERS.add(1)
            await other.send_ok(1, "other token still works")
            return t_cli, closed_at

    t_cli, closed_at = run(go())
    worst = max(t for t, _ in closed_at)
    sb.note(f"isolation/revocation: sbctl token revoke took {t_cli * 1000:.0f} ms; 4 live "
            f"sockets on 2 gateways closed {worst * 1000:.0f} ms after it started "
            f"(codes {sorted({c for _, c in closed_at})})")
    assert all(c not in (None, 1000) for _, c in closed_at), closed_at
    assert worst < t_cli + 1.0, f"sockets closed {worst:.2f}s after revoking: {closed_at}"


def b64u(data):
    if isinstance(data, (dict, list)):
        data = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims, secret=SECRET, header=None, sig=None):
    h = b64u(header or {"alg": "HS256", "typ": "JWT"})
    p = b64u(claims)
    signing = f"{h}.{p}".encode()
    s = sig if sig is not None else b64u(hmac.new(secret.encode(), signing,
                                                  hashlib.sha256).digest())
    token = f"{h}.{p}.{s}"
    EXTRA_SECRETS.add(token)
    return token


def claims(uid=1, ttl=300, **kw):
    now = int(time.time())
    c = {"token_type": "access", "exp": now + ttl, "iat": now, "jti": "e2e%x" % now,
         "user_id": uid}
    c.update(kw)
    return c


def test_simplejwt_token_is_accepted(cluster):
    t = jwt(claims(1))

    async def go():
        async with Clients() as cs:
            wa = await cs.connect(cluster.url("chat", t), "alice-jwt")
            wb = await cs.connect(cluster.url("chat", cluster.issue_token(2)), "bob")
            s = await wa.send_ok(2, "signed by Django")
            got = await wb.next("chat_message", pred=lambda f: f.get("id") == s["id"])
            n = await cs.connect(cluster.url("notifications", t), "alice-jwt-n")
            return got, n.done
    LEGIT_RECEIVERS.add(2)
    got, closed = run(go())
    assert got["sender_id"] == 1 and got["sender_name"] == "Alice", got
    assert not closed


@pytest.mark.parametrize("case", [
    "alg-none", "alg-none-with-sig", "alg-hs512", "alg-lowercase", "wrong-secret",
    "empty-secret", "expired", "refresh-token", "unknown-user", "user-wildcard",
    "user-subject", "user-negative", "user-zero", "user-huge", "exp-string", "no-exp",
    "no-user", "tampered-payload", "sig-of-other-token", "not-json",
])
def test_bad_jwts_are_403(cluster, case):
    now = int(time.time())
    good = jwt(claims(1))
    h, p, s = good.split(".")
    t = {
        "alg-none": lambda: jwt(claims(1), header={"alg": "none", "typ": "JWT"}, sig=""),
        "alg-none-with-sig": lambda: jwt(claims(1), header={"alg": "none", "typ": "JWT"}),
        "alg-hs512": lambda: jwt(claims(1), header={"alg": "HS512", "typ": "JWT"}),
        "alg-lowercase": lambda: jwt(claims(1), header={"alg": "hs256", "typ": "JWT"}),
        "wrong-secret": lambda: jwt(claims(1), secret=SECRET + "x"),
        "empty-secret": lambda: jwt(claims(1), secret=""),
        "expired": lambda: jwt(claims(1, ttl=-5)),
        "refresh-token": lambda: jwt(claims(1, token_type="refresh")),
        "unknown-user": lambda: jwt(claims(987654)),
        "user-wildcard": lambda: jwt(claims("*")),
        "user-subject": lambda: jwt(claims("1.>")),
        "user-negative": lambda: jwt(claims(-1)),
        "user-zero": lambda: jwt(claims(0)),
        "user-huge": lambda: jwt(claims(2 ** 64 + 1)),
        "exp-string": lambda: jwt(dict(claims(1), exp=str(now + 300))),
        "no-exp": lambda: jwt({k: v for k, v in claims(1).items() if k != "exp"}),
        "no-user": lambda: jwt({k: v for k, v in claims(1).items() if k != "user_id"}),
        "tampered-payload": lambda: f"{h}.{b64u(claims(2))}.{s}",
        "sig-of-other-token": lambda: f"{h}.{p}.{jwt(claims(2)).split('.')[2]}",
        "not-json": lambda: jwt(b"not json at all"),
    }[case]()
    EXTRA_SECRETS.add(t)
    for kind in ("chat", "notifications"):
        st = handshake_status(cluster.port, f"/ws/{kind}/?token={t}")
        assert st == 403, f"{case} on {kind}: {st}"


def test_jwts_disabled_without_a_secret(cluster):
    """Without --jwt-secret, even a well-signed token for a real user is refused."""
    c = sb.Cluster("isolation-nojwt")
    try:
        c.start()
        c.add_user(1, "Alice")
        t = jwt(claims(1))
        assert handshake_status(c.port, f"/ws/chat/?token={t}") == 403
        t2 = jwt(claims(1), secret="")
        assert handshake_status(c.port, f"/ws/chat/?token={t2}") == 403
    finally:
        reports = c.stop()
    assert not reports, reports


# --------------------------------------------------------------------------- keep last

def test_zz_bus_saw_no_subject_outside_the_contract(cluster, spy):
    if not LEGIT_RECEIVERS:
        pytest.skip("checks what the module's other tests published: run them with it")
    allowed = re.compile(
        r"^(auth\.(verify|lookup|admin|revoked)|chat\.(send|sync|delivered)\.0|"
        r"notify\.(sync|delivered|send|send\.json)|deliver\.notify\.(all|\d+)|"
        r"deliver\.chat\.\d+|_INBOX\.[A-Za-z0-9_.-]+|\$JS\.[A-Za-z0-9_.$-]+)$")
    msgs = spy.take_all()
    subjects = {}
    for m in msgs:
        subjects.setdefault(m.subject, 0)
        subjects[m.subject] += 1
    outside = sorted(s for s in subjects if not allowed.match(s))
    chat_to = {int(s.rsplit(".", 1)[1]) for s in subjects if s.startswith("deliver.chat.")}
    unexpected = sorted(chat_to - LEGIT_RECEIVERS)
    sb.note(f"isolation/bus spy: {len(msgs)} messages on {len(subjects)} subjects, none "
            f"outside the contract" if not outside and not unexpected else
            f"isolation/bus spy: outside={outside[:5]} unexpected deliveries={unexpected}")
    assert len(msgs) > 20, "the spy saw (almost) nothing: is it subscribed?"
    assert not outside, f"published on subjects outside the bus contract: {outside[:10]}"
    assert not unexpected, \
        f"deliveries to users nobody legitimately wrote to: {unexpected} (legit: " \
        f"{sorted(LEGIT_RECEIVERS)})"


def test_zz_tokens_never_logged(cluster):
    secrets = set(cluster.tokens) | EXTRA_SECRETS
    leaks = []
    for proc in cluster.procs:
        with open(proc.log_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        for t in secrets:
            for piece in {t[-24:], t.split(".")[-1][-24:]} - {""}:
                if len(piece) >= 16 and piece in log:
                    line = next(ln for ln in log.splitlines() if piece in ln)
                    leaks.append(f"{proc.name}: {line[:200]}")
        if SECRET in log:
            leaks.append(f"{proc.name}: the JWT secret")
    assert len(secrets) > 20
    assert not leaks, "tokens found in logs:\n" + "\n".join(leaks[:10])
