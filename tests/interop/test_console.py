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
import http.server
import json
import os
import pathlib
import threading
import time

import pytest

import uclient
from api import ADMIN_KEY, Api, control_toml, new_tenant, ok, usage_totals, wait_for
from conftest import LOOPBACK_OK, chromium, free_port


def shot(page, name):
    """With TURNPIKE_CONSOLE_SHOTS=<dir>, saves the page as <dir>/<name>.png (the screenshots
    of docs/console.md are made so: see docs/console.md)."""
    out = os.environ.get("TURNPIKE_CONSOLE_SHOTS")
    if out:
        page.wait_for_timeout(300)
        page.screenshot(path=str(pathlib.Path(out) / f"{name}.png"), full_page=True)


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
    assert who == {"kind": "tenant", "tenant_id": tid, "suspended": False, "csrf": csrf}
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
        page.get_by_role("heading", name="Sign in").wait_for()
        shot(page, "sign-in")
        page.get_by_label("Secret key (a tenant's) or admin key").fill(api.key)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Overview").wait_for()
        page.get_by_text("Relayed this period").wait_for()
        # The operator's "acting in" bar is not a tenant's (it showed while `hidden`, once).
        assert not page.locator("#acting").is_visible()
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
        shot(page, "usage")
        with page.expect_download() as dl:
            page.get_by_role("button", name="Download CSV").click()
        csv = pathlib.Path(dl.value.path()).read_text().splitlines()
        assert csv[0].startswith("period_start,key,total_bytes,")
        assert sum(int(line.split(",")[2]) for line in csv[1:]) == want
        page.get_by_role("link", name="Overview").click()
        page.locator("#hours-chart canvas").first.wait_for()

        # Alerts: a quota below what was relayed, with a notify threshold and a refusal at
        # 100 %: both fire at once and show in the fired alerts; the relay refuses the next
        # allocation (486).
        page.get_by_role("link", name="Alerts").click()
        page.get_by_text("No quota: usage is unlimited.").wait_for()
        page.get_by_label("Bytes per period (GB").fill("0.00002")
        page.get_by_label("Notify at (% of the quota)").fill("75")
        page.get_by_label("At 100 %").select_option("refuse")
        page.get_by_role("button", name="Save quota").click()
        page.get_by_text("Now: 20.00 kB (20000 bytes) per month; thresholds 75 % notify, 100 % refuse").wait_for()
        quota = [q for q in ok(api.get("/v1/quotas")) if q["scope"] == "tenant"][0]
        assert quota["bytes_per_period"] == 20_000
        assert [(x["percent"], x["action"]) for x in quota["thresholds"]] == [(75, "notify"), (100, "refuse")]
        fired = page.locator("#alert-table tbody tr")
        fired.filter(has_text="75 %").filter(has_text="notify").wait_for()
        fired.filter(has_text="100 %").filter(has_text="refuse").wait_for()
        assert fired.count() == 2
        used = fired.first.locator("td").nth(4)
        assert used.inner_text() == f"{want / 1000:.2f} kB of 20.00 kB"
        assert used.get_attribute("title") == f"{want} of 20000 bytes"
        assert sorted((a["percent"], a["action"]) for a in ok(api.get("/v1/alerts"))) == [(75, "notify"), (100, "refuse")]
        shot(page, "alerts-fired")
        refused = uclient.run(t.port, ["-u", username, "-w", password, "-e", "127.0.0.1", "-r", str(peer),
                                       "-m", "1", "-c", "-n", "2", "-l", "100"], timeout=30)
        assert refused.rc != 0 and "486" in refused.output, refused.output
        page.get_by_label("Email addresses (comma-separated)").fill("ops@example.com")
        page.get_by_role("button", name="Save", exact=True).click()
        page.get_by_text("Saved.").wait_for()
        assert ok(api.get("/v1/notifications"))["email_to"] == "ops@example.com"

        # Keys: rotation with an overlap shows the new key once; both keys work meanwhile.
        page.get_by_role("link", name="Keys").click()
        page.get_by_role("button", name="Rotate the secret key").click()
        page.get_by_text("New secret key.").wait_for()
        new_key = page.locator("#rotated-key").inner_text()
        shot(page, "keys")
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
        page.locator("#tenant-table").get_by_role("cell", name="acme", exact=True).wait_for()
        page.get_by_label("Name", exact=True).fill("beta")
        page.get_by_role("button", name="Create tenant").click()
        page.get_by_text("Copy its secret key now").wait_for()
        tenant_key = page.locator("#created-tenant-key").inner_text()
        assert ok(Api(t.metrics_port, tenant_key).get("/v1/credentials"))["items"] == []
        page.locator("#tenant-table").get_by_role("cell", name="beta", exact=True).wait_for()
        # Every tenant's fired alerts, acme's among them.
        page.locator("#all-alerts tbody tr").filter(has_text="acme").filter(has_text="100 %").wait_for()
    finally:
        ctx.close()
    assert not errors, errors


class Hook(http.server.BaseHTTPRequestHandler):
    """A webhook receiver: records bodies, answers 200."""

    bodies = []

    def do_POST(self):
        Hook.bodies.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_console_operator_billing_logs_and_signalling(turnpike, browser, tmp_path, peer):
    """The operator sets a price plan and opens the tenant; in it: a credential made with tags
    and a quota passes the console's own relay test (a real RTCPeerConnection in Chromium), a
    wrong password appears among failed authentications, a relay through coturn's uclient
    appears in the allocation log and on the billing statement whose bytes equal the metered
    usage to the byte (page, API, CSV, printable page); a webhook test event is delivered and
    logged; a live signalling room is listed and closed; the node page shows the relay's
    figures."""
    Hook.bodies = []
    hook_port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", hook_port), Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    extra = LOOPBACK_OK + 'danger_allow_webhook_ranges = ["127.0.0.0/8"]\n'
    t = turnpike(control_toml(f"sqlite://{tmp_path / 'c.db'}", extra))
    base = f"http://127.0.0.1:{t.metrics_port}"
    admin = Api(t.metrics_port, ADMIN_KEY)
    tid, api, _ = new_tenant(admin, "acme")
    errors = []
    ctx = browser.new_context()
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and "status of 401" not in m.text
            and "status of 404" not in m.text else None)
    page.on("dialog", lambda d: d.accept())
    month = time.strftime("%Y-%m", time.gmtime())
    try:
        page.goto(f"{base}/console")
        page.get_by_label("Secret key (a tenant's) or admin key").fill(ADMIN_KEY)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Tenants", exact=True).wait_for()

        # A price plan for acme.
        page.get_by_role("button", name="Price plan of acme").click()
        page.get_by_label("Currency (ISO 4217)").fill("EUR")
        page.get_by_label("Price per GB").fill("0.40")
        page.get_by_label("Price per allocation hour").fill("0.01")
        page.get_by_label("Included per period (GB)").fill("0")
        page.get_by_label("First month").fill(month)
        page.get_by_role("button", name="Save the plan").click()
        page.get_by_text("Saved: 0.40 EUR per GB").wait_for()
        shot(page, "tenants")
        plan = ok(admin.get(f"/v1/tenants/{tid}/plan"))
        assert (plan["currency"], plan["price_per_gb"], plan["first_month"]) == ("EUR", "0.40", month)

        # Into the tenant.
        page.get_by_role("button", name="Open acme").click()
        page.get_by_text("acting in tenant").wait_for()
        page.get_by_role("heading", name="Overview").wait_for()
        page.get_by_text("No open allocations.").wait_for()

        # A credential with tags and a quota; the console's relay test passes with it.
        page.get_by_role("link", name="Credentials").click()
        page.get_by_label("Label", exact=True).fill("team-b")
        page.get_by_label("Tags (comma-separated)").fill("video, eu")
        page.get_by_label("Quota (GB per month, empty: none)").fill("5")
        page.get_by_role("button", name="Create credential").click()
        page.get_by_text("Copy the password now").wait_for()
        username = page.locator("#created-username").inner_text()
        password = page.locator("#created-password").inner_text()
        cred = ok(api.get("/v1/credentials"))["items"][0]
        assert cred["tags"] == ["video", "eu"] and cred["label"] == "team-b"
        quotas = {q["scope"]: q for q in ok(api.get("/v1/quotas"))}
        assert quotas[cred['id']]["bytes_per_period"] == 5_000_000_000
        page.get_by_role("button", name="Run the test").click()
        page.get_by_text("Works: the server gave the relay address").wait_for(timeout=20000)
        shot(page, "credentials")
        # Filters: by tag and by state.
        page.get_by_label("Tag", exact=True).fill("EU")
        page.get_by_role("button", name="Filter").click()
        page.get_by_text("1 credential shown").wait_for()
        page.get_by_label("Tag", exact=True).fill("")
        page.get_by_label("State").select_option("disabled")
        page.get_by_role("button", name="Filter").click()
        page.get_by_text("No credentials match.").wait_for()
        page.get_by_label("State").select_option("")
        page.get_by_role("button", name="Filter").click()
        page.get_by_text("1 credential shown").wait_for()
        # A publishable key for it, with its origin, goes into the snippets.
        page.get_by_role("button", name=f"Snippet for {username}").click()
        page.get_by_label("Allowed origins").fill("https://app.example.com")
        page.get_by_role("button", name="Make a publishable key").click()
        page.get_by_text("made for https://app.example.com").wait_for()
        assert "tpp_" in page.locator("#snippet-fetch").inner_text()
        assert f'"{username}"' in page.locator("#snippet-js").inner_text()

        # A wrong password, then a real relay.
        bad = uclient.run(t.port, ["-u", username, "-w", "not-the-password", "-e", "127.0.0.1",
                                   "-r", str(peer), "-m", "1", "-c", "-n", "2", "-l", "100"], timeout=30)
        assert bad.rc != 0
        length, count = 120, 30
        run = uclient.run(t.port, ["-u", username, "-w", password, "-e", "127.0.0.1", "-r", str(peer),
                                   "-m", "1", "-c", "-n", str(count), "-l", str(length)])
        assert run.rc == 0 and run.received == count, run.output
        # uclient's allocation ends with its bytes logged; the console test's relayed nothing.
        def relayed():
            done = [a for a in ok(api.get("/v1/allocations")) if a["ended_at"]]
            return sum(a["client_to_server_bytes"] + a["server_to_peer_bytes"] + a["peer_to_server_bytes"]
                       + a["server_to_client_bytes"] for a in done)
        wait_for(lambda: relayed() >= 4 * count * length, timeout=30, what="uclient's allocation logged")
        metered = relayed()
        wait_for(lambda: usage_totals(api)["totals"]["total_bytes"] == metered, what="metered usage")

        page.get_by_role("link", name="Logs").click()
        page.get_by_role("button", name="Show logs").click()
        page.locator("#authfail-table").get_by_role("cell", name="wrong password").first.wait_for()
        page.locator("#allocation-table").get_by_role("cell", name=username).first.wait_for()
        page.locator("#audit-table").get_by_role("cell", name="credential.create").wait_for()
        shot(page, "logs")
        fails = ok(api.get("/v1/auth-failures"))
        assert fails and all(f["username"] == username for f in fails)
        with page.expect_download() as dl:
            page.get_by_role("button", name="Download allocations CSV").click()
        rows = pathlib.Path(dl.value.path()).read_text().splitlines()
        assert rows[0].startswith("id,credential_id,user_id,username") and len(rows) >= 3

        page.get_by_role("link", name="Overview").click()
        page.locator("#overview[aria-busy=false]").wait_for()
        shot(page, "overview")

        # Billing: the open statement's bytes are the metered bytes, to the byte.
        page.get_by_role("link", name="Billing").click()
        page.get_by_text("Plan: 0.40 EUR per GB").wait_for()
        page.get_by_role("heading", name=f"Statement {month}").wait_for()
        s = ok(api.get(f"/v1/billing/statements?month={month}"))
        assert s["status"] == "open" and s["bytes_in_period"] == metered == s["billable_bytes"]
        assert s["users"][0]["bytes"] == metered
        cell_title = page.locator("#statement-lines tbody tr").first.locator("td").nth(1).get_attribute("title")
        assert cell_title == f"{metered} bytes"
        with page.expect_download() as dl:
            page.get_by_role("button", name="Download statement CSV").click()
        csv = pathlib.Path(dl.value.path()).read_text()
        assert f"{month},open,total,,,,{metered}," in csv
        assert f"{month},open,user,,{cred['id']},{username},{metered}," in csv
        shot(page, "billing")
        with ctx.expect_page() as popup:
            page.get_by_role("button", name="Printable page").click()
        printable = popup.value
        printable.get_by_role("heading", name=f"Statement {month}").wait_for()
        shot(printable, "statement")
        assert f"{metered} bytes" in printable.content()
        printable.close()

        # Alerts: a webhook, a test event, its delivery in the log.
        page.get_by_role("link", name="Alerts").click()
        page.locator("#alerts[aria-busy=false]").wait_for()
        page.get_by_label("Webhook URL (https)").fill(f"http://127.0.0.1:{hook_port}/hook")
        page.get_by_role("button", name="Save", exact=True).click()
        page.get_by_text("Saved.").wait_for()
        page.get_by_role("button", name="Send a test event").click()
        page.locator("#delivery-table").get_by_text("delivered (HTTP 200)").wait_for(timeout=15000)
        shot(page, "alerts")
        assert Hook.bodies and json.loads(Hook.bodies[0])["type"] == "test"

        # Signalling: a participant joins from another tab; the room is listed and closed.
        token = ok(api.post("/v1/signal/tokens", {"room": "standup", "identity": "alice"}), 201)["token"]
        other = ctx.new_page()
        other.goto(f"{base}/console")
        other.evaluate("""token => new Promise((ok, fail) => {
            const ws = new WebSocket(`ws://${location.host}/v1/signal`);
            window.sigClosed = false;
            ws.onopen = () => ws.send(JSON.stringify({ v: 1, type: "join", token }));
            ws.onmessage = (m) => { if (JSON.parse(m.data).type === "joined") ok(); };
            ws.onclose = () => { window.sigClosed = true; };
            ws.onerror = () => fail("socket error");
        })""", token)
        page.get_by_role("link", name="Signalling").click()
        page.get_by_role("cell", name="standup", exact=True).wait_for()
        page.get_by_role("button", name="Participants of standup").click()
        page.get_by_role("cell", name="alice", exact=True).wait_for()
        shot(page, "signalling")
        page.get_by_role("button", name="Close standup").click()
        wait_for(lambda: other.evaluate("() => window.sigClosed"), what="the participant disconnected")
        page.get_by_text("No live rooms.").wait_for()

        # Back to the operator: the node's figures.
        page.get_by_role("button", name="Back to the operator's pages").click()
        page.get_by_role("heading", name="Tenants").wait_for()
        page.get_by_role("link", name="Node").click()
        page.locator("#node[aria-busy=false]").wait_for()
        figure = lambda name: page.locator("#node-figures div").filter(  # noqa: E731
            has=page.get_by_text(name, exact=True)).locator("dd").inner_text()
        assert figure("Ready") == "yes"
        assert figure("Bytes relayed") != "0 B"
        shot(page, "node")

        # Suspension: the operator suspends acme; the relay refuses its credential (reported
        # among its failed authentications), its key may read but not change, and its own
        # console says so; resumed, the same credential relays again.
        page.get_by_role("link", name="Tenants").click()
        page.get_by_role("button", name="Suspend acme").click()
        page.get_by_role("row", name="acme").get_by_text("suspended since").wait_for()
        assert ok(admin.get(f"/v1/tenants/{tid}"))["suspended_at"] > 0
        refused = uclient.run(t.port, ["-u", username, "-w", password, "-e", "127.0.0.1", "-r", str(peer),
                                       "-m", "1", "-c", "-n", "2", "-l", "100"], timeout=30)
        assert refused.rc != 0, refused.output
        wait_for(lambda: any(f["reason"] == "tenant suspended" for f in ok(api.get("/v1/auth-failures"))),
                 what="the refusal logged for the tenant")
        # Its live allocations (the console's relay test still holds one) are closed and
        # logged as ended.
        wait_for(lambda: ok(api.get("/v1/allocations/live"))["count"] == 0, timeout=30,
                 what="the suspended tenant's live allocations closed")
        r = api.post("/v1/credentials", {"label": "more"})
        assert r.status == 403 and r.json["error"]["code"] == "tenant_suspended", r
        ok(api.get("/v1/credentials"))
        own = browser.new_context()
        try:
            tp = own.new_page()
            tp.goto(f"{base}/console")
            tp.get_by_label("Secret key (a tenant's) or admin key").fill(api.key)
            tp.get_by_role("button", name="Sign in").click()
            tp.get_by_role("heading", name="Overview").wait_for()
            tp.get_by_text("This tenant is suspended").wait_for()
            tp.get_by_text("No open allocations.").wait_for()
            shot(tp, "suspended")
        finally:
            own.close()
        page.get_by_role("button", name="Resume acme").click()
        page.get_by_role("row", name="acme").get_by_text("active", exact=True).wait_for()
        run = uclient.run(t.port, ["-u", username, "-w", password, "-e", "127.0.0.1", "-r", str(peer),
                                   "-m", "1", "-c", "-n", "5", "-l", "100"])
        assert run.rc == 0 and run.received == 5, run.output
    finally:
        ctx.close()
        httpd.shutdown()
    assert not errors, errors
