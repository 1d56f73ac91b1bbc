"""Security regressions on the server as an outside probe sees it (issue 10), each over real
sockets against the real binary: descriptor and memory exhaustion, amplification, slow-loris
clients on TCP and HTTP, what the public port serves, file modes, RFC 8489 §9.2 consistency,
one instance per port and data directory, failed-authentication logs and the client deny list."""

import os
import re
import resource
import selectors
import shutil
import signal
import socket
import ssl
import stat
import struct
import subprocess
import threading
import time
import urllib.request

import pytest

from api import ADMIN_KEY, Api, control_toml, new_tenant, ok, uniq
from conftest import BIN, LOOPBACK_OK, ROOT, USERS, Turnpike, free_port, free_port_range
import turnclient as tc


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def raise_own_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def http_get(port, path, headers=None, timeout=5):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def binding_request():
    return tc.encode(tc.BINDING, tc.REQUEST, os.urandom(12), [], fingerprint=False)


# -- item 2: one source cannot exhaust file descriptors -------------------------------------------

def test_one_source_cannot_exhaust_descriptors(turnpike):
    """Under a 1024 descriptor limit, one IP opening 1100 TCP connections is capped per source;
    other clients still allocate over UDP and TCP, TLS handshakes complete and /healthz answers.
    The refusals are counted and logged once."""
    raise_own_nofile(4096)

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    t = turnpike(USERS, preexec_fn=limit)
    hog = []
    for _ in range(1100):
        s = socket.socket()
        s.setblocking(False)
        s.bind(("127.0.0.2", 0))
        try:
            s.connect(("127.0.0.1", t.port))
        except BlockingIOError:
            pass
        hog.append(s)
    time.sleep(1.5)
    try:
        # Other clients are served.
        c = tc.TurnClient(tc.Conn(("127.0.0.1", t.port), "udp"), "u", "p")
        r = c.allocate()
        assert r.cls == tc.SUCCESS, r
        ct = tc.TurnClient(tc.Conn(("127.0.0.1", t.port), "tcp"), "alice", "wonderland")
        r = ct.allocate()
        assert r.cls == tc.SUCCESS, r
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", t.tls_port), timeout=5)) as s:
            assert s.version()
        status, body = http_get(t.metrics_port, "/healthz", timeout=3)
        assert status == 200, body
        refused = t.metric("turnpike_connections_refused_total", reason="per_source")
        assert refused and refused > 900, refused
        assert t.logs().count("connection cap reached") == 1
    finally:
        for s in hog:
            s.close()


# -- item 3: an idle connection costs little memory -----------------------------------------------

def idle_connections(port, n, tls=False):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if tls:
            s = ctx.wrap_socket(s)
        s.sendall(binding_request())
        out.append(s)
    for s in out:
        s.settimeout(5)
        assert s.recv(100)
    return out


@pytest.mark.parametrize("tls,bound_kb", [(False, 8), (True, 24)])
def test_idle_connections_cost_little_memory(turnpike, tls, bound_kb):
    raise_own_nofile(4096)
    t = turnpike(USERS + "tcp_max_per_source = 5000\nworkers = 1\n")
    port = t.tls_port if tls else t.port
    # Warm up the allocator and runtime, then measure 1000 more idle connections.
    warm = idle_connections(port, 100, tls)
    time.sleep(0.5)
    before = rss_kib(t.proc.pid)
    conns = idle_connections(port, 1000, tls)
    time.sleep(0.5)
    after = rss_kib(t.proc.pid)
    per_conn = (after - before) * 1024 / 1000 / 1000  # kB (1000 bytes) per connection
    print(f"{'TLS' if tls else 'TCP'}: {per_conn:.1f} kB RSS per idle connection")
    assert per_conn <= bound_kb, f"{per_conn:.1f} kB per idle {'TLS' if tls else 'TCP'} connection"
    for s in conns + warm:
        s.close()


# -- item 8: no amplification toward a spoofed source ---------------------------------------------

def test_unauthenticated_answers_do_not_amplify(turnpike):
    """Bindings and unauthenticated Allocates from one source: over a burst of 3000 20-byte
    requests in about a second, the bytes answered stay within the bytes sent plus the surplus,
    and unauthenticated answers carry no SOFTWARE."""
    t = turnpike(USERS)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", 0))
    answer = None
    sent = received = 0
    start = time.time()
    for i in range(3000):
        method = tc.BINDING if i % 2 == 0 else tc.ALLOCATE
        req = tc.encode(method, tc.REQUEST, os.urandom(12), [], fingerprint=False)
        assert len(req) == 20
        s.sendto(req, ("127.0.0.1", t.port))
        sent += len(req)
    elapsed = time.time() - start
    s.settimeout(0.5)
    try:
        while True:
            data = s.recv(2048)
            received += len(data)
            answer = answer or data
    except socket.timeout:
        pass
    print(f"sent {sent} B, received {received} B in {elapsed:.2f} s: ratio {received / sent:.2f}")
    assert answer is not None
    assert not tc.decode(answer).has(tc.A_SOFTWARE)
    # 8192 B surplus + 2048 B/s refill (the defaults).
    assert received <= sent + 8192 + 2048 * (elapsed + 1), (sent, received)
    time.sleep(1.3)  # counters are published once a second
    dropped = t.metric("turnpike_dropped_packets_total", reason="rate_limited")
    assert dropped and dropped > 0


# -- item 9: slow-loris TCP clients are cut at the frame deadline ---------------------------------

def test_tcp_slowloris_is_closed_at_the_frame_deadline(turnpike):
    t = turnpike(USERS)
    header = tc.encode(tc.ALLOCATE, tc.REQUEST, os.urandom(12),
                       [(tc.A_REQ_TRANSPORT, bytes([17, 0, 0, 0]))])
    results = {}

    def trickle(name, first_frame):
        s = socket.create_connection(("127.0.0.1", t.port), timeout=30)
        start = time.time()
        if first_frame:
            s.sendall(binding_request())
            s.recv(100)
        data = header
        i = 0
        while time.time() - start < 25:
            try:
                if i < len(data):
                    s.sendall(data[i:i + 1])
                    i += 1
                s.settimeout(2)
                if s.recv(100) == b"":
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        results[name] = time.time() - start

    def silent():
        s = socket.create_connection(("127.0.0.1", t.port), timeout=30)
        start = time.time()
        s.settimeout(25)
        try:
            s.recv(100)
        except (socket.timeout, OSError):
            pass
        results["silent"] = time.time() - start

    threads = [threading.Thread(target=trickle, args=("first", False)),
               threading.Thread(target=trickle, args=("later", True)),
               threading.Thread(target=silent)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for name, took in results.items():
        assert took < 15, f"{name}: still open after {took:.1f} s"


# -- item 13: slow HTTP clients are cut at the header deadline ------------------------------------

def test_http_header_read_deadline(turnpike):
    t = turnpike(USERS)
    socks = []
    for port in [t.metrics_port] * 10 + [t.mux_port] * 10:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setblocking(False)
        socks.append(s)
    line = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    start = time.time()
    closed = set()
    i = 0
    while time.time() - start < 16 and len(closed) < len(socks):
        for n, s in enumerate(socks):
            if n in closed:
                continue
            try:
                s.send(line[i % len(line):i % len(line) + 1])
                if s.recv(4096) == b"":
                    closed.add(n)
            except BlockingIOError:
                pass
            except OSError:
                closed.add(n)
        i += 1
        time.sleep(1)
    assert len(closed) == len(socks), f"{len(socks) - len(closed)} trickling connections still open"
    assert time.time() - start < 16


# -- item 10: the public port hands out neither credentials nor internals -------------------------

def test_public_port_serves_no_demo_tokens_or_metrics(turnpike):
    t = turnpike(USERS)
    # Public (shared) port: no /metrics, no demo pages or tokens.
    status, _ = http_get(t.mux_port, "/metrics")
    assert status == 404
    for path in ("/demo", "/demo/ice-test"):
        assert http_get(t.mux_port, path)[0] == 404
    req = urllib.request.Request(f"http://127.0.0.1:{t.mux_port}/demo/token", data=b"{}",
                                 method="POST", headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("/demo/token answered on the public port")
    except urllib.error.HTTPError as e:
        assert e.code == 404
    assert http_get(t.mux_port, "/healthz")[0] == 200
    # The private listener still has them.
    assert http_get(t.metrics_port, "/metrics")[0] == 200
    assert http_get(t.metrics_port, "/demo")[0] == 200


def test_metrics_on_the_public_port_need_the_token(turnpike):
    t = turnpike(USERS + 'metrics_token = "s3cret-scrape-token-0123"\n')
    assert http_get(t.mux_port, "/metrics")[0] == 401
    assert http_get(t.mux_port, "/metrics", {"Authorization": "Bearer wrong"})[0] == 401
    status, body = http_get(t.mux_port, "/metrics",
                            {"Authorization": "Bearer s3cret-scrape-token-0123"})
    assert status == 200 and "turnpike_" in body


# -- item 11: secrets on disk are the owner's only ------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_data_directory_and_files_are_private(tmp_path, umask):
    def preexec():
        os.umask(umask)

    t = Turnpike(tmp_path, "", preexec_fn=preexec)
    try:
        data = t.dir / "data"
        deadline = time.time() + 5
        while not (data / "turnpike.db").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
        for name in ("turnpike.db", "shared-secret", "turnpike.lock"):
            mode = stat.S_IMODE(os.stat(data / name).st_mode)
            assert mode == 0o600, f"{name}: {mode:o}"
        for extra in ("turnpike.db-wal", "turnpike.db-shm"):
            if (data / extra).exists():
                assert stat.S_IMODE(os.stat(data / extra).st_mode) == 0o600, extra
    finally:
        t.stop()


def test_existing_loose_data_directory_is_tightened(tmp_path):
    d = tmp_path / "loose"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    port = free_port()
    cfg = tmp_path / "t.toml"
    cfg.write_text(f'listen_udp = ["127.0.0.1:{port}"]\nlisten_tcp = []\nlisten_tls = []\n'
                   f'listen_dtls = []\nmetrics_listen = ""\ncontrol_plane = false\ndata_dir = "{d}"\n')
    p = subprocess.Popen([BIN, "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 10
        while stat.S_IMODE(os.stat(d).st_mode) != 0o700 and time.time() < deadline:
            time.sleep(0.1)
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    finally:
        p.terminate()
        p.wait()


# -- item 12: the nonce's feature bits and the challenge agree (RFC 8489 §9.2) --------------------

def test_rfc8489_client_authenticates_with_every_credential_kind(turnpike):
    """A client following §9.2.5 to the letter: with the "password algorithms" bit set, the
    401 must carry PASSWORD-ALGORITHMS or the client stops. It logs in with a static user, a
    shared-secret credential, a stored credential and an ephemeral one, choosing SHA-256."""
    secret = "rfc-shared-secret-0123456789"
    t = turnpike(USERS + f'shared_secrets = ["{secret}"]\n' + control_toml(
        f"sqlite://{os.environ.get('TMPDIR', '/tmp')}/rfc-{os.urandom(4).hex()}.db"))
    admin = Api(t.metrics_port, ADMIN_KEY)
    _, tenant, _ = new_tenant(admin, "rfc")
    cred = ok(tenant.post("/v1/credentials", {"label": "rfc", "username": uniq("rfc")}), 201)
    eph = ok(tenant.post("/v1/ephemeral-credentials", {"user_id": "bob", "ttl": 600}), 201)
    shared_user = f"{int(time.time()) + 600}:carol"
    kinds = [("u", "p"), (shared_user, tc.rest_password(secret, shared_user)),
             (cred["credential"]["username"], cred["password"]), (eph["username"], eph["password"])]
    for user, password in kinds:
        for transport in ("udp", "tcp"):
            c = tc.TurnClient(tc.Conn(("127.0.0.1", t.port), transport), user, password)
            r = c.allocate()
            assert r.cls == tc.SUCCESS, (user, transport, r)
            ch = c.challenges[0]
            feats = tc.nonce_features(ch.get(tc.A_NONCE))
            assert feats == {"password_algorithms": True, "username_anonymity": False}
            assert c.algorithm == tc.ALG_SHA256
            assert r.has(tc.A_MI_SHA256)
            c.conn.close()


def test_rfc8489_username_anonymity_only_when_every_user_has_a_userhash(turnpike):
    """Static users alone (no shared secrets, no control plane): the nonce sets "username
    anonymity", and a client that then sends USERHASH instead of USERNAME logs in."""
    t = turnpike(USERS + "control_plane = false\n")
    c = tc.TurnClient(tc.Conn(("127.0.0.1", t.port), "udp"), "alice", "wonderland")
    r = c.allocate()
    assert r.cls == tc.SUCCESS, r
    assert tc.nonce_features(c.challenges[0].get(tc.A_NONCE)) == {
        "password_algorithms": True, "username_anonymity": True}
    assert c.anonymity


# -- item 14: the nonce's feature bits are under its MAC ------------------------------------------

def test_nonce_feature_bits_cannot_be_flipped(turnpike):
    """Clearing the "password algorithms" bit of a nonce (a bid-down to MD5 without
    PASSWORD-ALGORITHMS) makes the nonce invalid: 438, not a login."""
    t = turnpike(USERS)
    c = tc.TurnClient(tc.Conn(("127.0.0.1", t.port), "udp"), "u", "p")
    m = c.exchange(tc.ALLOCATE, [(tc.A_REQ_TRANSPORT, bytes([17, 0, 0, 0]))])
    assert m.error == 401
    nonce = bytearray(m.get(tc.A_NONCE))
    nonce[9:13] = b"AAAA"
    key = tc.long_term_key("u", "test", "p")
    m = c.exchange(tc.ALLOCATE, [(tc.A_REQ_TRANSPORT, bytes([17, 0, 0, 0])),
                                 (tc.A_USERNAME, b"u"), (tc.A_REALM, b"test"),
                                 (tc.A_NONCE, bytes(nonce))], key=key)
    assert m.cls == tc.ERROR and m.error == 438, m


# -- item 15: a second instance refuses to start --------------------------------------------------

def test_second_instance_on_the_same_ports_or_data_dir_refuses_to_start(turnpike, tmp_path):
    a = turnpike(USERS)
    # Same ports, another data directory.
    cfg = tmp_path / "b.toml"
    cfg.write_text(a.config.read_text().replace(f'data_dir = "{a.dir / "data"}"',
                                                f'data_dir = "{tmp_path / "b-data"}"'))
    p = subprocess.run([BIN, "--config", str(cfg)], capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "address in use by another process" in p.stderr, p.stderr
    assert "listen_udp" in p.stderr or "listen_tcp" in p.stderr
    # Same data directory, other ports.
    port = free_port()
    cfg.write_text(f'listen_udp = ["127.0.0.1:{port}"]\nlisten_tcp = []\nlisten_tls = []\n'
                   f'listen_dtls = []\nmetrics_listen = ""\ndata_dir = "{a.dir / "data"}"\n')
    p = subprocess.run([BIN, "--config", str(cfg)], capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "another Turnpike process" in p.stderr, p.stderr
    # The first one still serves.
    c = tc.TurnClient(tc.Conn(("127.0.0.1", a.port), "udp"), "u", "p")
    assert c.allocate().cls == tc.SUCCESS


# -- item 20: failed authentications are logged for fail2ban; a client deny list ------------------

FILTER = ROOT / "deploy" / "fail2ban" / "filter.d" / "turnpike.conf"


@pytest.mark.parametrize("log_format", ["human", "json"])
def test_failed_authentication_log_lines_match_the_fail2ban_filter(turnpike, log_format):
    t = turnpike(USERS + f'log_format = "{log_format}"\n')
    for i in range(60):
        c = tc.TurnClient(tc.Conn(("127.0.0.1", t.port), "udp"), "alice", f"wrong-{i}")
        r = c.allocate()
        assert r.error == 401
    time.sleep(0.3)
    logs = t.logs()
    lines = [l for l in logs.splitlines() if "TURN authentication failed" in l]
    assert 1 <= len(lines) <= 45, len(lines)  # rate limited: 20/s with a burst of 20
    assert "127.0.0.1" in lines[0] and "alice" in lines[0] and "wrong password" in lines[0]
    assert "wrong-" not in logs  # never the password
    if shutil.which("fail2ban-regex") is None:
        pytest.fail("fail2ban-regex is not installed (scripts/install-prereqs installs fail2ban)")
    out = subprocess.run(["fail2ban-regex", str(t.dir / "turnpike.log"), str(FILTER)],
                         capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"Lines: \d+ lines, \d+ ignored, (\d+) matched", out)
    assert m and int(m.group(1)) == len(lines), out


def test_client_deny_list_from_the_configuration(turnpike):
    t = turnpike(USERS + 'denied_client_ranges = ["127.0.0.2/32"]\n')

    def binding_from(src):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((src, 0))
            s.settimeout(0.7)
            s.sendto(binding_request(), ("127.0.0.1", t.port))
            try:
                return s.recv(100)
            except socket.timeout:
                return None

    def tcp_from(src, port):
        s = socket.socket()
        s.bind((src, 0))
        s.settimeout(2)
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(binding_request() if port == t.port else b"GET /healthz HTTP/1.0\r\n\r\n")
            return s.recv(100)
        except OSError:
            return b""
        finally:
            s.close()

    assert binding_from("127.0.0.2") is None
    assert binding_from("127.0.0.1") is not None
    assert tcp_from("127.0.0.2", t.port) == b""
    assert tcp_from("127.0.0.2", t.metrics_port) == b""
    assert tcp_from("127.0.0.1", t.metrics_port).startswith(b"HTTP/1.0 200") or tcp_from(
        "127.0.0.1", t.metrics_port).startswith(b"HTTP/1.1 200")
    # Lifted by editing the file and SIGHUP, without a restart.
    t.config.write_text(t.config.read_text().replace('denied_client_ranges = ["127.0.0.2/32"]\n', ""))
    t.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while binding_from("127.0.0.2") is None and time.time() < deadline:
        time.sleep(0.2)
    assert binding_from("127.0.0.2") is not None


def test_restart_after_the_database_file_was_lost_refuses_to_start(tmp_path):
    """A SQLite database deleted while Turnpike was stopped does not come back empty with a new
    admin key: start-up stops and says how to restore it or start fresh."""
    t = Turnpike(tmp_path, USERS)
    data = t.dir / "data"
    assert (data / "turnpike.db").exists()
    t.stop()
    for f in data.glob("turnpike.db*"):
        if not f.name.endswith(".created"):
            f.unlink()
    p = subprocess.run([BIN, "--config", str(t.config)], capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "is missing, but Turnpike created it before" in p.stderr, p.stderr
    (data / "turnpike.db.created").unlink()
    log = tmp_path / "restart.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([BIN, "--config", str(t.config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 15
        while time.time() < deadline and "generated an admin API key" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        assert "generated an admin API key" in log.read_text(), log.read_text()
        assert (data / "turnpike.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
