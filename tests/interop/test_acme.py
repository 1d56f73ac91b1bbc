"""Certificates from a real ACME server (issue 11): Debian's pebble on 127.0.0.1 (with
pebble-challtestsrv as its DNS, answering 127.0.0.1 for every name) validates Turnpike over
HTTP-01 on its plain shared port and over TLS-ALPN-01 on its TLS port; the issued certificate
verifies against pebble's root, is renewed, and a TURN allocation over TLS made before the
renewal keeps working after it."""

import json
import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from conftest import BIN, free_port
import turnclient as tc

DOMAIN = "turn.example.test"


def _run(args, timeout=60):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def wait_https(url, ca, run=_run, timeout=20):
    """The body of `url` fetched with curl (through `run`, e.g. inside a namespace), trusting
    `ca`; waits for the server to answer."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = run(["curl", "-sf", "--max-time", "2", "--cacert", str(ca), url], timeout=10)
        if r.returncode == 0:
            return r.stdout.encode()
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")


def start_pebble(tmp_path, http_port, tls_port, address="127.0.0.1", spawn=subprocess.Popen, run=_run):
    """Starts pebble (and pebble-challtestsrv as its DNS, answering `address` for every name)
    validating on the given HTTP and TLS ports, with `spawn` (which must see to stopping what it
    starts); returns the directory URL, the CA file for pebble's own HTTPS, and a function
    returning pebble's root."""
    if shutil.which("pebble") is None:
        pytest.fail("pebble is not installed (scripts/install-prereqs installs it)")
    # pebble's own HTTPS: a leaf signed by a throw-away CA (a self-signed CA certificate
    # cannot be a server's end-entity certificate).
    ca, ca_key = tmp_path / "test-ca.pem", tmp_path / "test-ca.key"
    cert, key = tmp_path / "pebble-cert.pem", tmp_path / "pebble-key.pem"
    csr, ext = tmp_path / "pebble.csr", tmp_path / "pebble.ext"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    subprocess.run(["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca),
                    "-days", "2", "-subj", "/CN=turnpike-test-ca"], check=True, capture_output=True)
    subprocess.run(["openssl", "req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=pebble"],
                   check=True, capture_output=True)
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "extendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                    "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext)],
                   check=True, capture_output=True)
    dns, dns_mgmt, acme, mgmt = free_port(), free_port(), free_port(), free_port()
    spawn(["pebble-challtestsrv", "-dns01", f"127.0.0.1:{dns}", "-http01", "", "-https01", "",
           "-tlsalpn01", "", "-management", f"127.0.0.1:{dns_mgmt}", "-defaultIPv4", address,
           "-defaultIPv6", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cfg = tmp_path / "pebble.json"
    cfg.write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{acme}", "managementListenAddress": f"127.0.0.1:{mgmt}",
        "certificate": str(cert), "privateKey": str(key), "httpPort": http_port,
        "tlsPort": tls_port, "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
    env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
    log = open(tmp_path / "pebble.log", "w")
    spawn(["pebble", "-config", str(cfg), "-dnsserver", f"127.0.0.1:{dns}"],
          stdout=log, stderr=subprocess.STDOUT, env=env)
    wait_https(f"https://127.0.0.1:{acme}/dir", ca, run)

    def root():
        pem = wait_https(f"https://127.0.0.1:{mgmt}/roots/0", ca, run)
        path = tmp_path / "pebble-root.pem"
        path.write_bytes(pem)
        return path

    return f"https://127.0.0.1:{acme}/dir", ca, root


@pytest.fixture
def pebble_for(tmp_path):
    """start_pebble in this namespace, stopped at the end."""
    procs = []

    def spawn(args, **kw):
        p = subprocess.Popen(args, **kw)
        procs.append(p)
        return p

    yield lambda http_port, tls_port: start_pebble(tmp_path, http_port, tls_port, spawn=spawn)
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def start_turnpike(tmp_path, extra):
    port, http_port, tls_port, metrics = free_port(), free_port(), free_port(), free_port()
    cfg = tmp_path / "turnpike.toml"
    cfg.write_text(
        'realm = "test"\nusers = ["u:p"]\n'
        f'listen_udp = ["127.0.0.1:{port}"]\nlisten_tcp = []\nlisten_tls = []\nlisten_dtls = []\n'
        f'listen_mux = ["127.0.0.1:{tls_port}"]\nlisten_mux_plain = ["127.0.0.1:{http_port}"]\n'
        f'metrics_listen = "127.0.0.1:{metrics}"\ndata_dir = "{tmp_path / "data"}"\n'
        'relay_port_min = 61000\nrelay_port_max = 65000\n' + extra)
    return cfg, port, http_port, tls_port


def tls_leaf(port, root):
    """The DER of the certificate Turnpike shows for DOMAIN, verified against pebble's root."""
    ctx = ssl.create_default_context(cafile=str(root))
    ctx.set_alpn_protocols(["stun.turn"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=DOMAIN) as t:
            return t.getpeercert(binary_form=True)


def wait_log(path, text, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        logs = path.read_text()
        if logs.count(text) >= 1:
            return logs
        assert proc.poll() is None, logs
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} in:\n{path.read_text()}")


@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_certificate_issued_renewed_and_swapped_without_dropping_allocations(tmp_path, pebble_for, challenge):
    cfg, port, http_port, tls_port = start_turnpike(tmp_path, "")
    directory, pebble_ca, root = pebble_for(http_port, tls_port)
    with open(cfg, "a") as f:
        f.write(f'acme_domains = ["{DOMAIN}"]\nacme_email = "ops@example.test"\n'
                f'acme_directory = "{directory}"\nacme_ca_file = "{pebble_ca}"\n'
                f'acme_challenge = "{challenge}"\nacme_renew_after = 8\n')
    log_path = tmp_path / "turnpike.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([BIN, "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_log(log_path, "ACME certificate issued and in use", proc)
        root_pem = root()
        first = tls_leaf(tls_port, root_pem)
        # A TURN allocation over TLS made with the first certificate.
        ctx = ssl.create_default_context(cafile=str(root_pem))
        conn = tc.Conn(("127.0.0.1", tls_port), "tcp", timeout=5)
        conn.sock = ctx.wrap_socket(conn.sock, server_hostname=DOMAIN)
        c = tc.TurnClient(conn, "u", "p")
        assert c.allocate().cls == tc.SUCCESS
        # Renewal (acme_renew_after = 8 s): a new certificate, in use for new handshakes.
        deadline = time.time() + 60
        while time.time() < deadline and log_path.read_text().count("ACME certificate issued and in use") < 2:
            time.sleep(0.5)
        assert log_path.read_text().count("ACME certificate issued and in use") >= 2, log_path.read_text()
        second = tls_leaf(tls_port, root_pem)
        assert second != first
        # The allocation made before the swap lives on over its TLS connection.
        r = c.request(tc.REFRESH, [(tc.A_LIFETIME, (600).to_bytes(4, "big"))])
        assert r.cls == tc.SUCCESS, r
        # Stored 0600 in the data directory; a restart serves it at once.
        acme_dir = tmp_path / "data" / "acme"
        for name in ("account.json", "cert.pem", "key.pem"):
            assert oct(os.stat(acme_dir / name).st_mode & 0o777) == "0o600", name
    finally:
        proc.terminate()
        proc.wait(timeout=10)
