"""A Metered client, unchanged, against Turnpike: the calls Metered's documentation shows, in
its order (create a credential with the secretKey, fetch the ICE-server array with the returned
apiKey, list, usage; create a project, a project credential, project usage; delete), with the
keys in the query string and Metered's bodies, then relaying through the URLs and credentials
those answers carry. Webhooks in Metered's format arrive signed. On SQLite and PostgreSQL."""

import asyncio
import http.server
import json
import threading
import time
import urllib.parse

from api import ADMIN_KEY, Api, control_toml, db, new_tenant, ok, wait_for  # noqa: F401
from conftest import LOOPBACK_OK, free_port
from test_control_e2e import allocation_fails, relay_and_echo
from test_quotas_alerts import verify


class Hook(http.server.BaseHTTPRequestHandler):
    calls = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        Hook.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def metered_error(r, status, text, field="message"):
    """Metered's error: the status and a body of one field."""
    assert r.status == status, r
    assert r.json == {field: text}, r


def udp_turn(entries, port):
    """The single-URL TURN/UDP entry of a Metered ICE array, checked to name this server."""
    assert isinstance(entries, list) and entries
    assert all(isinstance(e["urls"], str) for e in entries), entries
    turn = [e for e in entries if e["urls"].startswith("turn:") and e["urls"].endswith("?transport=udp")]
    assert turn, entries
    url = turn[0]["urls"]
    host, p = url[len("turn:"):-len("?transport=udp")].rsplit(":", 1)
    assert (host, int(p)) == ("127.0.0.1", port), url
    return turn[0]


def relay(port, username, password, packets=4, size=300):
    back, _ = asyncio.run(relay_and_echo(port, username, password, [size] * packets))
    return back


def test_metered_client_end_to_end(turnpike, db):
    Hook.calls = []
    hook_port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", hook_port), Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        extra = 'danger_allow_webhook_ranges = ["127.0.0.0/8"]\n'
        t = turnpike(control_toml(db, LOOPBACK_OK + extra))
        admin = Api(t.metrics_port, ADMIN_KEY)
        _, app, _ = new_tenant(admin, "metered-app")
        m = app.with_key(None)  # Metered clients send no Authorization header.
        sk = "secretKey=" + urllib.parse.quote(app.key)

        # 1. Create a credential with the secretKey.
        metered_error(m.post("/api/v1/turn/credential", {}), 400, "secretKey is required")
        metered_error(m.post("/api/v1/turn/credential?secretKey=nope", {}), 401, "Invalid secretKey")
        metered_error(m.post(f"/api/v1/turn/credential?{sk}", {"expiryInSeconds": -1}), 400,
                      "please enter a positive integer value for expiryInSeconds")
        c = ok(m.post(f"/api/v1/turn/credential?{sk}", {"expiryInSeconds": 14400, "label": "user-1"}))
        assert set(c) == {"username", "password", "expiryInSeconds", "label", "apiKey"}

        # 2. Fetch the ICE-server array with the returned apiKey, and relay through it.
        metered_error(m.get("/api/v1/turn/credentials"), 400, "Please specify API Key", "error")
        metered_error(m.get("/api/v1/turn/credentials?apiKey=nope"), 401, "Invalid API Key", "error")
        ak = "apiKey=" + urllib.parse.quote(c["apiKey"])
        ice = ok(m.get(f"/api/v1/turn/credentials?{ak}"))
        assert ok(m.get(f"/api/v1/turn/credentials?{ak}&region=global"))
        metered_error_region = m.get(f"/api/v1/turn/credentials?{ak}&region=atlantis")
        assert metered_error_region.status == 400 and set(metered_error_region.json) == {"error"}
        entry = udp_turn(ice, t.port)
        assert relay(t.port, entry["username"], entry["credential"]) == 1200
        # The stored credential itself relays too.
        assert relay(t.port, c["username"], c["password"]) == 1200

        # 3. List credentials.
        lst = ok(m.get(f"/api/v2/turn/credentials?{sk}"))
        assert [d["username"] for d in lst["data"]] == [c["username"]]
        assert lst["pagination"]["total_records"] == 1

        # 4. Usage: the current period, by date, by user.
        u = wait_for(lambda: (lambda u: u if u["usageInGB"] > 0 else None)(
            ok(m.get(f"/api/v1/turn/current_usage?{sk}"))), what="app usage")
        assert set(u) == {"quotaInGB", "usageInGB", "overageInGB"}
        today = time.strftime("%Y-%m-%d", time.gmtime())
        days = ok(m.get(f"/api/v1/turn/current_usage_by_date?{sk}"))
        assert days[-1]["date"] == today and days[-1]["usageInGB"] > 0
        assert days[0]["date"] == today[:8] + "01"
        by_user = ok(m.get(f"/api/v2/turn/current_usage_by_user?{sk}"))
        assert c["username"] in {r["username"] for r in by_user["data"]} and by_user["has_more"] is False

        # 5. Create a project (quota 1 MiB, refuse when exceeded), a project credential with the
        # projectApiKey, relay with it until the quota is used up.
        p = ok(m.post(f"/api/v2/turn/project?{sk}", {"projectName": "tenant-a", "quotaInBytes": 1 << 20,
                                                    "quotaExceededAction": "disable",
                                                    "notificationEmails": ["ops@example.com"]}))
        pid, pkey = p["_id"], p["apiKey"]
        assert p["quotaExceededAction"] == "disable" and p["quotaInBytes"] == 1 << 20
        metered_error(m.post(f"/api/v2/turn/project?{sk}", {"projectName": "tenant-a"}), 400,
                      "project name already exists")
        assert [x["_id"] for x in ok(m.get(f"/api/v2/turn/projects?{sk}"))] == [pid]
        pk = "projectApiKey=" + urllib.parse.quote(pkey)
        pc = ok(m.post(f"/api/v2/turn/project/{pid}/credential?{pk}", {"label": "room-1"}))
        pice = ok(m.get("/api/v1/turn/credentials?apiKey=" + urllib.parse.quote(pc["apiKey"])))
        pentry = udp_turn(pice, t.port)
        assert relay(t.port, pentry["username"], pentry["credential"]) == 1200
        plist = ok(m.get(f"/api/v2/turn/project/{pid}/credentials?{pk}"))
        assert [d["username"] for d in plist["data"]] == [pc["username"]] and plist["data"][0]["project"] == pid
        # The app's list does not show the project's credentials.
        assert ok(m.get(f"/api/v2/turn/credentials?{sk}"))["pagination"]["total_records"] == 1

        # 6. Project usage: it counts, per user too; past the quota, new allocations are refused.
        pu = wait_for(lambda: (lambda u: u if u["usageInBytes"] > 0 else None)(
            ok(m.get(f"/api/v2/turn/project/{pid}/current_usage?{pk}"))), what="project usage")
        assert pu["quotaInBytes"] == 1 << 20 and pu["overageInBytes"] == 0
        pdays = ok(m.get(f"/api/v2/turn/project/{pid}/current_usage_by_date?{sk}"))
        assert pdays[-1]["date"] == today and pdays[-1]["usageInBytes"] == pu["usageInBytes"]
        pusers = ok(m.get(f"/api/v2/turn/project/{pid}/current_usage_by_user?{pk}"))
        assert pusers["data"][0]["label"] == "room-1" and pusers["has_more"] is False
        metered_error(m.get(f"/api/v2/turn/project/{pid}/current_usage_for_user?{pk}"), 400,
                      "please pass the username query parameter")
        # About 4 × 300 kB over the four legs: past 1 MiB.
        assert relay(t.port, pc["username"], pc["password"], packets=300, size=1000) == 300_000
        wait_for(lambda: ok(m.get(f"/api/v2/turn/project/{pid}/current_usage?{pk}"))["overageInBytes"] > 0,
                 what="overage")
        wait_for(lambda: allocation_fails(t.port, pc["username"], pc["password"]) == 486, what="refusal")
        # The app itself is not limited by its project's quota.
        assert allocation_fails(t.port, c["username"], c["password"]) is None

        # 7. A webhook in Metered's format, signed with Turnpike's signature header.
        n = ok(app.put("/v1/notifications", {"webhook_url": f"http://127.0.0.1:{hook_port}/hook",
                                              "format": "metered"}))
        ok(app.put("/v1/quota", {"bytes_per_period": 1000, "thresholds": [{"percent": 80, "action": "notify"},
                                                                          {"percent": 100, "action": "notify"}]}))
        calls = wait_for(lambda: len(Hook.calls) >= 2 and Hook.calls, timeout=15, what="webhooks")
        events = {}
        for headers, body in calls:
            verify(n["webhook_secret"], headers, body)
            ev = json.loads(body)
            assert set(ev) == {"event", "project", "projectName", "app", "quota", "usage"}, ev
            assert headers["turnpike-event"] == ev["event"]
            events[ev["event"]] = ev
        assert set(events) == {"project_quota_80_percent", "project_quota_exceeded"}
        ex = events["project_quota_exceeded"]
        assert ex["quota"] == 1000 and ex["usage"] >= 1000 and ex["app"] == "metered-app"

        # 8. Delete: the project credential by username, the project, the app's credential.
        ok(m.post(f"/api/v2/turn/project/{pid}/credential?{pk}", {"label": "room-2"}))
        gone = ok(m.delete(f"/api/v2/turn/project/{pid}/credential?{pk}", body={"username": pc["username"]}))
        assert gone == {"success": True, "message": "credential removed"}
        assert ok(m.delete(f"/api/v2/turn/project/{pid}?{sk}")) == {"success": True}
        metered_error(m.get(f"/api/v2/turn/project/{pid}/current_usage?{pk}"), 401, "Invalid projectApiKey")
        metered_error(m.get(f"/api/v2/turn/project/{pid}/current_usage?{sk}"), 400, "Project not found")
        assert ok(m.delete(f"/api/v1/turn/credential?{sk}", body={"username": c["username"]})) == {
            "success": True, "message": "credential removed"}
        metered_error(m.delete(f"/api/v1/turn/credential?{sk}", body={"username": c["username"]}), 400,
                      "credential of the specified username is not found")
        wait_for(lambda: allocation_fails(t.port, c["username"], c["password"]) == 401, what="deleted credential")
    finally:
        httpd.shutdown()
