"""First contact (issue 11): the README's first command, as a newcomer runs it, hands out ICE
servers a real client relays through. Run in a network namespace made by the test, on a host
whose only address is 198.51.100.10 (documentation range) with a default route, so nothing
leaves this machine."""

import json
import os
import re
import subprocess
import time

import uclient
from conftest import BIN
from netns import namespace

HOST = "198.51.100.10"


def curl(ns, method, url, key=None, body=None):
    args = ["curl", "-s", "-X", method, url, "-H", "Content-Type: application/json"]
    if key:
        args += ["-H", f"Authorization: Bearer {key}"]
    if body is not None:
        args += ["-d", json.dumps(body)]
    r = ns.run(args, timeout=20)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if r.stdout.strip() else None


def test_readme_first_command_hands_out_working_servers(tmp_path):
    with namespace("tp-first") as ns:
        ns.veth_host(HOST, gateway="198.51.100.1")
        log = open(tmp_path / "turnpike.log", "w+")
        # Exactly the README's first command (the binary it builds), in an empty directory: no
        # configuration, wildcard listeners, no public_host. The one setting: relaying to the
        # documentation range, which the peer below lives in and the default policy refuses.
        env = dict(os.environ, TURNPIKE_DANGER_ALLOW_PEER_RANGES="198.51.100.0/24")
        p = ns.popen([BIN], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 20
        while time.time() < deadline:
            r = ns.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9478/readyz"])
            if r.stdout == "200":
                break
            assert p.poll() is None, (tmp_path / "turnpike.log").read_text()
            time.sleep(0.2)
        logs = (tmp_path / "turnpike.log").read_text()
        assert f"host={HOST}" in logs and "default route" in logs, logs
        admin = re.search(r"^\s+(tpa_\S+)$", logs, re.M).group(1)
        tenant = curl(ns, "POST", "http://127.0.0.1:9478/v1/tenants", admin, {"name": "newcomer"})
        ice = curl(ns, "GET", "http://127.0.0.1:9478/v1/ice-servers", tenant["secret_key"])
        urls = [u for s in ice["iceServers"] for u in (s["urls"] if isinstance(s["urls"], list) else [s["urls"]])]
        assert f"stun:{HOST}:3478" in urls, ice
        for u in (f"turn:{HOST}:3478?transport=udp", f"turn:{HOST}:3478?transport=tcp",
                  f"turns:{HOST}:5349?transport=tcp"):
            assert u in urls, (u, ice)
        turn = next(s for s in ice["iceServers"] if s.get("username"))
        # The Metered-compatible ICE array names the address the client reached when it is one
        # of this machine's (the public host was detected, not configured); any other Host
        # header gets the detected address.
        c = curl(ns, "POST", "http://127.0.0.1:9478/api/v1/turn/credential?secretKey=" + tenant["secret_key"], body={})
        for host, want in (("127.0.0.1:9478", "127.0.0.1"), ("turn.example.com", HOST), ("192.0.2.77", HOST)):
            r = ns.run(["curl", "-s", "-H", f"Host: {host}",
                        "http://127.0.0.1:9478/api/v1/turn/credentials?apiKey=" + c["apiKey"]], timeout=20)
            arr = json.loads(r.stdout)
            assert arr[0] == {"urls": f"stun:{want}:3478"}, (host, arr)
            assert f"turn:{want}:3478?transport=tcp" in [e["urls"] for e in arr], (host, arr)
        # A real client relays through the advertised server to a peer on the host.
        peer_port = 7000
        ns.popen(["turnutils_peer", "-L", HOST, "-p", str(peer_port)],
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        for tcp in ([], ["-t"]):
            r = uclient.run(3478, tcp + ["-u", turn["username"], "-w", turn["credential"],
                                         "-e", HOST, "-r", str(peer_port), "-m", "2", "-n", "20",
                                         "-l", "100"], host=HOST, netns=ns.name, timeout=60)
            assert r.rc == 0 and r.lost == 0 and r.received >= 40, r.output


async def relay_for(port, username, password, seconds, every=0.2):
    """aioice through the relay to a local echo peer for `seconds`, re-binding its channel
    every 2 s (authenticated ChannelBind requests); returns (sent, echoed)."""
    import asyncio
    from aioice import turn

    from test_aioice import Collector, Echo

    loop = asyncio.get_running_loop()
    peer_t, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    peer = peer_t.get_extra_info("sockname")
    relay_t, proto = await turn.create_turn_endpoint(
        Collector, server_addr=("127.0.0.1", port), username=username, password=password,
        channel_refresh_time=2)
    sent = 0
    try:
        end = loop.time() + seconds
        while loop.time() < end:
            relay_t.sendto(b"tick-%d" % sent, peer)
            sent += 1
            await asyncio.sleep(every)
        await asyncio.sleep(0.5)
        return sent, len(proto.received)
    finally:
        relay_t.close()
        peer_t.close()


def test_a_call_outlives_its_credential(turnpike):
    """A 3-second credential: with the default grace the relay keeps flowing (and its channel
    keeps being re-bound) for 8 s; with `credential_grace = 0` the re-binds after expiry fail."""
    import asyncio

    from conftest import LOOPBACK_OK

    def mint(t):
        out = subprocess.run([BIN, "--config", str(t.config), "credential", "--user", "caller",
                              "--ttl", "3"], capture_output=True, text=True, check=True).stdout
        c = json.loads(out)
        return c["username"], c["password"]

    secret = 'shared_secrets = ["grace-test-secret-0123"]\n'
    t = turnpike(secret + LOOPBACK_OK)
    sent, echoed = asyncio.run(relay_for(t.port, *mint(t), seconds=8))
    assert sent >= 30 and echoed == sent, (sent, echoed)
    strict = turnpike(secret + LOOPBACK_OK + "credential_grace = 0\n")
    sent, echoed = asyncio.run(relay_for(strict.port, *mint(strict), seconds=8))
    assert echoed < sent * 3 // 4, (sent, echoed)


def test_public_profile_serves_every_metered_url_on_80_and_443(tmp_path):
    """`turnpike --profile public` on a host whose only address is 198.51.100.10: the ICE list
    names stun:H:80, turn:H:80 (UDP and TCP), turn:H:443 (UDP), turns:H:443?transport=tcp, a
    real client relays over each, and plain HTTP on port 80 redirects to HTTPS."""
    with namespace("tp-public") as ns:
        ns.veth_host(HOST, gateway="198.51.100.1")
        log = open(tmp_path / "turnpike.log", "w+")
        env = dict(os.environ, TURNPIKE_DANGER_ALLOW_PEER_RANGES="198.51.100.0/24")
        p = ns.popen([BIN, "--profile", "public"], cwd=tmp_path, stdout=log,
                     stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 20
        while time.time() < deadline:
            r = ns.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9478/readyz"])
            if r.stdout == "200":
                break
            assert p.poll() is None, (tmp_path / "turnpike.log").read_text()
            time.sleep(0.2)
        logs = (tmp_path / "turnpike.log").read_text()
        admin = re.search(r"^\s+(tpa_\S+)$", logs, re.M).group(1)
        tenant = curl(ns, "POST", "http://127.0.0.1:9478/v1/tenants", admin, {"name": "public"})
        ice = curl(ns, "GET", "http://127.0.0.1:9478/v1/ice-servers", tenant["secret_key"])
        urls = [u for s in ice["iceServers"] for u in (s["urls"] if isinstance(s["urls"], list) else [s["urls"]])]
        for u in (f"stun:{HOST}:80", f"turn:{HOST}:80?transport=udp", f"turn:{HOST}:80?transport=tcp",
                  f"turn:{HOST}:443?transport=udp", f"turns:{HOST}:443?transport=tcp"):
            assert u in urls, (u, ice)
        turn = next(s for s in ice["iceServers"] if s.get("username"))
        # Plain HTTP on port 80: a redirect to HTTPS, never the API in clear.
        r = ns.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                    f"http://{HOST}/v1/ice-servers"])
        assert r.stdout == f"308 https://{HOST}/v1/ice-servers", r.stdout
        peer_port = 7000
        ns.popen(["turnutils_peer", "-L", HOST, "-p", str(peer_port)],
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        auth = ["-u", turn["username"], "-w", turn["credential"], "-e", HOST, "-r", str(peer_port),
                "-m", "2", "-n", "20", "-l", "100"]
        for port, mode in ((80, []), (80, ["-t"]), (443, []), (443, ["-t", "-S"])):
            r = uclient.run(port, mode + auth, host=HOST, netns=ns.name, timeout=60)
            assert r.rc == 0 and r.lost == 0 and r.received >= 40, (port, mode, r.output)
