"""Quotas and alerts end to end: relayed bytes cross thresholds of a tenant's and a credential's
byte quota; the configured actions happen (refuse new allocations with 486, close live ones);
signed webhooks arrive at a test receiver (with a retry after a failure, the same idempotency
key), and alert emails at a test SMTP server (aiosmtpd)."""

import asyncio
import hashlib
import hmac
import http.server
import json
import threading
import time

from aiosmtpd.controller import Controller

from api import ADMIN_KEY, Api, control_toml, db, new_tenant, ok, uniq, wait_for  # noqa: F401
from conftest import LOOPBACK_OK, free_port
from test_control_e2e import allocate, allocation_fails, relay_and_echo


class Receiver(http.server.BaseHTTPRequestHandler):
    """Records webhook deliveries; fails the first one with 500 to exercise retries."""

    calls = []
    fail_first = True

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        Receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body, time.time()))
        if Receiver.fail_first:
            Receiver.fail_first = False
            self.send_response(500)
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content.decode()))
        return "250 OK"


def verify(secret, headers, body):
    sig = dict(p.split("=", 1) for p in headers["turnpike-signature"].split(","))
    mac = hmac.new(secret.encode(), f"{sig['t']}.{body}".encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, sig["v1"]), "bad webhook signature"
    assert abs(int(sig["t"]) - time.time()) < 60


def test_quota_thresholds_fire_actions_webhooks_and_email(turnpike, db):
    Receiver.calls = []
    Receiver.fail_first = True
    http_port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", http_port), Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    mailbox = Mailbox()
    smtp_port = free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    try:
        extra = (
            f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp_port}\nsmtp_security = "none"\n'
            'smtp_from = "turnpike@example.com"\nwebhook_first_retry = "200ms"\n'
            # The test receiver is on loopback, which webhooks may not reach by default.
            'danger_allow_webhook_ranges = ["127.0.0.0/8"]\n'
        )
        t = turnpike(control_toml(db, LOOPBACK_OK + extra))
        admin = Api(t.metrics_port, ADMIN_KEY)
        tid, api, _ = new_tenant(admin)
        n = ok(api.put("/v1/notifications", {"webhook_url": f"http://127.0.0.1:{http_port}/hook",
                                              "email_to": "ops@example.com"}))
        secret = n["webhook_secret"]
        assert secret.startswith("whsec_") and n["has_webhook_secret"]
        again = ok(api.get("/v1/notifications"))
        assert "webhook_secret" not in again and again["has_webhook_secret"]
        quota = {"period": "month", "bytes_per_period": 40_000,
                 "thresholds": [{"percent": 50, "action": "notify"}, {"percent": 100, "action": "refuse"}]}
        assert ok(api.put("/v1/quota", quota))["bytes_per_period"] == 40_000
        m = ok(api.post("/v1/ephemeral-credentials", {"user_id": "heavy"}), 201)
        # 12 kB each way: 4 legs make about 48 kB, over 100 %.
        back, _ = asyncio.run(relay_and_echo(t.port, m["username"], m["password"], [1000] * 12))
        assert back == 12_000

        def alerts():
            a = ok(api.get("/v1/alerts"))
            return a if len(a) == 2 else None

        fired = wait_for(alerts, timeout=15, what="both thresholds")
        assert sorted((a["percent"], a["action"]) for a in fired) == [(50, "notify"), (100, "refuse")]
        assert all(a["bytes_quota"] == 40_000 and a["bytes_used"] >= 40_000 for a in fired)
        # Refused: a new allocation gets 486 Allocation Quota Reached.
        m2 = ok(api.post("/v1/ephemeral-credentials", {"user_id": "late"}), 201)
        wait_for(lambda: allocation_fails(t.port, m2["username"], m2["password"]) == 486, what="refusal")
        cur = ok(api.get("/v1/usage/current"))
        assert cur["quota_bytes"] == 40_000 and cur["percent_used"] >= 100
        # Webhooks: both events delivered, signed; the failed first attempt was retried with the
        # same idempotency key.
        delivered = wait_for(lambda: len({json.loads(b)["id"] for h, b, _ in Receiver.calls}) == 2
                             and len(Receiver.calls) >= 3 and Receiver.calls, timeout=15, what="webhooks")
        by_id = {}
        for h, b, at in delivered:
            verify(secret, h, b)
            ev = json.loads(b)
            assert h["idempotency-key"] == ev["id"] and h["turnpike-event"] == "quota.threshold"
            assert ev["tenant_id"] == tid and ev["scope"] == "tenant"
            by_id.setdefault(ev["id"], []).append(at)
        assert sorted(len(v) for v in by_id.values()) == [1, 2], by_id
        # Emails: one per event, to the configured address.
        mails = wait_for(lambda: len(mailbox.messages) >= 2 and mailbox.messages, timeout=15, what="emails")
        assert all(rcpt == ["ops@example.com"] and frm == "turnpike@example.com" for frm, rcpt, _ in mails)
        assert any("100% of the tenant quota" in c for _, _, c in mails)
        # Raising the quota lifts the refusal by itself.
        ok(api.put("/v1/quota", dict(quota, bytes_per_period=10_000_000)))
        wait_for(lambda: allocation_fails(t.port, m2["username"], m2["password"]) is None, what="lifted refusal")
        # A thresholds change is audited.
        assert any(a["action"] == "quota.put" for a in ok(api.get("/v1/audit")))
    finally:
        httpd.shutdown()
        smtp.stop()


def test_credential_quota_disconnects_live_allocations(turnpike, db):
    t = turnpike(control_toml(db, LOOPBACK_OK))
    admin = Api(t.metrics_port, ADMIN_KEY)
    _, api, _ = new_tenant(admin)
    user = uniq("capped")
    c = ok(api.post("/v1/credentials", {"username": user, "password": "capped-password-1"}), 201)
    cid = c["credential"]["id"]
    ok(api.put(f"/v1/credentials/{cid}/quota", {"bytes_per_period": 20_000, "period": "day",
                                                 "thresholds": [{"percent": 100, "action": "disconnect"}]}))
    other = ok(api.post("/v1/credentials", {"username": uniq("free"), "password": "free-password-1"}), 201)

    async def scenario():
        keep, _ = await allocate(t.port, other["credential"]["username"], "free-password-1")
        relay_t, proto = await allocate(t.port, user, "capped-password-1")
        loop = asyncio.get_running_loop()
        from test_control_e2e import Counter
        peer_t, peer = await loop.create_datagram_endpoint(lambda: Counter(True), local_addr=("127.0.0.1", 0))
        addr = peer_t.get_extra_info("sockname")
        for _ in range(30):
            relay_t.sendto(b"q" * 1000, addr)
            await asyncio.sleep(0.003)
        await asyncio.sleep(0.5)
        # The capped credential's allocation is closed; the other tenant credential's stays.
        wait_for(lambda: t.metric("turnpike_allocations") == 1, timeout=6, what="disconnect by quota")
        peer_t.close()

    asyncio.run(scenario())
    assert allocation_fails(t.port, user, "capped-password-1") == 486
    alerts = ok(api.get("/v1/alerts"))
    assert [(a["scope"], a["action"]) for a in alerts] == [(cid, "disconnect")]
