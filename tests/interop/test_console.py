"""The web console (issue 12, first step) in headless Chromium (Debian's, driven by Playwright)
against the real binary: sign in with a tenant's secret key, see the overview, create a
credential (its password shown once), relay through it with coturn's uclient and see the exact
bytes on the usage page (chart, table, CSV), disable and delete it, sign out; the operator signs in
with the admin key and creates a tenant. Over plain HTTP with Python: the session cookie's
attributes, the CSRF token required for changes, the key never stored, sign-out ending the
session server side, a revoked key ending its sessions, tenants kept apart, the page's
Content-Security-Policy. Also the alerts page (a quota with thresholds, alert addresses) and the
keys page (rotation with overlap)."""

import http.client
import json
import pathlib

import pytest

import uclient
from api import ADMIN_KEY, Api, control_toml, new_tenant, ok, usage_totals, wait_for
from conftest import LOOPBACK_OK, chromium


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def raw(port, method, path, body=None, headers=None):
    """One request; returns (status, headers as a dict of lists, parsed body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    text = r.read().decode()
    hdrs = {}
    for k, v in r.getheaders():
        hdrs.setdefault(k.lower(), []).append(v)
    c.close()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return r.status, hdrs, parsed


def sign_in(port, key):
    status, h, body = raw(port, "POST", "/console/session", {"key": key})
    assert status == 201, (status, body)
    cookie = h["set-cookie"][0]
    token = cookie.split(";", 1)[0]
    return token, body["csrf"], cookie, body


def test_session_cookie_csrf_and_sign_out(turnpike, tmp_path):
    t = turnpike(control_toml(f"sqlite://{tmp_path / 'c.db'}"))
    port = t.metrics_port
    admin = Api(port, ADMIN_KEY)
    tid, api, _ = new_tenant(admin, "acme")
    key = api.key

    status, h, page = raw(port, "GET", "/console")
    assert status == 200 and "<title>Turnpike console</title>" in page
    csp = h["content-security-policy"][0]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp

    status, _, body = raw(port, "POST", "/console/session", {"key": "tps_wrong_key_0123456789"})
    assert status == 401, body

    cookie_pair, csrf, cookie, who = sign_in(port, key)
    assert who == {"kind": "tenant", "tenant_id": tid, "csrf": csrf}
    attrs = [a.strip() for a in cookie.split(";")]
    assert "HttpOnly" in attrs and "SameSite=Strict" in attrs and "Path=/" in attrs
    assert "Secure" not in attrs  # plain HTTP on loopback; set over TLS
    assert key not in cookie

    # The cookie stands in for the key on /v1; reads need no CSRF token, changes do.
    c = {"Cookie": cookie_pair}
    status, _, lst = raw(port, "GET", "/v1/credentials", headers=c)
    assert status == 200 and lst["items"] == []
    status, _, body = raw(port, "POST", "/v1/credentials", {"label": "x"}, headers=c)
    assert status == 403 and "X-CSRF-Token" in body["error"]["message"], body
    status, _, body = raw(port, "POST", "/v1/credentials", {"label": "x"},
                          headers={**c, "X-CSRF-Token": "forged"})
    assert status == 403, body
    status, _, created = raw(port, "POST", "/v1/credentials", {"label": "x"},
                             headers={**c, "X-CSRF-Token": csrf})
    assert status == 201 and created["credential"]["label"] == "x", created
    # The operator's endpoints stay closed to a tenant's session.
    status, _, _ = raw(port, "GET", "/v1/tenants", headers=c)
    assert status == 403

    # Another tenant's session sees only its own credentials.
    _, other, _ = new_tenant(admin, "other")
    other_pair, _, _, _ = sign_in(port, other.key)
    status, _, lst = raw(port, "GET", "/v1/credentials", headers={"Cookie": other_pair})
    assert status == 200 and lst["items"] == []
    status, _, _ = raw(port, "GET", f"/v1/credentials/{created['credential']['id']}",
                       headers={"Cookie": other_pair})
    assert status == 404

    # Sign-out needs the CSRF token, ends the session server side and clears the cookie.
    status, _, _ = raw(port, "DELETE", "/console/session", headers=c)
    assert status == 403
    status, h, _ = raw(port, "DELETE", "/console/session", headers={**c, "X-CSRF-Token": csrf})
    assert status == 204 and "Max-Age=0" in h["set-cookie"][0]
    status, _, _ = raw(port, "GET", "/v1/credentials", headers=c)
    assert status == 401
    status, _, _ = raw(port, "GET", "/console/session", headers=c)
    assert status == 401

    # Revoking the key ends the sessions made with it.
    pair, _, _, _ = sign_in(port, key)
    status, _, _ = raw(port, "GET", "/v1/credentials", headers={"Cookie": pair})
    assert status == 200
    rotated = ok(api.post("/v1/keys/rotate", {"overlap_seconds": 0}), 201)
    assert rotated["key"] != key
    status, _, _ = raw(port, "GET", "/v1/credentials", headers={"Cookie": pair})
    assert status == 401

    # A publishable key cannot sign in.
    cred = ok(Api(port, rotated["key"]).post("/v1/credentials", {"label": "pk"}), 201)["credential"]
    pk = ok(Api(port, rotated["key"]).post(f"/v1/credentials/{cred['id']}/publishable-keys",
                                           {"allowed_origins": ["*"]}), 201)["key"]
    status, _, _ = raw(port, "POST", "/console/session", {"key": pk})
    assert status == 403


def test_console_pages_in_chromium(turnpike, browser, tmp_path, peer):
    t = turnpike(control_toml(f"sqlite://{tmp_path / 'c.db'}", LOOPBACK_OK))
    base = f"http://127.0.0.1:{t.metrics_port}"
    admin = Api(t.metrics_port, ADMIN_KEY)
    _, api, _ = new_tenant(admin, "acme")
    errors = []
    ctx = browser.new_context()
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Script errors, and console errors other than the expected 401s (the signed-out session
    # probe at load and after sign-out), fail the test.
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and "status of 401" not in m.text else None)
    page.on("dialog", lambda d: d.accept())
    try:
        page.goto(f"{base}/console")
        page.get_by_label("Secret key (a tenant's) or admin key").fill(api.key)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Overview").wait_for()
        page.get_by_text("Relayed this period").wait_for()
        # The key is not kept anywhere the page's scripts can read.
        stored = page.evaluate("() => JSON.stringify([document.cookie, {...localStorage}, {...sessionStorage}])")
        assert api.key not in stored and "turnpike_session" not in stored

        page.get_by_role("link", name="Credentials").click()
        page.get_by_label("Label", exact=True).fill("team-a")
        page.get_by_role("button", name="Create credential").click()
        page.get_by_text("Copy the password now").wait_for()
        username = page.locator("#created-username").inner_text()
        password = page.locator("#created-password").inner_text()
        assert username and len(password) >= 12
        row = page.get_by_role("row", name=username)
        row.get_by_text("enabled").wait_for()
        # The API agrees: the credential exists, with the label.
        lst = ok(api.get("/v1/credentials"))["items"]
        assert [(c["username"], c["label"], c["enabled"]) for c in lst] == [(username, "team-a", True)]

        # A real relay with the password the console showed (coturn's uclient through a UDP
        # echo peer), then the usage page shows its exact bytes.
        length, count = 160, 40
        run = uclient.run(t.port, ["-u", username, "-w", password, "-e", "127.0.0.1", "-r", str(peer),
                                   "-m", "1", "-c", "-n", str(count), "-l", str(length)])
        assert run.rc == 0 and run.received == count, run.output
        want = 4 * count * length + 2 * 4 * count
        wait_for(lambda: usage_totals(api)["totals"]["total_bytes"] == want, what="metered usage")
        page.get_by_role("link", name="Usage").click()
        page.get_by_role("button", name="Show").click()
        page.get_by_text(f"({want} bytes)").wait_for()
        page.locator("#usage-chart canvas").first.wait_for()
        with page.expect_download() as dl:
            page.get_by_role("button", name="Download CSV").click()
        csv = pathlib.Path(dl.value.path()).read_text().splitlines()
        assert csv[0].startswith("period_start,key,total_bytes,")
        assert sum(int(line.split(",")[2]) for line in csv[1:]) == want
        page.get_by_role("link", name="Overview").click()
        page.locator("#hours-chart canvas").first.wait_for()

        # Alerts: a quota with a notify threshold and a refusal at 100 %, and an alert address.
        page.get_by_role("link", name="Alerts").click()
        page.get_by_text("No quota: usage is unlimited.").wait_for()
        page.get_by_label("Bytes per period (GB").fill("2")
        page.get_by_label("Notify at (% of the quota)").fill("75")
        page.get_by_label("At 100 %").select_option("refuse")
        page.get_by_role("button", name="Save quota").click()
        page.get_by_text("Now: 2.00 GB (2000000000 bytes) per month; thresholds 75 % notify, 100 % refuse").wait_for()
        quota = [q for q in ok(api.get("/v1/quotas")) if q["scope"] == "tenant"][0]
        assert quota["bytes_per_period"] == 2_000_000_000
        assert [(x["percent"], x["action"]) for x in quota["thresholds"]] == [(75, "notify"), (100, "refuse")]
        page.get_by_label("Email addresses (comma-separated)").fill("ops@example.com")
        page.get_by_role("button", name="Save", exact=True).click()
        page.get_by_text("Saved.").wait_for()
        assert ok(api.get("/v1/notifications"))["email_to"] == "ops@example.com"

        # Keys: rotation with an overlap shows the new key once; both keys work meanwhile.
        page.get_by_role("link", name="Keys").click()
        page.get_by_role("button", name="Rotate the secret key").click()
        page.get_by_text("New secret key.").wait_for()
        new_key = page.locator("#rotated-key").inner_text()
        assert new_key != api.key
        ok(Api(t.metrics_port, new_key).get("/v1/credentials"))
        ok(api.get("/v1/credentials"))
        page.get_by_role("link", name="Credentials").click()
        row = page.get_by_role("row", name=username)

        row.get_by_role("button", name=f"Disable {username}").click()
        page.get_by_role("row", name=username).get_by_text("disabled").wait_for()
        assert ok(api.get("/v1/credentials"))["items"][0]["enabled"] is False
        page.get_by_role("button", name=f"Delete {username}").click()
        page.get_by_role("row", name=username).wait_for(state="detached")
        assert ok(api.get("/v1/credentials"))["items"] == []

        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("heading", name="Sign in").wait_for()
        page.reload()
        page.get_by_role("heading", name="Sign in").wait_for()

        # The operator: the tenants page, creating a tenant whose key is shown once.
        page.get_by_label("Secret key (a tenant's) or admin key").fill(ADMIN_KEY)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Tenants").wait_for()
        page.get_by_role("cell", name="acme", exact=True).wait_for()
        page.get_by_label("Name", exact=True).fill("beta")
        page.get_by_role("button", name="Create tenant").click()
        page.get_by_text("Copy its secret key now").wait_for()
        tenant_key = page.locator("#created-tenant-key").inner_text()
        assert ok(Api(t.metrics_port, tenant_key).get("/v1/credentials"))["items"] == []
        page.get_by_role("cell", name="beta", exact=True).wait_for()
    finally:
        ctx.close()
    assert not errors, errors
