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


def call(browser_a, browser_b, ice_servers, policy, limit=25.0):
    """One call from a page of `browser_a` to one of `browser_b`. Returns a dict: connected,
    seconds, the selected pair seen from each side (`a`, `b`), and `error`."""
    pa, pb = browser_a.new_page(), browser_b.new_page()
    t0 = time.time()
    result = {"connected": False, "error": None}
    try:
        pa.goto(PAGE)
        pb.goto(PAGE)
        pa.evaluate("([s, p]) => start(s, p, true)", [ice_servers, policy])
        pb.evaluate("([s, p]) => start(s, p, false)", [ice_servers, policy])
        o = pa.evaluate("offer()")
        ans = pb.evaluate("(o) => answer(o)", o)
        pa.evaluate("(a) => accept(a)", ans)
        deadline = t0 + limit
        while time.time() < deadline:
            ca, cb = pa.evaluate("take()"), pb.evaluate("take()")
            if ca:
                pb.evaluate("(c) => add(c)", ca)
            if cb:
                pa.evaluate("(c) => add(c)", cb)
            sa, sb = pa.evaluate("state()"), pb.evaluate("state()")
            if sa["done"] and sb["done"]:
                result["connected"] = sa["got"] == "pong:ping" and sb["got"] == "ping"
                break
            time.sleep(0.15)
        else:
            result["error"] = f"no call within {limit:.0f} s (ICE {sa['ice']} / {sb['ice']})"
        result["seconds"] = round(time.time() - t0, 1)
        if result["connected"]:
            result["a"] = pa.evaluate("pair()")
            result["b"] = pb.evaluate("pair()")
    except Exception as e:  # noqa: BLE001 - a failed cell is reported, not raised
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        for p in (pa, pb):
            try:
                p.evaluate("stop()")
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
