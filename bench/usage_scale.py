#!/usr/bin/env python3
"""Usage reports at scale (issue 17): a year of hourly usage rows for many users of one tenant,
and how long the reports a billing page asks for take.

The store is migrated by Turnpike, then `usage_hourly` is filled by bulk insert: USERS users
(one stored-credential id each), each with traffic in HOURS_PER_WEEK hours of every week of the
last year (so USERS × HOURS_PER_WEEK × 52 rows). Then, with the release binary, each request is
timed (median of 3, after one warm-up):

- `GET /v1/usage` for the last 30 days grouped by month and by user, paged 100 users at a time:
  the first page, a page in the middle, and the last page;
- the same report unpaged (every user at once), for comparison;
- Metered's `current_usage_by_user` (v1 and v2), `current_usage_by_date` and `current_usage`,
  with every user active in the current billing period (a row in its first hour).

Bounded: fixed sizes, 120 s timeouts; the PostgreSQL cluster and the node are stopped at the
end. Traffic stays on 127.0.0.1.

Usage: bench/usage_scale.py [--quick] [--users N] [--stores sqlite,postgres]
"""

import argparse
import datetime
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import control_plane as cp  # noqa: E402

HOURS_PER_WEEK = 2
PAGE = 100


def month_start_hour(now):
    d = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    return int(datetime.datetime(d.year, d.month, 1, tzinfo=datetime.timezone.utc).timestamp()) // 3600


def rows(tenant, users, now):
    """(tenant, credential, user, hour, c2s_bytes, s2c_bytes) for the fill. Every user also has
    usage in the first hour of the current month, so that the current billing period holds all
    of them (the end-of-month worst case for the Metered reports, whatever today's date)."""
    last = now // 3600
    first = month_start_hour(now)
    for u in range(users):
        hours = set()
        for week in range(52):
            for k in range(HOURS_PER_WEEK):
                # Spread over the week, different per user.
                hours.add(last - week * 168 - (u * 7 + k * 61) % 168)
        hours.add(first)
        for hour in sorted(hours):
            yield (tenant, f"cred_u{u:08d}", f"user-{u:08d}", hour, 1000 + u % 100, 2000)


def rollup_backfill(dialect):
    """The migration's own statements that roll existing hourly rows up (the node keeps the
    rollups itself; a bulk fill behind its back must roll up the same way)."""
    sql = next((cp.ROOT / "crates/store/migrations" / dialect).glob("*_usage_rollups.sql")).read_text()
    return sql.split("-- What was recorded before this version.", 1)[1]


def fill_sqlite(path, tenant, users, now):
    import sqlite3

    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT OR IGNORE INTO usage_hourly (tenant_id, credential_id, user_id, hour, c2s_bytes, s2c_bytes,"
            " c2s_packets, s2c_packets, allocations) VALUES (?, ?, ?, ?, ?, ?, 1, 1, 1)",
            rows(tenant, users, now))
    with db:
        db.executescript(rollup_backfill("sqlite"))
    db.execute("ANALYZE")
    db.close()


def fill_postgres(url, tenant, users, now):
    lines = ["COPY usage_hourly (tenant_id, credential_id, user_id, hour, c2s_bytes, s2c_bytes,"
             " c2s_packets, s2c_packets, allocations) FROM STDIN;"]
    for r in rows(tenant, users, now):
        lines.append("\t".join(str(x) for x in r) + "\t1\t1\t1")
    lines += ["\\.", rollup_backfill("postgres"), "ANALYZE;"]
    cp.psql(url, "\n".join(lines) + "\n")


def timed(client, path, repeat=3):
    client.call("GET", path)  # warm-up
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        body = client.call("GET", path)
        out.append(time.perf_counter() - t)
    return statistics.median(out), body


def measure(store, users, work, pg_url):
    run = work / store
    run.mkdir()
    if store == "sqlite":
        db_path = run / "control.db"
        url = f"sqlite://{db_path}"
    else:
        name = f"usage_{os.urandom(3).hex()}"
        cp.psql(pg_url, f"CREATE DATABASE {name}")
        url = pg_url.rsplit("/", 1)[0] + "/" + name
    setup = cp.Node(run, url, "setup")
    admin = cp.Client(setup.api_port, cp.ADMIN_KEY)
    t = admin.call("POST", "/v1/tenants", {"name": "big-app"})
    setup.stop()
    now = int(time.time())
    t0 = time.monotonic()
    if store == "sqlite":
        fill_sqlite(db_path, t["tenant"]["id"], users, now)
    else:
        fill_postgres(url, t["tenant"]["id"], users, now)
    fill_s = time.monotonic() - t0
    node = cp.Node(run, url, "a")
    try:
        c = cp.Client(node.api_port, t["secret_key"])
        c.conn.timeout = 120
        rng = f"from={now - 30 * 86400}&to={now}&group_by=month&by=user"
        result = {"store": store, "users": users, "rows": sum(1 for _ in rows("", users, now)), "fill_s": fill_s}
        s, first = timed(c, f"/v1/usage?{rng}&limit={PAGE}")
        assert len({g["key"] for g in first["groups"]}) == PAGE and first.get("next_after"), first.get("next_after")
        result["page_first_s"] = s
        mid = f"user-{users // 2:08d}"
        s, body = timed(c, f"/v1/usage?{rng}&limit={PAGE}&after={mid}")
        assert body["groups"][0]["key"] > mid
        result["page_middle_s"] = s
        last = f"user-{users - PAGE // 2:08d}"
        s, body = timed(c, f"/v1/usage?{rng}&limit={PAGE}&after={last}")
        assert "next_after" not in body and len({g["key"] for g in body["groups"]}) == PAGE // 2 - 1
        result["page_last_s"] = s
        s, body = timed(c, f"/v1/usage?{rng}", repeat=1)
        result["unpaged_s"] = s
        result["unpaged_groups"] = len({g["key"] for g in body["groups"]})
        s, body = timed(c, f"/api/v2/turn/current_usage_by_user?secretKey={t['secret_key']}", repeat=1)
        # A page of 100 (Metered's page size), the heaviest users first; every user is in the period.
        assert len(body["data"]) == min(100, users) and body["has_more"] == (users > 100), body["has_more"]
        for name, path in [("metered_current", "/api/v1/turn/current_usage"),
                           ("metered_by_user_v1", "/api/v1/turn/current_usage_by_user"),
                           ("metered_by_user_v2", "/api/v2/turn/current_usage_by_user"),
                           ("metered_by_date", "/api/v1/turn/current_usage_by_date")]:
            s, _ = timed(c, f"{path}?secretKey={t['secret_key']}", repeat=1)
            result[name + "_s"] = s
        return result
    finally:
        node.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 users (a smoke run)")
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--stores", default="sqlite,postgres")
    args = ap.parse_args()
    users = 2_000 if args.quick else args.users
    cp.PG_BIN = pathlib.Path(sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"),
                                    key=lambda p: int(p.parent.name))[-1])
    results = []
    with tempfile.TemporaryDirectory(prefix="turnpike-usage-bench-") as tmp:
        work = pathlib.Path(tmp)
        os.chmod(work, 0o755)
        pg_dir = work / "pg"
        pg_url = None
        try:
            if "postgres" in args.stores:
                pg_url = subprocess.run([cp.ROOT / "scripts" / "pg-test-server", "start", str(pg_dir)], check=True,
                                        capture_output=True, text=True).stdout.strip()
            for store in args.stores.split(","):
                print(f"{store}: {users:,} users ...", flush=True)
                results.append(measure(store, users, work, pg_url))
                print(results[-1], flush=True)
        finally:
            if pg_url:
                subprocess.run([cp.ROOT / "scripts" / "pg-test-server", "stop", str(pg_dir)])
    print("\n| store | users | hourly rows | fill s | page of 100 users: first / middle / last s | unpaged month by user s (users) "
          "| Metered by user v1 / v2 s | Metered by date s | Metered current s |")
    print("|" + "---|" * 9)
    for r in results:
        print(f"| {r['store']} | {r['users']:,} | {r['rows']:,} | {r['fill_s']:.0f} "
              f"| {r['page_first_s']:.3f} / {r['page_middle_s']:.3f} / {r['page_last_s']:.3f} "
              f"| {r['unpaged_s']:.2f} ({r['unpaged_groups']:,}) | {r['metered_by_user_v1_s']:.3f} / {r['metered_by_user_v2_s']:.3f} "
              f"| {r['metered_by_date_s']:.3f} | {r['metered_current_s']:.3f} |")


if __name__ == "__main__":
    main()
