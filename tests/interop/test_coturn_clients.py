"""Turnpike driven by coturn's own clients: turnutils_uclient in every relay mode, relaying to
turnutils_peer, and turnutils_stunclient. Zero loss and exact message counts are required."""

import re
import subprocess
import time

import pytest

import uclient
from conftest import LOOPBACK_OK, USERS

SESSIONS = 4
MESSAGES = 40


MODES = {
    # name: (uclient flags, uses the echo peer)
    "udp-channels": (["-u", "u", "-w", "p"], True),
    "udp-send-indications": (["-s", "-u", "u", "-w", "p"], True),
    "tcp-channels": (["-t", "-u", "u", "-w", "p"], True),
    "tcp-send-indications": (["-t", "-s", "-u", "u", "-w", "p"], True),
    "udp-client-to-client": (["-y", "-u", "u", "-w", "p"], False),
    "tcp-client-to-client": (["-t", "-y", "-u", "u", "-w", "p"], False),
    "udp-ipv4-dontfragment-nortcp-indications": (["-X", "-g", "-c", "-s", "-u", "u", "-w", "p"], True),
    "udp-1200-byte": (["-u", "alice", "-w", "wonderland", "-l", "1200"], True),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_uclient_modes_zero_loss(turnpike, peer, mode):
    t = turnpike(USERS + LOOPBACK_OK)
    flags, uses_peer = MODES[mode]
    args = list(flags) + ["-m", str(SESSIONS), "-n", str(MESSAGES)]
    if "-l" not in flags:
        args += ["-l", "100"]
    if uses_peer:
        args += ["-e", "127.0.0.1", "-r", str(peer)]
    r = uclient.run(t.port, args)
    assert r.rc == 0, r.output
    # Without -c, sessions come in RTP+RTCP pairs; -y rounds up to a multiple of 4.
    assert r.sent >= SESSIONS * MESSAGES, r.output
    assert r.received == r.sent, r.output
    assert r.lost == 0, r.output
    assert "error" not in r.output.lower() or "error 437" in r.output.lower(), r.output


def test_uclient_ipv6_relay(turnpike, peer):
    t = turnpike(USERS + LOOPBACK_OK)
    r = uclient.run(t.port, ["-x", "-u", "u", "-w", "p", "-e", "::1", "-r", str(peer), "-m", "2", "-n", "30"], host="::1")
    assert r.rc == 0, r.output
    assert r.received == r.sent > 0, r.output
    assert r.lost == 0, r.output


def test_ipv4_relay_for_a_client_that_came_over_ipv6(turnpike, peer):
    """A client reaching the server over ::1 that asks for the default relay family (IPv4, RFC
    8656) gets an IPv4 relay on the server's IPv4 listener address (no relay_ipv4 configured),
    not 440, and relays to an IPv4 peer."""
    t = turnpike(USERS + LOOPBACK_OK)
    r = uclient.run(t.port, ["-u", "u", "-w", "p", "-e", "127.0.0.1", "-r", str(peer), "-m", "2", "-n", "30", "-c"], host="::1")
    assert r.rc == 0, r.output
    assert r.received == r.sent > 0, r.output
    assert r.lost == 0, r.output


def test_uclient_dual_allocation(turnpike, peer):
    """-Z asks for an IPv4 and an IPv6 relay in one Allocate (RFC 6156 ADDITIONAL-ADDRESS-FAMILY)."""
    t = turnpike(USERS + LOOPBACK_OK)
    r = uclient.run(t.port, ["-Z", "-u", "u", "-w", "p", "-e", "127.0.0.1", "-r", str(peer), "-m", "2", "-n", "30", "-c"])
    assert r.rc == 0, r.output
    assert r.received == r.sent > 0, r.output
    assert r.lost == 0, r.output


def test_uclient_shared_secret_auth(turnpike, peer):
    t = turnpike('shared_secrets = ["north-secret-1", "rotated-secret-2"]\n' + LOOPBACK_OK)
    for secret in ["north-secret-1", "rotated-secret-2"]:
        r = uclient.run(t.port, ["-W", secret, "-u", "someuser", "-e", "127.0.0.1", "-r", str(peer), "-m", "2", "-n", "30"])
        assert r.rc == 0, r.output
        assert r.received == r.sent > 0, r.output
    r = uclient.run(t.port, ["-W", "not-the-secret", "-u", "someuser", "-e", "127.0.0.1", "-r", str(peer), "-m", "1", "-n", "5"])
    assert r.rc == 255, r.output
    assert "Cannot complete Allocation" in r.output


def test_uclient_wrong_password_fails(turnpike, peer):
    t = turnpike(USERS + LOOPBACK_OK)
    r = uclient.run(t.port, ["-u", "u", "-w", "wrong", "-e", "127.0.0.1", "-r", str(peer), "-m", "1", "-n", "5"])
    assert r.rc == 255, r.output
    assert "Cannot complete Allocation" in r.output
    time.sleep(1.2)  # counters are exported once a second
    assert t.metric("turnpike_auth_failures_total") >= 1


def test_loopback_peer_refused_by_default(turnpike, peer):
    t = turnpike(USERS)
    r = uclient.run(t.port, ["-u", "u", "-w", "p", "-e", "127.0.0.1", "-r", str(peer), "-m", "1", "-n", "5", "-c"])
    # The allocation succeeds but the ChannelBind to 127.0.0.1 is refused with 403.
    assert r.received <= 0, r.output
    assert "403" in r.output, r.output


def test_stunclient(turnpike):
    t = turnpike(USERS)
    p = subprocess.run(["turnutils_stunclient", "-p", str(t.port), "127.0.0.1"], capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    m = re.search(r"reflexive addr: 127\.0\.0\.1:(\d+)", out)
    assert m, out
    assert int(m.group(1)) > 0


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_uclient_rfc6062_tcp_allocations(turnpike, tls):
    """-T: TCP relay allocations; the clients Connect to each other's relayed TCP address, get
    ConnectionAttempt, and ConnectionBind data connections (RFC 6062)."""
    t = turnpike(USERS + LOOPBACK_OK)
    args = ["-T", "-u", "u", "-w", "p", "-m", "8", "-n", "50", "-l", "500"]
    port = t.port
    if tls:
        args.insert(0, "-S")
        port = t.tls_port
    r = uclient.run(port, args)
    assert r.rc == 0, r.output
    assert r.received == r.sent >= 400, r.output
    assert r.lost == 0, r.output
    time.sleep(1.3)
    transport = "tls" if tls else "tcp"
    assert t.metric("turnpike_relay_bytes_total", direction="server_to_peer", transport=transport) >= r.sent * 500


def test_tcp_connections_per_source_limited(turnpike):
    import socket

    t = turnpike(USERS + "tcp_max_per_source = 3\nworkers = 1\n")
    held = [socket.create_connection(("127.0.0.1", t.port), timeout=2) for _ in range(3)]
    extra = socket.create_connection(("127.0.0.1", t.port), timeout=2)
    extra.settimeout(2)
    assert extra.recv(10) == b"", "the fourth connection from one source is closed"
    for s in held:
        s.close()
    extra.close()


def test_many_tcp_sessions_from_one_source(turnpike, peer):
    """40 TCP clients from one address all get their challenges (stream clients never
    retransmit, so challenges are only rate limited on UDP)."""
    t = turnpike(USERS + LOOPBACK_OK)
    r = uclient.run(t.port, ["-t", "-u", "u", "-w", "p", "-e", "127.0.0.1", "-r", str(peer), "-m", "40", "-n", "20", "-c"])
    assert r.rc == 0, r.output
    assert r.received == r.sent == 800 and r.lost == 0, r.output
