"""Headless Chromium (Debian's `chromium`, driven by Playwright with its own executable) opens
two relay-only RTCPeerConnections through Turnpike and exchanges data-channel messages, over
TURN/UDP, TURN/TCP, and TURNS on the shared port."""

import json
import pathlib

import pytest

from conftest import LOOPBACK_OK, USERS, chromium

PAGE = (pathlib.Path(__file__).parent / "web" / "relay-test.html").as_uri()


@pytest.fixture(scope="module")
def browser():
    with chromium(["--ignore-certificate-errors"]) as b:
        yield b


def run_page(browser, servers, timeout_ms=20000):
    page = browser.new_page()
    try:
        page.goto(PAGE)
        return page.evaluate(
            "async (s) => await Promise.race([relayTest(s), new Promise((_, rej) => setTimeout(() => rej(new Error('timeout')), %d))])" % timeout_ms,
            servers,
        )
    finally:
        page.close()


@pytest.mark.parametrize(
    "kind,url,protocol",
    [
        ("udp", "turn:127.0.0.1:{port}?transport=udp", "udp"),
        ("tcp", "turn:127.0.0.1:{port}?transport=tcp", "tcp"),
        ("turns-shared-port", "turns:localhost:{mux}?transport=tcp", "tls"),
        ("turn-tcp-shared-port", "turn:127.0.0.1:{mux}?transport=tcp", "tcp"),
    ],
)
def test_chromium_relay_only_datachannel(turnpike, browser, kind, url, protocol):
    t = turnpike(USERS + LOOPBACK_OK)
    servers = [{"urls": url.format(port=t.port, mux=t.mux_port), "username": "alice", "credential": "wonderland"}]
    r = run_page(browser, servers)
    assert r["gotB"] == "ping" and r["gotA"] == "pong:ping", r
    assert r["localType"] == "relay" and r["remoteType"] == "relay", r
    assert r["relayProtocol"] == protocol, r
    import time

    time.sleep(1.3)  # counters are published once a second
    transport = {"udp": "udp", "tcp": "tcp", "tls": "tls"}[protocol]
    assert t.metric("turnpike_relay_packets_total", direction="server_to_peer", transport=transport) > 0
