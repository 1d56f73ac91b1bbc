"""Relay address lists (issue 14): `relay_ipv4` takes several addresses and allocations spread
over them, so the relay port range is available once per address. Real sockets against the
real binary, with our test client and with aioice (a TURN client nobody here wrote)."""

import asyncio
import socket
import subprocess

from aioice import turn

from conftest import BIN, LOOPBACK_OK, USERS, free_port_range
from test_aioice import Echo
import turnclient as tc

UNCAPPED = "max_allocations_per_user = 0\n"
ADDRS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def relay_list(addrs):
    return "relay_ipv4 = [" + ", ".join(f'"{a}"' for a in addrs) + "]\n"


def test_allocations_spread_over_the_listed_addresses_until_all_are_full(turnpike):
    """Three addresses and a 5-port range hold 15 UDP allocations, five on each address, all
    distinct; the 16th gets 508. Each relay really is bound where it says: a peer's datagram to
    it reaches its allocation, and the client's data leaves from that address."""
    lo, hi = free_port_range(5)
    t = turnpike(USERS + LOOPBACK_OK + UNCAPPED + relay_list(ADDRS), relay_range=(lo, hi))
    clients, relays = [], []
    for _ in range(15):
        c = tc.TurnClient(tc.Conn(("127.0.0.1", t.port), "udp"), "u", "p")
        r = c.allocate(transport=17)
        assert r.cls == tc.SUCCESS, (len(clients), r)
        clients.append(c)
        relays.append(r.xor(tc.A_XOR_RELAYED))
    assert len(set(relays)) == 15, relays
    per_ip = {a: sum(1 for ip, _ in relays if ip == a) for a in ADDRS}
    assert per_ip == {a: 5 for a in ADDRS}, per_ip
    assert all(lo <= port <= hi for _, port in relays), relays
    c16 = tc.TurnClient(tc.Conn(("127.0.0.1", t.port), "udp"), "u", "p")
    r = c16.allocate(transport=17)
    assert r.cls == tc.ERROR and r.error == 508, r
    # Data both ways through one relay on each address.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(2)
        for a in ADDRS:
            i = next(i for i, (ip, _) in enumerate(relays) if ip == a)
            c = clients[i]
            assert c.create_permission("127.0.0.1").cls == tc.SUCCESS
            c.send_indication("127.0.0.1", peer.getsockname()[1], b"out-" + a.encode())
            data, src = peer.recvfrom(2048)
            assert data == b"out-" + a.encode() and src == relays[i], (data, src, relays[i])
            peer.sendto(b"in-" + a.encode(), relays[i])
            c.conn.sock.settimeout(2)
            m = tc.decode(c.conn.recv_frame())
            assert m.method == tc.DATA and m.get(tc.A_DATA) == b"in-" + a.encode(), m
    # A freed port on a full address is used again.
    assert clients[0].request(tc.REFRESH, [(tc.A_LIFETIME, (0).to_bytes(4, "big"))]).cls == tc.SUCCESS
    r = c16.allocate(transport=17)
    assert r.cls == tc.SUCCESS and r.xor(tc.A_XOR_RELAYED) == relays[0], (r, relays[0])


def test_aioice_gets_relays_on_every_listed_address(turnpike):
    """aioice's TURN client, allocating six times against three listed addresses, is given a
    relay on each address in turn and echoes data through the last one."""
    lo, hi = free_port_range(20)
    t = turnpike(USERS + LOOPBACK_OK + UNCAPPED + relay_list(ADDRS), relay_range=(lo, hi))

    async def run():
        loop = asyncio.get_running_loop()
        got, endpoints = [], []

        class Collect(asyncio.DatagramProtocol):
            def __init__(self):
                self.q = asyncio.Queue()

            def datagram_received(self, data, addr):
                self.q.put_nowait(data)

        peer_t, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        try:
            for _ in range(6):
                tr, proto = await turn.create_turn_endpoint(
                    Collect, server_addr=("127.0.0.1", t.port), username="u", password="p", transport="udp")
                endpoints.append((tr, proto))
                got.append(tr.get_extra_info("sockname")[0])
            tr, proto = endpoints[-1]
            tr.sendto(b"hello via " + got[-1].encode(), peer_t.get_extra_info("sockname"))
            echoed = await asyncio.wait_for(proto.q.get(), 5)
            assert echoed == b"hello via " + got[-1].encode()
        finally:
            for tr, _ in endpoints:
                tr.close()
            peer_t.close()
        return got

    got = asyncio.run(run())
    assert sorted(got) == sorted(ADDRS * 2), got


def test_bad_relay_lists_name_the_key_and_the_fix(tmp_path):
    for toml, words in [
        ('relay_ipv4 = ["127.0.0.2", "::1"]\n', ["relay_ipv4", "relay_ipv6"]),
        ('relay_ipv4 = ["127.0.0.2", "127.0.0.3"]\nexternal_ipv4 = "203.0.113.5"\n', ["relay_ipv4", "external_ipv4"]),
        ('relay_ipv4 = "0.0.0.0"\n', ["relay_ipv4", "specific"]),
        ('relay_ipv4 = "not-an-ip"\n', ["relay_ipv4"]),
    ]:
        cfg = tmp_path / "bad.toml"
        cfg.write_text(toml + f'data_dir = "{tmp_path / "data"}"\n')
        p = subprocess.run([str(BIN), "--config", str(cfg), "check-config"], capture_output=True, text=True, timeout=30)
        out = p.stdout + p.stderr
        assert p.returncode != 0, (toml, out)
        assert all(w in out for w in words), (toml, out)
