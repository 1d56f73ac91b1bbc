#!/usr/bin/env python3
"""Memory per idle connection, Turnpike against coturn in one run (issue 10, item 3).

For each server and transport (TCP, TLS on the same ECDSA P-256 certificate): start it pinned
to CPU 1 as bench/compare.py does, open a warm-up batch of connections, then N more, each
sending one STUN Binding request and reading its answer (so the connection is past the
handshake and first-frame stage, an idle client), and report the growth of the server's
resident memory (VmRSS) divided by N. Bounded: N connections per run, 5 s socket timeouts.

Usage: bench/idle_memory.py [--quick] [--connections N]
"""

import argparse
import os
import pathlib
import resource
import signal
import socket
import ssl
import struct
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from compare import PORT, TLS_PORT, TURNPIKE, start_coturn, start_turnpike  # noqa: E402


def binding_request():
    return struct.pack("!HHI", 0x0001, 0, 0x2112A442) + os.urandom(12)


def rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_idle(port, n, tls):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    out = []
    for i in range(n):
        # Spread over 250 loopback sources: one address holding thousands of connections is
        # what the per-source cap refuses (issue 10, item 2), not an idle client population.
        s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                     source_address=(f"127.0.1.{i % 250 + 1}", 0))
        if tls:
            s = ctx.wrap_socket(s)
        s.sendall(binding_request())
        out.append(s)
    for s in out:
        if len(s.recv(200)) < 20:
            raise RuntimeError("no Binding answer")
    return out


def measure(server, tls, n, tmp):
    proc = start_coturn(tmp) if server == "coturn" else start_turnpike(tmp, metered=False)
    conns = []
    try:
        time.sleep(1.5)
        if proc.poll() is not None:
            raise RuntimeError(f"{server} did not start")
        port = TLS_PORT if tls else PORT
        conns += open_idle(port, 100, tls)  # warm-up
        time.sleep(0.5)
        before = rss_kib(proc.pid)
        conns += open_idle(port, n, tls)
        time.sleep(0.5)
        after = rss_kib(proc.pid)
        return (after - before) * 1024 / n / 1000  # kB (1000 bytes) per connection
    finally:
        for s in conns:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except Exception:
            proc.kill()
            proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="200 connections (a smoke test)")
    ap.add_argument("--connections", type=int, default=2000)
    a = ap.parse_args()
    n = 200 if a.quick else a.connections
    if not TURNPIKE.exists():
        sys.exit(f"{TURNPIKE} missing: run `cargo build --release` first")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 1000)), hard))
    lines = ["| transport | coturn kB / idle connection | turnpike kB / idle connection | ratio |",
             "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        for tls in (False, True):
            res = {s: measure(s, tls, n, tmp) for s in ("coturn", "turnpike")}
            name = "TLS" if tls else "TCP"
            ratio = res["coturn"] / res["turnpike"] if res["turnpike"] > 0 else float("nan")
            print(f"{name}: coturn {res['coturn']:.1f} kB, turnpike {res['turnpike']:.1f} kB per idle connection ({n} connections)", flush=True)
            lines.append(f"| {name} ({n} connections) | {res['coturn']:.1f} | {res['turnpike']:.1f} | **{ratio:.2f}×** less |")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
