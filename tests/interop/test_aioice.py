"""Turnpike as the TURN server of Python's aioice (the ICE library under aiortc): allocations
over UDP and TCP, data echoed through the relay by a UDP peer, credentials from our CLI."""

import asyncio
import json
import subprocess

import pytest
from aioice import turn

from conftest import BIN, LOOPBACK_OK, USERS


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class Collector(asyncio.DatagramProtocol):
    def __init__(self):
        self.received = []
        self.errors = []
        self.event = asyncio.Event()

    def connection_made(self, transport):
        pass

    def datagram_received(self, data, addr):
        self.received.append((data, addr))
        self.event.set()

    def error_received(self, exc):
        self.errors.append(exc)
        self.event.set()


async def echo_through_relay(port, username, password, transport, count=50):
    loop = asyncio.get_running_loop()
    peer_t, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    peer_addr = peer_t.get_extra_info("sockname")
    relay_t, proto = await turn.create_turn_endpoint(
        Collector, server_addr=("127.0.0.1", port), username=username, password=password, transport=transport
    )
    try:
        relayed = relay_t.get_extra_info("sockname")
        assert relayed[0] == "127.0.0.1" and relayed[1] >= 61000
        sent = [bytes([i % 256]) * (1 + (i * 37) % 1200) for i in range(count)]
        for msg in sent:
            relay_t.sendto(msg, peer_addr)
            await asyncio.sleep(0.002)
        deadline = loop.time() + 10
        while len(proto.received) < count and loop.time() < deadline and not proto.errors:
            proto.event.clear()
            try:
                await asyncio.wait_for(proto.event.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
        assert not proto.errors, proto.errors
        assert sorted(d for d, _ in proto.received) == sorted(sent)
        assert all(a == peer_addr for _, a in proto.received)
    finally:
        relay_t.close()
        peer_t.close()
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_aioice_static_user(turnpike, transport):
    t = turnpike(USERS + LOOPBACK_OK)
    asyncio.run(echo_through_relay(t.port, "alice", "wonderland", transport))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_aioice_minted_credential(turnpike, transport):
    t = turnpike('shared_secrets = ["a-long-shared-secret"]\n' + LOOPBACK_OK)
    out = subprocess.run(
        [BIN, "--config", str(t.config), "credential", "--user", "bob", "--ttl", "600"],
        capture_output=True, text=True, check=True,
    ).stdout
    cred = json.loads(out)
    assert cred["username"].endswith(":bob")
    asyncio.run(echo_through_relay(t.port, cred["username"], cred["password"], transport))


def test_aioice_loopback_peer_refused_without_danger_option(turnpike):
    t = turnpike(USERS)

    async def go():
        relay_t, proto = await turn.create_turn_endpoint(
            Collector, server_addr=("127.0.0.1", t.port), username="u", password="p"
        )
        try:
            relay_t.sendto(b"x", ("127.0.0.1", 9))
            await asyncio.wait_for(proto.event.wait(), 5)
            assert proto.errors, "expected the channel bind to fail"
            assert "403" in str(proto.errors[0]), proto.errors
        finally:
            relay_t.close()
            await asyncio.sleep(0.1)

    asyncio.run(go())
