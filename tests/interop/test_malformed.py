"""Malformed input over UDP and TCP: each packet is dropped (and counted) or answered with the
right error; the server never stops serving."""

import os
import socket
import struct
import time

from aioice import stun
from aioice.turn import make_integrity_key

from conftest import USERS, stun_binding
from stunmsg import COOKIE, attr, binding, error_code, parse, raw_attrs, udp_exchange


def bad_datagrams():
    good = binding(attr(0x8022, b"client"))
    out = {
        "empty": b"",
        "one byte": b"\x00",
        "truncated header": good[:12],
        "length past end": struct.pack("!HHI", 1, 400, COOKIE) + os.urandom(12),
        "length not multiple of 4": struct.pack("!HHI", 1, 6, COOKIE) + os.urandom(12) + b"\x00" * 6,
        "attribute length past end": struct.pack("!HHI", 1, 8, COOKIE) + os.urandom(12) + struct.pack("!HH", 0x8022, 200) + b"abcd",
        "no magic cookie": struct.pack("!HHI", 1, 0, 0xDEADBEEF) + os.urandom(12),
        "random garbage": bytes([0xFF]) + os.urandom(999),
        "channeldata unbound channel": struct.pack("!HH", 0x4001, 4) + b"data",
        "channeldata length past end": struct.pack("!HH", 0x4001, 500) + b"data",
        "stun success response": struct.pack("!HHI", 0x0101, 0, COOKIE) + os.urandom(12),
        "send indication without allocation": struct.pack("!HHI", 0x0016, 0, COOKIE) + os.urandom(12),
    }
    fp_msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    fp_msg.add_fingerprint()
    raw = bytearray(bytes(fp_msg))
    raw[-1] ^= 0xFF
    out["bad fingerprint"] = bytes(raw)
    return out


def test_udp_garbage_dropped_and_counted(turnpike):
    t = turnpike(USERS)
    cases = bad_datagrams()
    for name, data in cases.items():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            s.sendto(data, ("127.0.0.1", t.port))
            try:
                reply = s.recvfrom(2048)[0]
            except socket.timeout:
                reply = None
        assert reply is None, f"{name}: got a reply"
        assert stun_binding(t.port) is not None, f"server stopped answering after {name}"
    time.sleep(1.3)
    dropped = t.metric("turnpike_dropped_packets_total")
    assert dropped is not None and dropped >= len(cases), t.metrics()
    assert t.metric("turnpike_dropped_packets_total", reason="malformed") >= 8
    assert t.metric("turnpike_dropped_packets_total", reason="no_allocation") >= 2


def test_huge_attribute_and_unknown_attribute(turnpike):
    t = turnpike(USERS)
    # A 60 KB SOFTWARE attribute in a Binding: still a valid message, answered.
    big = binding(attr(0x8022, b"x" * 60000))
    reply = udp_exchange(t.port, big)
    assert reply is not None
    m = parse(reply)
    assert m.message_class == stun.Class.RESPONSE
    assert m.attributes["XOR-MAPPED-ADDRESS"][0] == "127.0.0.1"
    # An unknown comprehension-required attribute: 420 with UNKNOWN-ATTRIBUTES.
    reply = udp_exchange(t.port, binding(attr(0x7777, b"abcd")))
    m = parse(reply)
    assert error_code(m) == 420
    assert (0x000A, b"\x77\x77") in raw_attrs(reply)
    # Unknown comprehension-optional attributes are ignored.
    reply = udp_exchange(t.port, binding(attr(0xC001, b"abcd")))
    assert parse(reply).message_class == stun.Class.RESPONSE


def test_wrong_integrity_gets_401(turnpike):
    t = turnpike(USERS)
    req = stun.Message(message_method=stun.Method.ALLOCATE, message_class=stun.Class.REQUEST)
    req.attributes["REQUESTED-TRANSPORT"] = 0x11000000
    m = parse(udp_exchange(t.port, bytes(req)))
    assert error_code(m) == 401
    nonce, realm = m.attributes["NONCE"], m.attributes["REALM"]
    assert realm == "test"
    req = stun.Message(message_method=stun.Method.ALLOCATE, message_class=stun.Class.REQUEST)
    req.attributes["REQUESTED-TRANSPORT"] = 0x11000000
    req.attributes["USERNAME"] = "u"
    req.attributes["REALM"] = realm
    req.attributes["NONCE"] = nonce
    req.add_message_integrity(make_integrity_key("u", realm, "not-p"))
    m = parse(udp_exchange(t.port, bytes(req)))
    assert error_code(m) == 401
    # A forged nonce: 438 Stale Nonce with a fresh one.
    req.attributes["NONCE"] = b"obMatJos2gAAA" + b"0" * 24
    req.add_message_integrity(make_integrity_key("u", realm, "p"))
    m = parse(udp_exchange(t.port, bytes(req)))
    assert error_code(m) == 438
    # The nonce that comes with the 438 is good for the retry.
    req.attributes["NONCE"] = m.attributes["NONCE"]
    req.add_message_integrity(make_integrity_key("u", realm, "p"))
    m = parse(udp_exchange(t.port, bytes(req)))
    assert error_code(m) is None
    assert m.attributes["XOR-RELAYED-ADDRESS"][0] == "127.0.0.1"


def tcp_conn(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    return s


def test_tcp_garbage_closes_connection_server_keeps_serving(turnpike):
    t = turnpike(USERS)
    for junk in [b"\xff" * 64, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", struct.pack("!HHI", 1, 6, COOKIE) + os.urandom(12)]:
        s = tcp_conn(t.port)
        s.sendall(junk)
        s.settimeout(3)
        assert s.recv(100) == b"", "server should close a stream that is not STUN"
        s.close()
    # A partial frame followed by a close: nothing breaks.
    s = tcp_conn(t.port)
    s.sendall(binding()[:10])
    s.close()
    # Two valid requests in one segment, then one split across segments: all answered in order.
    s = tcp_conn(t.port)
    a, b, c = binding(), binding(), binding()
    s.sendall(a + b + c[:7])
    time.sleep(0.1)
    s.sendall(c[7:])
    got = b""
    tids = []
    while len(tids) < 3:
        chunk = s.recv(4096)
        assert chunk
        got += chunk
        while len(got) >= 20 and len(got) >= 20 + struct.unpack("!H", got[2:4])[0]:
            n = 20 + struct.unpack("!H", got[2:4])[0]
            assert parse(got[:n]).message_class == stun.Class.RESPONSE
            tids.append(got[8:20])
            got = got[n:]
    assert tids == [a[8:20], b[8:20], c[8:20]]
    s.close()
    assert stun_binding(t.port) is not None


def test_tcp_oversized_and_huge_frames(turnpike):
    t = turnpike(USERS)
    # A maximal-size STUN message over TCP is answered.
    s = tcp_conn(t.port)
    big = binding(attr(0x8022, b"y" * 65000))
    s.sendall(big)
    s.settimeout(3)
    reply = s.recv(4096)
    assert parse(reply).message_class == stun.Class.RESPONSE
    s.close()
