"""The signalling server through real WebSockets (Python `websockets`) against the running
binary: join with tokens minted by the REST API, presence, targeted and broadcast messages,
polite/impolite ranks, ping, resume after a forced disconnect, every limit, bad input, wrong and
expired tokens, tenant isolation, the Origin allow-list, admin endpoints, draining on SIGTERM,
and two nodes sharing rooms through PostgreSQL LISTEN/NOTIFY."""

import asyncio
import base64
import json
import os
import signal
import time

import pytest
import websockets

from api import ADMIN_KEY, Api, control_toml, error, new_tenant, ok, wait_for

SIG = ("signal_resume_grace = \"1500ms\"\n")


def start(turnpike, extra="", db_url=None, tmp=None):
    url = db_url or f"sqlite://{tmp}/signal-{os.urandom(3).hex()}.db"
    t = turnpike(control_toml(url, SIG + extra))
    return t, Api(t.metrics_port, ADMIN_KEY)


def token(api, room, identity, **kw):
    return ok(api.post("/v1/signal/tokens", dict(room=room, identity=identity, **kw)), 201)["token"]


def url(t):
    return f"ws://127.0.0.1:{t.metrics_port}/v1/signal"


async def connect(t, tok=None, resume=None, origin=None, **kw):
    ws = await websockets.connect(url(t), origin=origin, max_size=None, **kw)
    msg = {"v": 1, "type": "join"}
    if tok:
        msg["token"] = tok
    if resume:
        msg["resume"] = resume
    await ws.send(json.dumps(msg))
    return ws


async def recv(ws, kind=None, timeout=5):
    """The next message (of `kind`, skipping others)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        m = json.loads(await asyncio.wait_for(ws.recv(), max(left, 0.01)))
        if kind is None or m["type"] == kind:
            return m


async def closed_with(ws, timeout=5):
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None


@pytest.fixture
def sig(turnpike, tmp_path):
    def make(extra=""):
        return start(turnpike, extra, tmp=tmp_path)
    return make


def test_join_presence_messages_roles(sig):
    t, admin = sig()
    _, api, _ = new_tenant(admin)

    async def go():
        a = await connect(t, token(api, "room1", "alice"))
        ja = await recv(a, "joined")
        assert ja["v"] == 1 and ja["seq"] == 1 and ja["participants"] == [] and ja["room"] == "room1"
        assert ja["peer"]["identity"] == "alice" and ja["session"] and ja["resume_token"]
        turn = [s for s in ja["ice_servers"] if "credential" in s]
        assert turn and any(u.startswith("turn:") for u in turn[0]["urls"])
        assert turn[0]["username"].endswith(":alice")
        b = await connect(t, token(api, "room1", "bob"))
        jb = await recv(b, "joined")
        assert [p["identity"] for p in jb["participants"]] == ["alice"]
        assert jb["participants"][0]["polite"] is True  # bob joined later: polite towards alice
        pj = await recv(a, "peer_joined")
        assert pj["peer"]["identity"] == "bob" and pj["polite"] is False and pj["seq"] == 2
        # Targeted, opaque payloads.
        offer = {"description": {"type": "offer", "sdp": "v=0\r\n..."}}
        await a.send(json.dumps({"v": 1, "type": "signal", "to": jb["peer"]["id"], "data": offer}))
        s = await recv(b, "signal")
        assert s["from"] == ja["peer"]["id"] and s["data"] == offer and s["broadcast"] is False
        # Broadcast reaches the others, not the sender.
        await b.send(json.dumps({"v": 1, "type": "broadcast", "data": {"chat": "hi all"}}))
        s = await recv(a, "signal")
        assert s["data"] == {"chat": "hi all"} and s["broadcast"] is True
        await a.send(json.dumps({"v": 1, "type": "ping", "id": 7}))
        assert (await recv(a, "pong"))["id"] == 7
        # Leave: the room is told.
        await b.send(json.dumps({"v": 1, "type": "leave"}))
        pl = await recv(a, "peer_left")
        assert pl["peer_id"] == jb["peer"]["id"] and pl["reason"] == "left"
        assert await closed_with(b) == 1000
        # Admin view.
        rooms = ok(api.get("/v1/signal/rooms"))
        assert rooms == [{"room": "room1", "participants": 1}]
        await a.close()

    asyncio.run(go())
    assert t.metric("turnpike_signal_messages_total", direction="in") >= 2


def test_resume_after_forced_disconnect_and_gone_after_grace(sig):
    t, admin = sig()
    _, api, _ = new_tenant(admin)

    async def go():
        a = await connect(t, token(api, "r", "alice"))
        await recv(a, "joined")
        b = await connect(t, token(api, "r", "bob"))
        jb = await recv(b, "joined")
        await recv(a, "peer_joined")
        last = jb["seq"]
        b.transport.abort()  # the socket drops, no leave
        await asyncio.sleep(0.3)
        for i in range(3):
            await a.send(json.dumps({"v": 1, "type": "signal", "to": jb["peer"]["id"], "data": {"n": i}}))
        await asyncio.sleep(0.3)
        b2 = await connect(t, resume={"session": jb["session"], "token": jb["resume_token"], "last_seq": last})
        r = await recv(b2)
        assert r["type"] == "resumed" and r["replayed"] == 3 and r["gap"] is False
        got = [await recv(b2, "signal") for _ in range(3)]
        assert [g["data"]["n"] for g in got] == [0, 1, 2]
        assert [g["seq"] for g in got] == [last + 1, last + 2, last + 3]
        # A wrong resume token is refused.
        bad = await connect(t, resume={"session": jb["session"], "token": "nope", "last_seq": 0})
        assert (await recv(bad, "error"))["code"] == "bad_resume"
        assert await closed_with(bad) == 4003
        # Nobody resumes: after the grace period the peer is gone.
        b2.transport.abort()
        t0 = time.monotonic()
        pl = await recv(a, "peer_left", timeout=6)
        assert pl["reason"] == "gone" and 1.2 < time.monotonic() - t0 < 4
        await a.close()

    asyncio.run(go())
    assert t.metric("turnpike_signal_resumes_total") == 1


def test_bad_input_tokens_and_isolation(sig):
    t, admin = sig("signal_handshake_timeout = 1\n")
    tid, api, _ = new_tenant(admin, "a")
    _, other, _ = new_tenant(admin, "b")

    async def go():
        a = await connect(t, token(api, "shared", "alice"))
        ja = await recv(a, "joined")
        for raw, code in [("{not json", "bad_json"), ('{"v":1,"type":"dance"}', "bad_message"),
                          ('{"v":2,"type":"ping"}', "unsupported_version"),
                          ('{"v":1,"type":"signal","to":"x"}', "bad_message"),
                          ('{"v":1,"type":"join","token":"x"}', "already_joined")]:
            await a.send(raw)
            assert (await recv(a, "error"))["code"] == code, raw
        await a.send(b"\x00\x01")
        assert (await recv(a, "error"))["code"] == "bad_message"
        await a.send(json.dumps({"v": 1, "type": "broadcast", "data": "x" * 20000}))
        assert (await recv(a, "error"))["code"] == "too_large"
        # Still alive after all that.
        await a.send(json.dumps({"v": 1, "type": "ping", "id": 1}))
        assert (await recv(a, "pong"))["id"] == 1
        # Another tenant's room of the same name is another room.
        o = await connect(t, token(other, "shared", "mallory"))
        jo = await recv(o, "joined")
        assert jo["participants"] == []
        await o.send(json.dumps({"v": 1, "type": "signal", "to": ja["peer"]["id"], "data": {"x": 1}}))
        with pytest.raises(asyncio.TimeoutError):
            await recv(a, "signal", timeout=0.7)
        assert ok(other.get("/v1/signal/rooms")) == [{"room": "shared", "participants": 1}]
        error(other.get("/v1/signal/rooms/shared-nope"), 404)
        error(other.post("/v1/signal/rooms/shared/kick", {"peer_id": ja["peer"]["id"]}), 404)
        # Tokens: garbage, forged tenant, expired, wrong version, no join.
        for bad_tok, code in [("garbage", "bad_token")]:
            w = await connect(t, bad_tok)
            assert (await recv(w, "error"))["code"] == code
            assert await closed_with(w) == 4003
        real = token(api, "shared", "eve")
        payload, mac = real.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["room"] = "elsewhere"
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=") + "." + mac
        w = await connect(t, forged)
        assert (await recv(w, "error"))["code"] == "bad_token"
        short = token(api, "shared", "eve", ttl=1)
        await asyncio.sleep(2.1)
        w = await connect(t, short)
        assert (await recv(w, "error"))["code"] == "token_expired"
        w = await websockets.connect(url(t))
        await w.send(json.dumps({"v": 1, "type": "ping"}))
        assert (await recv(w, "error"))["code"] == "bad_message"
        w = await websockets.connect(url(t))
        assert (await recv(w, "error", timeout=3))["code"] == "handshake_timeout"
        await a.close()
        await o.close()

    asyncio.run(go())
    # Token requests are validated like every API body.
    error(api.post("/v1/signal/tokens", {"room": "has space", "identity": "x"}), 422)
    error(api.post("/v1/signal/tokens", {"room": "r", "identity": "x", "ttl": 0}), 422)
    error(api.post("/v1/signal/tokens", {"room": "r"}), 422)
    error(admin.post("/v1/signal/tokens", {"room": "r", "identity": "x"}), 403)
    error(api.post("/v1/signal/tokens", {"room": "r", "identity": "x"}, key=None), 401)
    assert "eyJ" not in t.logs()  # no token in the logs


def test_limits(sig):
    t, admin = sig("signal_max_room_size = 2\nsignal_max_conns_per_ip = 4\nsignal_msgs_per_sec = 5\n")
    _, api, _ = new_tenant(admin)

    async def go():
        a = await connect(t, token(api, "small", "a"))
        await recv(a, "joined")
        b = await connect(t, token(api, "small", "b"))
        await recv(b, "joined")
        c = await connect(t, token(api, "small", "c"))
        assert (await recv(c, "error"))["code"] == "room_full"
        assert await closed_with(c) == 4009
        # Rate: a burst of 10, then refusals.
        for i in range(25):
            await a.send(json.dumps({"v": 1, "type": "broadcast", "data": i}))
        errors = 0
        got = 0
        try:
            while True:
                m = await recv(a, timeout=0.5)
                errors += m["type"] == "error" and m["code"] == "rate_limited"
        except asyncio.TimeoutError:
            pass
        try:
            while True:
                await recv(b, "signal", timeout=0.5)
                got += 1
        except asyncio.TimeoutError:
            pass
        assert errors >= 10 and 10 <= got <= 15, (errors, got)
        # Per-IP connection cap: two open, two more allowed, the fifth refused at upgrade.
        extra = [await websockets.connect(url(t)) for _ in range(2)]
        with pytest.raises(websockets.InvalidStatus) as e:
            await websockets.connect(url(t))
        assert e.value.response.status_code == 429
        for w in extra:
            await w.close()
        await a.close()
        await b.close()

    asyncio.run(go())
    assert t.metric("turnpike_signal_drops_total", reason="rate_limited") >= 10


def test_slow_consumer_is_cut_off_others_unaffected(sig):
    # The default queue (256 messages): 18 MB still overflows a client that stops reading,
    # while a reading client has slack on a loaded machine.
    t, admin = sig("signal_queue = 256\nsignal_msgs_per_sec = 100000\nsignal_bytes_per_sec = 1000000000\n")
    _, api, _ = new_tenant(admin)

    async def go():
        sender = await connect(t, token(api, "flood", "sender"))
        await recv(sender, "joined")
        fast = await connect(t, token(api, "flood", "fast"))
        await recv(fast, "joined")
        # A client that stops reading: its socket buffers fill, then its queue.
        slow = await connect(t, token(api, "flood", "slow"), max_queue=1)
        await recv(slow, "joined")
        slow.transport.pause_reading()
        received = 0

        async def reader():
            nonlocal received
            while received < 1200:
                m = await recv(fast, timeout=10)
                received += m["type"] == "signal"

        task = asyncio.create_task(reader())
        blob = "z" * 15000
        # Bounded: 1200 messages of 15 kB (18 MB, more than loopback socket buffers hold), paced
        # so that a reading client keeps up: the sender yields after every message, so the
        # reader (in this same event loop) runs between them even on a loaded machine.
        for i in range(1200):
            await sender.send(json.dumps({"v": 1, "type": "broadcast", "data": blob}))
            await asyncio.sleep(0.003)
        await asyncio.wait_for(task, 30)
        assert received == 1200
        slow.transport.resume_reading()
        assert await closed_with(slow, timeout=10) != 1000
        await sender.close()
        await fast.close()

    asyncio.run(go())
    assert t.metric("turnpike_signal_drops_total", reason="slow_consumer") >= 1


def test_origin_allow_list_admin_and_drain(sig):
    t, admin = sig()
    _, api, _ = new_tenant(admin)
    ok(api.put("/v1/signal/settings", {"allowed_origins": ["https://app.example.com"]}))
    assert ok(api.get("/v1/signal/settings"))["allowed_origins"] == ["https://app.example.com"]
    error(api.put("/v1/signal/settings", {"allowed_origins": ["ftp://x"]}), 422)

    async def go():
        bad = await connect(t, token(api, "o", "x"), origin="https://evil.example.com")
        assert (await recv(bad, "error"))["code"] == "origin_not_allowed"
        a = await connect(t, token(api, "o", "a"), origin="https://app.example.com")
        ja = await recv(a, "joined")
        b = await connect(t, token(api, "o", "b"), origin="https://app.example.com")
        jb = await recv(b, "joined")
        await recv(a, "peer_joined")
        room = ok(api.get("/v1/signal/rooms/o"))
        assert {p["identity"] for p in room["participants"]} == {"a", "b"}
        # Kick b: b is told and closed, a sees it leave.
        assert api.post("/v1/signal/rooms/o/kick", {"peer_id": jb["peer"]["id"]}).status == 204
        assert (await recv(b, "kicked"))["type"] == "kicked"
        assert await closed_with(b) == 4001
        assert (await recv(a, "peer_left"))["reason"] == "kicked"
        c = await connect(t, token(api, "o", "c"), origin="https://app.example.com")
        await recv(c, "joined")
        assert api.delete("/v1/signal/rooms/o").status == 204
        assert (await recv(a, "room_closed"))["type"] == "room_closed"
        assert (await recv(c, "room_closed"))["type"] == "room_closed"
        error(api.get("/v1/signal/rooms/o"), 404)
        # Draining on SIGTERM tells clients to reconnect elsewhere.
        d = await connect(t, token(api, "d", "d"), origin="https://app.example.com")
        await recv(d, "joined")
        t.proc.send_signal(signal.SIGTERM)
        m = await recv(d, "draining")
        assert m["reconnect"] is True
        assert await closed_with(d) == 1012
        del ja

    asyncio.run(go())
    assert t.proc.wait(timeout=15) == 0


def two_nodes(turnpike):
    """Two nodes sharing rooms through the PostgreSQL server scripts/test started; a tenant's
    Api and a fresh room name."""
    pg = os.environ.get("TURNPIKE_TEST_POSTGRES_URL")
    if not pg:
        pytest.fail("TURNPIKE_TEST_POSTGRES_URL is not set: run through scripts/test")
    n1, admin = start(turnpike, 'signal_bus = "postgres"\n', db_url=pg)
    n2, _ = start(turnpike, 'signal_bus = "postgres"\n', db_url=pg)
    _, api, _ = new_tenant(admin)
    return n1, n2, api, "x" + os.urandom(3).hex()


def test_two_nodes_share_rooms_through_postgres(turnpike):
    n1, n2, api, room = two_nodes(turnpike)

    async def go():
        a = await connect(n1, token(api, room, "alice"))
        ja = await recv(a, "joined")
        b = await connect(n2, token(api, room, "bob"))
        jb = await recv(b, "joined")
        assert [p["identity"] for p in jb["participants"]] == ["alice"]
        assert (await recv(a, "peer_joined"))["peer"]["identity"] == "bob"
        big = {"sdp": "a=x\r\n" * 2000}  # 14 kB of JSON: over NOTIFY's 8000-byte payload limit
        await b.send(json.dumps({"v": 1, "type": "signal", "to": ja["peer"]["id"], "data": big}))
        assert (await recv(a, "signal"))["data"] == big
        await a.send(json.dumps({"v": 1, "type": "signal", "to": jb["peer"]["id"], "data": {"answer": 1}}))
        assert (await recv(b, "signal"))["data"] == {"answer": 1}
        rooms = ok(Api(n2.metrics_port, api.key).get("/v1/signal/rooms"))
        assert {"room": room, "participants": 2} in rooms
        await a.send(json.dumps({"v": 1, "type": "leave"}))
        assert (await recv(b, "peer_left"))["reason"] == "left"
        await b.close()

    asyncio.run(go())


def test_members_of_a_crashed_node_are_reported_gone(turnpike):
    """A node killed with SIGKILL cannot say its participants left: the surviving node notices
    the silent node (no liveness refresh for 20 s), removes its members and tells the room."""
    n1, n2, api, room = two_nodes(turnpike)

    async def go():
        a = await connect(n1, token(api, room, "alice"))
        await recv(a, "joined")
        b = await connect(n2, token(api, room, "bob"))
        jb = await recv(b, "joined")
        assert (await recv(a, "peer_joined"))["peer"]["identity"] == "bob"
        n2.proc.kill()
        n2.proc.wait()
        t0 = time.monotonic()
        left = None
        while left is None and time.monotonic() - t0 < 45:
            await a.send(json.dumps({"v": 1, "type": "ping"}))  # keep alice's own socket alive
            try:
                left = await recv(a, "peer_left", timeout=5)
            except asyncio.TimeoutError:
                pass
        assert left is not None, "the crashed node's participant was never reported gone"
        assert left["peer_id"] == jb["peer"]["id"] and left["reason"] == "node_lost", left
        rooms = ok(Api(n1.metrics_port, api.key).get("/v1/signal/rooms"))
        assert {"room": room, "participants": 1} in rooms
        await a.close()
        return time.monotonic() - t0

    elapsed = asyncio.run(go())
    assert elapsed < 45, elapsed


def test_signalling_over_the_shared_tls_port(sig):
    """wss://host:443/v1/signal: the shared port (TURN, TURNS, HTTPS) takes WebSocket upgrades
    too, so a deployment needs only port 443 for signalling and TURNS."""
    import ssl

    t, admin = sig()
    _, api, _ = new_tenant(admin)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    async def go():
        wss = f"wss://127.0.0.1:{t.mux_port}/v1/signal"
        a = await websockets.connect(wss, ssl=ctx)
        await a.send(json.dumps({"v": 1, "type": "join", "token": token(api, "r443", "alice")}))
        assert (await recv(a, "joined"))["room"] == "r443"
        b = await websockets.connect(f"ws://127.0.0.1:{t.mux_port}/v1/signal")
        await b.send(json.dumps({"v": 1, "type": "join", "token": token(api, "r443", "bob")}))
        await recv(b, "joined")
        await b.send(json.dumps({"v": 1, "type": "broadcast", "data": {"hello": "over 443"}}))
        m = await recv(a, "signal")
        assert m["data"] == {"hello": "over 443"}, m
        await a.close()
        await b.close()

    asyncio.run(go())


def test_a_suspended_tenant_is_cut_off_from_signalling(sig):
    """Suspending a tenant reaches signalling: its participants are told and disconnected (the
    room hears them kicked), a token minted before cannot join, and no new tokens are minted;
    another tenant's room is untouched; after resuming, the same token joins again."""
    t, admin = sig()
    tid, api, _ = new_tenant(admin, "suspended-sig")
    _, other, _ = new_tenant(admin, "other-sig")

    async def go():
        a = await connect(t, token(api, "r", "alice"))
        await recv(a, "joined")
        b = await connect(t, token(api, "r", "bob"))
        await recv(b, "joined")
        o = await connect(t, token(other, "r", "olga"))
        await recv(o, "joined")
        later = token(api, "r", "carol")
        ok(admin.post(f"/v1/tenants/{tid}/suspend", {}))
        e = await recv(a, "error", timeout=5)
        assert e["code"] == "forbidden" and "suspended" in e["message"], e
        assert await closed_with(a) == 4001
        assert await closed_with(b) == 4001
        # The minted token no longer joins; no new token is minted.
        w = await connect(t, later)
        assert (await recv(w, "error"))["code"] == "forbidden"
        assert await closed_with(w) == 4003
        error(api.post("/v1/signal/tokens", {"room": "r", "identity": "dan"}), 403, "tenant_suspended")
        # The other tenant's participant is still there.
        await o.send(json.dumps({"v": 1, "type": "ping", "id": 3}))
        assert (await recv(o, "pong"))["id"] == 3
        ok(admin.post(f"/v1/tenants/{tid}/resume", {}))
        c = await connect(t, later)
        assert (await recv(c, "joined"))["peer"]["identity"] == "carol"
        await c.close()
        await o.close()

    asyncio.run(go())
