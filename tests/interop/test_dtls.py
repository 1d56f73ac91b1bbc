"""TURN over DTLS, driven by OpenSSL's own DTLS 1.2 client (`openssl s_client -dtls1_2`) carrying
STUN/TURN messages built with aioice's codec: a full authenticated allocation that relays data
to a UDP peer. Plus RFC 7983 demultiplexing: plain STUN on the DTLS port.

coturn 4.6.1's `turnutils_uclient -S` picks DTLS 1.0 or 1.2 at random per session; DTLS 1.0 is
prohibited by RFC 8996 and refused by Turnpike, so uclient cannot be used here deterministically.
"""

import os
import select
import socket
import subprocess
import time

from aioice import stun
from aioice.turn import make_integrity_key

from conftest import LOOPBACK_OK, USERS, stun_binding
from stunmsg import parse, request


class DtlsClient:
    def __init__(self, port):
        self.p = subprocess.Popen(
            ["openssl", "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{port}", "-quiet"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        time.sleep(0.8)  # handshake

    def exchange(self, msg, timeout=3):
        self.p.stdin.write(bytes(msg))
        self.p.stdin.flush()
        return self.read(timeout)

    def read(self, timeout=3):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        assert r, "no DTLS application data within the timeout"
        return os.read(self.p.stdout.fileno(), 65536)

    def close(self):
        self.p.kill()
        self.p.wait()


def test_turn_allocation_over_dtls_with_openssl_client(turnpike):
    t = turnpike(USERS + LOOPBACK_OK)
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    echo.settimeout(3)
    c = DtlsClient(t.tls_port)  # the DTLS listener shares the TLS port number (UDP vs TCP)
    try:
        m = parse(c.exchange(request(stun.Method.ALLOCATE, {"REQUESTED-TRANSPORT": 0x11000000})))
        assert m.attributes["ERROR-CODE"][0] == 401
        realm, nonce = m.attributes["REALM"], m.attributes["NONCE"]
        key = make_integrity_key("u", realm, "p")
        auth = {"USERNAME": "u", "REALM": realm, "NONCE": nonce}
        m = parse(c.exchange(request(stun.Method.ALLOCATE, {"REQUESTED-TRANSPORT": 0x11000000, **auth}, key)))
        assert m.message_class == stun.Class.RESPONSE, m
        relay = m.attributes["XOR-RELAYED-ADDRESS"]
        peer = echo.getsockname()
        m = parse(c.exchange(request(stun.Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": peer, **auth}, key)))
        assert m.message_class == stun.Class.RESPONSE, m
        # Send indication -> the peer gets the payload from the relayed address.
        ind = stun.Message(message_method=stun.Method.SEND, message_class=stun.Class.INDICATION)
        ind.attributes["XOR-PEER-ADDRESS"] = peer
        ind.attributes["DATA"] = b"over dtls"
        c.p.stdin.write(bytes(ind))
        c.p.stdin.flush()
        data, src = echo.recvfrom(2048)
        assert data == b"over dtls"
        assert src == tuple(relay)
        # The peer answers; the client gets a Data indication through DTLS.
        echo.sendto(b"back", src)
        m = parse(c.read())
        assert m.message_method == stun.Method.DATA
        assert m.attributes["DATA"] == b"back"
    finally:
        c.close()
        echo.close()
    time.sleep(1.3)
    assert t.metric("turnpike_relay_packets_total", direction="server_to_peer", transport="dtls") == 1


def test_plain_stun_and_dtls_share_one_udp_port(turnpike):
    t = turnpike(USERS)
    # RFC 7983: first byte 0-3 is STUN, answered in the clear on the DTLS port.
    reply = stun_binding(t.tls_port)
    assert reply is not None and parse(reply).attributes["XOR-MAPPED-ADDRESS"][0] == "127.0.0.1"
    # And DTLS on the same port at the same time.
    c = DtlsClient(t.tls_port)
    try:
        m = parse(c.exchange(request(stun.Method.BINDING, {})))
        assert m.message_class == stun.Class.RESPONSE
    finally:
        c.close()


def test_garbage_dtls_records_do_not_hurt(turnpike):
    t = turnpike(USERS)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in [b"\x16\xfe\xfd" + os.urandom(50), b"\x17\xfe\xfd\x00\x01" + os.urandom(30), bytes([20]) * 3]:
            s.sendto(junk, ("127.0.0.1", t.tls_port))
    time.sleep(0.2)
    c = DtlsClient(t.tls_port)
    try:
        m = parse(c.exchange(request(stun.Method.BINDING, {})))
        assert m.message_class == stun.Class.RESPONSE
    finally:
        c.close()
    assert stun_binding(t.port) is not None
