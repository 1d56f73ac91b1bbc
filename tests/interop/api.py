"""A small HTTP client for Turnpike's control-plane API, and the fixture parameters that run a
test on SQLite and on the PostgreSQL server scripts/test starts."""

import json
import os
import time
import urllib.error
import urllib.request

import pytest

ADMIN_KEY = "tpa_test_admin_key_0123456789abcdefghijklmnop"


class Response:
    def __init__(self, status, body, headers):
        self.status = status
        self.text = body
        self.headers = {k.lower(): v for k, v in headers.items()}
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return f"<{self.status} {self.text[:300]}>"


class Api:
    def __init__(self, port, key=None):
        self.base = f"http://127.0.0.1:{port}"
        self.key = key

    def with_key(self, key):
        return Api(int(self.base.rsplit(":", 1)[1]), key)

    def req(self, method, path, body=None, raw=None, headers=None, key=...):
        key = self.key if key is ... else key
        h = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if raw is not None:
            data = raw
        if key:
            h["Authorization"] = f"Bearer {key}"
        h.update(headers or {})
        r = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(r, timeout=30) as resp:
                return Response(resp.status, resp.read().decode(), dict(resp.headers))
        except urllib.error.HTTPError as e:
            return Response(e.code, e.read().decode(), dict(e.headers))

    def get(self, path, **kw):
        return self.req("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.req("POST", path, body=body if body is not None else {}, **kw)

    def patch(self, path, body, **kw):
        return self.req("PATCH", path, body=body, **kw)

    def put(self, path, body, **kw):
        return self.req("PUT", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.req("DELETE", path, **kw)


def ok(r, status=200):
    assert r.status == status, r
    return r.json


def error(r, status, code=None):
    """Asserts the one error shape."""
    assert r.status == status, r
    assert set(r.json) == {"error"}, r
    assert set(r.json["error"]) == {"code", "message"}, r
    if code:
        assert r.json["error"]["code"] == code, r
    return r.json["error"]


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """The database URL: a SQLite file, or the PostgreSQL server scripts/test started."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'control.db'}"
    url = os.environ.get("TURNPIKE_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("TURNPIKE_TEST_POSTGRES_URL is not set: run through scripts/test, which starts PostgreSQL")
    return url


def control_toml(db_url, extra=""):
    return (
        f'database_url = "{db_url}"\n'
        f'admin_key = "{ADMIN_KEY}"\n'
        "usage_flush_interval = \"200ms\"\n"
        "directory_sync_interval = \"500ms\"\n" + extra
    )


def new_tenant(admin, name="acme"):
    """Creates a tenant; returns (tenant id, its Api, its shared secret)."""
    body = ok(admin.post("/v1/tenants", {"name": name}), 201)
    return body["tenant"]["id"], admin.with_key(body["secret_key"]), body["shared_secret"]


def wait_for(f, timeout=10, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = f()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def usage_totals(api, by=None):
    now = int(time.time())
    q = f"/v1/usage?from={now - 7200}&to={now + 3600}&group_by=hour"
    if by:
        q += f"&by={by}"
    return ok(api.get(q))


def uniq(name):
    """Usernames are unique across tenants, and the PostgreSQL database outlives a test."""
    return f"{name}-{os.urandom(4).hex()}"
