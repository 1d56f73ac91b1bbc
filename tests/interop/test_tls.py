"""TURN over TLS (TURNS): coturn's uclient and aioice through the TLS listener, certificates
swapped on disk (and on SIGHUP) without a restart while live connections continue, the
self-signed development certificate, and broken TLS input."""

import asyncio
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

import uclient
from conftest import LOOPBACK_OK, USERS
from stunmsg import binding, parse
from test_aioice import echo_through_relay


def make_cert(dir, name):
    cert, key = dir / f"{name}.crt", dir / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", f"/CN={name}", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def der_of(cert_path):
    return ssl.PEM_cert_to_DER_cert(cert_path.read_text())


def no_verify():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_connect(port, alpn=None):
    ctx = no_verify()
    if alpn:
        ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def stun_over(sock):
    req = binding()
    sock.sendall(req)
    data = sock.recv(4096)
    m = parse(data)
    assert m.transaction_id == req[8:20]
    return m


def test_uclient_over_tls_zero_loss(turnpike, peer):
    t = turnpike(USERS + LOOPBACK_OK)
    r = uclient.run(t.tls_port, ["-t", "-S", "-u", "u", "-w", "p", "-e", "127.0.0.1", "-r", str(peer), "-m", "4", "-n", "40"])
    assert r.rc == 0, r.output
    assert r.received == r.sent >= 160, r.output
    assert r.lost == 0, r.output
    time.sleep(1.3)
    assert t.metric("turnpike_relay_packets_total", direction="server_to_peer", transport="tls") >= 160


def test_aioice_over_tls(turnpike):
    t = turnpike(USERS + LOOPBACK_OK)

    async def go():
        from aioice import turn

        loop = asyncio.get_running_loop()
        # echo_through_relay speaks plain TCP; TLS goes through create_turn_endpoint's ssl argument.
        orig = turn.create_turn_endpoint

        async def with_tls(*a, **kw):
            kw["ssl"] = no_verify()
            return await orig(*a, **kw)

        turn.create_turn_endpoint = with_tls
        try:
            await echo_through_relay(t.tls_port, "alice", "wonderland", "tcp", count=30)
        finally:
            turn.create_turn_endpoint = orig

    asyncio.run(go())


def test_alpn_stun_turn_and_tls13(turnpike):
    t = turnpike(USERS)
    s = tls_connect(t.tls_port, alpn=["stun.turn"])
    assert s.selected_alpn_protocol() == "stun.turn"
    assert s.version() == "TLSv1.3"
    stun_over(s)
    s.close()
    ctx = no_verify()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", t.tls_port), timeout=5), server_hostname="localhost")
    assert s.version() == "TLSv1.2"
    stun_over(s)
    s.close()


def test_certificate_swapped_on_disk_and_on_sighup(turnpike, tmp_path):
    a_crt, a_key = make_cert(tmp_path, "cert-a")
    b_crt, b_key = make_cert(tmp_path, "cert-b")
    live_crt, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(a_crt, live_crt)
    shutil.copy(a_key, live_key)
    t = turnpike(USERS + f'tls_cert = "{live_crt}"\ntls_key = "{live_key}"\n')
    old = tls_connect(t.tls_port)
    assert old.getpeercert(binary_form=True) == der_of(a_crt)
    # Swap the files (as certbot would); the next connection gets B within a few seconds.
    time.sleep(1.1)  # make sure the modification time moves
    shutil.copy(b_key, tmp_path / "tmp.key")
    shutil.copy(b_crt, tmp_path / "tmp.crt")
    (tmp_path / "tmp.key").replace(live_key)
    (tmp_path / "tmp.crt").replace(live_crt)
    deadline = time.time() + 6
    got = None
    while time.time() < deadline:
        s = tls_connect(t.tls_port)
        got = s.getpeercert(binary_form=True)
        s.close()
        if got == der_of(b_crt):
            break
        time.sleep(0.3)
    assert got == der_of(b_crt), t.logs()
    # The connection made before the swap still works.
    stun_over(old)
    old.close()
    # SIGHUP reloads too: put A back without touching mtimes' order, then signal.
    shutil.copy(a_key, live_key)
    shutil.copy(a_crt, live_crt)
    t.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    s = tls_connect(t.tls_port)
    assert s.getpeercert(binary_form=True) == der_of(a_crt)
    s.close()
    assert "TLS certificate reloaded" in t.logs()


def test_broken_certificate_on_reload_keeps_the_old_one(turnpike, tmp_path):
    a_crt, a_key = make_cert(tmp_path, "cert-a")
    t = turnpike(USERS + f'tls_cert = "{a_crt}"\ntls_key = "{a_key}"\n')
    a_crt.write_text("not a certificate")
    t.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    s = tls_connect(t.tls_port)
    stun_over(s)
    s.close()
    assert "reload failed" in t.logs()


def test_self_signed_default_is_announced(turnpike):
    t = turnpike(USERS)
    assert "SELF-SIGNED" in t.logs()
    s = tls_connect(t.tls_port)
    stun_over(s)
    s.close()


def test_broken_tls_input_closes_connection_only(turnpike):
    t = turnpike(USERS + "tls_handshake_timeout = 1\n")
    # Garbage instead of a ClientHello.
    s = socket.create_connection(("127.0.0.1", t.tls_port), timeout=5)
    s.sendall(b"\x16\x03\x01\xff\xff" + b"\x00" * 100)
    data = s.recv(100)
    # Either a TLS alert (content type 21) or a plain close; then the stream ends.
    assert data == b"" or data[0] == 21, data
    if data:
        assert s.recv(100) == b""
    s.close()
    # A plain STUN request on the TLS port: not TLS, connection closed.
    s = socket.create_connection(("127.0.0.1", t.tls_port), timeout=5)
    s.sendall(binding())
    data = s.recv(100)
    assert not data.startswith(b"\x01\x01"), "must not answer STUN on a TLS port"
    s.close()
    # A partial ClientHello and silence: dropped after the handshake timeout.
    s = socket.create_connection(("127.0.0.1", t.tls_port), timeout=5)
    s.sendall(b"\x16\x03\x01\x00\x50\x01")
    start = time.time()
    assert s.recv(100) == b""
    assert time.time() - start < 4
    s.close()
    # Others are still served.
    s = tls_connect(t.tls_port)
    stun_over(s)
    s.close()


def test_tls_and_dtls_over_ipv6(turnpike, peer):
    t = turnpike(USERS + LOOPBACK_OK)
    ctx = no_verify()
    with ctx.wrap_socket(socket.create_connection(("::1", t.tls_port), timeout=5), server_hostname="localhost") as s:
        m = stun_over(s)
        assert m.attributes["XOR-MAPPED-ADDRESS"][0] == "::1"
    r = uclient.run(t.tls_port, ["-t", "-S", "-u", "u", "-w", "p", "-e", "::1", "-r", str(peer), "-m", "2", "-n", "20", "-c"], host="::1")
    assert r.rc == 0 and r.received == r.sent == 40 and r.lost == 0, r.output
    p = subprocess.Popen(["openssl", "s_client", "-dtls1_2", "-connect", f"[::1]:{t.tls_port}", "-quiet"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.8)
        req = binding()
        p.stdin.write(req)
        p.stdin.flush()
        import os
        import select

        ready, _, _ = select.select([p.stdout], [], [], 3)
        assert ready, "no answer over DTLS/IPv6"
        m = parse(os.read(p.stdout.fileno(), 4096))
        assert m.transaction_id == req[8:20]
        assert m.attributes["XOR-MAPPED-ADDRESS"][0] == "::1"
    finally:
        p.kill()
        p.wait()
