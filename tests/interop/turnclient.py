"""A small TURN client written from the RFC text (RFC 8489 §9.2 long-term credentials with the
nonce cookie, PASSWORD-ALGORITHMS and USERHASH; RFC 8656 Allocate/CreatePermission/Send;
RFC 6062 Connect/ConnectionBind) over UDP and TCP, for the security tests: it follows the RFC's
client rules to the letter, so a server whose challenge breaks them fails here the way a strict
client would fail in the field."""

import base64
import hashlib
import hmac
import os
import socket
import struct
import zlib

COOKIE = 0x2112A442
NONCE_COOKIE = b"obMatJos2"

BINDING, ALLOCATE, REFRESH, SEND, DATA = 0x001, 0x003, 0x004, 0x006, 0x007
CREATE_PERMISSION, CHANNEL_BIND = 0x008, 0x009
CONNECT, CONNECTION_BIND, CONNECTION_ATTEMPT = 0x00A, 0x00B, 0x00C
REQUEST, INDICATION, SUCCESS, ERROR = 0x000, 0x010, 0x100, 0x110

A_MAPPED = 0x0001
A_USERNAME = 0x0006
A_MI = 0x0008
A_ERROR = 0x0009
A_UNKNOWN = 0x000A
A_CHANNEL = 0x000C
A_LIFETIME = 0x000D
A_XOR_PEER = 0x0012
A_DATA = 0x0013
A_REALM = 0x0014
A_NONCE = 0x0015
A_XOR_RELAYED = 0x0016
A_REQ_FAMILY = 0x0017
A_EVEN_PORT = 0x0018
A_REQ_TRANSPORT = 0x0019
A_XOR_MAPPED = 0x0020
A_CONNECTION_ID = 0x002A
A_MI_SHA256 = 0x001C
A_PASSWORD_ALGORITHM = 0x001D
A_USERHASH = 0x001E
A_PASSWORD_ALGORITHMS = 0x8002
A_SOFTWARE = 0x8022
A_FINGERPRINT = 0x8028

ALG_MD5, ALG_SHA256 = 1, 2


def pad4(n):
    return (4 - n % 4) % 4


def attr(typ, value):
    return struct.pack("!HH", typ, len(value)) + value + b"\x00" * pad4(len(value))


def xor_addr(ip, port, tid):
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    raw = socket.inet_pton(fam, ip)
    xport = port ^ (COOKIE >> 16)
    key = struct.pack("!I", COOKIE) + tid
    xip = bytes(b ^ key[i] for i, b in enumerate(raw))
    return struct.pack("!BBH", 0, 1 if fam == socket.AF_INET else 2, xport) + xip


def parse_xor_addr(value, tid):
    fam = value[1]
    port = struct.unpack("!H", value[2:4])[0] ^ (COOKIE >> 16)
    key = struct.pack("!I", COOKIE) + tid
    n = 4 if fam == 1 else 16
    raw = bytes(b ^ key[i] for i, b in enumerate(value[4:4 + n]))
    ip = socket.inet_ntop(socket.AF_INET if fam == 1 else socket.AF_INET6, raw)
    return ip, port


class Message:
    def __init__(self, method, cls, tid, attrs, raw=b""):
        self.method, self.cls, self.tid, self.attrs, self.raw = method, cls, tid, attrs, raw

    def get(self, typ):
        for t, v in self.attrs:
            if t == typ:
                return v
        return None

    def has(self, typ):
        return self.get(typ) is not None

    @property
    def error(self):
        v = self.get(A_ERROR)
        return None if v is None else (v[2] & 7) * 100 + v[3]

    def xor(self, typ):
        v = self.get(typ)
        return None if v is None else parse_xor_addr(v, self.tid)

    def __repr__(self):
        return f"Message(method={self.method:#x}, cls={self.cls:#x}, error={self.error})"


def encode(method, cls, tid, attrs, key=None, sha256=False, fingerprint=True):
    body = b"".join(attr(t, v) for t, v in attrs)

    def header(length):
        typ = (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2)
        typ |= ((cls & 0x100) << 0) | ((cls & 0x010) << 0)
        return struct.pack("!HHI", typ, length, COOKIE) + tid

    if key is not None:
        if sha256:
            mac_len = 32
            h = header(len(body) + 4 + mac_len)
            mac = hmac.new(key, h + body, hashlib.sha256).digest()
            body += attr(A_MI_SHA256, mac)
        else:
            h = header(len(body) + 24)
            mac = hmac.new(key, h + body, hashlib.sha1).digest()
            body += attr(A_MI, mac)
    if fingerprint:
        h = header(len(body) + 8)
        crc = (zlib.crc32(h + body) ^ 0x5354554E) & 0xFFFFFFFF
        body += attr(A_FINGERPRINT, struct.pack("!I", crc))
    return header(len(body)) + body


def decode(data):
    if len(data) < 20:
        raise ValueError("short")
    typ, length, cookie = struct.unpack("!HHI", data[:8])
    if cookie != COOKIE or len(data) < 20 + length:
        raise ValueError("not STUN")
    method = (typ & 0x000F) | ((typ & 0x00E0) >> 1) | ((typ & 0x3E00) >> 2)
    cls = typ & 0x0110
    tid = data[8:20]
    attrs, pos = [], 20
    while pos + 4 <= 20 + length:
        t, n = struct.unpack("!HH", data[pos:pos + 4])
        attrs.append((t, data[pos + 4:pos + 4 + n]))
        pos += 4 + n + pad4(n)
    return Message(method, cls, tid, attrs, data[:20 + length])


def long_term_key(username, realm, password, algorithm=ALG_MD5):
    s = f"{username}:{realm}:{password}".encode()
    return hashlib.md5(s).digest() if algorithm == ALG_MD5 else hashlib.sha256(s).digest()


def userhash(username, realm):
    return hashlib.sha256(f"{username}:{realm}".encode()).digest()


def rest_password(secret, username):
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


def nonce_features(nonce):
    """The RFC 8489 §9.2 security feature bits of a nonce, or None without the cookie."""
    if not nonce.startswith(NONCE_COOKIE) or len(nonce) < 13:
        return None
    b = base64.b64decode(nonce[9:13])
    return {"password_algorithms": bool(b[0] & 0x80), "username_anonymity": bool(b[0] & 0x40)}


class Conn:
    """One client transport: UDP (datagrams) or TCP (STUN/ChannelData framing)."""

    def __init__(self, server, transport="udp", family=socket.AF_INET, source=None, timeout=2.0):
        self.server, self.transport = server, transport
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(family, kind)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind(source)
        if transport == "tcp":
            self.sock.connect(server)
        self.buf = b""

    def send(self, data):
        if self.transport == "udp":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def recv_frame(self):
        if self.transport == "udp":
            return self.sock.recvfrom(70000)[0]
        while True:
            if len(self.buf) >= 4:
                if self.buf[0] >> 6 == 0:
                    need = 20 + struct.unpack("!H", self.buf[2:4])[0]
                else:
                    n = struct.unpack("!H", self.buf[2:4])[0]
                    need = 4 + n + pad4(n)
                if len(self.buf) >= need:
                    frame, self.buf = self.buf[:need], self.buf[need:]
                    return frame
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def close(self):
        self.sock.close()


class AuthFailed(Exception):
    pass


class TurnClient:
    """Long-term-credential client following RFC 8489 §9.2.5 (what a client does with 401/438)."""

    def __init__(self, conn, username, password, realm_expected=None, prefer_sha256=True):
        self.conn, self.username, self.password = conn, username, password
        self.realm = realm_expected
        self.nonce = None
        self.algorithm = None
        self.algorithms_attr = None
        self.anonymity = False
        self.prefer_sha256 = prefer_sha256
        self.challenges = []

    def exchange(self, method, attrs, key=None, sha256=False):
        tid = os.urandom(12)
        self.conn.send(encode(method, REQUEST, tid, attrs, key=key, sha256=sha256))
        while True:
            m = decode(self.conn.recv_frame())
            if m.tid == tid:
                return m

    def _key(self):
        return long_term_key(self.username, self.realm, self.password, self.algorithm)

    def _auth_attrs(self):
        out = []
        if self.anonymity:
            out.append((A_USERHASH, userhash(self.username, self.realm)))
        else:
            out.append((A_USERNAME, self.username.encode()))
        out += [(A_REALM, self.realm.encode()), (A_NONCE, self.nonce)]
        if self.algorithms_attr is not None:
            out.append((A_PASSWORD_ALGORITHM, struct.pack("!HH", self.algorithm, 0)))
            out.append((A_PASSWORD_ALGORITHMS, self.algorithms_attr))
        return out

    def _learn(self, m):
        """Takes a 401/438 challenge as §9.2.5 says; raises AuthFailed where a client must stop."""
        self.challenges.append(m)
        nonce, realm = m.get(A_NONCE), m.get(A_REALM)
        if nonce is None or realm is None:
            raise AuthFailed("challenge without NONCE or REALM")
        self.realm = realm.decode()
        self.nonce = nonce
        feats = nonce_features(nonce)
        self.algorithm, self.algorithms_attr, self.anonymity = ALG_MD5, None, False
        if feats is None:
            return
        algs = m.get(A_PASSWORD_ALGORITHMS)
        if feats["password_algorithms"]:
            if algs is None:
                # §9.2.5: "the client MUST NOT retry the request with a new transaction".
                # (LENIENT: for checking other defects against an old server only.)
                if os.environ.get("TURNCLIENT_LENIENT") != "1":
                    raise AuthFailed("password-algorithms bit set but no PASSWORD-ALGORITHMS")
                return
            offered = [struct.unpack("!H", algs[i:i + 2])[0] for i in range(0, len(algs), 4)]
            if self.prefer_sha256 and ALG_SHA256 in offered:
                self.algorithm = ALG_SHA256
            elif ALG_MD5 in offered:
                self.algorithm = ALG_MD5
            else:
                raise AuthFailed("no algorithm in common")
            self.algorithms_attr = algs
        self.anonymity = feats["username_anonymity"]

    def request(self, method, attrs, retries=3):
        """An authenticated request: challenges are answered and stale nonces renewed."""
        for _ in range(retries):
            if self.nonce is None:
                m = self.exchange(method, attrs)
            else:
                sha = self.algorithm == ALG_SHA256 and self.algorithms_attr is not None
                m = self.exchange(method, attrs + self._auth_attrs(), key=self._key(), sha256=sha)
            if m.cls == ERROR and m.error in (401, 438) and (self.nonce is None or m.error == 438):
                self._learn(m)
                continue
            return m
        raise AuthFailed(f"gave up: {m}")

    def allocate(self, transport=17, extra=()):
        m = self.request(ALLOCATE, [(A_REQ_TRANSPORT, bytes([transport, 0, 0, 0]))] + list(extra))
        return m

    def create_permission(self, ip, port=0):
        return self._with_peer(CREATE_PERMISSION, ip, port)

    def _with_peer(self, method, ip, port, extra=()):
        # The XOR-PEER-ADDRESS depends on the transaction id, so the request is built here.
        for _ in range(3):
            tid = os.urandom(12)
            attrs = [(A_XOR_PEER, xor_addr(ip, port, tid))] + list(extra)
            sha = self.algorithm == ALG_SHA256 and self.algorithms_attr is not None
            self.conn.send(encode(method, REQUEST, tid, attrs + self._auth_attrs(),
                                  key=self._key(), sha256=sha))
            while True:
                m = decode(self.conn.recv_frame())
                if m.tid == tid:
                    break
            if m.cls == ERROR and m.error == 438:
                self._learn(m)
                continue
            return m
        return m

    def connect(self, ip, port):
        return self._with_peer(CONNECT, ip, port)

    def send_indication(self, ip, port, data):
        tid = os.urandom(12)
        self.conn.send(encode(SEND, INDICATION, tid,
                              [(A_XOR_PEER, xor_addr(ip, port, tid)), (A_DATA, data)],
                              fingerprint=False))

    def connection_bind(self, data_conn, cid):
        """RFC 6062 §5.4 on a new data connection `data_conn` (a Conn over TCP)."""
        saved = self.conn
        self.conn = data_conn
        try:
            return self.request(CONNECTION_BIND, [(A_CONNECTION_ID, struct.pack("!I", cid))])
        finally:
            self.conn = saved


def allocate_status(port, username, password, host="127.0.0.1", timeout=5.0):
    """One Allocate over TCP with long-term credentials: None when it succeeds (the allocation
    is released at once), else the error code. Over TCP because many such probes from one
    address would exceed a server's UDP budget for unauthenticated answers."""
    conn = Conn((host, port), "tcp", timeout=timeout)
    try:
        c = TurnClient(conn, username, password)
        m = c.allocate()
        if m.cls == ERROR:
            return m.error
        c.request(REFRESH, [(A_LIFETIME, (0).to_bytes(4, "big"))])
        return None
    finally:
        conn.close()
