"""Security regressions on the relay (issue 10), each over real sockets against the real binary:
relayed addresses are never shared between allocations, whatever the transport."""

import socket
import struct
import time

from conftest import LOOPBACK_OK, USERS, free_port_range
import turnclient as tc

# These tests fill tiny relay ranges on purpose: no per-user share of the capacity.
UNCAPPED = "max_allocations_per_user = 0\n"

def tcp_allocation(t, user="alice", password="wonderland"):
    c = tc.TurnClient(tc.Conn(("127.0.0.1", t.port), "tcp"), user, password)
    return c, c.allocate(transport=6)


def udp_allocation(t, user="u", password="p"):
    c = tc.TurnClient(tc.Conn(("127.0.0.1", t.port), "udp"), user, password)
    return c, c.allocate(transport=17)


def test_relay_addresses_are_never_shared_between_allocations(turnpike):
    """A 2-port range: one TCP and one UDP allocation get the two ports; further allocations of
    either transport get 508, and each relay's peer traffic reaches its own allocation only."""
    lo, hi = free_port_range(2)
    t = turnpike(USERS + LOOPBACK_OK + UNCAPPED, relay_range=(lo, hi))
    a, ra = tcp_allocation(t)
    assert ra.cls == tc.SUCCESS, ra
    b, rb = udp_allocation(t)
    assert rb.cls == tc.SUCCESS, rb
    a_addr, b_addr = ra.xor(tc.A_XOR_RELAYED), rb.xor(tc.A_XOR_RELAYED)
    assert a_addr[1] != b_addr[1], f"UDP and TCP relays share {a_addr}"
    # The range is full: refused with 508, never a shared address.
    for make in (tcp_allocation, udp_allocation, tcp_allocation):
        _, r = make(t)
        assert r.cls == tc.ERROR and r.error == 508, r

    # Peer traffic: 20 TCP connections to A's relay all reach A (ConnectionAttempt on A's
    # control connection), 20 UDP datagrams to B's relay all reach B.
    assert a.create_permission("127.0.0.1").cls == tc.SUCCESS
    assert b.create_permission("127.0.0.1").cls == tc.SUCCESS
    peers = []
    for _ in range(20):
        s = socket.create_connection(a_addr, timeout=2)
        peers.append(s)
    attempts = 0
    a.conn.sock.settimeout(3)
    while attempts < 20:
        m = tc.decode(a.conn.recv_frame())
        if m.method == tc.CONNECTION_ATTEMPT:
            attempts += 1
    assert attempts == 20
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as p:
        p.bind(("127.0.0.1", 0))
        for i in range(20):
            p.sendto(b"to-b-%d" % i, b_addr)
        got = 0
        b.conn.sock.settimeout(2)
        try:
            while got < 20:
                m = tc.decode(b.conn.recv_frame())
                if m.method == tc.DATA and m.get(tc.A_DATA).startswith(b"to-b-"):
                    got += 1
        except socket.timeout:
            pass
        assert got == 20
    for s in peers:
        s.close()


def test_released_relay_port_is_reused_only_after_release(turnpike):
    """With one port, a second TCP allocation waits for the first to go (508 meanwhile)."""
    lo, _ = free_port_range(1)
    t = turnpike(USERS + LOOPBACK_OK + UNCAPPED, relay_range=(lo, lo))
    a, ra = tcp_allocation(t)
    assert ra.cls == tc.SUCCESS
    _, r = tcp_allocation(t)
    assert r.error == 508
    a.conn.close()  # the allocation goes with its control connection
    deadline = time.time() + 5
    while True:
        c, r = tcp_allocation(t)
        if r.cls == tc.SUCCESS or time.time() > deadline:
            break
        c.conn.close()
        time.sleep(0.2)
    assert r.cls == tc.SUCCESS, r
    assert r.xor(tc.A_XOR_RELAYED)[1] == lo


def test_the_server_itself_is_never_a_peer(turnpike):
    """Even with loopback opened to relaying, a client cannot reach the server's own listeners
    through its relay: ChannelBind and Connect get 403, and a Binding sent through the relay to
    the server's own port gets no answer back."""
    t = turnpike(USERS + LOOPBACK_OK)
    c, r = udp_allocation(t)
    assert r.cls == tc.SUCCESS, r
    assert c.create_permission("127.0.0.1").cls == tc.SUCCESS
    for port in (t.port, t.tls_port, t.mux_port, t.metrics_port):
        m = c._with_peer(tc.CHANNEL_BIND, "127.0.0.1", port,
                         extra=[(tc.A_CHANNEL, struct.pack("!HH", 0x4001, 0))])
        assert m.cls == tc.ERROR and m.error == 403, (port, m)
    # A Binding request sent through the relay to the server's own UDP port.
    binding = tc.encode(tc.BINDING, tc.REQUEST, b"\x01" * 12, [])
    for _ in range(3):
        c.send_indication("127.0.0.1", t.port, binding)
    c.conn.sock.settimeout(1.0)
    got = []
    try:
        while True:
            got.append(tc.decode(c.conn.recv_frame()))
    except socket.timeout:
        pass
    assert not [m for m in got if m.method == tc.DATA], got
    # A relay-to-relay path between two allocations of the same server stays allowed.
    d, rd = udp_allocation(t, "alice", "wonderland")
    d_ip, d_port = rd.xor(tc.A_XOR_RELAYED)
    m = c._with_peer(tc.CHANNEL_BIND, d_ip, d_port,
                     extra=[(tc.A_CHANNEL, struct.pack("!HH", 0x4002, 0))])
    assert m.cls == tc.SUCCESS, m
    # RFC 6062: no Connect to the server's own TCP listener either.
    a, ra = tcp_allocation(t)
    assert ra.cls == tc.SUCCESS
    m = a.connect("127.0.0.1", t.port)
    assert m.cls == tc.ERROR and m.error == 403, m


def test_ipv4_policy_applies_to_embedded_ipv4_and_documentation_ranges(turnpike):
    """Default policy: NAT64, 6to4, IPv4-compatible and SIIT forms of refused IPv4 addresses are
    refused (403), and documentation ranges are refused as the policy says."""
    t = turnpike(USERS)
    c6 = tc.TurnClient(tc.Conn(("127.0.0.1", t.port), "udp"), "u", "p")
    r = c6.allocate(extra=[(tc.A_REQ_FAMILY, bytes([2, 0, 0, 0]))])
    assert r.cls == tc.SUCCESS, r
    for peer in ["64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "2002:7f00:1::1",
                 "2002:a9fe:a9fe::1", "::7f00:1", "::ffff:0:7f00:1", "::ffff:0:a9fe:a9fe",
                 "2001:db8::1"]:
        m = c6.create_permission(peer)
        assert m.cls == tc.ERROR and m.error == 403, (peer, m)
    m = c6.create_permission("64:ff9b::808:808")
    assert m.cls == tc.SUCCESS, m
    c4 = tc.TurnClient(tc.Conn(("127.0.0.1", t.port), "udp"), "alice", "wonderland")
    assert c4.allocate().cls == tc.SUCCESS
    for peer in ["192.0.2.1", "198.51.100.1", "203.0.113.1"]:
        m = c4.create_permission(peer)
        assert m.cls == tc.ERROR and m.error == 403, (peer, m)
    assert c4.create_permission("8.8.8.8").cls == tc.SUCCESS


def test_one_user_cannot_take_the_whole_relay_range_by_default(turnpike):
    """With no quota configured, one user gets at most a quarter of the relay capacity (486
    after that), so another user still gets an allocation instead of 508."""
    lo, hi = free_port_range(200)
    t = turnpike(USERS, relay_range=(lo, hi))
    held, refused = [], None
    for _ in range(201):
        c, r = udp_allocation(t)
        if r.cls != tc.SUCCESS:
            refused = r
            break
        held.append(c)
    assert refused is not None and refused.error == 486, (len(held), refused)
    assert len(held) == 50, len(held)
    other, r = udp_allocation(t, "alice", "wonderland")
    assert r.cls == tc.SUCCESS, r
