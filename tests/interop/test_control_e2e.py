"""The control plane end to end with real TURN clients (coturn's turnutils_uclient and Python's
aioice), on SQLite and PostgreSQL: credentials made through the API relay traffic, the usage
API reports exactly the relayed bytes, a disabled credential cannot allocate within a second,
live allocations are closed on request, revocations bite, SIGTERM mid-relay loses no byte."""

import asyncio
import os
import signal
import time

import pytest
from aioice import stun, turn

import uclient
from api import ADMIN_KEY, Api, control_toml, db, new_tenant, ok, uniq, usage_totals, wait_for  # noqa: F401
from conftest import LOOPBACK_OK


def start(turnpike, db_url, extra=""):
    t = turnpike(control_toml(db_url, LOOPBACK_OK + extra))
    return t, Api(t.metrics_port, ADMIN_KEY)


class Counter(asyncio.DatagramProtocol):
    """A UDP peer that counts what reaches it and optionally echoes it."""

    def __init__(self, echo):
        self.echo = echo
        self.bytes = 0
        self.packets = 0

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.bytes += len(data)
        self.packets += 1
        if self.echo:
            self.transport.sendto(data, addr)


class Collector(asyncio.DatagramProtocol):
    def __init__(self):
        self.received = []

    def connection_made(self, transport):
        pass

    def datagram_received(self, data, addr):
        self.received.append(data)


async def allocate(port, username, password):
    return await turn.create_turn_endpoint(
        Collector, server_addr=("127.0.0.1", port), username=username, password=password
    )


async def relay_and_echo(port, username, password, sizes):
    """Sends datagrams of `sizes` through a relay to an echo peer; returns what came back."""
    loop = asyncio.get_running_loop()
    peer_t, peer = await loop.create_datagram_endpoint(lambda: Counter(True), local_addr=("127.0.0.1", 0))
    relay_t, proto = await allocate(port, username, password)
    try:
        addr = peer_t.get_extra_info("sockname")
        # aioice binds a channel on the first send; give that exchange time before the rest.
        relay_t.sendto(b"", addr)
        await asyncio.sleep(0.3)
        for n in sizes:
            relay_t.sendto(b"x" * n, addr)
            await asyncio.sleep(0.002)
        deadline = loop.time() + 10
        while len(proto.received) < len(sizes) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        relay_and_echo.peer_packets = peer.packets
        return sum(len(d) for d in proto.received), peer.bytes
    finally:
        relay_t.close()
        peer_t.close()
        await asyncio.sleep(0.3)


def allocation_fails(port, username, password):
    """True when an Allocate with these credentials is refused; returns the error code."""

    async def go():
        try:
            t, _ = await allocate(port, username, password)
        except stun.TransactionFailed as e:
            return e.response.attributes["ERROR-CODE"][0]
        t.close()
        return None

    return asyncio.run(go())


def test_usage_is_exact_with_uclient(turnpike, db, peer):
    ucl_user = uniq("ucl-user")
    t, admin = start(turnpike, db)
    _, api, _ = new_tenant(admin)
    c = ok(api.post("/v1/credentials", {"username": ucl_user, "password": "uclient-password-1", "label": "load"}), 201)
    cid = c["credential"]["id"]
    length, count = 160, 40
    r = uclient.run(t.port, ["-u", ucl_user, "-w", "uclient-password-1", "-e", "127.0.0.1", "-r", str(peer),
                             "-m", "1", "-c", "-n", str(count), "-l", str(length)])
    assert r.rc == 0, r.output
    assert r.sent == r.received == count, r.output

    def done():
        u = usage_totals(api, by="credential")["totals"]
        return u if u["peer_to_server_bytes"] == count * length else None

    u = wait_for(done, what="usage of the uclient run")
    # Payload legs are exact; the client legs add 4 bytes of ChannelData header per packet.
    assert u["server_to_peer_bytes"] == count * length
    assert u["server_to_peer_packets"] == u["peer_to_server_packets"] == count
    assert u["client_to_server_packets"] == u["server_to_client_packets"] == count
    assert u["client_to_server_bytes"] == count * (length + 4)
    assert u["server_to_client_bytes"] == count * (length + 4)
    assert u["total_bytes"] == 4 * count * length + 2 * 4 * count
    # uclient makes a second, idle allocation (its RTCP pair's), which counts but carries nothing.
    assert u["allocations"] >= 1
    groups = usage_totals(api, by="credential")["groups"]
    assert [g["key"] for g in groups] == [cid]
    # The allocation log has the allocation with the same bytes, ended.
    log = wait_for(lambda: [a for a in ok(api.get("/v1/allocations")) if a["ended_at"] and a["server_to_peer_bytes"]],
                   what="allocation log")
    assert len(log) == 1
    a = log[0]
    assert a["credential_id"] == cid and a["username"] == ucl_user and a["transport"] == "udp"
    assert a["server_to_peer_bytes"] == count * length and a["peers"] == 1
    assert a["client"].startswith("127.0.0.1:") and a["relay"].startswith("127.0.0.1:")
    csv = api.get("/v1/allocations?format=csv").text.splitlines()
    assert csv[0].startswith("id,credential_id,user_id,username,client")
    assert len(csv) == len(ok(api.get("/v1/allocations"))) + 1
    # Current period and Metered's current usage agree.
    cur = ok(api.get("/v1/usage/current"))
    assert cur["usage"]["total_bytes"] == u["total_bytes"] and cur["period"] == "month"


def test_usage_is_exact_for_rfc6062_tcp_allocations(turnpike, db):
    """uclient -T: TCP relay allocations whose data connections are spliced to peer connections
    (RFC 6062). Every byte a client writes on its data connection is counted client→server and
    server→peer on its allocation, and again peer→server and server→client on the receiving
    client's allocation: each leg totals exactly what the clients sent."""
    user = uniq("tcp-user")
    t, admin = start(turnpike, db)
    _, api, _ = new_tenant(admin)
    ok(api.post("/v1/credentials", {"username": user, "password": "tcp-relay-password"}), 201)
    length = 400
    r = uclient.run(t.port, ["-T", "-u", user, "-w", "tcp-relay-password", "-m", "2", "-n", "30", "-l", str(length)])
    assert r.rc == 0, r.output
    assert r.received == r.sent > 0 and r.lost == 0, r.output
    sent = r.sent * length

    def done():
        u = usage_totals(api, by="credential")["totals"]
        return u if u["server_to_client_bytes"] >= sent else None

    u = wait_for(done, what="usage of the TCP allocations")
    time.sleep(0.5)  # nothing more arrives: the totals are final
    u = usage_totals(api, by="credential")["totals"]
    for leg in ("client_to_server", "server_to_peer", "peer_to_server", "server_to_client"):
        assert u[f"{leg}_bytes"] == sent, (leg, u, r.sent)
    assert u["allocations"] >= 2  # at least the two ends of one connection
    # The allocation log has the same bytes, each data connection's on its own allocation.
    def logged():
        log = ok(api.get("/v1/allocations"))
        if not log or any(a["ended_at"] is None for a in log):
            return None
        sums = {leg: sum(a[f"{leg}_bytes"] for a in log) for leg in ("client_to_server", "server_to_peer", "peer_to_server", "server_to_client")}
        return sums if all(v == sent for v in sums.values()) else None

    wait_for(logged, timeout=10, what="allocation log bytes of the TCP allocations")
    assert all(a["transport"] == "tcp" for a in ok(api.get("/v1/allocations")))


def test_bitrate_cap_paces_rfc6062_data_connections(turnpike, tmp_path):
    """A credential's max_bitrate_bps also holds on RFC 6062 data connections, where bytes are
    delayed rather than dropped. The check is an upper bound on what each allocation's data
    connection carried (client->server plus peer->server, which share one bucket) over the run:
    the 16 KiB burst plus the rate times the run's length, plus one read of slack. Unpaced, the
    48 kB per connection goes through in a few seconds, far over that bound. (uclient stops
    waiting before a paced run ends, so what it reports as lost was only still queued.)"""
    user = uniq("tcp-slow")
    t, admin = start(turnpike, f"sqlite://{tmp_path / 'pace.db'}")
    _, api, _ = new_tenant(admin)
    c = ok(api.post("/v1/credentials", {"username": user, "password": "tcp-slow-password"}), 201)
    rate = 2_000  # bytes per second
    ok(api.put(f"/v1/credentials/{c['credential']['id']}/quota", {"max_bitrate_bps": rate * 8}))
    length, count = 400, 60
    t0 = time.monotonic()
    r = uclient.run(t.port, ["-T", "-u", user, "-w", "tcp-slow-password", "-m", "2", "-n", str(count), "-l", str(length)])
    wall = time.monotonic() - t0
    assert r.rc == 0, r.output

    def ended():
        log = ok(api.get("/v1/allocations"))
        return log if log and all(a["ended_at"] for a in log) else None

    log = wait_for(ended, timeout=10, what="the TCP allocations' log records")
    carried = [a["client_to_server_bytes"] + a["peer_to_server_bytes"] for a in log]
    bound = 16 * 1024 + rate * wall + 8 * 1024
    assert max(carried) > 16 * 1024, (carried, r.output)  # traffic went on past the burst
    assert all(c <= bound for c in carried), (carried, bound, wall)


def test_usage_is_exact_with_aioice_ephemeral(turnpike, db):
    t, admin = start(turnpike, db)
    _, api, _ = new_tenant(admin)
    m = ok(api.post("/v1/ephemeral-credentials", {"user_id": "alice", "tags": ["team-x"], "ttl": 600}), 201)
    assert m["username"].endswith(":alice") and m["expires_at"] - time.time() > 590
    sizes = [1 + (i * 37) % 1000 for i in range(60)]
    back, at_peer = asyncio.run(relay_and_echo(t.port, m["username"], m["password"], sizes))
    assert at_peer == sum(sizes) and back == sum(sizes)

    def done():
        rep = usage_totals(api, by="user")
        return rep if rep["totals"]["peer_to_server_bytes"] == sum(sizes) else None

    rep = wait_for(done, what="usage of the aioice run")
    assert [g["key"] for g in rep["groups"]] == ["alice"]
    assert rep["totals"]["server_to_peer_bytes"] == sum(sizes)
    # Exactly what reached the peer (the sizes, plus the empty datagram that primed aioice's
    # channel binding when aioice got it through).
    assert rep["totals"]["server_to_peer_packets"] == relay_and_echo.peer_packets
    tags = usage_totals(api, by="tag")
    assert [g["key"] for g in tags["groups"]] == ["team-x"]
    assert tags["groups"][0]["peer_to_server_bytes"] == sum(sizes)
    # The same through the ICE-servers endpoint: a ready list in each shape.
    w3c = ok(api.get("/v1/ice-servers?user_id=bob&ttl=120"))
    urls = [u for s in w3c["iceServers"] for u in s["urls"]]
    assert f"stun:127.0.0.1:{t.port}" in urls and f"turn:127.0.0.1:{t.port}?transport=udp" in urls
    assert f"turns:127.0.0.1:{t.tls_port}?transport=tcp" in urls
    assert w3c["ttl"] == 120 and abs(w3c["expiresAt"] - time.time() - 120) < 5
    turn_entry = [s for s in w3c["iceServers"] if "username" in s][0]
    back, _ = asyncio.run(relay_and_echo(t.port, turn_entry["username"], turn_entry["credential"], [100] * 5))
    assert back == 500
    arr = ok(api.get("/v1/ice-servers?format=array"))
    assert isinstance(arr, list) and any("credential" in s for s in arr)
    rest = ok(api.get("/v1/ice-servers?format=turn-rest"))
    # The TURN REST draft's fields, and the credential's expiry (our addition).
    assert set(rest) == {"username", "password", "ttl", "uris", "expires_at"}
    assert abs(rest["expires_at"] - rest["ttl"] - time.time()) < 5
    wait_for(lambda: [g for g in usage_totals(api, by="user")["groups"] if g["key"] == "bob"], what="bob's usage")


def test_disabled_credential_cannot_allocate_within_a_second(turnpike, db):
    dis_user = uniq("dis-user")
    t, admin = start(turnpike, db)
    _, api, _ = new_tenant(admin)
    c = ok(api.post("/v1/credentials", {"username": dis_user, "password": "disable-me-please"}), 201)
    cid = c["credential"]["id"]

    async def scenario():
        live, _ = await allocate(t.port, dis_user, "disable-me-please")
        t0 = time.monotonic()
        ok(api.patch(f"/v1/credentials/{cid}", {"enabled": False}))
        try:
            late, _ = await allocate(t.port, dis_user, "disable-me-please")
            late.close()
            return None, None, live
        except stun.TransactionFailed as e:
            return e.response.attributes["ERROR-CODE"][0], time.monotonic() - t0, live

    code, elapsed, live = asyncio.run(scenario())
    assert code == 401, "a disabled credential allocated"
    assert elapsed < 1.0, elapsed
    # The live allocation stays until the operator asks to disconnect it.
    wait_for(lambda: t.metric("turnpike_allocations") == 1, timeout=3, what="the allocation gauge")
    time.sleep(1.5)
    assert t.metric("turnpike_allocations") == 1
    ok(api.patch(f"/v1/credentials/{cid}", {"enabled": False, "disconnect": True}))
    wait_for(lambda: t.metric("turnpike_allocations") == 0, timeout=2, what="disconnect")
    # Re-enabled, it works again; deleted, it does not.
    ok(api.patch(f"/v1/credentials/{cid}", {"enabled": True}))
    assert allocation_fails(t.port, dis_user, "disable-me-please") is None
    assert api.delete(f"/v1/credentials/{cid}?disconnect=true").status == 204
    assert allocation_fails(t.port, dis_user, "disable-me-please") == 401


def test_disconnect_reaches_every_node(turnpike):
    """Two nodes sharing PostgreSQL: a credential holds an allocation on each; the operator
    disables it with `disconnect` through node 1, and both nodes close theirs (node 2 at its
    next directory reload, 500 ms in these tests)."""
    pg = os.environ.get("TURNPIKE_TEST_POSTGRES_URL")
    if not pg:
        pytest.fail("TURNPIKE_TEST_POSTGRES_URL is not set: run through scripts/test")
    n1, admin = start(turnpike, pg)
    n2, _ = start(turnpike, pg)
    _, api, _ = new_tenant(admin)
    user = uniq("cluster-user")
    cid = ok(api.post("/v1/credentials", {"username": user, "password": "across-the-cluster"}), 201)["credential"]["id"]

    async def scenario():
        on1, _ = await allocate(n1.port, user, "across-the-cluster")
        on2 = None
        for _ in range(30):  # node 2 learns the new credential at its next reload
            try:
                on2, _ = await allocate(n2.port, user, "across-the-cluster")
                break
            except stun.TransactionFailed:
                await asyncio.sleep(0.2)
        assert on2 is not None, "node 2 never accepted the credential"
        for n in (n1, n2):
            wait_for(lambda: n.metric("turnpike_allocations") == 1, timeout=3, what=f"an allocation on {n.port}")
        t0 = time.monotonic()
        ok(api.patch(f"/v1/credentials/{cid}", {"enabled": False, "disconnect": True}))
        # Observed through the allocation gauge, which each worker publishes once a second and
        # which a worker's timer (at most a second away) updates: up to 2 s on top of the
        # disconnect itself; 4 s leaves room for a loaded machine.
        wait_for(lambda: n1.metric("turnpike_allocations") == 0, timeout=4, what="disconnect on node 1")
        wait_for(lambda: n2.metric("turnpike_allocations") == 0, timeout=5, what="disconnect on node 2")
        elapsed = time.monotonic() - t0
        on1.close()
        on2.close()
        return elapsed

    elapsed = asyncio.run(scenario())
    assert elapsed < 6, elapsed


def test_revocation_and_expiry_of_ephemeral_credentials(turnpike, db):
    t, admin = start(turnpike, db)
    _, api, _ = new_tenant(admin)
    a = ok(api.post("/v1/ephemeral-credentials", {"user_id": "mallory"}), 201)
    b = ok(api.post("/v1/ephemeral-credentials", {"user_id": "trent"}), 201)
    assert allocation_fails(t.port, a["username"], a["password"]) is None
    ok(api.post("/v1/revocations", {"user_id": "mallory"}), 201)
    assert allocation_fails(t.port, a["username"], a["password"]) == 401
    assert allocation_fails(t.port, b["username"], b["password"]) is None
    ok(api.post("/v1/revocations", {"username": b["username"]}), 201)
    assert allocation_fails(t.port, b["username"], b["password"]) == 401
    revs = ok(api.get("/v1/revocations"))
    assert {r["kind"] for r in revs} == {"user", "username"}
    # Expired credentials are refused; a tampered password too.
    short = ok(api.post("/v1/ephemeral-credentials", {"ttl": 1}), 201)
    time.sleep(2.1)
    assert allocation_fails(t.port, short["username"], short["password"]) == 401
    c = ok(api.post("/v1/ephemeral-credentials", {}), 201)
    assert allocation_fails(t.port, c["username"], c["password"][:-2] + "AA") == 401
    # Rotating the shared secret with overlap 0 invalidates credentials minted before.
    ok(api.post("/v1/shared-secrets/rotate", {"overlap_seconds": 0}), 201)
    assert allocation_fails(t.port, c["username"], c["password"]) == 401
    fresh = ok(api.post("/v1/ephemeral-credentials", {}), 201)
    assert allocation_fails(t.port, fresh["username"], fresh["password"]) is None


def test_sigterm_mid_relay_loses_no_counted_byte(turnpike, db):
    term_user = uniq("term-user")
    t, admin = start(turnpike, db)
    _, api, _ = new_tenant(admin)
    ok(api.post("/v1/credentials", {"username": term_user, "password": "sigterm-password"}), 201)

    async def scenario():
        loop = asyncio.get_running_loop()
        peer_t, peer = await loop.create_datagram_endpoint(lambda: Counter(False), local_addr=("127.0.0.1", 0))
        relay_t, _ = await allocate(t.port, term_user, "sigterm-password")
        addr = peer_t.get_extra_info("sockname")
        sent = 0
        stop_at = None
        start_at = loop.time()
        # Bounded: at most 4000 datagrams or 5 seconds.
        for i in range(4000):
            relay_t.sendto(b"y" * 200, addr)
            sent += 1
            await asyncio.sleep(0.001)
            if stop_at is None and loop.time() - start_at > 0.8:
                t.proc.send_signal(signal.SIGTERM)
                stop_at = loop.time()
            # Sending goes on well past the stop (a stopping node drains first, relaying for a
            # moment), so the shutdown always falls mid-stream.
            if stop_at is not None and loop.time() - stop_at > 1.5 or loop.time() - start_at > 5:
                break
        await asyncio.sleep(0.5)
        peer_t.close()
        return sent, peer.bytes, peer.packets

    sent, at_peer, packets = asyncio.run(scenario())
    assert t.proc.wait(timeout=15) == 0, t.logs()
    assert 0 < packets < sent, (packets, sent)
    # Restart on the same database: the totals are exactly what reached the peer.
    t2, _ = start(turnpike, db)
    api2 = Api(t2.metrics_port, api.key)
    u = usage_totals(api2)["totals"]
    assert u["server_to_peer_bytes"] == at_peer
    assert u["server_to_peer_packets"] == packets
    # What reached the server from the client: at least what it relayed (a datagram caught by
    # the shutdown is received but not relayed), at most what the client sent.
    assert packets <= u["client_to_server_packets"] <= sent
    assert u["client_to_server_bytes"] == u["client_to_server_packets"] * 204
    assert u["allocations"] == 1


def test_bitrate_cap_throttles(turnpike, db):
    slow_user = uniq("slow-user")
    t, admin = start(turnpike, db)
    _, api, _ = new_tenant(admin)
    c = ok(api.post("/v1/credentials", {"username": slow_user, "password": "slow-password-1"}), 201)
    ok(api.put(f"/v1/credentials/{c['credential']['id']}/quota", {"max_bitrate_bps": 80_000}))

    async def scenario():
        loop = asyncio.get_running_loop()
        peer_t, peer = await loop.create_datagram_endpoint(lambda: Counter(False), local_addr=("127.0.0.1", 0))
        relay_t, _ = await allocate(t.port, slow_user, "slow-password-1")
        addr = peer_t.get_extra_info("sockname")
        for _ in range(200):
            relay_t.sendto(b"z" * 1000, addr)
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.5)
        relay_t.close()
        peer_t.close()
        return peer.bytes

    got = asyncio.run(scenario())
    # 200 kB offered in well under a second; 10 kB/s plus a 16 kB burst may pass.
    assert 16_000 <= got <= 40_000, got
    assert wait_for(lambda: (t.metric("turnpike_dropped_packets_total", reason="throttled") or 0) > 100, timeout=3, what="throttled drops")
