#!/usr/bin/env python3
"""Runs the same turnutils_uclient load against Turnpike and coturn in one run, with the same
ports and CPU pinning, and prints round-trips per second, loss and server CPU time for each and
their ratio.

Pinning: the server under test on CPU 1 (one core, one Turnpike worker), uclient and
turnutils_peer on CPU 0. All traffic is on 127.0.0.1; every run is bounded by uclient's message
count and a timeout.

Servers: coturn with a static user; Turnpike with a static user (--users, not metered); and
Turnpike with a stored credential made through its REST API ("turnpike+meter"), whose every
relayed packet is counted per allocation and flushed to SQLite: the cost of metering.

Usage: bench/compare.py [--quick] [--out bench/out/results.md]
"""

import argparse
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
TURNPIKE = pathlib.Path(os.environ.get("TURNPIKE_BIN", ROOT / "target" / "release" / "turnpike"))
PORT = 3478
PEER_PORT = 3480
API_PORT = 3490
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
METERED = ("metered-user", "metered-password-1")
SERVERS = ["coturn", "turnpike", "turnpike+meter"]
SERVER_CPU = "1"
CLIENT_CPU = "0"
# Put before the server's command (bench/relay.py sets `nice -n -19` for server and client alike).
SERVER_PREFIX = []


def udp_in_datagrams():
    lines = pathlib.Path("/proc/net/snmp").read_text().splitlines()
    hdr = [l for l in lines if l.startswith("Udp:")]
    names, values = hdr[0].split()[1:], hdr[1].split()[1:]
    d = dict(zip(names, map(int, values)))
    return d["InDatagrams"], d.get("RcvbufErrors", 0)


def proc_cpu_seconds(pid):
    """utime+stime of a process and all its threads, in seconds."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        last = udp_in_datagrams()[0]
        while not self.stop.wait(1.0):
            now = udp_in_datagrams()[0]
            self.samples.append(now - last)
            last = now


TLS_PORT = 5349


def make_cert(tmp):
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
    return cert, key


def start_coturn(tmp):
    log = tmp / "coturn.log"
    cert, key = make_cert(tmp)
    cmd = [*SERVER_PREFIX, "taskset", "-c", SERVER_CPU, "turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
           f"--listening-port={PORT}", f"--tls-listening-port={TLS_PORT}", f"--cert={cert}", f"--pkey={key}",
           "--lt-cred-mech", "--user=u:p", "--realm=test", "--no-dtls",
           "--allow-loopback-peers", "--no-cli", f"--log-file={log}", "--simple-log", f"--pidfile={tmp}/coturn.pid",
           "--no-stdout-log", "--min-port=40000", "--max-port=60000"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_turnpike(tmp, metered, extra=()):
    cert, key = make_cert(tmp)
    data = tempfile.mkdtemp(dir=tmp)  # a fresh database per run
    cmd = [*SERVER_PREFIX, "taskset", "-c", SERVER_CPU, str(TURNPIKE), "--listen-udp", f"127.0.0.1:{PORT}",
           "--listen-tcp", f"127.0.0.1:{PORT}", "--listen-tls", f"127.0.0.1:{TLS_PORT}", "--listen-dtls", f"127.0.0.1:{TLS_PORT}",
           "--tls-cert", str(cert), "--tls-key", str(key), "--users", "u:p", "--realm", "test", "--workers", "1",
           "--danger-allow-peer-ranges", "127.0.0.0/8", "--relay-port-min", "40000", "--relay-port-max", "60000",
           "--metrics-listen", f"127.0.0.1:{API_PORT}" if metered else "", "--log-level", "warn", "--data-dir", data,
           "--admin-key", ADMIN_KEY, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def api(method, path, key, body=None):
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{API_PORT}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read() or b"null")


def make_metered_credential():
    """A tenant and a stored credential through the REST API; returns the tenant's key."""
    t = api("POST", "/v1/tenants", ADMIN_KEY, {"name": "bench"})
    key = t["secret_key"]
    api("POST", "/v1/credentials", key, {"username": METERED[0], "password": METERED[1]})
    return key


def metered_bytes(key):
    """server→peer bytes the usage API reports (after the meter's next flush)."""
    now = int(time.time())
    return api("GET", f"/v1/usage?from={now - 3600}&to={now + 3600}", key)["totals"]["server_to_peer_bytes"]


def stop(proc):
    """Stops a server this script started: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_case(server, case, tmp):
    metered = server == "turnpike+meter"
    proc = start_coturn(tmp) if server == "coturn" else start_turnpike(tmp, metered)
    time.sleep(1.5)
    if proc.poll() is not None:
        raise RuntimeError(f"{server} did not start")
    user, password = METERED if metered else ("u", "p")
    tenant_key = make_metered_credential() if metered else None
    cpu0 = proc_cpu_seconds(proc.pid)
    drops0 = udp_in_datagrams()[1]
    sampler = Sampler()
    sampler.start()
    port = TLS_PORT if "-S" in case["args"] else PORT
    cmd = ["taskset", "-c", CLIENT_CPU, "turnutils_uclient", "-u", user, "-w", password, "-e", "127.0.0.1",
           "-r", str(PEER_PORT), "-p", str(port), *case["args"], "127.0.0.1"]
    t0 = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    wall = time.time() - t0
    sampler.stop.set()
    sampler.join()
    cpu = proc_cpu_seconds(proc.pid) - cpu0
    drops = udp_in_datagrams()[1] - drops0
    metered_s2p = None
    if metered:  # the meter flushes every 2 s: wait for the count to settle
        last, deadline = -1, time.time() + 10
        while time.time() < deadline:
            metered_s2p = metered_bytes(tenant_key)
            if metered_s2p == last and metered_s2p > 0:
                break
            last = metered_s2p
            time.sleep(2.5)
    stop(proc)
    m = re.findall(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$", out, re.M)
    sent, recv = map(int, m[-1]) if m else (0, 0)
    lost = re.search(r"Total lost packets (\d+) \(([\d.]+)%\)", out)
    # UDP datagram deliveries only count the UDP legs: for TCP/TLS clients the peer legs (2 of 4)
    # are UDP, so round trips are half the UDP deliveries.
    legs = 2 if "-t" in case["args"] else 4
    rts = [s / legs for s in sampler.samples]
    busy = [r for r in rts if r > 0.2 * max(rts, default=0)] if rts else []
    return {
        "sent": sent,
        "recv": recv,
        "loss_pct": float(lost.group(2)) if lost else 100.0,
        "peak_rt": max(rts, default=0),
        "mean_rt": sum(busy) / len(busy) if busy else 0,
        "cpu_s": cpu,
        "cpu_us_per_datagram": (cpu * 1e6 / (recv * 4)) if recv else float("nan"),  # per forwarded message leg
        "rcvbuf_errors": drops,
        "wall": wall,
        "metered_s2p": metered_s2p,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter runs (for a smoke test)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "results.md"))
    a = ap.parse_args()
    n = "2000" if a.quick else "6000"
    cases = [
        {"name": "60 sessions, 100 B, 1000 pkt/s each (-z 1)", "args": ["-m", "60", "-n", n, "-l", "100", "-z", "1", "-c"]},
        {"name": "60 sessions, 1200 B, 1000 pkt/s each (-z 1)", "args": ["-m", "60", "-n", n, "-l", "1200", "-z", "1", "-c"]},
        {"name": "100 sessions, 100 B, flood (-z 0)", "args": ["-m", "100", "-n", "1500" if a.quick else "3000", "-l", "100", "-z", "0", "-c"]},
        {"name": "TCP: 40 sessions, 100 B, -z 1", "args": ["-t", "-m", "40", "-n", n, "-l", "100", "-z", "1", "-c"]},
        {"name": "TLS: 40 sessions, 100 B, -z 1", "args": ["-t", "-S", "-m", "40", "-n", n, "-l", "100", "-z", "1", "-c"]},
    ]
    if not TURNPIKE.exists():
        sys.exit(f"{TURNPIKE} missing: run `cargo build --release` first")
    peer = subprocess.Popen(["taskset", "-c", CLIENT_CPU, "turnutils_peer", "-L", "127.0.0.1", "-p", str(PEER_PORT)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = pathlib.Path(d)
            for case in cases:
                res = {}
                for server in SERVERS:
                    res[server] = run_case(server, case, tmp)
                    r = res[server]
                    print(f"{case['name']:45} {server:9} recv={r['recv']:7} loss={r['loss_pct']:.2f}% "
                          f"peak={r['peak_rt']:8.0f} rt/s mean={r['mean_rt']:8.0f} rt/s cpu={r['cpu_s']:.2f}s "
                          f"({r['cpu_us_per_datagram']:.2f} us/datagram)"
                          + (f" metered server->peer bytes={r['metered_s2p']}" if r["metered_s2p"] is not None else ""),
                          flush=True)
                rows.append((case, res))
    finally:
        peer.terminate()
        peer.wait()
    lines = [
        "| load | server | relayed msgs | loss | peak round-trips/s | mean round-trips/s | server CPU s | CPU µs per datagram |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, res in rows:
        for s in SERVERS:
            r = res[s]
            lines.append(f"| {case['name']} | {s} | {r['recv']} | {r['loss_pct']:.2f} % | {r['peak_rt']:.0f} | "
                         f"{r['mean_rt']:.0f} | {r['cpu_s']:.2f} | {r['cpu_us_per_datagram']:.2f} |")
        c = res["coturn"]
        for s in SERVERS[1:]:
            t = res[s]
            ratio_cpu = c["cpu_us_per_datagram"] / t["cpu_us_per_datagram"] if t["cpu_us_per_datagram"] else float("nan")
            ratio_rt = t["mean_rt"] / c["mean_rt"] if c["mean_rt"] else float("nan")
            lines.append(f"| {case['name']} | **ratio {s} / coturn** | | | | **{ratio_rt:.2f}×** mean rt/s | | "
                         f"**{ratio_cpu:.2f}×** less CPU per datagram |")
    table = "\n".join(lines)
    print("\n" + table)
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")


if __name__ == "__main__":
    main()
