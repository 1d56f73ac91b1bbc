"""Operating the binary: exact relay counters in /metrics, graceful SIGTERM, drain mode on
SIGUSR1, configuration errors that name the key, and the zero-configuration first start."""

import asyncio
import os
import re
import signal
import subprocess
import time

import uclient
from conftest import BIN, LOOPBACK_OK, USERS, free_port, stun_binding
from test_aioice import echo_through_relay


def test_metrics_count_relayed_packets_exactly(turnpike, peer):
    t = turnpike(USERS + LOOPBACK_OK)
    r = uclient.run(t.port, ["-u", "u", "-w", "p", "-c", "-e", "127.0.0.1", "-r", str(peer), "-m", "3", "-n", "25", "-l", "100"])
    assert r.rc == 0 and r.lost == 0 and r.sent == 75, r.output
    time.sleep(1.5)
    m = lambda d: t.metric("turnpike_relay_packets_total", direction=d, transport="udp")
    # Every message went client -> server -> peer -> server -> client exactly once.
    assert m("server_to_peer") == 75
    assert m("peer_to_server") == 75
    assert m("server_to_client") == 75
    assert m("client_to_server") == 75
    # ChannelData payload of 100 bytes: 100 bytes to the peer, 104 framed on the client legs.
    assert t.metric("turnpike_relay_bytes_total", direction="server_to_peer", transport="udp") == 7500
    assert t.metric("turnpike_relay_bytes_total", direction="server_to_client", transport="udp") == 75 * 104
    assert t.metric("turnpike_allocations_created_total") >= 3
    assert t.metric("turnpike_requests_total") > 0
    assert t.metric("turnpike_allocations") is not None


def test_sigterm_is_graceful(turnpike):
    t = turnpike(USERS)
    start = time.time()
    rc = t.stop(signal.SIGTERM)
    assert rc == 0
    assert time.time() - start < 5
    assert "stopped" in t.logs()


def http_status(port, path):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_drain_mode_refuses_new_allocations_keeps_old(turnpike, peer):
    t = turnpike(USERS + LOOPBACK_OK)
    # Ready and healthy before draining, on the private listener and the shared port.
    for port in (t.metrics_port, t.mux_port):
        assert http_status(port, "/healthz") == 200
        assert http_status(port, "/readyz") == 200

    async def scenario():
        # An allocation made before draining keeps relaying after it.
        task = asyncio.create_task(echo_through_relay(t.port, "u", "p", "udp", count=40))
        await asyncio.sleep(0.05)
        t.proc.send_signal(signal.SIGUSR1)
        await task

    asyncio.run(scenario())
    time.sleep(0.3)
    r = uclient.run(t.port, ["-u", "u", "-w", "p", "-c", "-e", "127.0.0.1", "-r", str(peer), "-m", "1", "-n", "5"])
    assert r.rc == 255 and "508" in r.output, r.output
    assert "drain mode" in t.logs()
    # A load balancer watching /healthz stops sending new clients; the node is still ready.
    for port in (t.metrics_port, t.mux_port):
        assert http_status(port, "/healthz") == 503
        assert http_status(port, "/readyz") == 200


def run_bin(args, cwd=None, timeout=10):
    return subprocess.run([BIN, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_config_errors_name_the_key(tmp_path):
    cases = {
        'realm = "x"\nno_such_key = 1\n': "no_such_key",
        'relay_port_min = "abc"\n': "relay_port_min",
        "relay_port_min = 50000\nrelay_port_max = 40000\n": "relay_port_min",
        'users = ["nocolon"]\n': "users",
        'log_format = "xml"\n': "log_format",
        'danger_allow_peer_ranges = ["not-a-cidr"]\n': "danger_allow_peer_ranges",
        'listen_udp = ["127.0.0.1"]\n': "listen_udp",
    }
    for toml, key in cases.items():
        f = tmp_path / "bad.toml"
        f.write_text(toml)
        p = run_bin(["--config", str(f), "check-config"])
        assert p.returncode == 2, (toml, p.stdout, p.stderr)
        assert key in p.stderr, (toml, p.stderr)
    # Flags and environment variables are validated the same way.
    p = run_bin(["--relay-port-min", "70000", "check-config"])
    assert p.returncode != 0 and "relay-port-min" in p.stderr
    env = dict(os.environ, TURNPIKE_LOG_FORMAT="yaml")
    p = subprocess.run([BIN, "check-config"], capture_output=True, text=True, env=env, timeout=10)
    assert p.returncode == 2 and "log_format" in p.stderr
    p = run_bin(["--config", str(tmp_path / "missing.toml"), "check-config"])
    assert p.returncode == 2 and "does not exist" in p.stderr


def test_help_documents_every_key():
    p = run_bin(["--help"])
    assert p.returncode == 0
    for key in ["realm", "listen-udp", "listen-tcp", "relay-port-min", "users", "shared-secrets",
                "danger-allow-peer-ranges", "metrics-listen", "max-allocations-per-user", "TURNPIKE_REALM"]:
        assert key in p.stdout, key


def test_zero_config_first_start_prints_working_credential(tmp_path, peer):
    port, mport, tport = free_port(), free_port(), free_port()
    args = ["--listen-udp", f"127.0.0.1:{port}", "--listen-tcp", f"127.0.0.1:{port}", "--listen-tls", f"127.0.0.1:{tport}", "--listen-dtls", f"127.0.0.1:{tport}",
            "--metrics-listen", f"127.0.0.1:{mport}", "--danger-allow-peer-ranges", "127.0.0.0/8"]
    log = open(tmp_path / "out.log", "w")
    proc = subprocess.Popen([BIN, *args], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 10
        while stun_binding(port) is None and time.time() < deadline:
            time.sleep(0.05)
        out = (tmp_path / "out.log").read_text()
        user = re.search(r"username: (\S+)", out).group(1)
        password = re.search(r"password: (\S+)", out).group(1)
        assert (tmp_path / "turnpike-data" / "shared-secret").stat().st_mode & 0o777 == 0o600
        r = uclient.run(port, ["-u", user, "-w", password, "-c", "-e", "127.0.0.1", "-r", str(peer), "-m", "1", "-n", "10"])
        assert r.rc == 0 and r.received == r.sent == 10, r.output
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    # Second start: the secret is reused and nothing is printed again.
    proc = subprocess.Popen([BIN, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert b"password:" not in out
    # The secret never appears in the logs.
    secret = (tmp_path / "turnpike-data" / "shared-secret").read_text()
    assert secret not in (tmp_path / "out.log").read_text()


def test_json_logs(turnpike):
    import json

    t = turnpike(USERS + 'log_format = "json"\n')
    t.stop()
    lines = [l for l in t.logs().splitlines() if l.startswith("{")]
    assert lines, t.logs()
    records = [json.loads(l) for l in lines]
    assert any(r["fields"]["message"] == "turnpike serving STUN/TURN" for r in records)
    assert all("level" in r and "timestamp" in r for r in records)
