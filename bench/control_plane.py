#!/usr/bin/env python3
"""The control plane at scale (issue 17): what a write, an idle node, a start and a stored
credential cost with N credentials stored, on SQLite (one node) and PostgreSQL (three nodes on
one database).

For each store and each N: a fresh database is migrated by Turnpike itself (which also makes the
measured tenants through the API), then filled by bulk insert (N credentials over N/100
tenants, 10,000 of them labelled for the bulk delete; the fill is not what is measured and is
kept out of the change feed), and then, with the release binary:

- start-up: spawn to `/readyz` 200 (the directory is loaded before the listeners answer), and
  the load time the node logs;
- memory: resident memory after start, and per stored credential against the N = 0 node;
- idle CPU: utime + stime of each node over a quiet window;
- writes: 4 clients (one tenant and one keep-alive connection each) create, disable, enable and
  delete credentials through `POST/PATCH/DELETE /v1/credentials`: latency per operation (p50,
  p99) and the node's CPU per write; on PostgreSQL also the CPU the two other nodes spend
  applying the same writes from the feed;
- propagation (PostgreSQL): 50 credentials disabled on node A, each timed from A's answer to
  node B's refusal of an Allocate (TURN over TCP, tests/interop/turnclient.py);
- bulk delete: `DELETE /v1/credentials?label=bulk` of 10,000 credentials.

Bounded: fixed counts, 5 s timeouts, every process and the PostgreSQL cluster stopped at the
end. Traffic stays on 127.0.0.1.

Usage: bench/control_plane.py [--quick] [--sizes 0,1000,100000,1000000] [--stores sqlite,postgres]
"""

import argparse
import hashlib
import http.client
import json
import os
import pathlib
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))
import turnclient as tc  # noqa: E402

TURNPIKE = pathlib.Path(os.environ.get("TURNPIKE_BIN", ROOT / "target" / "release" / "turnpike"))
ADMIN_KEY = "tpa_bench_admin_key_0123456789abcdefghijklmnop"
REALM = "bench"
PASSWORD = "bench-password"
CLIENTS = 4
BULK = 10_000
PER_TENANT = 100
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


class Node:
    """One Turnpike process on its own ports and data directory."""

    def __init__(self, work, db_url, name):
        self.port, self.api_port = free_port(), free_port()
        self.dir = work / name
        self.dir.mkdir(exist_ok=True)
        cfg = self.dir / "turnpike.toml"
        cfg.write_text(
            f'realm = "{REALM}"\n'
            f'listen_udp = ["127.0.0.1:{self.port}"]\nlisten_tcp = ["127.0.0.1:{self.port}"]\n'
            "listen_tls = []\nlisten_dtls = []\n"
            f'metrics_listen = "127.0.0.1:{self.api_port}"\n'
            f'data_dir = "{self.dir / "data"}"\n'
            f'database_url = "{db_url}"\nadmin_key = "{ADMIN_KEY}"\n'
            "api_rate_per_sec = 1000000\napi_rate_burst = 1000000\n"
            "demo_enabled = false\nlog_level = \"info\"\n"
        )
        self.log = open(self.dir / "turnpike.log", "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([str(TURNPIKE), "--config", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = t0 + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"turnpike exited: {(self.dir / 'turnpike.log').read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("turnpike not ready after 120 s")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=1)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.02)
        self.start_seconds = time.monotonic() - t0

    def load_ms(self):
        for line in reversed((self.dir / "turnpike.log").read_text().splitlines()):
            if "directory loaded" in line and "ms=" in line:
                return int(line.split("ms=")[1].split()[0])
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Client:
    """A keep-alive API connection with one key."""

    def __init__(self, port, key):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.key = key

    def call(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {self.key}"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {raw[:300]!r}")
        return json.loads(raw) if raw else None


def keys(username):
    text = f"{username}:{REALM}:{PASSWORD}".encode()
    return hashlib.md5(text).digest(), hashlib.sha256(text).digest()


def fill_rows(n, bulk_tenant):
    """(tenant rows, credential rows) for the bulk insert: `n` credentials over n/100 tenants,
    the first BULK (or n, if fewer) labelled `bulk` in `bulk_tenant`."""
    now = int(time.time())
    trows = [(f"ten_fill{i:020x}", f"fill-{i}", now) for i in range(max(1, n // PER_TENANT))]
    creds = []
    for i in range(n):
        user = f"fill-{i}"
        md5, sha = keys(user)
        tenant, label = (bulk_tenant, "bulk") if i < BULK else (trows[i % len(trows)][0], None)
        creds.append((f"cred_fill{i:019x}", tenant, user, md5, sha, label, now))
    return trows, creds


def fill_sqlite(path, n, bulk_tenant):
    trows, creds = fill_rows(n, bulk_tenant)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    with db:
        db.executemany("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)", trows)
        db.executemany(
            "INSERT INTO credentials (id, tenant_id, username, key_md5, key_sha256, label, tags, enabled, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, '', 1, ?)", creds)
        db.execute("DELETE FROM changes")  # the fill is not a change any node has to apply
    db.execute("ANALYZE")
    db.close()


def psql(url, script):
    """Runs an SQL script (COPY data included) with psql; stops at the first error."""
    subprocess.run([PG_BIN / "psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-f", "-"],
                   input=script, check=True, stdout=subprocess.DEVNULL, text=True)


def fill_postgres(url, n, bulk_tenant):
    trows, creds = fill_rows(n, bulk_tenant)
    out = ["SET session_replication_role = replica;",  # no triggers: kept out of the feed
           "COPY tenants (id, name, created_at) FROM STDIN;"]
    out += [f"{a}\t{b}\t{c}" for a, b, c in trows] + ["\\."]
    out.append("COPY credentials (id, tenant_id, username, key_md5, key_sha256, label, tags, enabled, created_at) FROM STDIN;")
    for cid, tid, user, md5, sha, label, now in creds:
        out.append(f"{cid}\t{tid}\t{user}\t\\\\x{md5.hex()}\t\\\\x{sha.hex()}\t{label or chr(92) + 'N'}\t\ttrue\t{now}")
    out += ["\\.", "ANALYZE;"]
    psql(url, "\n".join(out) + "\n")


def allocate_code(port, user):
    return tc.allocate_status(port, user, PASSWORD)


def writes(node, tenant_keys, cycles):
    """CLIENTS threads, each `cycles` × (create, disable, enable, delete); returns latencies
    by operation (seconds) and the number of writes."""
    lat = {"create": [], "disable": [], "enable": [], "delete": []}
    lock = threading.Lock()
    errors = []

    def run(idx, key):
        c = Client(node.api_port, key)
        mine = {k: [] for k in lat}
        try:
            for i in range(cycles):
                t = time.perf_counter()
                cid = c.call("POST", "/v1/credentials", {"username": f"w{idx}-{i}-{os.urandom(3).hex()}",
                                                         "password": PASSWORD})["credential"]["id"]
                mine["create"].append(time.perf_counter() - t)
                t = time.perf_counter()
                c.call("PATCH", f"/v1/credentials/{cid}", {"enabled": False})
                mine["disable"].append(time.perf_counter() - t)
                t = time.perf_counter()
                c.call("PATCH", f"/v1/credentials/{cid}", {"enabled": True})
                mine["enable"].append(time.perf_counter() - t)
                t = time.perf_counter()
                c.call("DELETE", f"/v1/credentials/{cid}")
                mine["delete"].append(time.perf_counter() - t)
        except Exception as e:  # reported, and the run fails below
            errors.append(repr(e))
        with lock:
            for k, v in mine.items():
                lat[k] += v

    threads = [threading.Thread(target=run, args=(i, k)) for i, k in enumerate(tenant_keys)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    if errors:
        raise RuntimeError(f"writes failed: {errors[:3]}")
    return lat, 4 * cycles * len(tenant_keys)


def measure(store, n, args, work, pg_url=None):
    """One row of results for `store` with `n` stored credentials."""
    run = work / f"{store}-{n}"
    run.mkdir()
    if store == "sqlite":
        db_path = run / "control.db"
        url = f"sqlite://{db_path}"
    else:
        name = f"bench_{n}_{os.urandom(3).hex()}"
        psql(pg_url, f"CREATE DATABASE {name}")
        url = pg_url.rsplit("/", 1)[0] + "/" + name
    # Migrate, and make the measured tenants through the API.
    first = Node(run, url, "setup")
    admin = Client(first.api_port, ADMIN_KEY)
    tenant_keys = [admin.call("POST", "/v1/tenants", {"name": f"writer-{i}"})["secret_key"] for i in range(CLIENTS)]
    bulk = admin.call("POST", "/v1/tenants", {"name": "bulk"})
    first.stop()
    t0 = time.monotonic()
    if store == "sqlite":
        fill_sqlite(db_path, n, bulk["tenant"]["id"])
    else:
        fill_postgres(url, n, bulk["tenant"]["id"])
    fill_s = time.monotonic() - t0

    nodes = [Node(run, url, "a")]
    if store == "postgres":
        nodes += [Node(run, url, "b"), Node(run, url, "c")]
    try:
        a = nodes[0]
        row = {"store": store, "n": n, "fill_s": fill_s, "start_s": a.start_seconds, "load_ms": a.load_ms(),
               "rss_mib": rss_mib(a.proc.pid)}
        if n:
            # A filled credential works (the fill wrote what the API would have).
            code = allocate_code(a.port, f"fill-{n - 1}")
            assert code is None, f"a filled credential was refused: {code}"
        time.sleep(2)
        c0 = [cpu_seconds(x.proc.pid) for x in nodes]
        time.sleep(args.idle)
        row["idle_pct"] = [100 * (cpu_seconds(x.proc.pid) - c) / args.idle for x, c in zip(nodes, c0)]

        c0 = [cpu_seconds(x.proc.pid) for x in nodes]
        t0 = time.monotonic()
        lat, count = writes(a, tenant_keys, args.cycles)
        wall = time.monotonic() - t0
        cpu = [cpu_seconds(x.proc.pid) - c for x, c in zip(nodes, c0)]
        row.update(writes=count, writes_per_s=count / wall, cpu_ms_per_write=1000 * cpu[0] / count,
                   other_nodes_cpu_ms_per_write=[1000 * c / count for c in cpu[1:]],
                   lat={k: (1000 * statistics.median(v), 1000 * pct(v, 0.99)) for k, v in lat.items()},
                   all_p99_ms=1000 * pct(sum(lat.values(), []), 0.99))

        if store == "postgres":
            client = Client(a.api_port, tenant_keys[0])
            delays = []
            for i in range(args.propagation):
                user = f"prop-{i}-{os.urandom(3).hex()}"
                cid = client.call("POST", "/v1/credentials", {"username": user, "password": PASSWORD})["credential"]["id"]
                deadline = time.monotonic() + 5
                while allocate_code(nodes[1].port, user) is not None:
                    assert time.monotonic() < deadline, "node B never accepted a new credential"
                client.call("PATCH", f"/v1/credentials/{cid}", {"enabled": False})
                t = time.monotonic()
                while allocate_code(nodes[1].port, user) != 401:
                    assert time.monotonic() - t < 5, "node B still accepts a disabled credential after 5 s"
                delays.append(time.monotonic() - t)
            row["propagation_ms"] = (1000 * statistics.median(delays), 1000 * max(delays))

        if n:
            bulk_client = Client(a.api_port, bulk["secret_key"])
            t0 = time.monotonic()
            r = bulk_client.call("DELETE", "/v1/credentials?label=bulk")
            row["bulk_delete_s"] = time.monotonic() - t0
            row["bulk_deleted"] = r.get("deleted") if isinstance(r, dict) else r
        return row
    finally:
        for x in nodes:
            x.stop()


def report(rows):
    base = {r["store"]: r["rss_mib"] for r in rows if r["n"] == 0}
    print("\n| store | stored credentials | fill s | start s (load ms) | RSS MiB | bytes/credential | idle CPU % (per node) "
          "| writes/s | CPU ms/write (other nodes) | p50/p99 ms create · disable · enable · delete | p99 all ms "
          "| propagation ms (median/max) | bulk delete 10k s |")
    print("|" + "---|" * 13)
    for r in rows:
        per = f"{(r['rss_mib'] - base[r['store']]) * 1048576 / r['n']:.0f}" if r["n"] and r["store"] in base else ""
        lat = " · ".join(f"{p50:.1f}/{p99:.1f}" for p50, p99 in r["lat"].values())
        others = ", ".join(f"{c:.2f}" for c in r["other_nodes_cpu_ms_per_write"])
        prop = "{:.0f}/{:.0f}".format(*r["propagation_ms"]) if "propagation_ms" in r else ""
        bulk = f"{r['bulk_delete_s']:.2f} ({r['bulk_deleted']})" if "bulk_delete_s" in r else ""
        print(f"| {r['store']} | {r['n']:,} | {r['fill_s']:.1f} | {r['start_s']:.2f} ({r['load_ms']}) | {r['rss_mib']:.0f} "
              f"| {per} | {', '.join(f'{x:.2f}' for x in r['idle_pct'])} | {r['writes_per_s']:.0f} "
              f"| {r['cpu_ms_per_write']:.2f} ({others}) | {lat} | {r['all_p99_ms']:.1f} | {prop} | {bulk} |")


def main():
    global PG_BIN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and short windows (a smoke run)")
    ap.add_argument("--sizes", help="comma-separated credential counts (0 is the memory baseline)")
    ap.add_argument("--stores", default="sqlite,postgres")
    args = ap.parse_args()
    sizes = [int(x) for x in (args.sizes or ("0,2000" if args.quick else "0,1000,100000,1000000")).split(",")]
    args.idle = 3 if args.quick else 10
    args.cycles = 10 if args.quick else 250
    args.propagation = 10 if args.quick else 50
    if not TURNPIKE.exists():
        sys.exit(f"{TURNPIKE} is missing: run bench/run (or cargo build --release -p turnpike)")
    PG_BIN = pathlib.Path(sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))[-1])
    rows = []
    with tempfile.TemporaryDirectory(prefix="turnpike-cp-bench-") as tmp:
        work = pathlib.Path(tmp)
        os.chmod(work, 0o755)
        pg_dir = work / "pg"
        pg_url = None
        try:
            if "postgres" in args.stores:
                pg_url = subprocess.run([ROOT / "scripts" / "pg-test-server", "start", str(pg_dir)], check=True,
                                        capture_output=True, text=True).stdout.strip()
            for store in args.stores.split(","):
                for n in sizes:
                    print(f"{store}: {n:,} stored credentials ...", flush=True)
                    rows.append(measure(store, n, args, work, pg_url))
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            if pg_url:
                subprocess.run([ROOT / "scripts" / "pg-test-server", "stop", str(pg_dir)])
    report(rows)


if __name__ == "__main__":
    main()
