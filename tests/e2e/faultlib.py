"""faultlib: helpers for the fault, abuse, isolation, TLS and NATS-permission suites.

- `Bus`: a small NATS client of our own (text protocol over one TCP socket, a reader
  thread), with user/password from the URL, headers, request/reply, and every -ERR the
  server sends kept in `errors` (the permission tests read them).
- process probes: resident memory of a pid, Prometheus text parsing, gateway metrics.
- `start_gateway`: one more gateway on the cluster's bus (optionally TLS), stopped and
  sanitizer-checked with the rest of the cluster.
- `Keeper`: a WebSocket that reconnects (to the next gateway in a list) whenever it is
  closed, keeping every frame each of its sockets received, socket by socket.

Every wait is bounded; a timeout raises AssertionError naming what was awaited.
"""

import asyncio
import collections
import contextlib
import json
import os
import random
import re
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
import urllib.parse

import sb


# --------------------------------------------------------------------------- NATS client

class BusMsg:
    def __init__(self, subject, sid, reply, headers, data):
        self.subject, self.sid, self.reply = subject, sid, reply
        self.headers, self.data = headers, data

    def json(self):
        return json.loads(self.data.decode())

    def __repr__(self):
        return f"BusMsg({self.subject!r}, reply={self.reply!r}, data={self.data[:120]!r})"


class BusSub:
    def __init__(self, bus, sid, subject):
        self.bus, self.sid, self.subject = bus, sid, subject
        self.queue = collections.deque()

    def next(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self.bus.cv:
            while not self.queue:
                left = deadline - time.monotonic()
                if left <= 0 or self.bus.closed:
                    raise AssertionError(f"bus: no message on {self.subject!r} within "
                                         f"{timeout}s (errors: {self.bus.errors[-3:]})")
                self.bus.cv.wait(left)
            return self.queue.popleft()

    def take_all(self):
        with self.bus.cv:
            out = list(self.queue)
            self.queue.clear()
            return out

    def unsubscribe(self):
        self.bus.send(f"UNSUB {self.sid}\r\n".encode())
        with self.bus.cv:
            self.bus.subs.pop(self.sid, None)


class Bus:
    """NATS over one socket. `Bus(url)` sends CONNECT (with the URL's user and password)
    and waits for the PONG of a PING, so a refused login raises AssertionError with the
    server's -ERR text."""

    def __init__(self, url, timeout=5.0, name="sb-faultlib"):
        u = urllib.parse.urlparse(url if "://" in url else f"nats://{url}")
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222),
                                             timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rbuf = b""
        self.wlock = threading.Lock()
        self.cv = threading.Condition()
        self.subs = {}
        self.next_sid = 1
        self.pings = 0
        self.pongs = 0
        self.errors = []          # every -ERR text, in order
        self.closed = False
        try:
            line = self._readline()
        except (EOFError, OSError) as e:
            raise AssertionError(f"bus: no INFO from {url}: {e!r}")
        if not line.startswith(b"INFO "):
            raise AssertionError(f"bus: expected INFO, got {line[:200]!r}")
        self.info = json.loads(line[5:])
        self.sock.settimeout(None)
        opts = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
                "lang": "python-faultlib", "version": "0.1", "protocol": 1, "name": name}
        if u.username is not None:
            opts["user"] = urllib.parse.unquote(u.username)
            opts["pass"] = urllib.parse.unquote(u.password or "")
        self.reader = threading.Thread(target=self._read_loop, daemon=True, name="bus-reader")
        self.reader.start()
        self.send(b"CONNECT " + json.dumps(opts).encode() + b"\r\n")
        self.flush(timeout)

    # -- io

    def send(self, data):
        with self.wlock:
            try:
                self.sock.sendall(data)
            except OSError as e:
                raise AssertionError(f"bus: send failed: {e!r} (errors: {self.errors[-3:]})")

    def _readline(self):
        while b"\r\n" not in self.rbuf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.rbuf += chunk
        line, self.rbuf = self.rbuf.split(b"\r\n", 1)
        return line

    def _readn(self, n):
        while len(self.rbuf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.rbuf += chunk
        data, self.rbuf = self.rbuf[:n], self.rbuf[n + 2:]
        return data

    def _read_loop(self):
        try:
            while True:
                line = self._readline()
                if line.startswith(b"MSG ") or line.startswith(b"HMSG "):
                    self._on_msg(line)
                elif line == b"PING":
                    self.send(b"PONG\r\n")
                elif line == b"PONG":
                    with self.cv:
                        self.pongs += 1
                        self.cv.notify_all()
                elif line.startswith(b"-ERR"):
                    with self.cv:
                        self.errors.append(line[5:].decode("utf-8", "replace").strip())
                        self.cv.notify_all()
                # INFO updates and +OK are ignored
        except (EOFError, OSError, AssertionError):
            pass
        finally:
            with self.cv:
                self.closed = True
                self.cv.notify_all()

    def _on_msg(self, line):
        parts = line.decode().split()
        headers = {}
        if parts[0] == "HMSG":
            if len(parts) == 6:
                _, subject, sid, reply, hlen, tlen = parts
            else:
                _, subject, sid, hlen, tlen = parts
                reply = None
            raw = self._readn(int(tlen))
            hraw, data = raw[:int(hlen)], raw[int(hlen):]
            for h in hraw.decode("utf-8", "replace").split("\r\n")[1:]:
                if ":" in h:
                    k, v = h.split(":", 1)
                    headers[k.strip()] = v.strip()
        else:
            if len(parts) == 5:
                _, subject, sid, reply, n = parts
            else:
                _, subject, sid, n = parts
                reply = None
            data = self._readn(int(n))
        with self.cv:
            sub = self.subs.get(int(sid))
            if sub is not None:
                sub.queue.append(BusMsg(subject, int(sid), reply, headers, data))
                self.cv.notify_all()

    # -- api

    def flush(self, timeout=5.0):
        with self.cv:
            self.pings += 1
            want = self.pings
        self.send(b"PING\r\n")
        deadline = time.monotonic() + timeout
        with self.cv:
            while self.pongs < want:
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    raise AssertionError(f"bus: no PONG within {timeout}s "
                                         f"(closed={self.closed}, errors={self.errors[-3:]})")
                self.cv.wait(left)

    def subscribe(self, subject, queue=None):
        with self.cv:
            sid = self.next_sid
            self.next_sid += 1
            sub = self.subs[sid] = BusSub(self, sid, subject)
        q = f" {queue}" if queue else ""
        self.send(f"SUB {subject}{q} {sid}\r\n".encode())
        return sub

    def publish(self, subject, data=b"", reply=None, headers=None):
        if isinstance(data, str):
            data = data.encode()
        r = f" {reply}" if reply else ""
        if headers:
            h = "NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
            hb = h.encode()
            self.send(f"HPUB {subject}{r} {len(hb)} {len(hb) + len(data)}\r\n".encode()
                      + hb + data + b"\r\n")
        else:
            self.send(f"PUB {subject}{r} {len(data)}\r\n".encode() + data + b"\r\n")

    def request(self, subject, data=b"", timeout=5.0, headers=None, inbox_prefix="_INBOX"):
        inbox = new_inbox(inbox_prefix)
        sub = self.subscribe(inbox)
        try:
            self.publish(subject, data, reply=inbox, headers=headers)
            return sub.next(timeout)
        finally:
            try:
                sub.unsubscribe()
            except AssertionError:
                pass

    def wait_error(self, pred, timeout=3.0):
        """The first -ERR text (since the start) for which pred(text) is true, or None."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for e in self.errors:
                    if pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return None
                self.cv.wait(left)

    def close(self):
        with self.cv:
            self.closed = True
            self.cv.notify_all()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.reader.join(2.0)


_inbox_n = [0]
_inbox_lock = threading.Lock()


def new_inbox(prefix="_INBOX"):
    with _inbox_lock:
        _inbox_n[0] += 1
        n = _inbox_n[0]
    return f"{prefix}.fl{os.getpid()}x{int(time.time() * 1000)}.{n}"


def publish_notification(bus, obj, timeout=3.0, inbox_prefix="_INBOX"):
    """Publish on notify.send.json as a request: the JetStream PubAck (parsed) when the
    stream captured it, None when no ack came (the publish may or may not have landed)."""
    try:
        m = bus.request("notify.send.json", json.dumps(obj), timeout=timeout,
                        inbox_prefix=inbox_prefix)
    except AssertionError:
        return None
    try:
        ack = m.json()
    except ValueError:
        return None
    return ack if ack.get("stream") == "NOTIFY" and "seq" in ack else None


# --------------------------------------------------------------------------- processes

_given_ports = sb._given_ports  # one set for both helpers


def free_port():
    """A free loopback port, never one handed out before in this process nor one a
    running cluster uses. Not bind(0): on this kernel, with the ephemeral range crowded,
    bind(0) returned the same port on every call (NATS and the gateway both on 40897).
    A random port below the ephemeral range (32768+), checked by binding it."""
    taken = set(_given_ports)
    for c in sb.Cluster.running:
        taken |= {c.nats_port, c.port}
        for proc in c.procs:
            taken |= {int(m) for m in re.findall(r"127\.0\.0\.1:(\d+)", " ".join(proc.argv))}
    for _ in range(200):
        p = random.randint(20000, 32000)
        if p in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        _given_ports.add(p)
        return p
    raise RuntimeError("no free port found")


@contextlib.contextmanager
def fresh_ports():
    """Make the harness (sb.free_port, used by sb.Cluster) use free_port() while the
    block runs, then put sb.free_port back."""
    saved = sb.free_port
    sb.free_port = free_port
    try:
        yield
    finally:
        sb.free_port = saved


def rss_kb(pid):
    """Resident set size of a process in kB (VmRSS), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def sanitized(binary_path):
    """True when the binary is an ASan build (memory figures then mean little)."""
    try:
        out = subprocess.run(["ldd", binary_path], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "libasan" in out or "libubsan" in out


def chat_delivered(cluster, ids):
    """True when chat-svc (one partition) has marked every message in `ids` delivered,
    i.e. a gateway's receipt for each has been applied."""
    db = os.path.join(cluster.dir, "chat", "chat-0.db")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        marks = ",".join("?" * len(ids))
        return con.execute(f"SELECT count(*) FROM messages WHERE delivered = 1 AND seq IN "
                           f"({marks})", ids).fetchone()[0] == len(ids)
    finally:
        con.close()


def metrics(port, path="/metrics"):
    """{'name{labels}': value} from a Prometheus text page."""
    status, body = sb.http_get(port, path)
    assert status == 200, f"GET {path} on :{port}: {status}"
    out = {}
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(\S+)\s+(\S+)", line)
        if m:
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    return out


def start_gateway(cluster, *args, name=None, tls_ctx=None, nats_url=None, ready=True):
    """One more gateway process on a free port (cluster's bus and gateway args plus
    `args`), added to cluster.procs so that it is stopped and checked with the rest.
    With tls_ctx, readiness is probed over HTTPS. Returns (proc, port)."""
    port = free_port()
    n = sum(1 for p in cluster.procs if p.name.startswith("gateway"))
    proc = sb.Proc(name or f"gateway{n + 1}", [
        sb.binary("gateway"), "--nats", nats_url or cluster.nats_url,
        "--listen", f"127.0.0.1:{port}", *cluster.gateway_args, *args], cluster.dir)
    cluster.procs.append(proc)
    proc.start()
    if ready:
        proc.wait_ready()
        if tls_ctx is None:
            sb.wait_http(port, "/readyz", 200, proc=proc)
        else:
            wait_https(port, "/readyz", tls_ctx, proc=proc)
    return proc, port


def https_get(port, path, ctx, timeout=5.0):
    import http.client
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def wait_https(port, path, ctx, status=200, timeout=sb.READY_TIMEOUT, proc=None):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if proc is not None and not proc.running():
            raise RuntimeError(f"{proc.name} exited\n{sb.tail(proc.log_path)}")
        try:
            last = https_get(port, path, ctx, timeout=1.0)[0]
            if last == status:
                return
        except (OSError, ssl.SSLError) as e:
            last = repr(e)
        if time.monotonic() > deadline:
            raise RuntimeError(f"https GET {path} on :{port}: not {status} within "
                               f"{timeout}s (last {last})")
        time.sleep(0.05)


def wait_until(pred, timeout, what, interval=0.05):
    """Poll pred() until true; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- sockets

class _Acceptor:
    """A loopback listener on `port` (a free one when None) whose thread hands every
    accepted connection to `_on_conn`. The bind is retried for 5 s: a port a killed
    process held may still be in use for a moment."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self._stop = threading.Event()
        self._ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 5
        while True:
            try:
                self._ls.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    self._ls.close()
                    raise
                time.sleep(0.05)
        self._ls.listen(64)
        self._ls.settimeout(0.05)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self._ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._on_conn(c)

    def _on_conn(self, c):
        raise NotImplementedError

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self._ls.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Link(_Acceptor):
    """A TCP relay from a free port of its own to 127.0.0.1:`target`, for one process's
    bus connection: `cut()` drops every relayed connection and refuses new ones (that
    process alone loses NATS), `restore()` lets connections through again."""

    def __init__(self, target):
        self.target = target
        self.up = True
        self._lock = threading.Lock()
        self._socks = []
        super().__init__()

    def _on_conn(self, c):
        if not self.up:
            c.close()
            return
        try:
            t = socket.create_connection(("127.0.0.1", self.target), timeout=2)
        except OSError:
            c.close()
            return
        t.settimeout(None)
        with self._lock:
            self._socks += [c, t]
        for a, b in ((c, t), (t, c)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.up = False
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self):
        self.up = True

    def close(self):
        super().close()
        self.cut()


class Tarpit(_Acceptor):
    """A listener on `port` that accepts every connection and never sends a byte: a
    hung nats-server, or a proxy whose backend is gone. A NATS client connecting to it
    waits for INFO until its connect timeout. `accepted` counts the connections; all are
    closed on exit."""

    def __init__(self, port):
        self.accepted = 0
        self._conns = []
        super().__init__(port)

    def _on_conn(self, c):
        self._conns.append(c)
        self.accepted += 1

    def close(self):
        super().close()
        for c in self._conns:
            c.close()


class Keeper:
    """A chat or notification socket of one user that reconnects whenever it is closed,
    trying the gateways in `ports` in turn (starting after the one that just failed).
    `sockets` holds one record per socket ever opened: {"port", "frames", "opened",
    "closed", "code"}."""

    def __init__(self, cluster, user, kind, ports, label, first=0):
        self.cluster, self.user, self.kind = cluster, user, kind
        self.ports, self.label = list(ports), label
        self.idx = first % len(self.ports)
        self.sockets = []
        self.ws = None
        self.stop = False
        self.failures = 0          # refused or failed handshakes
        self.task = None

    def start(self):
        self.task = asyncio.ensure_future(self._run())
        return self

    async def _run(self):
        loop = asyncio.get_running_loop()
        while not self.stop:
            port = self.ports[self.idx]
            try:
                ws = await sb.ws_connect(self.cluster.url(self.kind, self.user.token, port=port),
                                         f"{self.label}@{port}", timeout=3.0)
            except Exception:
                self.failures += 1
                self.idx = (self.idx + 1) % len(self.ports)
                await asyncio.sleep(0.2)
                continue
            rec = {"port": port, "frames": ws.seen, "opened": loop.time(), "closed": None,
                   "code": None}
            self.sockets.append(rec)
            self.ws = ws
            while not ws.done and not self.stop:
                ws._ev.clear()
                try:
                    await asyncio.wait_for(ws._ev.wait(), 0.25)
                except asyncio.TimeoutError:
                    pass
            rec["closed"] = loop.time()
            rec["code"] = ws.close_code
            if self.stop:
                break
            self.idx = (self.idx + 1) % len(self.ports)   # the next gateway
            await asyncio.sleep(0.05)

    async def close(self):
        self.stop = True
        if self.task:
            try:
                await asyncio.wait_for(self.task, 3)
            except Exception:
                pass
        if self.ws:
            await self.ws.close()

    def ids(self, type):
        """[[ids of `type` frames] per socket]."""
        return [[f["id"] for f in s["frames"] if f.get("type") == type] for s in self.sockets]

    def frames(self, type):
        return [f for s in self.sockets for f in s["frames"] if f.get("type") == type]


def per_socket_dups(id_lists):
    """Number of (socket, id) pairs where the id came more than once on that socket,
    plus the first few such ids."""
    n, ex = 0, []
    for ids in id_lists:
        c = collections.Counter(ids)
        for i, k in c.items():
            if k > 1:
                n += k - 1
                ex.append(i)
    return n, ex[:10]


# --------------------------------------------------------------------------- raw frames

def frame_bytes(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
    """One WebSocket frame as bytes, any way we like: unmasked, RSV bits, a length field
    that lies (`length`), control frames of any size."""
    import struct
    b0 = (0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode
    n = len(payload) if length is None else length
    m = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + sb._mask_fast(payload, key) if payload else head + key


class Raw(sb.RawWS):
    """sb.RawWS with more control: a source address (127.0.0.2 is another client IP),
    a receive buffer size set before connecting (a slow reader whose kernel buffers
    absorb little), and the raw socket for sending arbitrary bytes."""

    def __init__(self, port, path, source=None, rcvbuf=None, timeout=5.0, host="127.0.0.1"):
        import base64
        import hashlib
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            s.bind((source, 0))
        s.settimeout(timeout)
        s.connect((host, port))
        self.sock = s
        self.rbuf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n")
        s.sendall(req.encode())
        while b"\r\n\r\n" not in self.rbuf:
            chunk = s.recv(4096)
            if not chunk:
                raise AssertionError(f"connection closed during handshake: {self.rbuf!r}")
            self.rbuf += chunk
        head, self.rbuf = self.rbuf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for h in lines[1:]:
            k, _, v = h.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        if self.status == 101:
            want = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            assert self.headers.get("sec-websocket-accept") == want, "bad Sec-WebSocket-Accept"

    def send_bytes(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


def handshake_status(port, path, source=None):
    """HTTP status of an upgrade request (101 = upgraded), the socket then closed."""
    w = Raw(port, path, source=source)
    w.close()
    return w.status
