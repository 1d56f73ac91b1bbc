"""The control-plane API through real HTTP against the running binary, on SQLite and on
PostgreSQL: tenants and keys, stored credentials, errors in the one JSON shape with the right
status codes, tenant isolation on every endpoint, idempotency, rate limits, the OpenAPI
document."""

import json
import time

from api import ADMIN_KEY, Api, control_toml, db, error, new_tenant, ok, uniq  # noqa: F401


def start(turnpike, db_url, extra=""):
    t = turnpike(control_toml(db_url, extra))
    return t, Api(t.metrics_port, ADMIN_KEY)


def test_tenants_and_keys(turnpike, db):
    t, admin = start(turnpike, db)
    tid, tenant, shared = new_tenant(admin, "acme")
    assert len(shared) >= 40
    assert ok(admin.get(f"/v1/tenants/{tid}"))["name"] == "acme"
    assert tid in [x["id"] for x in ok(admin.get("/v1/tenants"))]
    # A tenant reads itself but not other tenants; it cannot list or create tenants.
    assert ok(tenant.get(f"/v1/tenants/{tid}"))["id"] == tid
    other_id, other, _ = new_tenant(admin, "globex")
    error(tenant.get(f"/v1/tenants/{other_id}"), 404, "not_found")
    error(tenant.get("/v1/tenants"), 403, "forbidden")
    error(tenant.post("/v1/tenants", {"name": "x"}), 403)
    # The admin key cannot act as a tenant.
    error(admin.get("/v1/credentials"), 403)
    # Keys are listed without secrets.
    keys = ok(tenant.get("/v1/keys"))
    assert len(keys) == 1 and keys[0]["kind"] == "secret"
    assert "key" not in keys[0] and tenant.key not in json.dumps(keys)
    # Rotation with an overlap: both keys work until the overlap ends.
    new = ok(tenant.post("/v1/keys/rotate", {"overlap_seconds": 60}), 201)
    rotated = tenant.with_key(new["key"])
    ok(tenant.get("/v1/keys"))
    ok(rotated.get("/v1/keys"))
    # Without overlap the old key stops at once.
    newer = ok(rotated.post("/v1/keys/rotate", {"overlap_seconds": 0}), 201)
    error(rotated.get("/v1/keys"), 401, "unauthorized")
    error(tenant.get("/v1/keys"), 401)
    latest = tenant.with_key(newer["key"])
    ok(latest.get("/v1/keys"))
    # The admin rotates for a tenant too.
    adm = ok(admin.post(f"/v1/tenants/{other_id}/keys/rotate", {"overlap_seconds": 0}), 201)
    error(other.get("/v1/keys"), 401)
    ok(other.with_key(adm["key"]).get("/v1/keys"))
    # Revoking a key by id; another tenant's key id is not found.
    k2 = ok(latest.post("/v1/keys/rotate", {"overlap_seconds": 3600}), 201)
    error(other.with_key(adm["key"]).delete(f"/v1/keys/{k2['info']['id']}"), 404)
    assert latest.delete(f"/v1/keys/{newer and ok(latest.get('/v1/keys'))[0]['id']}").status in (204,)
    # Bad keys.
    error(admin.get("/v1/tenants", key=None), 401, "unauthorized")
    error(admin.get("/v1/tenants", key="tps_not-a-real-key"), 401)
    error(admin.get("/v1/tenants", key="x" * 5000), 401)
    error(admin.get("/v1/tenants", headers={"Authorization": "Basic abc"}, key=None), 401)
    # Deleting a tenant removes it.
    assert admin.delete(f"/v1/tenants/{other_id}").status == 204
    error(admin.get(f"/v1/tenants/{other_id}"), 404)
    # The audit log of the operator shows the tenant changes; no secret appears in it.
    audit = ok(admin.get("/v1/audit"))
    actions = [a["action"] for a in audit]
    assert "tenant.create" in actions and "tenant.delete" in actions
    assert shared not in json.dumps(audit) and ADMIN_KEY not in json.dumps(audit)
    # No key or secret in the server log.
    logs = t.logs()
    for secret in [shared, new["key"], newer["key"], adm["key"], ADMIN_KEY]:
        assert secret not in logs


def test_credentials_crud(turnpike, db):
    t, admin = start(turnpike, db)
    _, api, _ = new_tenant(admin)
    c = ok(api.post("/v1/credentials", {"label": "web", "tags": ["eu", "beta"], "expires_in": 3600}), 201)
    cred, password = c["credential"], c["password"]
    assert cred["enabled"] and cred["label"] == "web" and cred["tags"] == ["eu", "beta"]
    assert cred["expires_at"] > time.time() and len(password) >= 20
    got = ok(api.get(f"/v1/credentials/{cred['id']}"))
    assert got == cred and "password" not in got
    # Chosen username/password.
    alice = uniq("alice.1")
    ok(api.post("/v1/credentials", {"username": alice, "password": "correct-horse-battery"}), 201)
    error(api.post("/v1/credentials", {"username": alice}), 409, "conflict")
    # Pagination with a cursor, label filter, expired hidden unless asked.
    for i in range(5):
        ok(api.post("/v1/credentials", {"label": "bulk"}), 201)
    seen, cursor = [], None
    while True:
        q = "/v1/credentials?label=bulk&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = ok(api.get(q))
        assert len(page["items"]) <= 2
        seen += [x["id"] for x in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 5 == len(set(seen))
    # Disable / enable.
    assert ok(api.patch(f"/v1/credentials/{cred['id']}", {"enabled": False}))["enabled"] is False
    assert ok(api.patch(f"/v1/credentials/{cred['id']}", {"enabled": True}))["enabled"] is True
    # Delete by label, delete one.
    assert ok(api.delete("/v1/credentials?label=bulk"))["deleted"] == 5
    assert ok(api.get("/v1/credentials?label=bulk"))["items"] == []
    assert api.delete(f"/v1/credentials/{cred['id']}").status == 204
    error(api.get(f"/v1/credentials/{cred['id']}"), 404)
    error(api.delete(f"/v1/credentials/{cred['id']}"), 404)
    # Idempotency: the same key returns the same credential and creates one only.
    h = {"Idempotency-Key": "create-42"}
    a = ok(api.post("/v1/credentials", {"label": "idem"}, headers=h), 201)
    b = ok(api.post("/v1/credentials", {"label": "idem"}, headers=h), 201)
    assert a == b
    assert len(ok(api.get("/v1/credentials?label=idem"))["items"]) == 1
    # Concurrent requests with one key: one creates, the others replay it or get 409 (in
    # progress), never a second credential. A failed create does not hold its key.
    from concurrent.futures import ThreadPoolExecutor
    h = {"Idempotency-Key": "create-race"}
    with ThreadPoolExecutor(8) as pool:
        rs = list(pool.map(lambda _: api.post("/v1/credentials", {"label": "race"}, headers=h), range(8)))
    assert {r.status for r in rs} <= {201, 409} and any(r.status == 201 for r in rs), [r.status for r in rs]
    assert len({r.json["credential"]["id"] for r in rs if r.status == 201}) == 1
    for r in rs:
        if r.status == 409:
            error(r, 409, "conflict")
    assert len(ok(api.get("/v1/credentials?label=race"))["items"]) == 1
    h = {"Idempotency-Key": "create-bad-then-good"}
    error(api.post("/v1/credentials", {"label": "x" * 101}, headers=h), 422)
    ok(api.post("/v1/credentials", {"label": "after-failure"}, headers=h), 201)
    # The audit log has the credential changes, without passwords.
    audit = ok(api.get("/v1/audit"))
    acts = {a["action"] for a in audit}
    assert {"credential.create", "credential.disable", "credential.enable", "credential.delete", "credential.delete_by_label"} <= acts
    assert password not in json.dumps(audit)
    csv = api.get("/v1/audit?format=csv")
    assert csv.status == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "id,at,actor,action,target,detail"
    assert len(csv.text.splitlines()) == len(audit) + 1
    assert password not in t.logs()


def test_bad_input_gets_the_right_error(turnpike, db):
    t, admin = start(turnpike, db)
    _, api, _ = new_tenant(admin)
    error(api.req("POST", "/v1/credentials", raw=b"{not json", headers={"Content-Type": "application/json"}), 400, "malformed_json")
    error(api.req("POST", "/v1/credentials", raw=b'{"label": 5}', headers={"Content-Type": "application/json"}), 422, "invalid_field")
    error(api.post("/v1/credentials", {"label": "x", "surprise": 1}), 422, "invalid_field")
    error(api.req("POST", "/v1/credentials", raw=b"label=x", headers={"Content-Type": "application/x-www-form-urlencoded"}), 415)
    error(api.req("POST", "/v1/credentials", raw=b'{"label":"' + b"x" * 200_000 + b'"}', headers={"Content-Type": "application/json"}), 413, "payload_too_large")
    error(api.post("/v1/credentials", {"label": "x" * 101}), 422)
    error(api.post("/v1/credentials", {"username": "has:colon"}), 422)
    error(api.post("/v1/credentials", {"password": "short"}), 422)
    error(api.post("/v1/credentials", {"expires_at": 5}), 422)
    error(api.post("/v1/credentials", {"expires_in": 10, "expires_at": 2_000_000_000}), 422)
    error(api.get("/v1/credentials?limit=abc"), 400, "bad_query")
    error(api.get("/v1/credentials?limit=0"), 422)
    error(api.get("/v1/usage?group_by=week"), 422)
    error(api.get("/v1/usage?from=10&to=5"), 422)
    error(api.get("/v1/ice-servers?format=xml"), 422)
    error(api.post("/v1/ephemeral-credentials", {"ttl": -1}), 422)
    error(api.put("/v1/quota", {"bytes_per_period": -5}), 422)
    error(api.put("/v1/quota", {"thresholds": [{"percent": 80, "action": "explode"}], "bytes_per_period": 10}), 422)
    error(api.put("/v1/notifications", {"webhook_url": "ftp://x"}), 422)
    error(api.put("/v1/notifications", {"email_to": "not an address"}), 422)
    error(api.post("/v1/revocations", {}), 422)
    # NUL cannot be stored in PostgreSQL text: refused on both backends, never a 500.
    # (The Metered-compatible path answers in Metered's shape: 400 with a message.)
    r = api.post("/api/v1/turn/credential/enable", {"username": "\u00c1\u0000\u0017"})
    assert r.status == 400 and set(r.json) == {"message"} and "NUL" in r.json["message"], r
    error(api.post("/v1/credentials", {"label": "a\u0000b"}), 422, "invalid_field")
    error(api.post("/v1/credentials", {"tags": ["k\u0000"]}), 422, "invalid_field")
    error(api.get("/v1/credentials?label=a%00b"), 400, "bad_query")
    error(api.get("/v1/credentials/cred%00x"), 400, "bad_path")
    ok(api.post("/v1/credentials", {"label": "backslash \\u0000 is just text"}), 201)
    error(api.get("/v1/nowhere"), 404, "not_found")
    error(api.req("PUT", "/v1/credentials"), 405, "method_not_allowed")
    # SQL-looking strings are data, not code.
    evil = "x'); DROP TABLE credentials; --"
    c = ok(api.post("/v1/credentials", {"label": evil}), 201)
    assert c["credential"]["label"] == evil
    import urllib.parse
    assert len(ok(api.get("/v1/credentials?label=" + urllib.parse.quote(evil)))["items"]) == 1
    error(api.get("/v1/credentials/" + urllib.parse.quote("' OR '1'='1")), 404)
    assert ok(api.get("/v1/credentials"))["items"]
    assert t.proc.poll() is None


def test_no_tenant_reaches_another(turnpike, db):
    t, admin = start(turnpike, db)
    _, a, _ = new_tenant(admin, "a")
    _, b, _ = new_tenant(admin, "b")
    cred = ok(a.post("/v1/credentials", {"label": "mine"}), 201)["credential"]
    cid = cred["id"]
    pk = ok(a.post(f"/v1/credentials/{cid}/publishable-keys", {"allowed_origins": ["*"]}), 201)
    # Every endpoint that takes an id answers 404 to the other tenant, and changes nothing.
    error(b.get(f"/v1/credentials/{cid}"), 404)
    error(b.patch(f"/v1/credentials/{cid}", {"enabled": False}), 404)
    error(b.delete(f"/v1/credentials/{cid}"), 404)
    error(b.post(f"/v1/credentials/{cid}/publishable-keys", {"allowed_origins": ["*"]}), 404)
    error(b.put(f"/v1/credentials/{cid}/quota", {"max_allocations": 1}), 404)
    error(b.delete(f"/v1/keys/{pk['info']['id']}"), 404)
    assert ok(b.delete("/v1/credentials?label=mine"))["deleted"] == 0
    assert ok(b.get("/v1/credentials"))["items"] == []
    assert ok(b.get("/v1/quotas")) == []
    assert ok(b.get("/v1/allocations")) == []
    assert all(e["target"] != cid for e in ok(b.get("/v1/audit")))
    # Another tenant's ephemeral username cannot be revoked.
    eph = ok(a.post("/v1/ephemeral-credentials", {"user_id": "u1"}), 201)
    error(b.post("/v1/revocations", {"username": eph["username"]}), 404)
    # A's credential is untouched.
    assert ok(a.get(f"/v1/credentials/{cid}"))["enabled"] is True
    assert ok(a.get("/v1/credentials?label=mine"))["items"]
    # A publishable key may only fetch ICE servers.
    p = a.with_key(pk["key"])
    error(p.get("/v1/credentials"), 403)
    error(p.get("/v1/usage"), 403)
    ice = ok(p.get("/v1/ice-servers"))
    assert ice["iceServers"]


def test_rate_limit_per_key(turnpike, db):
    t, admin = start(turnpike, db, "api_rate_burst = 5\napi_rate_per_sec = 1\n")
    _, api, _ = new_tenant(admin)
    codes = [api.get("/v1/keys").status for _ in range(8)]
    assert codes[:4] == [200] * 4 and 429 in codes, codes
    r = api.get("/v1/keys")
    e = error(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1, e
    # Another key has its own bucket.
    assert admin.get("/v1/tenants").status == 200


def test_openapi_document(turnpike, db):
    t, admin = start(turnpike, db)
    doc = ok(admin.get("/openapi.json", key=None))
    assert doc["openapi"].startswith("3.")
    for path in ["/v1/credentials", "/v1/credentials/{id}", "/v1/ice-servers", "/v1/usage",
                 "/v1/tenants", "/api/v1/turn/credential", "/api/v2/turn/credentials"]:
        assert path in doc["paths"], path
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "ErrorBody" in doc["components"]["schemas"]
