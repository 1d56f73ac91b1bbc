"""Metered's TURN REST API paths and shapes, served by Turnpike: an app written against it works
by changing the host name. Proven by driving every compatible endpoint the way Metered's docs
show, and relaying with the credentials they return."""

import asyncio
import time
import urllib.parse

from api import ADMIN_KEY, Api, control_toml, db, new_tenant, ok, wait_for  # noqa: F401
from conftest import LOOPBACK_OK
from test_control_e2e import allocation_fails, relay_and_echo


def metered_error(r, status):
    """Metered's error body: one `message` field."""
    assert r.status == status, r
    assert set(r.json) == {"message"}, r


def test_metered_api(turnpike, db):
    t = turnpike(control_toml(db, LOOPBACK_OK))
    admin = Api(t.metrics_port, ADMIN_KEY)
    _, api, _ = new_tenant(admin)
    anon = api.with_key(None)
    sk = "secretKey=" + urllib.parse.quote(api.key)
    c = ok(anon.post(f"/api/v1/turn/credential?{sk}", {"expiryInSeconds": 3600, "label": "exampleLabel"}))
    assert set(c) == {"username", "password", "expiryInSeconds", "label", "apiKey"}
    assert c["expiryInSeconds"] == 3600 and c["label"] == "exampleLabel"
    metered_error(anon.post(f"/api/v1/turn/credential?{sk}", {"expiryInSeconds": -5}), 400)
    metered_error(anon.post("/api/v1/turn/credential?secretKey=wrong", {}), 401)
    # The credential relays; so does the ICE-servers array fetched with its apiKey.
    back, _ = asyncio.run(relay_and_echo(t.port, c["username"], c["password"], [300] * 4))
    assert back == 1200
    ice = ok(anon.get("/api/v1/turn/credentials?apiKey=" + urllib.parse.quote(c["apiKey"])))
    assert isinstance(ice, list) and ice[0]["urls"]
    entry = [s for s in ice if "credential" in s][0]
    back, _ = asyncio.run(relay_and_echo(t.port, entry["username"], entry["credential"], [200] * 3))
    assert back == 600
    # v2 list: data + pagination, label filter, no passwords.
    ok(anon.post(f"/api/v1/turn/credential?{sk}", {"label": "other"}))
    lst = ok(anon.get(f"/api/v2/turn/credentials?{sk}"))
    assert lst["pagination"]["total_records"] == 2 and lst["pagination"]["current_page"] == 1
    assert "password" not in lst["data"][0]
    only = ok(anon.get(f"/api/v2/turn/credentials?{sk}&label=exampleLabel"))
    assert [d["username"] for d in only["data"]] == [c["username"]]
    # Disable / enable by username (400 when already in that state, as Metered answers).
    assert "disabled" in ok(anon.post(f"/api/v1/turn/credential/disable?{sk}", {"username": c["username"]}))["message"]
    metered_error(anon.post(f"/api/v1/turn/credential/disable?{sk}", {"username": c["username"]}), 400)
    assert allocation_fails(t.port, c["username"], c["password"]) == 401
    ok(anon.post(f"/api/v1/turn/credential/enable?{sk}", {"username": c["username"]}))
    assert allocation_fails(t.port, c["username"], c["password"]) is None
    # Metered answers an unknown credential with 401 here.
    metered_error(anon.post(f"/api/v1/turn/credential/enable?{sk}", {"username": "nobody"}), 401)
    # Usage: current period, by user, daily by user.
    def used():
        u = ok(anon.get(f"/api/v1/turn/current_usage?{sk}"))
        return u if u["usageInGB"] > 0 else None

    u = wait_for(used, what="metered usage")
    assert u["overageInGB"] == 0 and u["quotaInGB"] == 0
    by_user = wait_for(lambda: ok(anon.get(f"/api/v2/turn/current_usage_by_user?{sk}"))["data"], what="usage by user")
    names = {r["username"]: r for r in by_user}
    assert c["username"] in names and names[c["username"]]["label"] == "exampleLabel"
    assert names[c["username"]]["bytes"] > 0 and not ok(anon.get(f"/api/v2/turn/current_usage_by_user?{sk}"))["has_more"]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    daily = ok(anon.get(f"/api/v2/turn/usage_daily_by_user?{sk}&endDate={today}"))
    assert daily["data"][-1]["date"] == today and len(daily["data"]) == 7
    assert any(r["username"] == c["username"] for r in daily["data"][-1]["usage"])
    metered_error(anon.get(f"/api/v2/turn/usage_daily_by_user?{sk}&startDate=yesterday"), 400)
    # Delete one by username, the rest by label.
    assert ok(anon.delete(f"/api/v1/turn/credential?{sk}&username={c['username']}"))["success"] is True
    assert allocation_fails(t.port, c["username"], c["password"]) == 401
    assert ok(anon.delete(f"/api/v2/turn/credential/by_label?{sk}&label=other")) == {"deleted": 1}
    assert ok(anon.get(f"/api/v2/turn/credentials?{sk}"))["data"] == []
