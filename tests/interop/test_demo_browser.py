"""The demo call page in real browsers: headless Chromium (Debian's, driven by Playwright) opens
the page twice with fake camera devices, both join one room through the signalling server,
connect with iceTransportPolicy 'relay' through Turnpike's TURN using the ephemeral credentials
from the join answer, and the test checks the selected candidate pair is relay/relay, a data
channel message goes both ways, video frames are decoded on both sides, and the usage API then
shows bytes for both participants. Also with the two participants on two nodes sharing rooms
through PostgreSQL, and the ICE-test page."""

import os
import pathlib
import time

import pytest

from api import ADMIN_KEY, Api, control_toml, new_tenant, ok, wait_for
from conftest import LOOPBACK_OK, chromium

FAKE_MEDIA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
              "--autoplay-policy=no-user-gesture-required"]
ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "target" / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    with chromium(FAKE_MEDIA) as b:
        yield b


def token(api, room, identity):
    return ok(api.post("/v1/signal/tokens", {"room": room, "identity": identity}), 201)["token"]


def open_call(browser, node, tok, name):
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"http://127.0.0.1:{node.metrics_port}/demo?token={tok}&name={name}&relay=1&autojoin=1")
    return ctx, page


def timeline(page, name):
    """The page's call timeline (window.demo.events), for the failure report."""
    try:
        return f"--- {name}:\n" + "\n".join(page.evaluate("window.demo ? window.demo.events : ['no demo state']"))
    except Exception as e:  # the page itself may be gone; say so instead of hiding the real failure
        return f"--- {name}: timeline unavailable: {e}"


def call(browser, nodes, api, room, shot):
    a_ctx, a = open_call(browser, nodes[0], token(api, room, "alice"), "alice")
    b_ctx, b = open_call(browser, nodes[1], token(api, room, "bob"), "bob")
    try:
        call_checks(a, b, shot)
    except Exception:
        logs = "\n".join(f"--- node {n.port} log tail:\n" + n.logs()[-3000:] for n in dict.fromkeys(nodes))
        print(timeline(a, "alice") + "\n" + timeline(b, "bob") + "\n" + logs)
        raise
    finally:
        a_ctx.close()
        b_ctx.close()


def call_checks(a, b, shot):
    for p in (a, b):
        p.wait_for_function("window.demo && window.demo.dcOpen", timeout=30000)
    a.evaluate("window.demo.sendChat('hello from alice')")
    b.wait_for_function("window.demo.received.includes('hello from alice')", timeout=10000)
    b.evaluate("window.demo.sendChat('hello from bob')")
    a.wait_for_function("window.demo.received.includes('hello from bob')", timeout=10000)
    for p in (a, b):
        p.wait_for_function("window.demo.framesDecoded > 0", timeout=20000)
        p.wait_for_function("window.demo.selected !== null", timeout=10000)
        sel = p.evaluate("window.demo.selected")
        assert sel["local"] == "relay" and sel["remote"] == "relay", sel
        # Chrome nominates whichever relay pair (TURN over UDP or TCP) checks first; both are ours.
        assert sel["relayProtocol"] in ("udp", "tcp"), sel
        assert "through TURN" in p.inner_text("#path")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    time.sleep(1)
    a.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    assert (ARTIFACTS / shot).stat().st_size > 10_000


def user_bytes(api):
    now = int(time.time())
    rep = ok(api.get(f"/v1/usage?from={now - 3600}&to={now + 3600}&group_by=hour&by=user"))
    return {g["key"]: g["total_bytes"] for g in rep["groups"]}


def test_demo_call_through_the_relay(turnpike, browser, tmp_path):
    t = turnpike(control_toml(f"sqlite://{tmp_path / 'demo.db'}", LOOPBACK_OK))
    admin = Api(t.metrics_port, ADMIN_KEY)
    _, api, _ = new_tenant(admin)
    call(browser, [t, t], api, "call", "demo-call.png")
    usage = wait_for(lambda: (lambda u: u if u.get("alice", 0) > 10_000 and u.get("bob", 0) > 10_000 else None)(user_bytes(api)),
                     timeout=15, what="usage of the call")
    assert set(usage) >= {"alice", "bob"}


def test_demo_call_across_two_nodes(turnpike, browser):
    pg = os.environ.get("TURNPIKE_TEST_POSTGRES_URL")
    if not pg:
        pytest.fail("TURNPIKE_TEST_POSTGRES_URL is not set: run through scripts/test")
    extra = LOOPBACK_OK + 'signal_bus = "postgres"\n'
    n1 = turnpike(control_toml(pg, extra))
    n2 = turnpike(control_toml(pg, extra))
    _, api, _ = new_tenant(Api(n1.metrics_port, ADMIN_KEY))
    call(browser, [n1, n2], api, "x" + os.urandom(3).hex(), "demo-call-two-nodes.png")
    usage = wait_for(lambda: (lambda u: u if u.get("alice", 0) > 0 and u.get("bob", 0) > 0 else None)(user_bytes(api)),
                     timeout=15, what="usage on both nodes")
    assert usage


def test_ice_test_page(turnpike, browser, tmp_path):
    t = turnpike(control_toml(f"sqlite://{tmp_path / 'ice.db'}", LOOPBACK_OK))
    page = browser.new_page()
    try:
        page.goto(f"http://127.0.0.1:{t.metrics_port}/demo/ice-test?auto=1")
        page.wait_for_function("window.iceTest.done || window.iceTest.error", timeout=30000)
        r = page.evaluate("window.iceTest")
        assert r["error"] is None, r
        types = {c["type"] for c in r["candidates"]}
        assert "relay" in types and types <= {"host", "srflx", "relay", "prflx"}, r
        assert all(c["ms"] >= 0 for c in r["candidates"])
        assert page.locator("tr.relay").count() >= 1
    finally:
        page.close()
