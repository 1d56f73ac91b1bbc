"""Schemathesis (property-based API testing from the OpenAPI document) against the running
binary: thousands of generated requests, valid and invalid, to every operation, as a tenant and
as the operator, on SQLite and PostgreSQL. The check: no response is a server error (5xx) and
the server keeps running."""

import subprocess

from api import ADMIN_KEY, Api, control_toml, db, new_tenant, ok  # noqa: F401

# Operations that would end the run's own key (rotation without overlap, revocation) are run by
# the operator pass, not the tenant pass.
KEY_KILLERS = ["--exclude-path", "/v1/keys/rotate", "--exclude-path", "/v1/keys/{id}",
               "--exclude-path", "/v1/tenants/{id}"]


def schemathesis(port, key, extra=()):
    cmd = ["schemathesis", "run", f"http://127.0.0.1:{port}/openapi.json",
           "--checks", "not_a_server_error", "-H", f"Authorization: Bearer {key}",
           "--max-examples", "25", "--seed", "7", "--suppress-health-check", "all",
           "--request-timeout", "10", "--max-time", "40", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


def test_schemathesis_finds_no_server_error(turnpike, db):
    t = turnpike(control_toml(db, "api_rate_burst = 1000000\napi_rate_per_sec = 1000000\n"))
    admin = Api(t.metrics_port, ADMIN_KEY)
    _, api, _ = new_tenant(admin, "fuzzed")
    ok(api.post("/v1/credentials", {"label": "seed"}), 201)
    rc, out = schemathesis(t.metrics_port, api.key, KEY_KILLERS)
    assert rc == 0, out[-6000:]
    assert " passed" in out and "generated" in out, out[-3000:]
    rc, out = schemathesis(t.metrics_port, ADMIN_KEY)
    assert rc == 0, out[-6000:]
    assert t.proc.poll() is None
    assert "panicked" not in t.logs()
