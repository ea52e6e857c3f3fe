"""NATS accounts and permissions (issue #6): deploy/nats/switchboard-auth.conf, the very
file docker compose and Kubernetes use, on a live nats-server -js.

The whole stack runs with one NATS user per service (credentials in each service's NATS
URL, passwords in nats-server's environment): a chat message, a notification from an
outside system (the injector user) and from the operator (sbctl), a revocation, all end
to end, without the server logging a single permission violation. Then, with raw NATS
connections as each user, every publish and subscribe outside that user's part of the bus
contract is refused by the server (-ERR 'Permissions Violation ...'), what is allowed is
not, strangers and wrong passwords cannot log in, and notify-svc cannot be made to
publish an outcome onto an internal subject. Last: no password in any service log.
"""

import asyncio
import os
import secrets

import pytest

import faultlib
import sb
from faultlib import Bus, new_inbox
from sb import Clients, run

CONF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "nats",
                    "switchboard-auth.conf")
USERS = {   # NATS user -> the variable nats-server reads its password from
    "gateway": "SB_NATS_GATEWAY_PASSWORD",
    "auth-svc": "SB_NATS_AUTH_PASSWORD",
    "chat-svc": "SB_NATS_CHAT_PASSWORD",
    "notify-svc": "SB_NATS_NOTIFY_PASSWORD",
    "sbctl": "SB_NATS_SBCTL_PASSWORD",
    "injector": "SB_NATS_INJECTOR_PASSWORD",
}
INJECTOR_INBOX = "_INBOX.injector"


class PermCluster(sb.Cluster):
    """sb.Cluster on a nats-server that runs deploy/nats/switchboard-auth.conf, each
    service logging in as its own user. sbctl (and `nats_url`) use the operator user."""

    def __init__(self, name):
        super().__init__(name)
        self.passwords = {u: "pw" + secrets.token_hex(12) for u in USERS}

    def url_for(self, user, password=None):
        pw = self.passwords[user] if password is None else password
        return f"nats://{user}:{pw}@127.0.0.1:{self.nats_port}"

    @property
    def nats_url(self):
        return self.url_for("sbctl")

    def start(self):
        sb.Cluster.running.append(self)
        self.nats_port = faultlib.free_port()
        self.port = faultlib.free_port()
        env = sb.clean_env({v: self.passwords[u] for u, v in USERS.items()})
        self.nats = sb.Proc("nats-server", [
            sb.nats_server(), "-c", os.path.abspath(CONF), "-js", "-sd", self._mkdir("nats"),
            "-a", "127.0.0.1", "-p", str(self.nats_port)], self.dir, env=env)
        self.auth = sb.Proc("auth-svc", [
            sb.binary("auth-svc"), "--nats", self.url_for("auth-svc"),
            "--data-dir", self._mkdir("auth"), "--log-level", "debug"], self.dir)
        self.chat = sb.Proc("chat-svc", [
            sb.binary("chat-svc"), "--nats", self.url_for("chat-svc"),
            "--data-dir", self._mkdir("chat"), "--partitions", "1"], self.dir)
        self.notify = sb.Proc("notify-svc", [
            sb.binary("notify-svc"), "--nats", self.url_for("notify-svc"),
            "--data-dir", self._mkdir("notify")], self.dir) if sb.built("notify-svc") else None
        self.gateway = sb.Proc("gateway", [
            sb.binary("gateway"), "--nats", self.url_for("gateway"),
            "--listen", f"127.0.0.1:{self.port}"], self.dir)
        self.procs = [p for p in (self.nats, self.auth, self.chat, self.notify, self.gateway)
                      if p]
        self.nats.start()
        sb.wait_tcp(self.nats_port, proc=self.nats)
        services = [p for p in (self.auth, self.chat, self.notify) if p]
        for p in services:
            p.start()
        self._wait_all_ready(services)
        self.gateway.start()
        self.gateway.wait_ready()
        sb.wait_http(self.port, "/readyz", 200, proc=self.gateway)


@pytest.fixture(scope="module")
def stack():
    c = PermCluster("nats-permissions")
    try:
        try:
            c.start()
            c.add_user(1, "Alice")
            c.add_user(2, "Bob")
        except Exception as e:
            c.failed = True
            pytest.fail(f"the stack did not start with per-service NATS users: {e}\n"
                        f"{c.log_tails()}")
        yield c
    finally:
        reports = c.stop()
    assert not reports, f"sanitizer reports: {reports}"


def violations(c):
    with open(c.nats.log_path, "rb") as f:
        return [ln for ln in f.read().decode("utf-8", "replace").splitlines()
                if "Violation" in ln]


# --------------------------------------------------------------------------- end to end

def test_everything_works_with_per_service_users(stack):
    ta, tb = stack.issue_token(1), stack.issue_token(2)
    tr = stack.issue_token(2)
    injector = Bus(stack.url_for("injector"), name="injector")

    async def go():
        loop = asyncio.get_running_loop()
        async with Clients() as cs:
            wa = await cs.connect(stack.url("chat", ta), "alice")
            wb = await cs.connect(stack.url("chat", tb), "bob")
            wn = await cs.connect(stack.url("notifications", tb), "bob-n")
            s = await wa.send_ok(2, "with permissions")
            got = await wb.next("chat_message", timeout=5)
            assert got["id"] == s["id"] and got["sender_id"] == 1

            # an outside system: a plain publish, the stream's ack and notify-svc's outcome
            inbox = new_inbox(INJECTOR_INBOX)
            sub = injector.subscribe(inbox)
            await loop.run_in_executor(None, injector.flush)
            ack = await loop.run_in_executor(None, lambda: injector.request(
                "notify.send.json", '{"user_id":2,"title":"t","message":"from outside"}',
                headers={"Sb-Reply": inbox}, inbox_prefix=INJECTOR_INBOX))
            assert ack.json().get("stream") == "NOTIFY", ack
            outcome = await loop.run_in_executor(None, sub.next, 8)
            assert outcome.json().get("ok") is True, outcome
            n = await wn.next("notify", timeout=8)
            assert n["message"] == "from outside"

            # the operator
            await loop.run_in_executor(None, lambda: stack.sbctl(
                "notify", "--user", "2", "--title", "op", "--message", "from sbctl"))
            n2 = await wn.next("notify", timeout=8)
            assert n2["message"] == "from sbctl"

            # a revocation reaches the gateway
            wr = await cs.connect(stack.url("chat", tr), "bob-revoked")
            await loop.run_in_executor(None, stack.revoke_token, tr)
            await wr.wait_closed(timeout=3)

            # a reconnect replays the backlog (chat.sync, notify.sync through the bus)
            await wb.close()   # bob away first: a message sent while his socket is
            await asyncio.sleep(0.2)   # still open is delivered live, not replayed
            s2 = await wa.send_ok(2, "while bob is away")
            wb2 = await cs.connect(stack.url("chat", tb), "bob-again")
            got2 = await wb2.next("chat_message", timeout=5,
                                  pred=lambda f: f["id"] == s2["id"])
            return got2
    try:
        run(go(), timeout=60)
    finally:
        injector.close()
    assert not injector.errors, injector.errors
    v = violations(stack)
    assert not v, "nats-server refused something the services needed:\n" + "\n".join(v[:10])


# --------------------------------------------------------------------------- refusals

FORBIDDEN = {
    "gateway": {
        "pub": ["deliver.chat.2", "deliver.notify.2", "deliver.notify.all", "notify.send",
                "notify.send.json", "auth.admin", "auth.lookup", "auth.revoked",
                "$JS.API.STREAM.INFO.NOTIFY", "_INBOX.someone.1", "chat.send", "x"],
        "sub": ["auth.verify", "chat.send.0", "auth.admin", "notify.send.json", ">",
                "deliver.>", "$JS.API.>", "notify.sync"],
    },
    "auth-svc": {
        "pub": ["deliver.chat.2", "auth.admin", "auth.verify", "chat.send.0",
                "notify.send.json", "_INBOX.gwx.1", "deliver.notify.all"],
        "sub": ["_INBOX.>", "deliver.chat.*", "chat.send.0", ">", "auth.revoked"],
    },
    "chat-svc": {
        "pub": ["deliver.notify.2", "auth.admin", "auth.revoked", "notify.send.json",
                "chat.send.0", "$JS.API.INFO", "_INBOX.gwx.1", "auth.verify"],
        "sub": ["deliver.chat.*", "auth.verify", "notify.sync", ">", "auth.admin"],
    },
    "notify-svc": {
        "pub": ["deliver.chat.2", "auth.revoked", "auth.admin", "chat.send.0",
                "notify.send.json", "notify.send", "auth.verify"],
        "sub": ["deliver.>", "chat.send.0", "auth.verify", ">", "notify.send.json"],
    },
    "sbctl": {
        "pub": ["deliver.chat.2", "deliver.notify.all", "auth.revoked", "chat.send.0",
                "chat.sync.0", "$JS.API.STREAM.DELETE.NOTIFY", "$JS.API.STREAM.PURGE.NOTIFY",
                "$JS.API.CONSUMER.DELETE.NOTIFY.notify-svc", "_INBOX.gwx.1"],
        "sub": ["deliver.chat.*", "auth.verify", "chat.send.0", ">", "auth.admin"],
    },
    "injector": {
        "pub": ["deliver.notify.all", "deliver.notify.2", "deliver.chat.2", "auth.admin",
                "auth.verify", "auth.revoked", "chat.send.0", "notify.sync",
                "$JS.API.STREAM.DELETE.NOTIFY", "$JS.API.STREAM.PURGE.NOTIFY",
                "$JS.API.STREAM.INFO.NOTIFY", "_INBOX.gwx.1"],
        "sub": ["_INBOX.>", "_INBOX.gwx.*", "deliver.>", ">", "notify.send.json",
                "auth.revoked"],
    },
}
ALLOWED = {
    "gateway": {"pub": ["auth.verify", "chat.delivered.0", "notify.delivered"],
                "sub": ["deliver.chat.2", "deliver.notify.all", "auth.revoked", "_INBOX.gwz.*"]},
    "auth-svc": {"pub": ["auth.revoked"], "sub": ["auth.verify", "auth.admin"]},
    "chat-svc": {"pub": ["deliver.chat.99"], "sub": ["chat.send.0", "_INBOX.cz.*"]},
    "notify-svc": {"pub": ["deliver.notify.99", "_INBOX.nz.1"],
                   "sub": ["notify.sync", "_INBOX.nz.*"]},
    "sbctl": {"pub": ["notify.send.json", "auth.lookup"], "sub": ["_INBOX.sz.*"]},
    "injector": {"pub": ["notify.send.json", "notify.send"],
                 "sub": [INJECTOR_INBOX + ".abc.*"]},
}


@pytest.mark.parametrize("user", list(USERS))
def test_each_user_is_limited_to_its_subjects(stack, user):
    bus = Bus(stack.url_for(user), name=f"probe-{user}")
    try:
        for subj in ALLOWED[user]["sub"]:
            bus.subscribe(subj)
        for subj in ALLOWED[user]["pub"]:
            # junk payloads: services ignore (and log) what they cannot decode
            bus.publish(subj, b"")
        bus.flush()
        assert not bus.errors, f"{user}: refused what it needs: {bus.errors}"
        for subj in FORBIDDEN[user]["pub"]:
            bus.publish(subj, b"{}")
        for subj in FORBIDDEN[user]["sub"]:
            bus.subscribe(subj)
        bus.flush()
        want = [f'Permissions Violation for Publish to "{s}"' for s in FORBIDDEN[user]["pub"]]
        want += [f'Permissions Violation for Subscription to "{s}"'
                 for s in FORBIDDEN[user]["sub"]]
        missing = [w for w in want if bus.wait_error(lambda e, w=w: w in e, 2.0) is None]
        assert not missing, f"{user}: the server did not refuse:\n" + "\n".join(missing) + \
            f"\n(errors it sent: {bus.errors})"
        assert not bus.closed, f"{user}: connection closed after the refusals"
    finally:
        bus.close()


def test_strangers_and_wrong_passwords_are_refused(stack):
    for url in (f"nats://127.0.0.1:{stack.nats_port}",
                stack.url_for("gateway", password="not-the-password"),
                stack.url_for("injector", password=stack.passwords["gateway"]),
                f"nats://admin:admin@127.0.0.1:{stack.nats_port}"):
        try:
            b = Bus(url, timeout=3)
        except AssertionError as e:
            assert "Authorization Violation" in str(e) or "no PONG" in str(e), str(e)
            continue
        b.close()
        raise AssertionError(f"logged in: {url.split('@')[0].rsplit(':', 1)[0]}")


def test_injector_cannot_steer_outcomes_onto_internal_subjects(stack):
    """Sb-Reply names where notify-svc publishes an outcome: pointing it at an internal
    subject must not make notify-svc publish there."""
    spy = Bus(stack.url_for("gateway"), name="spy")
    injector = Bus(stack.url_for("injector"), name="injector")
    try:
        watch = [spy.subscribe(s) for s in ("deliver.chat.2", "auth.revoked", "deliver.notify.2")]
        spy.flush()
        for target in ("deliver.chat.2", "auth.revoked", "chat.send.0", "auth.admin"):
            injector.publish("notify.send.json", '{"user_id":2,"message":"deputy"}',
                             headers={"Sb-Reply": target})
        injector.flush()
        # the notifications themselves are delivered (deliver.notify.2): wait for them
        got = []
        for _ in range(4):
            try:
                got.append(watch[2].next(8))
            except AssertionError:
                break
        stray = watch[0].take_all() + watch[1].take_all()
        assert len(got) == 4, f"the 4 notifications were not all delivered: {got}"
        assert not stray, f"notify-svc published outcomes on internal subjects: {stray}"
    finally:
        spy.close()
        injector.close()


def test_zz_no_password_in_any_log(stack):
    leaks = []
    for proc in stack.procs:
        with open(proc.log_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        for user, pw in stack.passwords.items():
            if pw in log:
                line = next(ln for ln in log.splitlines() if pw in ln)
                leaks.append(f"{proc.name} logs {user}'s NATS password: {line[:220]}")
    assert not leaks, "\n".join(leaks)
