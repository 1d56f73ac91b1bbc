"""Fleet routing across network namespaces (issue 13): a router namespace joins three node
namespaces (eu-central 192.0.2.2, us-east 198.51.100.2, ap-south 203.0.113.2) and three client
namespaces (192.0.2.18, 198.51.100.18, 203.0.113.18, which a GeoIP fixture places in Frankfurt,
New York and Singapore) over veth pairs; one PostgreSQL runs in the router namespace. Each
client asks every node for ICE servers and gets its nearest region's node; `region=` overrides;
a node killed with -9 leaves every client's ICE lists within 10 s; afterwards everything the test
made (namespaces, processes, the database) is gone.

This machine's kernel has no `sch_netem` (`tc qdisc add ... netem` answers "Specified qdisc kind
is unknown"), so the links carry no modelled delay; routing does not depend on it (it is by
GeoIP and region locations)."""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import pytest

from api import ADMIN_KEY
from conftest import BIN, ROOT
from netns import Namespace, _ip

from mmdb_writer import MMDBWriter, MmdbF64, MmdbU16, MmdbU32
from netaddr import IPSet

PG = str(ROOT / "scripts" / "pg-test-server")
# (name, region, city, subnet prefix): the node is .2 and the client .18 of each /24's two /28s.
SITES = [("eu", "eu-central", "frankfurt", "192.0.2"),
         ("us", "us-east", "new-york", "198.51.100"),
         ("ap", "ap-south", "singapore", "203.0.113")]
CITY = {"frankfurt": (50.11, 8.68), "new-york": (40.71, -74.01), "singapore": (1.35, 103.82)}


def fixture(path):
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City",
                   languages=["en"], description="Turnpike lab fixture")
    for i, (_, _, city, net) in enumerate(SITES):
        lat, lon = CITY[city]
        w.insert_network(IPSet([f"{net}.16/28"]), {
            "city": {"geoname_id": MmdbU32(1000 + i), "names": {"en": city}},
            "location": {"latitude": MmdbF64(lat), "longitude": MmdbF64(lon),
                         "accuracy_radius": MmdbU16(20)}})
    w.to_db_file(str(path))
    return path


def link(router, ns, router_addr, ns_addr, tag):
    """A veth pair between the router and `ns`, /28 addresses, `ns` routing via the router."""
    a, b = f"r{tag}", f"h{tag}"
    subprocess.run(["ip", "link", "add", a, "netns", router.name, "type", "veth", "peer", "name", b,
                    "netns", ns.name], check=True, capture_output=True)
    router.sh(f"ip addr add {router_addr}/28 dev {a} && ip link set {a} up")
    ns.sh(f"ip addr add {ns_addr}/28 dev {b} && ip link set {b} up && ip route add default via {router_addr}")


def curl(ns, url, key, method="GET", body=None):
    cmd = ["curl", "-s", "-m", "10", "-X", method, "-H", f"Authorization: Bearer {key}", url]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    r = ns.run(cmd, timeout=30)
    return json.loads(r.stdout) if r.stdout else None


def named(body, nodes):
    """Which nodes (by address) an ICE list's TURN URLs name."""
    urls = [u for s in body.get("iceServers", []) for u in s["urls"] if u.startswith("turn:")]
    return sorted({n for n, addr in nodes.items() if any(f"turn:{addr}:" in u for u in urls)})


@pytest.fixture
def lab(tmp_path):
    spaces, pgdir = [], None
    tag = os.urandom(2).hex()

    def ns(name):
        n = Namespace(f"tp-lab-{name}-{tag}")
        _ip("netns", "add", n.name)
        spaces.append(n)
        n.sh("ip link set lo up")
        return n

    try:
        router = ns("r")
        router.sh("sysctl -qw net.ipv4.ip_forward=1")
        nodes, clients = {}, {}
        for name, _, _, net in SITES:
            nodes[name] = ns(f"n{name}")
            link(router, nodes[name], f"{net}.1", f"{net}.2", f"n{name}")
            clients[name] = ns(f"c{name}")
            link(router, clients[name], f"{net}.17", f"{net}.18", f"c{name}")
        pgdir = pathlib.Path(tempfile.mkdtemp(prefix="turnpike-lab-pg-"))
        r = router.run([PG, "start", str(pgdir), "192.0.2.1"], timeout=120)
        assert r.returncode == 0, r.stderr
        port = r.stdout.strip().rsplit(":", 1)[1].split("/")[0]
        yield router, nodes, clients, f"postgres://postgres@192.0.2.1:{port}/turnpike_test"
    finally:
        for n in spaces:
            n.close()
        if pgdir:
            subprocess.run([PG, "stop", str(pgdir)], capture_output=True)
            shutil.rmtree(pgdir, ignore_errors=True)


def test_clients_in_three_namespaces_get_their_nearest_region(lab, tmp_path):
    router, nodes, clients, db = lab
    geo = fixture(tmp_path / "lab.mmdb")
    addr = {name: f"{net}.2" for name, _, _, net in SITES}
    procs = {}
    for name, region, city, net in SITES:
        d = tmp_path / name
        d.mkdir()
        cfg = d / "turnpike.toml"
        cfg.write_text(
            f'realm = "lab"\nlisten_udp = ["{net}.2:3478"]\nlisten_tcp = ["{net}.2:3478"]\n'
            f'listen_tls = []\nlisten_dtls = []\nrelay_ipv4 = "{net}.2"\n'
            f'metrics_listen = "{net}.2:9478"\ndata_dir = "{d / "data"}"\n'
            f'database_url = "{db}"\nadmin_key = "{ADMIN_KEY}"\ndemo_enabled = false\n'
            f'region = "{region}"\nregion_location = "{city}"\ngeoip_database = ["{geo}"]\n')
        procs[name] = nodes[name].popen([BIN, "--config", str(cfg)], stdout=open(d / "log", "w"),
                                        stderr=subprocess.STDOUT)
    api = {name: f"http://{a}:9478" for name, a in addr.items()}
    deadline = time.time() + 30
    while time.time() < deadline:
        listed = curl(clients["eu"], f"{api['eu']}/v1/nodes", ADMIN_KEY) or []
        if isinstance(listed, list) and sum(n["state"] == "healthy" for n in listed) == 3:
            break
        time.sleep(0.5)
    else:
        logs = "\n".join((tmp_path / n / "log").read_text()[-1500:] for n in addr)
        pytest.fail(f"three healthy nodes expected: {listed}\n{logs}")
    key = curl(clients["eu"], f"{api['eu']}/v1/tenants", ADMIN_KEY, "POST", {"name": "lab"})["secret_key"]
    time.sleep(2.5)  # every node has read every row

    def ice(client, node, query=""):
        return curl(clients[client], f"{api[node]}/v1/ice-servers{query}", key)

    for client in addr:
        for node in addr:
            assert named(ice(client, node), addr) == [client], (client, node)
    assert named(ice("eu", "us", "?region=ap-south"), addr) == ["ap"]
    # kill -9 the Singapore node: its client moves to the nearest other region within 10 s.
    procs["ap"].kill()
    procs["ap"].wait()
    t0 = time.time()
    while time.time() - t0 < 10:
        if all(named(ice("ap", n), addr) not in ([], ["ap"]) for n in ("eu", "us")):
            break
        time.sleep(0.3)
    took = time.time() - t0
    assert took < 10, took
    for n in ("eu", "us"):
        assert named(ice("ap", n), addr) == ["eu"], n  # Singapore is nearer Frankfurt than New York
