"""TLS (SPEC 2, "Production runs behind wss://"): the gateway terminates TLS itself with
--tls-cert/--tls-key. A throwaway self-signed certificate (openssl, in a temp dir) for
127.0.0.1; clients trust exactly that certificate. wss:// chat and notifications work,
https:// serves the operator endpoints, plain ws:// and http:// on the TLS port fail, a
client that does not trust the certificate fails, and the gateway shrugs all that off.
"""

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import tempfile

import pytest

import faultlib
import sb
from faultlib import Bus, publish_notification
from sb import Clients, run



@pytest.fixture(scope="module", autouse=True)
def _fresh_ports():
    """Before the module's cluster: ports that cannot collide (faultlib.free_port)."""
    with faultlib.fresh_ports():
        yield

@pytest.fixture(scope="module")
def cert():
    d = tempfile.mkdtemp(prefix="sb-e2e-tls-")
    crt, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    r = subprocess.run([
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        pytest.fail(f"openssl could not make a certificate: {r.stderr}")
    yield crt, key
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def ctx(cert):
    c = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cert[0])
    return c


@pytest.fixture(scope="module")
def tls_port(cluster, cert, ctx):
    proc, port = faultlib.start_gateway(cluster, "--tls-cert", cert[0], "--tls-key", cert[1],
                                        name="gateway-tls", tls_ctx=ctx)
    assert "tls=on" in proc.log_since_start(), "the gateway does not say it serves TLS"
    return port


def wss(cluster, kind, token, port):
    return cluster.url(kind, token, port=port).replace("ws://", "wss://", 1)


def test_wss_chat_and_notifications(cluster, tls_port, ctx):
    a, b = cluster.new_users(2, "Tls")
    bus = Bus(cluster.nats_url)

    async def go():
        async with Clients() as cs:
            wa = await cs.connect(wss(cluster, "chat", a.token, tls_port), "a", ssl=ctx)
            wb = await cs.connect(wss(cluster, "chat", b.token, tls_port), "b", ssl=ctx)
            wn = await cs.connect(wss(cluster, "notifications", b.token, tls_port), "b-n",
                                  ssl=ctx)
            s = await wa.send_ok(b.id, "over TLS \u00e9")
            got = await wb.next("chat_message", timeout=5)
            r = await wb.send_ok(a.id, "and back")
            back = await wa.next("chat_message", timeout=5)
            await asyncio.sleep(0.2)
            ack = await asyncio.get_running_loop().run_in_executor(
                None, publish_notification, bus, {"user_id": b.id, "title": "tls",
                                                  "message": "notified over TLS"})
            assert ack, "the stream did not acknowledge the notification"
            n = await wn.next("notify", timeout=10)
            return s, got, r, back, n
    try:
        s, got, r, back, n = run(go())
    finally:
        bus.close()
    assert got["id"] == s["id"] and got["message"] == "over TLS \u00e9"
    assert got["sender_id"] == a.id
    assert back["id"] == r["id"] and back["message"] == "and back"
    assert n["message"] == "notified over TLS"


def test_https_operator_endpoints(tls_port, ctx):
    for path in ("/healthz", "/readyz", "/metrics"):
        status, body = faultlib.https_get(tls_port, path, ctx)
        assert status == 200, f"https {path}: {status}"
    assert b"sb_gateway_connections" in faultlib.https_get(tls_port, "/metrics", ctx)[1]


def test_plain_ws_and_http_on_the_tls_port_fail(cluster, tls_port, ctx):
    u = cluster.new_user("Plain")
    got = run(sb.handshake_status(cluster.url("chat", u.token, port=tls_port)))
    assert got != 101, "a plain ws:// handshake was upgraded on the TLS port"
    try:
        status = sb.http_get(tls_port, "/healthz", timeout=3)[0]
    except (OSError, Exception) as e:   # http.client: BadStatusLine, reset, ...
        status = repr(e)
    assert status != 200, "plain http:// answered 200 on the TLS port"
    # raw garbage, a half handshake, then silence: the gateway keeps serving TLS
    for junk in (b"\x16\x03\x01\x00\x05hello", b"GET / HTTP/1.1\r\n\r\n", b"\x00" * 100):
        with socket.create_connection(("127.0.0.1", tls_port), timeout=3) as s:
            s.sendall(junk)
            s.settimeout(3)
            try:
                s.recv(100)
            except OSError:
                pass
    assert faultlib.https_get(tls_port, "/healthz", ctx)[0] == 200


def test_untrusted_certificate_is_refused_by_the_client(cluster, tls_port, ctx):
    """The certificate is what makes it TLS: a client with the system trust store (which
    does not know our throwaway CA) refuses the connection."""
    u = cluster.new_user("Untrusting")
    strict = ssl.create_default_context()

    async def go():
        try:
            ws = await sb.ws_connect(wss(cluster, "chat", u.token, tls_port), "strict",
                                     ssl=strict)
        except ssl.SSLCertVerificationError as e:
            return e
        except Exception as e:   # wrapped by websockets in some versions
            return e
        await ws.close()
        return None
    err = run(go())
    assert err is not None, "a client that does not trust the certificate got in"
    assert "certificate" in repr(err).lower(), repr(err)
    # and the gateway still serves trusted clients
    assert faultlib.https_get(tls_port, "/readyz", ctx)[0] == 200
