"""A TCP client that stops reading while its peer floods it cannot stall the relay: its queue
is bounded, the excess is dropped and counted, and other clients keep relaying with zero loss."""

import socket
import struct
import threading
import time

from aioice import stun
from aioice.turn import make_integrity_key

import uclient
from conftest import LOOPBACK_OK, USERS
from stunmsg import parse, request


def tcp_request(s, msg):
    s.sendall(bytes(msg))
    hdr = b""
    while len(hdr) < 20:
        hdr += s.recv(20 - len(hdr))
    n = struct.unpack("!H", hdr[2:4])[0]
    body = b""
    while len(body) < n:
        body += s.recv(n - len(body))
    return parse(hdr + body)


def test_slow_tcp_reader_does_not_stall_others(turnpike, peer):
    t = turnpike(USERS + LOOPBACK_OK + "workers = 1\n")
    s = socket.create_connection(("127.0.0.1", t.port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    m = tcp_request(s, request(stun.Method.ALLOCATE, {"REQUESTED-TRANSPORT": 0x11000000}))
    realm, nonce = m.attributes["REALM"], m.attributes["NONCE"]
    key = make_integrity_key("u", realm, "p")
    auth = {"USERNAME": "u", "REALM": realm, "NONCE": nonce}
    m = tcp_request(s, request(stun.Method.ALLOCATE, {"REQUESTED-TRANSPORT": 0x11000000, **auth}, key))
    relay = tuple(m.attributes["XOR-RELAYED-ADDRESS"])
    flooder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flooder.bind(("127.0.0.1", 0))
    m = tcp_request(s, request(stun.Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": flooder.getsockname(), **auth}, key))
    assert m.message_class == stun.Class.RESPONSE
    # The client now stops reading; its peer sends 20,000 datagrams of 1,000 bytes (bounded).
    stop = threading.Event()

    def flood():
        payload = b"x" * 1000
        for _ in range(20_000):
            if stop.is_set():
                return
            flooder.sendto(payload, relay)

    th = threading.Thread(target=flood)
    th.start()
    try:
        r = uclient.run(t.port, ["-u", "alice", "-w", "wonderland", "-e", "127.0.0.1", "-r", str(peer), "-m", "4", "-n", "40", "-c"])
        assert r.rc == 0 and r.lost == 0 and r.received == r.sent == 160, r.output
    finally:
        stop.set()
        th.join()
        flooder.close()
    time.sleep(1.3)
    assert t.metric("turnpike_dropped_packets_total", reason="send_failed") > 0
    s.close()
