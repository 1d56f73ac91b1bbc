"""Security of the control-plane API, against the running binary over real sockets (127.0.0.0/8
only): webhook targets in internal ranges are refused at creation and again at delivery (after
DNS resolution); a SQLite file removed or replaced while running makes writes fail with 503
instead of vanishing, and the files are private whatever the umask; stored usernames are unique
per tenant, not globally; failed API keys are throttled per client address; publishable keys
need explicit origins; and an operator-managed client deny list refuses listed addresses at once
(and on the other nodes sharing PostgreSQL)."""

import asyncio
import http.client
import http.server
import json
import os
import shutil
import sqlite3
import stat
import threading
import time
import urllib.parse

import pytest

from api import ADMIN_KEY, Api, Response, control_toml, db, error, new_tenant, ok, uniq, wait_for  # noqa: F401
from conftest import LOOPBACK_OK, free_port
from test_control_e2e import allocation_fails, relay_and_echo

ALLOW_LOCAL_WEBHOOKS = 'danger_allow_webhook_ranges = ["127.0.0.0/8", "::1/128"]\n'


def start(turnpike, db_url, extra=""):
    t = turnpike(control_toml(db_url, LOOPBACK_OK + extra))
    return t, Api(t.metrics_port, ADMIN_KEY)


class Client:
    """HTTP/1.1 to the API on 127.0.0.1:port from the local address `source` (any address of
    127.0.0.0/8 is this machine), on one kept-alive connection."""

    def __init__(self, port, source="127.0.0.1"):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))

    def req(self, method, path, body=None, key=None, headers=None):
        h = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if key:
            h["Authorization"] = f"Bearer {key}"
        self.conn.request(method, path, body=data, headers=h)
        r = self.conn.getresponse()
        return Response(r.status, r.read().decode(), dict(r.getheaders()))

    def close(self):
        self.conn.close()


def call(port, method, path, body=None, key=None, headers=None, source="127.0.0.1"):
    """One request on a new connection from `source`."""
    c = Client(port, source)
    try:
        return c.req(method, path, body, key, headers)
    finally:
        c.close()


def denied(port, path, key=None, source="127.0.0.1"):
    """True when a request from `source` on a new connection is refused as a denied client:
    403 `client_denied`, or the connection closed before an answer (a listener may refuse
    denied addresses when it accepts them)."""
    try:
        r = call(port, "GET", path, key=key, source=source)
    except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
        return True
    if r.status == 403:
        error(r, 403, "client_denied")
        return True
    return False


def sqlite_url(tmp_path, name="sec"):
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    return d / "turnpike.db", f"sqlite://{d / 'turnpike.db'}"


# --- Webhook targets (SSRF) ---------------------------------------------------------------

REFUSED_WEBHOOKS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:9/hook",
    "http://[::1]:9/hook",
    "http://10.0.0.1/hook",
    "http://localhost:9/hook",
    "http://LOCALHOST./hook",
    "http://2130706433/hook",  # 127.0.0.1 in decimal
    "http://0x7f.1/hook",  # 127.0.0.1 in hex and short form
    "http://0.0.0.0/hook",
    "http://[::]/hook",
    "http://100.64.0.1/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://224.0.0.1/hook",
    "http://192.0.2.1/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:169.254.169.254]/hook",
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
    "http://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
    "http://[fd00:ec2::254]/hook",  # unique local (a cloud metadata address)
    "http://[fe80::1]/hook",
    "http://[ff02::1]/hook",
    "http://[2001:db8::1]/hook",
    "http://user:pw@127.0.0.1/hook",
]


def test_webhook_targets_in_internal_ranges_are_refused_at_creation(turnpike, db):
    t, admin = start(turnpike, db)
    _, api, _ = new_tenant(admin)
    for url in REFUSED_WEBHOOKS:
        e = error(api.put("/v1/notifications", {"webhook_url": url}), 422, "invalid_field")
        assert "webhook_url" in e["message"], (url, e)
    # Nothing was stored.
    assert ok(api.get("/v1/notifications"))["webhook_url"] is None
    # Opening a range with `danger_allow_webhook_ranges` allows it, and only it.
    t2, admin2 = start(turnpike, db, 'danger_allow_webhook_ranges = ["127.0.0.0/8"]\n')
    _, api2, _ = new_tenant(admin2)
    ok(api2.put("/v1/notifications", {"webhook_url": "http://127.0.0.1:9/hook"}))
    ok(api2.put("/v1/notifications", {"webhook_url": "http://localhost:9/hook"}))
    for url in ["http://10.0.0.1/hook", "http://169.254.169.254/", "http://[::1]:9/hook"]:
        e = error(api2.put("/v1/notifications", {"webhook_url": url}), 422, "invalid_field")
        assert "webhook_url" in e["message"], (url, e)


class Receiver(http.server.BaseHTTPRequestHandler):
    calls = []

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.calls.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_targets_are_checked_again_at_delivery(turnpike, tmp_path):
    """Webhooks stored while loopback was allowed (a name resolving to it, and an IP literal)
    are not delivered once it is not: the address connected to is the address checked."""
    Receiver.calls = []
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _, url = sqlite_url(tmp_path)
    try:
        t, admin = start(turnpike, url, ALLOW_LOCAL_WEBHOOKS)
        _, by_name, _ = new_tenant(admin, "by-name")
        _, by_ip, _ = new_tenant(admin, "by-ip")
        ok(by_name.put("/v1/notifications", {"webhook_url": f"http://localhost:{port}/name"}))
        ok(by_ip.put("/v1/notifications", {"webhook_url": f"http://127.0.0.1:{port}/ip"}))
        t.stop()
        # The same database, without the danger range.
        t, _ = start(turnpike, url, "webhook_first_retry = \"100ms\"\n")
        quota = {"bytes_per_period": 10_000, "thresholds": [{"percent": 50, "action": "notify"}]}
        for key in (by_name.key, by_ip.key):
            api = Api(t.metrics_port, key)
            ok(api.put("/v1/quota", quota))
            m = ok(api.post("/v1/ephemeral-credentials", {}), 201)
            back, _ = asyncio.run(relay_and_echo(t.port, m["username"], m["password"], [1000] * 4))
            assert back == 4000
            wait_for(lambda: ok(api.get("/v1/alerts")), timeout=15, what="alert")
        wait_for(lambda: t.logs().count("webhook target refused") >= 2, timeout=10, what="refusal warnings")
        time.sleep(1.5)
        assert Receiver.calls == []
    finally:
        httpd.shutdown()


# --- The SQLite file ------------------------------------------------------------------------

LOST_LOG = "writes are refused until the server is restarted"


def test_database_file_removed_while_running_fails_writes(turnpike, tmp_path):
    path, url = sqlite_url(tmp_path)
    t, admin = start(turnpike, url)
    _, api, _ = new_tenant(admin)
    for suffix in ["", "-wal", "-shm"]:
        if os.path.exists(f"{path}{suffix}"):
            os.remove(f"{path}{suffix}")
    e = error(admin.post("/v1/tenants", {"name": "after"}), 503, "database_lost")
    assert "removed or replaced" in e["message"] and "restart" in e["message"], e
    error(api.post("/v1/credentials", {}), 503, "database_lost")
    error(api.put("/v1/quota", {"bytes_per_period": 5}), 503, "database_lost")
    assert t.logs().count(LOST_LOG) == 1, t.logs()[-3000:]
    assert t.proc.poll() is None


def test_database_file_replaced_while_running_fails_writes(turnpike, tmp_path):
    path, url = sqlite_url(tmp_path)
    t, admin = start(turnpike, url)
    new_tenant(admin)
    shutil.copy(path, f"{path}.copy")
    os.replace(f"{path}.copy", path)
    error(admin.post("/v1/tenants", {"name": "after"}), 503, "database_lost")
    assert t.logs().count(LOST_LOG) == 1


def test_database_files_are_private_whatever_the_umask(turnpike, tmp_path):
    path, url = sqlite_url(tmp_path)
    old = os.umask(0)
    try:
        t, admin = start(turnpike, url)
    finally:
        os.umask(old)
    new_tenant(admin)
    for suffix in ["", "-wal", "-shm"]:
        mode = stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode)
        assert mode == 0o600, (suffix, oct(mode))
    t.stop()
    # A file left readable by others is made private at start.
    path2, url2 = sqlite_url(tmp_path, "loose")
    path2.touch()
    os.chmod(path2, 0o666)
    t2, admin2 = start(turnpike, url2)
    new_tenant(admin2)
    assert stat.S_IMODE(os.stat(path2).st_mode) == 0o600


# --- Usernames per tenant -------------------------------------------------------------------


def test_usernames_are_unique_per_tenant_only(turnpike, db):
    t, admin = start(turnpike, db)
    _, a, _ = new_tenant(admin, "a")
    _, b, _ = new_tenant(admin, "b")
    _, c, _ = new_tenant(admin, "c")
    name = uniq("alice")
    ca = ok(a.post("/v1/credentials", {"username": name, "password": "password-of-a-1"}), 201)
    cb = ok(b.post("/v1/credentials", {"username": name, "password": "password-of-b-1"}), 201)
    assert ca["credential"]["id"] != cb["credential"]["id"]
    # Within one tenant the name is still unique.
    error(a.post("/v1/credentials", {"username": name, "password": "another-password"}), 409, "conflict")
    # The same name and password as another tenant's credential would share its key: refused,
    # without saying that another tenant has the name.
    e = error(c.post("/v1/credentials", {"username": name, "password": "password-of-a-1"}), 409, "conflict")
    assert "password" in e["message"] and "tenant" not in e["message"] and "exists" not in e["message"], e
    # Each relays with its own password; a wrong one is refused.
    assert allocation_fails(t.port, name, "password-of-a-1") is None
    assert allocation_fails(t.port, name, "password-of-b-1") is None
    assert allocation_fails(t.port, name, "password-of-c-1") == 401
    # Each tenant sees only its own.
    assert [x["id"] for x in ok(a.get("/v1/credentials"))["items"]] == [ca["credential"]["id"]]
    assert [x["id"] for x in ok(b.get("/v1/credentials"))["items"]] == [cb["credential"]["id"]]
    # Metered endpoints address a credential by username within the caller's tenant.
    anon = b.with_key(None)
    sk = "secretKey=" + urllib.parse.quote(b.key)
    ok(anon.post(f"/api/v1/turn/credential/disable?{sk}", {"username": name}))
    assert not ok(b.get(f"/v1/credentials/{cb['credential']['id']}"))["enabled"]
    assert ok(a.get(f"/v1/credentials/{ca['credential']['id']}"))["enabled"]
    wait_for(lambda: allocation_fails(t.port, name, "password-of-b-1") == 401, what="b disabled")
    assert allocation_fails(t.port, name, "password-of-a-1") is None
    ok(anon.delete(f"/api/v1/turn/credential?{sk}&username={name}"))
    assert ok(b.get("/v1/credentials"))["items"] == []
    assert [x["id"] for x in ok(a.get("/v1/credentials"))["items"]] == [ca["credential"]["id"]]
    # The name is free again in b; a keeps its own.
    ok(b.post("/v1/credentials", {"username": name, "password": "password-of-b-2"}), 201)
    assert allocation_fails(t.port, name, "password-of-b-2") is None
    assert allocation_fails(t.port, name, "password-of-a-1") is None


# --- Throttling of failed API keys ----------------------------------------------------------


def test_failed_api_keys_are_throttled_per_client_address(turnpike, db):
    t, admin = start(turnpike, db, "api_auth_failures_per_minute = 5\n")
    p = t.metrics_port
    _, api, _ = new_tenant(admin)
    for i in range(5):
        error(call(p, "GET", "/v1/tenants", key=f"tps_guess_{i}"), 401, "unauthorized")
    r = call(p, "GET", "/v1/tenants", key="tps_guess_5")
    error(r, 429, "rate_limited")
    assert 1 <= int(r.headers["retry-after"]) <= 60, r.headers
    # Until the window passes, that address gets 429 even with a valid key (no lookup at all),
    # also through the compatibility endpoints' query keys.
    error(call(p, "GET", "/v1/tenants", key=ADMIN_KEY), 429, "rate_limited")
    r = call(p, "GET", "/api/v2/turn/credentials?secretKey=tps_guess_6")
    assert r.status == 429 and set(r.json) == {"message"} and "retry-after" in r.headers, r
    # Another address is not affected, and has its own count.
    assert ok(call(p, "GET", "/v1/tenants", key=ADMIN_KEY, source="127.0.0.2"))
    assert ok(call(p, "GET", "/v1/keys", key=api.key, source="127.0.0.2"))
    error(call(p, "GET", "/v1/tenants", key="tps_guess_7", source="127.0.0.2"), 401)
    assert t.metric("turnpike_api_auth_failures_total") >= 6
    assert t.metric("turnpike_api_auth_throttled_total") >= 3


# --- Publishable keys -----------------------------------------------------------------------


def test_publishable_keys_need_explicit_origins(turnpike, db):
    t, admin = start(turnpike, db)
    _, api, _ = new_tenant(admin)
    cid = ok(api.post("/v1/credentials", {}), 201)["credential"]["id"]
    path = f"/v1/credentials/{cid}/publishable-keys"
    for body in [{}, {"allowed_origins": []}]:
        e = error(api.post(path, body), 422, "invalid_field")
        assert "allowed_origins" in e["message"], e
    error(api.post(path, {"allowed_origins": ["ftp://x"]}), 422, "invalid_field")
    error(api.post(path, {"allowed_origins": ["*.example.com"]}), 422, "invalid_field")
    app = "https://app.example.com"
    k = ok(api.post(path, {"allowed_origins": [app]}), 201)
    assert k["info"]["allowed_origins"] == [app]
    pk = api.with_key(k["key"])
    assert ok(pk.get("/v1/ice-servers", headers={"Origin": app}))["iceServers"]
    error(pk.get("/v1/ice-servers", headers={"Origin": "https://evil.example.com"}), 403)
    error(pk.get("/v1/ice-servers"), 403)
    # "*" is honoured only as an explicit entry.
    star = api.with_key(ok(api.post(path, {"allowed_origins": ["*"]}), 201)["key"])
    assert ok(star.get("/v1/ice-servers", headers={"Origin": "https://any.example.com"}))["iceServers"]
    assert ok(star.get("/v1/ice-servers"))["iceServers"]


def test_publishable_key_stored_without_origins_allows_none(turnpike, tmp_path):
    """Keys stored by earlier versions with an empty list (then: any origin) allow no origin."""
    path, url = sqlite_url(tmp_path)
    t, admin = start(turnpike, url)
    _, api, _ = new_tenant(admin)
    cid = ok(api.post("/v1/credentials", {}), 201)["credential"]["id"]
    k = ok(api.post(f"/v1/credentials/{cid}/publishable-keys", {"allowed_origins": ["https://a.example.com"]}), 201)
    conn = sqlite3.connect(path, timeout=10)
    with conn:
        conn.execute("UPDATE api_keys SET allowed_origins = '' WHERE id = ?", (k["info"]["id"],))
    conn.close()
    pk = api.with_key(k["key"])
    error(pk.get("/v1/ice-servers", headers={"Origin": "https://a.example.com"}), 403)
    error(pk.get("/v1/ice-servers", headers={"Origin": "https://b.example.com"}), 403)
    error(pk.get("/v1/ice-servers"), 403)


# --- Client deny list -----------------------------------------------------------------------


def test_client_deny_list(turnpike, db):
    t, admin = start(turnpike, db)
    p = t.metrics_port
    _, api, _ = new_tenant(admin)
    ids = []
    try:
        # Operator only; the CIDR is validated; the caller cannot lock itself out by mistake.
        error(api.post("/v1/deny-list", {"cidr": "203.0.113.0/24"}), 403, "forbidden")
        error(api.get("/v1/deny-list"), 403, "forbidden")
        for bad in ["not-a-cidr", "10.0.0.0/33", "", "1.2.3.4/8/8"]:
            e = error(admin.post("/v1/deny-list", {"cidr": bad}), 422, "invalid_field")
            assert "cidr" in e["message"], e
        e = error(admin.post("/v1/deny-list", {"cidr": "127.0.0.0/8"}), 422, "invalid_field")
        assert "force" in e["message"], e
        # A connection from 127.0.0.2 opened before the entry is added.
        early = Client(p, "127.0.0.2")
        ok(early.req("GET", "/v1/tenants", key=ADMIN_KEY))
        # A bare address is one host; entries are listed.
        d = ok(admin.post("/v1/deny-list", {"cidr": "127.0.0.2", "note": "probe"}), 201)
        ids.append(d["id"])
        assert d["cidr"] == "127.0.0.2/32" and d["note"] == "probe" and d["id"]
        v6 = ok(admin.post("/v1/deny-list", {"cidr": "2001:db8::1"}), 201)
        ids.append(v6["id"])
        assert v6["cidr"] == "2001:db8::1/128" and v6["note"] is None
        listed = {x["id"]: x["cidr"] for x in ok(admin.get("/v1/deny-list"))}
        assert listed[d["id"]] == "127.0.0.2/32" and listed[v6["id"]] == "2001:db8::1/128"
        # Applied at once: 127.0.0.2 is refused on every API endpoint, also on a connection it
        # opened before (403 `client_denied`); 127.0.0.1 is not.
        for key, path in [(ADMIN_KEY, "/v1/tenants"), (api.key, "/v1/keys"), (None, "/openapi.json")]:
            error(early.req("GET", path, key=key), 403, "client_denied")
            assert denied(p, path, key=key, source="127.0.0.2"), path
        ok(call(p, "GET", "/v1/tenants", key=ADMIN_KEY))
        # Deleting the entry lets 127.0.0.2 in again.
        assert admin.delete(f"/v1/deny-list/{d['id']}").status == 204
        ids.remove(d["id"])
        error(admin.delete(f"/v1/deny-list/{d['id']}"), 404, "not_found")
        ok(call(p, "GET", "/v1/tenants", key=ADMIN_KEY, source="127.0.0.2"))
        # `force` denies even the caller's own address.
        e = error(call(p, "POST", "/v1/deny-list", {"cidr": "127.0.0.2/32"}, key=ADMIN_KEY, source="127.0.0.2"), 422)
        assert "force" in e["message"]
        f = ok(call(p, "POST", "/v1/deny-list?force=true", {"cidr": "127.0.0.2/32"}, key=ADMIN_KEY,
                    source="127.0.0.2"), 201)
        ids.append(f["id"])
        assert denied(p, "/v1/tenants", key=ADMIN_KEY, source="127.0.0.2")
        assert admin.delete(f"/v1/deny-list/{f['id']}").status == 204
        ids.remove(f["id"])
        ok(call(p, "GET", "/v1/tenants", key=ADMIN_KEY, source="127.0.0.2"))
        # Audited; in the OpenAPI document.
        actions = [a["action"] for a in ok(admin.get("/v1/audit"))]
        assert actions.count("deny_list.add") >= 3 and actions.count("deny_list.delete") >= 2
        doc = ok(admin.get("/openapi.json", key=None))
        assert {"/v1/deny-list", "/v1/deny-list/{id}"} <= set(doc["paths"])
    finally:
        for i in ids:
            admin.delete(f"/v1/deny-list/{i}")


def test_client_deny_list_reaches_every_node(turnpike):
    url = os.environ.get("TURNPIKE_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("TURNPIKE_TEST_POSTGRES_URL is not set: run through scripts/test, which starts PostgreSQL")
    one, admin1 = start(turnpike, url)
    two, admin2 = start(turnpike, url)
    d = ok(admin1.post("/v1/deny-list", {"cidr": "127.0.0.3/32"}), 201)
    try:
        wait_for(lambda: denied(two.metrics_port, "/v1/tenants", key=ADMIN_KEY, source="127.0.0.3"),
                 timeout=5, what="deny list on the other node")
        ok(call(two.metrics_port, "GET", "/v1/tenants", key=ADMIN_KEY))
    finally:
        assert admin1.delete(f"/v1/deny-list/{d['id']}").status == 204
    wait_for(lambda: not denied(two.metrics_port, "/v1/tenants", key=ADMIN_KEY, source="127.0.0.3"),
             timeout=5, what="deny list lifted on the other node")
    ok(call(two.metrics_port, "GET", "/v1/tenants", key=ADMIN_KEY, source="127.0.0.3"))
