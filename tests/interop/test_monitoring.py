"""The monitoring kit in deploy/: Prometheus alert rules pass `promtool check rules` and their
unit tests (`promtool test rules`, Debian's prometheus package), and every Turnpike metric the
rules and the Grafana dashboard query is one a running node exports (after a relay, a refused
password, a malformed packet and a signalling connection)."""

import asyncio
import json
import re
import socket
import subprocess

import websockets

import uclient
from conftest import LOOPBACK_OK, ROOT, USERS

DEPLOY = ROOT / "deploy"


def test_prometheus_rules_check_and_pass_their_unit_tests():
    rules = DEPLOY / "prometheus"
    out = subprocess.run(["promtool", "check", "rules", "turnpike-rules.yml"], cwd=rules,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
    out = subprocess.run(["promtool", "test", "rules", "turnpike-rules.test.yml"], cwd=rules,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def queried_metrics():
    """Every turnpike_* name in the dashboard's and the rules' expressions."""
    dash = json.loads((DEPLOY / "grafana" / "turnpike-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [q["definition"] for q in dash["templating"]["list"] if "definition" in q]
    exprs.append((DEPLOY / "prometheus" / "turnpike-rules.yml").read_text())
    names = set()
    for e in exprs:
        names.update(re.findall(r"\bturnpike_[a-z_]+\b", e))
    return names


def test_dashboard_and_rules_query_metrics_that_exist(turnpike, peer):
    names = queried_metrics()
    assert len(names) >= 15, names
    t = turnpike(USERS + LOOPBACK_OK)
    run = uclient.run(t.port, ["-u", "alice", "-w", "wonderland", "-e", "127.0.0.1", "-r", str(peer),
                               "-m", "1", "-c", "-n", "5", "-l", "100"])
    assert run.rc == 0, run.output
    bad = uclient.run(t.port, ["-u", "alice", "-w", "wrong", "-e", "127.0.0.1", "-r", str(peer),
                               "-m", "1", "-c", "-n", "1", "-l", "100"], timeout=30)
    assert bad.rc != 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x00\x01\x00\x04not-stun", ("127.0.0.1", t.port))

    async def signal_socket():
        async with websockets.connect(f"ws://127.0.0.1:{t.metrics_port}/v1/signal"):
            await asyncio.sleep(1.5)
            return t.metrics()
    text = asyncio.run(signal_socket())
    exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("turnpike_")}
    missing = sorted(n for n in names if n not in exported)
    assert not missing, f"queried but not exported: {missing}"
