"""A draining node redirects browsers (issue 13): in a network namespace of the test's own, two
nodes on documentation addresses (A 192.0.2.1 in eu-central, B 198.51.100.1 in us-east) share a
PostgreSQL started in the namespace; A drains; headless Chromium, also in the namespace, makes a
relay-only data-channel call with only A in its ICE servers. A answers Allocate with 300 Try
Alternate naming B, Chromium follows it, and the call relays through B (over UDP and over TCP).
libwebrtc refuses loopback alternates, hence the namespace."""

import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import pytest

from api import ADMIN_KEY
from conftest import BIN, CHROMIUM_ARGS, ROOT
from netns import namespace

PAGE = (pathlib.Path(__file__).parent / "web" / "relay-test.html").as_uri()
PG = str(ROOT / "scripts" / "pg-test-server")
A, B = "192.0.2.1", "198.51.100.1"


def node_toml(tmp, name, ip, region, city, db, api_port):
    d = tmp / name
    d.mkdir()
    cfg = d / "turnpike.toml"
    cfg.write_text(
        f'realm = "test"\nusers = ["alice:wonderland"]\n'
        f'listen_udp = ["{ip}:3478"]\nlisten_tcp = ["{ip}:3478"]\nlisten_tls = []\nlisten_dtls = []\n'
        f'relay_ipv4 = "{ip}"\nmetrics_listen = "127.0.0.1:{api_port}"\ndata_dir = "{d / "data"}"\n'
        f'database_url = "{db}"\nadmin_key = "{ADMIN_KEY}"\n'
        f'region = "{region}"\nregion_location = "{city}"\nnode_name = "{name}"\n'
        f'danger_allow_peer_ranges = ["192.0.2.0/24", "198.51.100.0/24"]\n'
        'demo_enabled = false\nheartbeat_interval = "1s"\n'
    )
    return cfg, d / "turnpike.log"


def api_get(ns, port, path):
    r = ns.run(["curl", "-s", "-H", f"Authorization: Bearer {ADMIN_KEY}", f"http://127.0.0.1:{port}{path}"])
    return r.stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The namespace with both nodes running and A draining; yields (namespace, logs)."""
    tmp_path = tmp_path_factory.mktemp("redirect")
    with namespace("tp-redir") as ns:
        ns.veth_host(A)
        ns.sh(f"ip addr add {B}/24 dev v0")
        pgdir = pathlib.Path(tempfile.mkdtemp(prefix="turnpike-redirect-pg-"))
        url = ns.run([PG, "start", str(pgdir)], timeout=120)
        assert url.returncode == 0, url.stderr
        try:
            db = url.stdout.strip()
            logs = []
            for name, ip, region, city, port in (("node-a", A, "eu-central", "frankfurt", 9478),
                                                 ("node-b", B, "us-east", "new-york", 9479)):
                cfg, log = node_toml(tmp_path, name, ip, region, city, db, port)
                ns.popen([BIN, "--config", str(cfg)], stdout=open(log, "w"), stderr=subprocess.STDOUT)
                logs.append(log)
            deadline = time.time() + 30
            while time.time() < deadline:
                out = api_get(ns, 9478, "/v1/nodes")
                if out.count('"state":"healthy"') == 2:
                    break
                time.sleep(0.3)
            else:
                pytest.fail(f"nodes not healthy: {out}\n" + "\n".join(p.read_text()[-2000:] for p in logs))
            # Drain A; once it read B in the registry it redirects.
            ns.procs[0].send_signal(10)
            time.sleep(2.5)
            assert '"state":"draining"' in api_get(ns, 9478, "/v1/nodes")
            yield ns, logs
        finally:
            ns.run([PG, "stop", str(pgdir)], timeout=60)
            shutil.rmtree(pgdir, ignore_errors=True)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_chromium_follows_300_to_the_alternate_node(lab, tmp_path, transport):
    ns, logs = lab
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed (scripts/install-prereqs installs it)"
    wrapper = tmp_path / "chromium-in-namespace"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns.name} {exe} "$@"\n')
    wrapper.chmod(0o755)
    from playwright.sync_api import sync_playwright

    servers = [{"urls": f"turn:{A}:3478?transport={transport}", "username": "alice", "credential": "wonderland"}]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(wrapper), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(PAGE)
            r = page.evaluate(
                "async (s) => await Promise.race([relayTest(s), new Promise((_, rej) => setTimeout(() => rej(new Error('timeout')), 30000))])",
                servers)
        finally:
            browser.close()
    assert r["gotB"] == "ping" and r["gotA"] == "pong:ping", r
    assert r["localType"] == "relay" and r["relayAddress"] == B, (r, "\n".join(p.read_text()[-3000:] for p in logs))
    assert r["relayProtocol"] == transport, r
