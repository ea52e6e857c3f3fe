"""natsproto: a minimal NATS client (text protocol over one TCP socket) and a tiny
protobuf encoder for sb.NotifyRequest, for the end-to-end tests. No dependencies.

    nc = Nats(cluster.nats_url)            # INFO, CONNECT, PING -> PONG (bounded)
    sub = nc.subscribe("outcome.1")        # SUB
    nc.publish("notify.send.json", b"{...}", headers={"Sb-Reply": "outcome.1"})  # HPUB
    nc.flush()                             # PING -> PONG: the server has seen all of it
    msg = sub.next(timeout=5)              # MSG / HMSG, or AssertionError on timeout
    nc.close()

A background thread reads the socket: it answers the server's PINGs, matches PONGs to
flush() calls, and queues MSG/HMSG by subscription. Every wait is bounded; a timeout
raises AssertionError naming what was awaited. A protocol error (-ERR) is kept and
raised by the next call.
"""

import collections
import json
import socket
import threading
import time
import urllib.parse

CONNECT_OPTS = {"verbose": False, "pedantic": False, "headers": True,
                "no_responders": True, "lang": "python-e2e", "version": "0.1",
                "protocol": 1, "name": "sb-e2e"}


class Msg:
    def __init__(self, subject, sid, reply, headers, data):
        self.subject = subject
        self.sid = sid
        self.reply = reply
        self.headers = headers      # {name: value} (last value wins), {} when none
        self.data = data            # bytes

    def json(self):
        return json.loads(self.data.decode())

    def __repr__(self):
        return (f"Msg({self.subject!r}, reply={self.reply!r}, headers={self.headers!r}, "
                f"data={self.data[:200]!r})")


class Subscription:
    def __init__(self, nc, sid, subject):
        self.nc = nc
        self.sid = sid
        self.subject = subject
        self.queue = collections.deque()

    def next(self, timeout=5.0):
        """The next message, waiting at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.nc._cv:
            while not self.queue:
                self.nc._check()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"nats: no message on {self.subject!r} within {timeout}s")
                self.nc._cv.wait(remaining)
            return self.queue.popleft()

    def take_all(self):
        with self.nc._cv:
            out = list(self.queue)
            self.queue.clear()
            return out

    def collect(self, seconds):
        """Wait `seconds`, then take everything queued."""
        time.sleep(seconds)
        return self.take_all()

    def unsubscribe(self):
        self.nc._send(f"UNSUB {self.sid}\r\n".encode())
        with self.nc._cv:
            self.nc._subs.pop(self.sid, None)


class Nats:
    def __init__(self, url, timeout=5.0):
        u = urllib.parse.urlparse(url if "://" in url else f"nats://{url}")
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 4222
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._rbuf = b""
        self._wlock = threading.Lock()
        self._cv = threading.Condition()
        self._subs = {}
        self._next_sid = 1
        self._pongs_wanted = 0   # PINGs sent by flush() ...
        self._pongs_got = 0      # ... and PONGs received
        self._error = None
        self._closed = False

        # INFO first, read synchronously before the reader thread takes over.
        self.sock.settimeout(timeout)
        line = self._readline_sync(timeout)
        if not line.startswith(b"INFO "):
            raise AssertionError(f"nats: expected INFO, got {line[:200]!r}")
        self.info = json.loads(line[5:].decode())
        if not self.info.get("headers"):
            raise AssertionError("nats: the server does not support headers")
        self.max_payload = self.info.get("max_payload", 1024 * 1024)
        self.sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, name="nats-reader",
                                        daemon=True)
        self._reader.start()
        self._send(b"CONNECT " + json.dumps(CONNECT_OPTS).encode() + b"\r\n")
        self.flush(timeout)

    # -- context manager

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify_all()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self._reader.join(2.0)

    # -- sending

    def _send(self, data):
        with self._wlock:
            self.sock.sendall(data)

    def _check(self):
        """Raise the first protocol error or a closed connection (caller holds _cv)."""
        if self._error:
            raise AssertionError(f"nats: {self._error}")
        if self._closed:
            raise AssertionError("nats: connection closed")

    def publish(self, subject, data=b"", reply=None, headers=None):
        """PUB (or HPUB when headers are given). data: bytes or str."""
        if isinstance(data, str):
            data = data.encode()
        assert subject and " " not in subject, f"bad subject {subject!r}"
        rp = f" {reply}" if reply else ""
        if headers:
            hdr = "NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) \
                + "\r\n"
            hdr = hdr.encode()
            cmd = f"HPUB {subject}{rp} {len(hdr)} {len(hdr) + len(data)}\r\n".encode()
            self._send(cmd + hdr + data + b"\r\n")
        else:
            cmd = f"PUB {subject}{rp} {len(data)}\r\n".encode()
            self._send(cmd + data + b"\r\n")
        with self._cv:
            self._check()

    def subscribe(self, subject, queue=None):
        with self._cv:
            sid = self._next_sid
            self._next_sid += 1
            sub = Subscription(self, sid, subject)
            self._subs[sid] = sub
        q = f" {queue}" if queue else ""
        self._send(f"SUB {subject}{q} {sid}\r\n".encode())
        return sub

    def flush(self, timeout=5.0):
        """PING and wait for its PONG: every command sent before has been processed."""
        with self._cv:
            self._pongs_wanted += 1
            want = self._pongs_wanted
        self._send(b"PING\r\n")
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._pongs_got < want:
                self._check()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"nats: no PONG within {timeout}s")
                self._cv.wait(remaining)
            self._check()

    def request(self, subject, data=b"", timeout=5.0, headers=None):
        """Publish with a fresh reply subject and wait for one answer."""
        inbox = new_inbox()
        sub = self.subscribe(inbox)
        try:
            self.publish(subject, data, reply=inbox, headers=headers)
            return sub.next(timeout)
        finally:
            sub.unsubscribe()

    # -- reading

    def _readline_sync(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self._rbuf:
            if time.monotonic() > deadline:
                raise AssertionError("nats: timed out reading a line")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("nats: connection closed by the server")
            self._rbuf += chunk
        line, self._rbuf = self._rbuf.split(b"\r\n", 1)
        return line

    def _fill(self, n):
        """Make sure _rbuf holds at least n bytes; False at EOF."""
        while len(self._rbuf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self._rbuf += chunk
        return True

    def _line(self):
        while b"\r\n" not in self._rbuf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._rbuf += chunk
        line, self._rbuf = self._rbuf.split(b"\r\n", 1)
        return line

    def _payload(self, n):
        if not self._fill(n + 2):
            return None
        data, self._rbuf = self._rbuf[:n], self._rbuf[n + 2:]
        return data

    def _read_loop(self):
        try:
            while True:
                line = self._line()
                if line is None:
                    break
                op = line.split(b" ", 1)[0].upper()
                if op == b"PING":
                    self._send(b"PONG\r\n")
                elif op == b"PONG":
                    with self._cv:
                        self._pongs_got += 1
                        self._cv.notify_all()
                elif op == b"MSG":
                    # MSG <subject> <sid> [reply] <#bytes>
                    parts = line.decode().split()
                    subject, sid = parts[1], int(parts[2])
                    reply = parts[3] if len(parts) == 5 else None
                    data = self._payload(int(parts[-1]))
                    if data is None:
                        break
                    self._deliver(Msg(subject, sid, reply, {}, data))
                elif op == b"HMSG":
                    # HMSG <subject> <sid> [reply] <#hdr bytes> <#total bytes>
                    parts = line.decode().split()
                    subject, sid = parts[1], int(parts[2])
                    reply = parts[3] if len(parts) == 6 else None
                    hlen, total = int(parts[-2]), int(parts[-1])
                    raw = self._payload(total)
                    if raw is None:
                        break
                    self._deliver(Msg(subject, sid, reply, parse_headers(raw[:hlen]),
                                      raw[hlen:]))
                elif op == b"-ERR":
                    with self._cv:
                        self._error = self._error or line.decode("utf-8", "replace")
                        self._cv.notify_all()
                elif op in (b"+OK", b"INFO"):
                    pass
                else:
                    with self._cv:
                        self._error = self._error or f"unexpected line {line[:200]!r}"
                        self._cv.notify_all()
        except OSError:
            pass
        finally:
            with self._cv:
                self._closed = True
                self._cv.notify_all()

    def _deliver(self, msg):
        with self._cv:
            sub = self._subs.get(msg.sid)
            if sub is not None:
                sub.queue.append(msg)
                self._cv.notify_all()


def parse_headers(raw):
    """b"NATS/1.0[ status]\\r\\nK: V\\r\\n\\r\\n" -> {K: V} (status under ':status')."""
    lines = raw.decode("utf-8", "replace").split("\r\n")
    out = {}
    if lines and lines[0].startswith("NATS/1.0"):
        status = lines[0][len("NATS/1.0"):].strip()
        if status:
            out[":status"] = status
    for ln in lines[1:]:
        if ":" in ln:
            k, _, v = ln.partition(":")
            out[k.strip()] = v.strip()
    return out


_inbox_n = [0]


def new_inbox(prefix="_INBOX.e2e"):
    _inbox_n[0] += 1
    return f"{prefix}.{int(time.time() * 1000)}.{_inbox_n[0]}"


# --------------------------------------------------------------------------- protobuf

def varint(n):
    assert n >= 0
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field, wire):
    return varint((field << 3) | wire)


def _len_delim(field, data):
    return _key(field, 2) + varint(len(data)) + data


def notify_request(user_ids=(), all=False, title="", message="", notification_type=""):
    """Serialize sb.NotifyRequest (proto3: default values are omitted, user_ids packed).

    message NotifyRequest {
      repeated uint64 user_ids = 1; bool all = 2; string title = 3;
      string message = 4; string notification_type = 5; }"""
    out = b""
    if user_ids:
        out += _len_delim(1, b"".join(varint(u) for u in user_ids))
    if all:
        out += _key(2, 0) + varint(1)
    for field, s in ((3, title), (4, message), (5, notification_type)):
        if s:
            out += _len_delim(field, s.encode() if isinstance(s, str) else s)
    return out


def _packed(field, values):
    return _len_delim(field, b"".join(varint(v) for v in values)) if values else b""


def delivered(user_id, ids):
    """sb.Delivered {uint64 user_id = 1; repeated uint64 ids = 2;}"""
    return (_key(1, 0) + varint(user_id) if user_id else b"") + _packed(2, ids)


def envelope_delivered(user_id, ids):
    """An Envelope whose body is a single-user Delivered (field 35): what gateways
    published before receipts were batched."""
    return _len_delim(35, delivered(user_id, ids))


def envelope_delivered_batch(receipts):
    """An Envelope whose body is a DeliveredBatch (field 36) of (user_id, ids) pairs."""
    batch = b"".join(_len_delim(1, delivered(u, ids)) for u, ids in receipts)
    return _len_delim(36, batch)


def _read_varint(data, i):
    """(value, next index) of the varint at data[i]."""
    n, shift = 0, 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def decode_fields(data):
    """Protobuf wire format -> [(field, value)]: int for varints, bytes for
    length-delimited fields (enough for the tests' own checks)."""
    out, i = [], 0
    while i < len(data):
        key, i = _read_varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(data, i)
            out.append((field, v))
        elif wire == 2:
            n, i = _read_varint(data, i)
            out.append((field, bytes(data[i:i + n])))
            i += n
        else:
            raise AssertionError(f"unexpected wire type {wire} for field {field}")
    return out


def decode_delivered_batch(envelope):
    """An Envelope carrying a DeliveredBatch -> {user_id: [ids]}; AssertionError when
    the body is anything else."""
    bodies = [v for f, v in decode_fields(envelope) if f == 36]
    assert len(bodies) == 1, f"not a DeliveredBatch envelope: {decode_fields(envelope)}"
    users = {}
    for f, item in decode_fields(bodies[0]):
        assert f == 1, f"unexpected DeliveredBatch field {f}"
        uid, ids = 0, []
        for g, v in decode_fields(item):
            if g == 1:
                uid = v
            elif g == 2:
                i = 0
                while i < len(v):
                    n, i = _read_varint(v, i)
                    ids.append(n)
        users.setdefault(uid, []).extend(ids)
    return users
