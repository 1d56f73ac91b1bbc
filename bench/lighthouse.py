#!/usr/bin/env python3
"""Lighthouse scores of the web console (issue 12): performance, accessibility and best
practices of the overview and credentials pages, signed in as a tenant with some data (20
credentials, usage in the last hours), on the release binary and Debian's Chromium.

    bench/run lighthouse [--mobile] # scripts/install-prereqs puts lighthouse in target/lighthouse
    python3 bench/lighthouse.py     # with TURNPIKE_BIN and LIGHTHOUSE set as you like

Goals (issue 12): accessibility and best practices >= 95, performance >= 90. The script prints
the scores and the audits that lost points, and exits 1 when a goal is missed. Lighthouse needs
no network here: the console is served by the binary on 127.0.0.1 with every asset compiled in.
"""

import argparse
import http.client
import json
import os
import pathlib
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TURNPIKE = pathlib.Path(os.environ.get("TURNPIKE_BIN", ROOT / "target" / "release" / "turnpike"))
LIGHTHOUSE = pathlib.Path(os.environ.get(
    "LIGHTHOUSE", ROOT / "target" / "lighthouse" / "node_modules" / ".bin" / "lighthouse"))
ADMIN_KEY = "tpa_bench_admin_key_0123456789abcdefghijklmnop"
GOALS = {"performance": 90, "accessibility": 95, "best-practices": 95}
PAGES = ["overview", "credentials"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, body=None, key=None, cookie=None, csrf=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    if key:
        h["Authorization"] = f"Bearer {key}"
    if cookie:
        h["Cookie"] = cookie
    if csrf:
        h["X-CSRF-Token"] = csrf
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    text = r.read().decode()
    headers = r.getheaders()
    c.close()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {text}")
    return (json.loads(text) if text else None), headers


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the overview page only")
    ap.add_argument("--out", help="write the JSON reports into this directory")
    ap.add_argument("--mobile", action="store_true",
                    help="Lighthouse's mobile defaults (phone screen, simulated slow 4G and CPU) "
                         "instead of a desktop screen without throttling")
    args = ap.parse_args()
    if not LIGHTHOUSE.exists():
        sys.exit(f"{LIGHTHOUSE} not found: run scripts/install-prereqs (installs it with npm)")
    chrome = shutil.which("chromium")
    if not chrome:
        sys.exit("chromium not found (scripts/install-prereqs installs it)")
    work = pathlib.Path(tempfile.mkdtemp(prefix="turnpike-lighthouse-"))
    port, api_port = free_port(), free_port()
    cfg = work / "turnpike.toml"
    cfg.write_text(
        f'listen_udp = ["127.0.0.1:{port}"]\nlisten_tcp = ["127.0.0.1:{port}"]\n'
        "listen_tls = []\nlisten_dtls = []\n"
        f'metrics_listen = "127.0.0.1:{api_port}"\ndata_dir = "{work / "data"}"\n'
        f'admin_key = "{ADMIN_KEY}"\nusage_flush_interval = "200ms"\n'
        "demo_enabled = false\n"
    )
    log = open(work / "turnpike.log", "w")
    proc = subprocess.Popen([str(TURNPIKE), "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    failed = []
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((work / "turnpike.log").read_text()[-2000:])
            try:
                c = http.client.HTTPConnection("127.0.0.1", api_port, timeout=1)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        tenant, _ = call(api_port, "POST", "/v1/tenants", {"name": "acme"}, key=ADMIN_KEY)
        key = tenant["secret_key"]
        for i in range(20):
            call(api_port, "POST", "/v1/credentials",
                 {"label": f"team-{i % 4}", "tags": ["video"]}, key=key)
        # Usage in the last hours, written beside the running server (as a meter would).
        db = sqlite3.connect(work / "data" / "turnpike.db", timeout=10)
        now_h = int(time.time()) // 3600
        t = time.gmtime()
        month_h = int(time.mktime((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, 0)) - time.timezone) // 3600
        tid = tenant["tenant"]["id"]
        for h in range(now_h - 40, now_h + 1):
            b = 1_000_000 * (1 + h % 7)
            rows = [
                ("usage_hourly", "tenant_id, credential_id, user_id, hour", (tid, "", f"user-{h % 5}", h)),
                ("usage_tenant_hourly", "tenant_id, hour", (tid, h)),
            ]
            if h >= month_h:
                rows.append(("usage_monthly", "tenant_id, month, credential_id, user_id", (tid, month_h, "", f"user-{h % 5}")))
            for table, key_cols, key_vals in rows:
                db.execute(
                    f"INSERT INTO {table} ({key_cols}, c2s_bytes, s2c_bytes, allocations) "
                    f"VALUES ({', '.join('?' * len(key_vals))}, ?, ?, 1) "
                    f"ON CONFLICT DO UPDATE SET c2s_bytes = c2s_bytes + excluded.c2s_bytes",
                    (*key_vals, b, b))
        db.commit()
        db.close()
        session, headers = call(api_port, "POST", "/console/session", {"key": key})
        cookie = dict((k.lower(), v) for k, v in headers)["set-cookie"].split(";", 1)[0]
        scores = {}
        for page in PAGES[:1] if args.quick else PAGES:
            report = work / f"{page}.json"
            url = f"http://127.0.0.1:{api_port}/console#{page}"
            subprocess.run(
                [str(LIGHTHOUSE), url, "--quiet", "--output=json", f"--output-path={report}",
                 "--only-categories=performance,accessibility,best-practices",
                 f"--extra-headers={json.dumps({'Cookie': cookie})}",
                 "--chrome-flags=--headless=new --no-sandbox --disable-gpu"]
                + ([] if args.mobile else
                   ["--form-factor=desktop", "--screenEmulation.disabled", "--throttling-method=provided"]),
                check=True, env={**os.environ, "CHROME_PATH": chrome}, timeout=300)
            r = json.loads(report.read_text())
            scores[page] = {c: round(r["categories"][c]["score"] * 100) for c in GOALS}
            lost = [(a["id"], a["title"]) for a in r["audits"].values()
                    if a.get("score") is not None and a["score"] < 1 and a.get("scoreDisplayMode") in ("binary", "numeric")
                    and any(ref["id"] == a["id"] for c in ("accessibility", "best-practices") for ref in r["categories"][c]["auditRefs"] if ref.get("weight", 0) > 0)]
            print(f"{page}: " + ", ".join(f"{c} {s}" for c, s in scores[page].items()))
            metrics = ["first-contentful-paint", "largest-contentful-paint", "total-blocking-time",
                       "cumulative-layout-shift", "speed-index"]
            print("    " + ", ".join(f"{m} {r['audits'][m]['displayValue']} ({round(r['audits'][m]['score'] * 100)})"
                                     for m in metrics if m in r["audits"]))
            for aid, title in lost:
                print(f"    lost: {aid}: {title}")
            for c, goal in GOALS.items():
                if scores[page][c] < goal:
                    failed.append(f"{page} {c} {scores[page][c]} < {goal}")
            if args.out:
                pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
                shutil.copy(report, pathlib.Path(args.out) / report.name)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        sys.exit("goals missed: " + "; ".join(failed))


if __name__ == "__main__":
    main()
