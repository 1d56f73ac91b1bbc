"""`turnpike probe` against real servers on loopback: Turnpike itself over UDP, TCP, TLS and DTLS
(its development certificate, `--insecure`), the shared port and IPv6; wrong credentials;
coturn's `turnserver` (another implementation, started here with its own temporary
configuration, with TLS and DTLS from a CA this test makes and `--ca`); and credentials fetched
from the control plane's ICE-servers API (`--api`, `--api-key`) in both its shapes."""

import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest

from api import ADMIN_KEY, Api, control_toml, new_tenant, ok, uniq
from conftest import BIN, LOOPBACK_OK, USERS, free_port, free_port_range, stun_binding
import turnclient as tc


def probe(*args, timeout=120):
    """Runs `turnpike probe ARGS`; returns (exit code, stdout, stderr)."""
    p = subprocess.run([BIN, "probe", *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def probe_json(*args):
    code, out, err = probe(*args, "--json")
    return code, json.loads(out), out + err


def assert_all_ok(report, rows, turn=True):
    """Every row ok, with the measurements a TURN (or STUN) probe reports."""
    assert report["ok"] is True, report
    assert len(report["results"]) == rows, report
    for r in report["results"]:
        assert r["result"] == "ok" and "reason" not in r, r
        assert r["binding_rtt_ms"] > 0 and r["mapped"], r
        is_turn = not r["url"].startswith("stun:") and turn
        if is_turn:
            # Both allocations relayed through each other: the round trip was measured.
            assert r["allocate_ms"] > 0 and r["relay_rtt_ms"] > 0 and r["relayed"], r


def allocations_gone(t):
    """The probe refreshed every allocation it made with lifetime 0 (none left to expire)."""
    deadline = time.time() + 10
    while time.time() < deadline:
        created = t.metric("turnpike_allocations_created_total") or 0
        deleted = t.metric("turnpike_allocations_deleted_total") or 0
        if created > 0 and created == deleted and not t.metric("turnpike_allocations"):
            return created
        time.sleep(0.2)
    raise AssertionError(f"allocations left behind:\n{t.metrics()}")


def test_probe_turnpike_every_transport(turnpike):
    t = turnpike(USERS + LOOPBACK_OK)
    urls = [
        f"127.0.0.1:{t.port}",  # UDP and TCP
        f"turn:[::1]:{t.port}?transport=udp",
        f"turns:127.0.0.1:{t.tls_port}?transport=tcp",
        f"turns:127.0.0.1:{t.tls_port}?transport=udp",  # DTLS
        f"turns:127.0.0.1:{t.mux_port}?transport=tcp",  # the shared port: TLS with ALPN
        f"turn:127.0.0.1:{t.mux_port}?transport=tcp",  # the shared port: plain TCP
        f"stun:127.0.0.1:{t.port}",
    ]
    code, report, text = probe_json(*urls, "--username", "alice", "--password", "wonderland", "--insecure")
    assert code == 0, text
    assert_all_ok(report, rows=8)
    by = {(r["url"], r["transport"]): r for r in report["results"]}
    assert by[(f"127.0.0.1:{t.port}", "udp")]["server"] == f"127.0.0.1:{t.port}"
    # Over IPv6 the mapped address is IPv6; the relay is IPv4, the RFC 8656 default.
    v6 = by[(f"turn:[::1]:{t.port}?transport=udp", "udp")]
    assert v6["server"] == f"[::1]:{t.port}" and v6["mapped"].startswith("[::1]:"), v6
    assert by[(f"turns:127.0.0.1:{t.tls_port}?transport=tcp", "tls")]["software"].startswith("Turnpike")
    assert by[(f"turns:127.0.0.1:{t.tls_port}?transport=udp", "dtls")]["relay_rtt_ms"] > 0
    for r in report["results"]:
        if r["relayed"] and r["relayed"].startswith("127.0.0.1:"):
            assert 61000 <= int(r["relayed"].rsplit(":", 1)[1]) <= 65000, r
    # Two allocations per TURN row, all deleted by the probe's Refresh (lifetime 0).
    assert allocations_gone(t) == 2 * 7
    # The table: a header and one "ok" row per URL and transport; the warning of --insecure.
    code, out, err = probe(*urls[:3], "--username", "alice", "--password", "wonderland", "--insecure")
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["URL", "TRANSPORT", "RESULT"]
    assert len(lines) == 1 + 4 and all(" ok " in line for line in lines[1:]), out
    assert "--insecure" in err
    # Without --insecure the development certificate is refused, and says why.
    code, out, _ = probe(f"turns:127.0.0.1:{t.tls_port}", "--username", "u", "--password", "p")
    assert code == 1 and "TLS handshake failed" in out and "UnknownIssuer" in out, out
    code, out, _ = probe(f"turns:127.0.0.1:{t.tls_port}?transport=udp", "--username", "u", "--password", "p")
    assert code == 1 and "DTLS handshake failed" in out and "UnknownIssuer" in out, out


def test_probe_wrong_password_fails_with_401(turnpike):
    t = turnpike(USERS + LOOPBACK_OK)
    code, out, err = probe(f"127.0.0.1:{t.port}", "--username", "alice", "--password", "nope")
    assert code == 1, out + err
    fails = [line for line in out.splitlines() if line.strip().startswith("FAIL:")]
    assert len(fails) == 2, out
    assert all("Allocate: 401 wrong credentials" in f for f in fails), out
    assert "nope" not in out + err
    code, report, text = probe_json(f"turn:127.0.0.1:{t.port}?transport=tcp", "--username", "alice",
                                    "--password", "nope")
    assert code == 1 and report["ok"] is False, text
    r = report["results"][0]
    assert r["result"] == "fail" and r["reason"].startswith("Allocate: 401"), r
    # The Binding before it still worked.
    assert r["mapped"].startswith("127.0.0.1:") and r["relayed"] is None
    # A TURN URL without credentials, and a port where nothing listens, fail with their reason.
    dead = free_port()
    code, out, _ = probe(f"turn:127.0.0.1:{t.port}", f"turn:127.0.0.1:{dead}?transport=tcp")
    assert code == 1 and "needs --username and --password" in out and "connect failed" in out, out


@contextlib.contextmanager
def udp_tap(server_port):
    """A UDP forwarder on 127.0.0.1 between the probe and the server that keeps every datagram
    the probe sent. Each client address gets its own upstream socket, so the server still sees
    one 5-tuple per client. Yields (port, list of datagrams)."""
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", 0))
    seen, upstream, stop = [], {}, threading.Event()
    sel = selectors.DefaultSelector()
    sel.register(front, selectors.EVENT_READ, None)

    def pump():
        while not stop.is_set():
            for key, _ in sel.select(timeout=0.1):
                data, addr = key.fileobj.recvfrom(70000)
                if key.data is None:  # from the probe: keep it, send it on
                    seen.append(data)
                    if addr not in upstream:
                        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        up.connect(("127.0.0.1", server_port))
                        upstream[addr] = up
                        sel.register(up, selectors.EVENT_READ, addr)
                    upstream[addr].send(data)
                else:  # from the server: back to that client
                    front.sendto(data, key.data)

    worker = threading.Thread(target=pump, daemon=True)
    worker.start()
    try:
        yield front.getsockname()[1], seen
    finally:
        stop.set()
        worker.join()
        sel.close()
        for s in [front, *upstream.values()]:
            s.close()


@pytest.mark.parametrize("anonymity", [False, True])
def test_probe_answers_the_challenge_as_rfc8489_says(turnpike, anonymity):
    """On the wire: the first Allocate has no credentials; after Turnpike's 401 (nonce cookie
    with the password-algorithms bit, PASSWORD-ALGORITHMS offering SHA-256 and MD5) the probe
    picks SHA-256, echoes both algorithm attributes and signs with MESSAGE-INTEGRITY-SHA256;
    with static users alone and no control plane Turnpike's nonce also asks for username
    anonymity, and the probe sends USERHASH instead of USERNAME."""
    extra = "control_plane = false\n" if anonymity else ""
    t = turnpike(USERS + LOOPBACK_OK + extra)
    with udp_tap(t.port) as (port, seen):
        code, out, err = probe(f"turn:127.0.0.1:{port}", "--username", "alice", "--password", "wonderland")
    assert code == 0, out + err
    msgs = [tc.decode(d) for d in seen if d[0] < 4]
    allocates = [m for m in msgs if m.method == tc.ALLOCATE and m.cls == tc.REQUEST]
    assert len(allocates) == 4, allocates  # two allocations, each challenged once
    plain = [m for m in allocates if not m.has(tc.A_NONCE)]
    signed = [m for m in msgs if m.cls == tc.REQUEST and m.has(tc.A_NONCE)]
    assert len(plain) == 2 and not any(m.has(tc.A_MI) or m.has(tc.A_MI_SHA256) for m in plain)
    # Allocate x2, CreatePermission x2, ChannelBind x2, Refresh x2.
    assert sorted(m.method for m in signed) == sorted([tc.ALLOCATE, tc.CREATE_PERMISSION, tc.CHANNEL_BIND,
                                                       tc.REFRESH] * 2)
    realm = b"test"
    for m in signed:
        assert m.get(tc.A_PASSWORD_ALGORITHM) == bytes([0, tc.ALG_SHA256, 0, 0]), m
        offered = m.get(tc.A_PASSWORD_ALGORITHMS)
        assert offered is not None and bytes([0, tc.ALG_SHA256, 0, 0]) in offered, m
        assert m.has(tc.A_MI_SHA256) and not m.has(tc.A_MI), m
        assert tc.nonce_features(m.get(tc.A_NONCE)) == {"password_algorithms": True,
                                                        "username_anonymity": anonymity}
        if anonymity:
            assert m.get(tc.A_USERHASH) == tc.userhash("alice", "test") and not m.has(tc.A_USERNAME), m
        else:
            assert m.get(tc.A_USERNAME) == b"alice" and not m.has(tc.A_USERHASH), m
        assert m.get(tc.A_REALM) == realm
        # The integrity is the SHA-256 long-term key's (recomputed here from the RFC text).
        key = tc.long_term_key("alice", "test", "wonderland", tc.ALG_SHA256)
        body = [(typ, v) for typ, v in m.attrs if typ not in (tc.A_MI_SHA256, tc.A_FINGERPRINT)]
        again = tc.decode(tc.encode(m.method, m.cls, m.tid, body, key=key, sha256=True))
        assert again.get(tc.A_MI_SHA256) == m.get(tc.A_MI_SHA256), m
    refreshes = [m for m in signed if m.method == tc.REFRESH]
    assert all(m.get(tc.A_LIFETIME) == b"\x00\x00\x00\x00" for m in refreshes)


def make_ca_and_leaf(d):
    """A CA and a leaf for localhost/127.0.0.1 signed by it (OpenSSL), for coturn's TLS/DTLS."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed (scripts/install-prereqs installs it)")

    def run(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=d)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=probe test CA")
    run("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "leaf.pem", "-days", "2", "-extfile", "ext.cnf")
    return d / "ca.pem", d / "leaf.pem", d / "leaf.key"


def test_probe_coturn(tmp_path):
    if shutil.which("turnserver") is None:
        pytest.fail("coturn's turnserver is not installed (scripts/install-prereqs installs coturn)")
    ca, cert, key = make_ca_and_leaf(tmp_path)
    port, tls_port = free_port(), free_port()
    lo, hi = free_port_range(20)
    log = open(tmp_path / "coturn.log", "w+")
    proc = subprocess.Popen(
        ["turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
         f"--listening-port={port}", f"--tls-listening-port={tls_port}", f"--cert={cert}", f"--pkey={key}",
         f"--min-port={lo}", f"--max-port={hi}", "--lt-cred-mech", "--user=u:p", "--realm=test",
         "--allow-loopback-peers", "--no-cli", "--log-file=stdout", "--simple-log",
         f"--pidfile={tmp_path / 'coturn.pid'}", f"--userdb={tmp_path / 'turndb'}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 15
        while stun_binding(port) is None:
            assert proc.poll() is None, (tmp_path / "coturn.log").read_text()
            assert time.time() < deadline, "coturn did not answer STUN"
            time.sleep(0.1)
        code, report, text = probe_json(f"127.0.0.1:{port}", f"turns:localhost:{tls_port}?transport=tcp",
                                        f"turns:localhost:{tls_port}?transport=udp", f"stun:127.0.0.1:{port}",
                                        "--username", "u", "--password", "p", "--ca", str(ca))
        assert code == 0, text + (tmp_path / "coturn.log").read_text()
        assert_all_ok(report, rows=5)
        assert [r["transport"] for r in report["results"]] == ["udp", "tcp", "tls", "dtls", "udp"]
        for r in report["results"][:4]:
            assert lo <= int(r["relayed"].rsplit(":", 1)[1]) <= hi, r
        assert "Coturn" in (report["results"][0]["software"] or ""), report
        # The CA is needed: without --ca the certificate is refused, over TLS and DTLS.
        code, out, _ = probe(f"turns:localhost:{tls_port}", f"turns:localhost:{tls_port}?transport=udp",
                             "--username", "u", "--password", "p")
        assert code == 1 and "TLS handshake failed" in out and "DTLS handshake failed" in out, out
        code, out, _ = probe(f"turn:127.0.0.1:{port}", "--username", "u", "--password", "wrong")
        assert code == 1 and "401 wrong credentials" in out, out
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_probe_with_credentials_from_the_api(turnpike, tmp_path):
    t = turnpike(control_toml(f"sqlite://{tmp_path / 'control.db'}", LOOPBACK_OK))
    admin = Api(t.metrics_port, ADMIN_KEY)
    _, tenant, _ = new_tenant(admin)
    c = ok(tenant.post("/v1/credentials", {"username": uniq("probe"), "password": "s3cret-probe-pass"}), 201)
    pk = ok(tenant.post(f"/v1/credentials/{c['credential']['id']}/publishable-keys",
                        {"allowed_origins": ["*"]}), 201)["key"]
    api = f"http://127.0.0.1:{t.metrics_port}"
    # The stored credential itself works from the command line.
    code, out, err = probe(f"turn:127.0.0.1:{t.port}", "--username", c["credential"]["username"],
                           "--password", "s3cret-probe-pass")
    assert code == 0, out + err
    # What the API hands out, so the probe's rows can be checked against it.
    served = ok(tenant.get("/v1/ice-servers?apiKey=" + urllib.parse.quote(pk), key=None))["iceServers"]
    urls = [u for s in served for u in s["urls"]]
    assert any(u.startswith("turns:") for u in urls) and any(u.startswith("stun:") for u in urls)
    for key in (pk, tenant.key):
        code, report, text = probe_json("--api", api, "--api-key", key, "--insecure")
        assert code == 0, text
        assert_all_ok(report, rows=len(urls))
        assert [r["url"] for r in report["results"]] == urls
        assert key not in text
    # The Metered-compatible path (a bare iceServers array), given explicitly.
    code, report, text = probe_json("--api", f"{api}/api/v1/turn/credentials", "--api-key", pk, "--insecure")
    assert code == 0, text
    assert_all_ok(report, rows=len(urls))
    allocations_gone(t)
    # A wrong key: one failed row naming the API's 401, and no probe.
    code, report, text = probe_json("--api", api, "--api-key", "tpp_wrong-key", "--insecure")
    assert code == 1 and len(report["results"]) == 1, text
    assert "401" in report["results"][0]["reason"] and "tpp_wrong-key" not in text, text
    # The key can come from the environment instead of the command line.
    env = dict(os.environ, TURNPIKE_PROBE_API_KEY=pk)
    p = subprocess.run([BIN, "probe", "--api", api, "--insecure"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
