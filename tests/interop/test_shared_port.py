"""One TCP port for TURN, TURNS, HTTP and HTTPS (RFC 7443 ALPN plus first-byte sniffing), and
the ICE-server list the node hands to clients."""

import json
import socket
import ssl
import subprocess

import pytest

import uclient
from conftest import BIN, LOOPBACK_OK, USERS
from stunmsg import binding, parse


def read_all(s):
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return data
        data += chunk


def https_get(port, path, alpn):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            return s.selected_alpn_protocol(), read_all(s).decode()


def http_get(port, path, extra_headers=""):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra_headers}\r\n".encode())
        return read_all(s).decode()


def body(resp):
    return json.loads(resp.split("\r\n\r\n", 1)[1])


@pytest.mark.parametrize("alpn", [["http/1.1"], None], ids=["alpn-http", "no-alpn"])
def test_https_on_shared_port(turnpike, alpn):
    t = turnpike(USERS)
    selected, resp = https_get(t.mux_port, "/healthz", alpn)
    assert resp.startswith("HTTP/1.1 200"), resp
    assert body(resp) == {"status": "ok"}
    assert selected == ("http/1.1" if alpn else None)
    _, resp = https_get(t.mux_port, "/nope", alpn)
    assert resp.startswith("HTTP/1.1 404"), resp
    assert body(resp)["error"]["code"] == "not_found"


def test_plain_http_and_metrics_on_shared_port(turnpike):
    """/healthz on the shared port; /metrics there only with the configured bearer token (the
    public port serves no internals by default: see test_security_server)."""
    t = turnpike(USERS + 'metrics_token = "scrape-token-0123456789"\n')
    resp = http_get(t.mux_port, "/healthz")
    assert resp.startswith("HTTP/1.1 200") and body(resp) == {"status": "ok"}
    import time

    time.sleep(1.3)  # counters are published once a second
    resp = http_get(t.mux_port, "/metrics", "Authorization: Bearer scrape-token-0123456789\r\n")
    assert resp.startswith("HTTP/1.1 200") and "turnpike_requests_total" in resp, resp
    assert http_get(t.mux_port, "/metrics").startswith("HTTP/1.1 401")


def test_turns_with_alpn_and_https_share_the_port(turnpike):
    t = turnpike(USERS)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["stun.turn"])
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", t.mux_port), timeout=5), server_hostname="localhost") as s:
        assert s.selected_alpn_protocol() == "stun.turn"
        req = binding()
        s.sendall(req)
        m = parse(s.recv(4096))
        assert m.transaction_id == req[8:20]
    _, resp = https_get(t.mux_port, "/healthz", ["http/1.1"])
    assert resp.startswith("HTTP/1.1 200")


@pytest.mark.parametrize("tls", [False, True], ids=["turn-tcp", "turns"])
def test_uclient_on_shared_port(turnpike, peer, tls):
    t = turnpike(USERS + LOOPBACK_OK)
    args = ["-t", "-u", "u", "-w", "p", "-e", "127.0.0.1", "-r", str(peer), "-m", "4", "-n", "30"]
    if tls:
        args.insert(0, "-S")
    r = uclient.run(t.mux_port, args)
    assert r.rc == 0, r.output
    assert r.received == r.sent >= 120 and r.lost == 0, r.output


def test_garbage_on_shared_port_is_closed(turnpike):
    t = turnpike(USERS)
    with socket.create_connection(("127.0.0.1", t.mux_port), timeout=3) as s:
        s.sendall(b"\xfe\xfe\xfe\xfe")
        try:
            assert s.recv(10) == b""
        except ConnectionResetError:
            pass  # closed with our bytes unread: a reset is the kernel's way of saying so
    assert http_get(t.mux_port, "/healthz").startswith("HTTP/1.1 200")


def test_ice_servers_command(turnpike, tmp_path):
    cfg = tmp_path / "ice.toml"
    cfg.write_text(
        'shared_secrets = ["ice-secret-123"]\npublic_host = "turn.example.com"\n'
        'listen_udp = ["0.0.0.0:3478"]\nlisten_tcp = ["0.0.0.0:3478"]\nlisten_tls = ["0.0.0.0:5349"]\n'
        'listen_dtls = []\nlisten_mux = ["0.0.0.0:443"]\n'
    )
    out = subprocess.run([BIN, "--config", str(cfg), "ice-servers", "--user", "carol", "--ttl", "600"],
                         capture_output=True, text=True, check=True).stdout
    doc = json.loads(out)
    assert doc["ttl"] == 600
    stun_entry, turn_entry = doc["iceServers"]
    assert stun_entry == {"urls": ["stun:turn.example.com:3478"]}
    assert turn_entry["urls"] == [
        "turn:turn.example.com:3478?transport=udp",
        "turn:turn.example.com:3478?transport=tcp",
        "turn:turn.example.com:443?transport=tcp",
        "turns:turn.example.com:5349?transport=tcp",
        "turns:turn.example.com:443?transport=tcp",
    ]
    assert turn_entry["username"].endswith(":carol")
    import base64, hashlib, hmac

    expected = base64.b64encode(hmac.new(b"ice-secret-123", turn_entry["username"].encode(), hashlib.sha1).digest()).decode()
    assert turn_entry["credential"] == expected
