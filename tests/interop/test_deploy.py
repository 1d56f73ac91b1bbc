"""README's "Deploy on a public server in 5 minutes", followed step by step (issue 11) in a
network namespace: the host is 203.0.113.10 with the name turn.example.com (an /etc/hosts made
for the namespace), Debian's pebble plays the public CA (its challenge DNS answers
203.0.113.10), and a client on that host checks the result with `turnpike probe` exactly as the
README says, trusting pebble's root as a browser trusts Let's Encrypt's."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import BIN
from netns import namespace
from test_acme import start_pebble

HOST = "203.0.113.10"
DOMAIN = "turn.example.com"


def wait_log(path, text, proc, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        logs = path.read_text()
        if text in logs:
            return logs
        assert proc.poll() is None, logs
        time.sleep(0.3)
    raise AssertionError(f"no {text!r} in:\n{path.read_text()}")


@pytest.fixture
def host_names():
    """/etc/netns/NAME/hosts, which `ip netns exec` mounts over /etc/hosts inside NAME; removed
    at the end (only the directory this fixture made)."""
    made = []
    parent_made = not os.path.isdir("/etc/netns")

    def make(ns_name, lines):
        d = f"/etc/netns/{ns_name}"
        os.makedirs(d)
        made.append(d)
        with open(f"{d}/hosts", "w") as f:
            f.write("127.0.0.1 localhost\n::1 localhost\n" + lines)

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)
    if parent_made:
        with contextlib.suppress(OSError):
            os.rmdir("/etc/netns")


def test_the_readme_deployment_gets_a_certificate_and_relays_on_80_and_443(tmp_path, host_names):
    with namespace("tp-deploy") as ns:
        host_names(ns.name, f"{HOST} {DOMAIN}\n")
        ns.veth_host(HOST, gateway="203.0.113.1")
        # The public CA: pebble validating on ports 80 and 443 of whatever its DNS names.
        directory, pebble_ca, root = start_pebble(tmp_path, 80, 443, address=HOST, spawn=ns.popen,
                                                  run=ns.run)
        # Step 3, as the README writes it (the data directory under the test's own); the test
        # adds where the CA is, and lets the probe's two allocations relay to each other on the
        # documentation range the host lives in (refused by default).
        data = tmp_path / "var-lib-turnpike"
        log_path = tmp_path / "turnpike.log"
        log = open(log_path, "w")
        env = dict(os.environ, TURNPIKE_DANGER_ALLOW_PEER_RANGES="203.0.113.0/24")
        p = ns.popen([BIN, "--profile", "public", "--data-dir", str(data),
                      "--acme-domains", DOMAIN, "--acme-email", "you@example.com",
                      "--acme-directory", directory, "--acme-ca-file", str(pebble_ca)],
                     cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env)
        logs = wait_log(log_path, "ACME certificate issued and in use", p)
        assert f"host={DOMAIN}" in logs, logs
        admin = re.search(r"^\s+(tpa_\S+)$", logs, re.M).group(1)
        # Step 4: the tenant, from the machine itself.
        r = ns.run(["curl", "-s", "-H", f"Authorization: Bearer {admin}", "-H",
                    "Content-Type: application/json", "-d", '{"name":"my-app"}',
                    "http://127.0.0.1:9478/v1/tenants"], timeout=20)
        secret = json.loads(r.stdout)["secret_key"]
        # The certificate is the CA's, for the name, on HTTPS 443.
        root_pem = root()
        r = ns.run(["curl", "-s", "--cacert", str(root_pem), f"https://{DOMAIN}/healthz"], timeout=20)
        assert r.returncode == 0, r.stderr
        # Step 5: the probe, with the CA's root trusted (a real CA's is in the system store).
        r = ns.run([BIN, "probe", "--api", f"https://{DOMAIN}", "--api-key", secret,
                    "--ca", str(root_pem), "--json"], timeout=180)
        report = json.loads(r.stdout)
        assert r.returncode == 0 and report["ok"] is True, r.stdout + r.stderr
        rows = {(x["url"], x["transport"]) for x in report["results"]}
        for row in ((f"turn:{DOMAIN}:80?transport=udp", "udp"), (f"turn:{DOMAIN}:80?transport=tcp", "tcp"),
                    (f"turn:{DOMAIN}:443?transport=udp", "udp"),
                    (f"turns:{DOMAIN}:443?transport=tcp", "tls")):
            assert row in rows, (row, report)
        for x in report["results"]:
            assert x["result"] == "ok", x
            if not x["url"].startswith("stun:"):
                assert x["relayed"].startswith(HOST), x
        assert secret not in r.stdout + r.stderr
        p.terminate()
        p.wait(timeout=15)
