"""WebRTC data-channel calls between headless Chromium peers in the lab's client namespaces:
one browser per network (Debian's Chromium, driven by Playwright, launched through
`ip netns exec`), SDP and trickled candidates moved between the two pages by the test."""

import contextlib
import pathlib
import shutil
import time

PAGE = (pathlib.Path(__file__).parent / "peer.html").as_uri()
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 # Turnpike's self-signed certificate on TURN over TLS.
                 "--ignore-certificate-errors"]


@contextlib.contextmanager
def browsers(lab, networks, workdir):
    """One Chromium per network, each in that network's client namespace: {network: browser}."""
    exe = shutil.which("chromium")
    if exe is None:
        raise RuntimeError("chromium is not installed (scripts/install-prereqs installs it)")
    from playwright.sync_api import sync_playwright

    workdir = pathlib.Path(workdir)
    out = {}
    with sync_playwright() as p:
        try:
            for net in networks:
                wrapper = workdir / f"chromium-{net}"
                wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {lab.client(net)} {exe} "$@"\n')
                wrapper.chmod(0o755)
                args = list(CHROMIUM_ARGS)
                if net == "proxy":
                    args.append(f"--proxy-server=http://{lab.proxy(net)}")
                out[net] = p.chromium.launch(executable_path=str(wrapper), headless=True, args=args)
            yield out
        finally:
            for b in out.values():
                try:
                    b.close()
                except Exception:  # noqa: BLE001 - closing what may already be gone
                    pass


def _evaluate(page, fn, arg, until):
    """`page.evaluate` of the function `fn` (JavaScript source) on `arg`, bounded: Playwright's
    evaluate has no timeout of its own, and a promise in the page that never settles (an
    addIceCandidate, a getStats) would hang the test. Fails after `until` (time.time())."""
    ms = max(1000, int((until - time.time()) * 1000))
    return page.evaluate(
        "([arg, ms]) => new Promise((resolve, reject) => {"
        " const t = setTimeout(() => reject(new Error(`no result from the page within ${ms} ms`)), ms);"
        f" Promise.resolve().then(() => ({fn})(arg)).then("
        " (v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(e); }); })",
        [arg, ms])


def call(browser_a, browser_b, ice_servers, policy, limit=25.0, setup_limit=30.0):
    """One call from a page of `browser_a` to one of `browser_b`. Returns a dict: connected,
    seconds, the selected pair seen from each side (`a`, `b`), and `error`.

    Bounded: page loads and the offer/answer exchange get `setup_limit` seconds, then ICE and
    the data channel get `limit` seconds of their own; every step in the pages is bounded by
    the call's overall deadline."""
    t0 = time.time()
    result = {"connected": False, "error": None}
    setup_end = t0 + setup_limit
    hard = setup_end + limit + 10  # no step of this call runs past this
    pages = []
    sa = sb = None
    try:
        pa = browser_a.new_page()
        pages.append(pa)
        pb = browser_b.new_page()
        pages.append(pb)
        for p in pages:
            p.set_default_timeout(setup_limit * 1000)
            p.goto(PAGE, timeout=max(1.0, setup_end - time.time()) * 1000)
        _evaluate(pa, "([s, p]) => start(s, p, true)", [ice_servers, policy], setup_end)
        _evaluate(pb, "([s, p]) => start(s, p, false)", [ice_servers, policy], setup_end)
        o = _evaluate(pa, "() => offer()", None, setup_end)
        ans = _evaluate(pb, "(o) => answer(o)", o, setup_end)
        _evaluate(pa, "(a) => accept(a)", ans, setup_end)
        setup = time.time() - t0
        deadline = time.time() + limit
        while time.time() < deadline:
            ca, cb = _evaluate(pa, "() => take()", None, hard), _evaluate(pb, "() => take()", None, hard)
            if ca:
                _evaluate(pb, "(c) => add(c)", ca, hard)
            if cb:
                _evaluate(pa, "(c) => add(c)", cb, hard)
            sa, sb = _evaluate(pa, "() => state()", None, hard), _evaluate(pb, "() => state()", None, hard)
            if sa["done"] and sb["done"]:
                result["connected"] = sa["got"] == "pong:ping" and sb["got"] == "ping"
                break
            time.sleep(0.15)
        else:
            ice = f"ICE {sa['ice']} / {sb['ice']}" if sa and sb else "ICE state never read"
            result["error"] = (f"no call within {limit:.0f} s after {setup:.1f} s of page loads and "
                               f"offer/answer ({ice})")
        result["seconds"] = round(time.time() - t0, 1)
        if result["connected"]:
            result["a"] = _evaluate(pa, "() => pair()", None, hard)
            result["b"] = _evaluate(pb, "() => pair()", None, hard)
    except Exception as e:  # noqa: BLE001 - a failed cell is reported, not raised
        result["error"] = f"{type(e).__name__}: {e}"
        result["seconds"] = round(time.time() - t0, 1)
    finally:
        for p in pages:
            try:
                _evaluate(p, "() => stop()", None, time.time() + 5)
            except Exception:  # noqa: BLE001
                pass
            try:
                p.close()
            except Exception:  # noqa: BLE001
                pass
    return result


def describe_side(s):
    """One side's selected pair: `local/protocol→remote`, the local protocol for a relay
    candidate being the one between the browser and Turnpike (`relay/tls→relay`, `srflx/udp→prflx`)."""
    if not s or not s.get("localType"):
        return "?"
    proto = s.get("relayProtocol") if s["localType"] == "relay" else s.get("localProtocol")
    return f"{s['localType']}/{proto or '?'}→{s.get('remoteType') or '?'}"


def relayed(r):
    return any(side and "relay" in (side.get("localType"), side.get("remoteType")) for side in (r["a"], r["b"]))


def describe(r):
    """A matrix cell: TURN or direct, then the caller's and the callee's selected pairs."""
    if not r["connected"]:
        return "FAILED"
    how = "TURN" if relayed(r) else "direct"
    return f"{how}: {describe_side(r['a'])}, {describe_side(r['b'])}"
