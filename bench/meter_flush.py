#!/usr/bin/env python3
"""The meter's writes with many live allocations (issue 17): each flush writes one usage delta
per live allocation (its hourly row and the rollups) in one transaction, and the allocation log
one row per allocation when it starts and when it ends. `crates/store/examples/meter_flush.rs`
times those writes against a real SQLite file and a real PostgreSQL server (started here on
127.0.0.1), with ALLOCATIONS allocations of distinct credentials and users, over FLUSHES flushes.
The meter flushes every `usage_flush_interval` (2 s by default): it keeps up while a flush
takes less than that.

Bounded: fixed sizes; the PostgreSQL cluster is stopped at the end.

Usage: bench/meter_flush.py [--quick] [--allocations N] [--flushes K] [--stores sqlite,postgres]
"""

import argparse
import json
import os
import pathlib
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 allocations, 3 flushes, debug build (a smoke run)")
    ap.add_argument("--allocations", type=int, default=20_000)
    ap.add_argument("--flushes", type=int, default=5)
    ap.add_argument("--stores", default="sqlite,postgres")
    args = ap.parse_args()
    n, flushes = (2_000, 3) if args.quick else (args.allocations, args.flushes)
    profile = [] if args.quick else ["--release"]
    subprocess.run(["cargo", "build", "--locked", *profile, "-p", "turnpike-store", "--example", "meter_flush"],
                   cwd=ROOT, check=True)
    exe = ROOT / "target" / ("debug" if args.quick else "release") / "examples" / "meter_flush"
    results = []
    with tempfile.TemporaryDirectory(prefix="turnpike-meter-bench-") as tmp:
        work = pathlib.Path(tmp)
        os.chmod(work, 0o755)
        pg_dir = work / "pg"
        pg_url = None
        try:
            for store in args.stores.split(","):
                if store == "sqlite":
                    url = f"sqlite://{work / 'meter.db'}"
                else:
                    pg_url = subprocess.run([ROOT / "scripts" / "pg-test-server", "start", str(pg_dir)], check=True,
                                            capture_output=True, text=True).stdout.strip()
                    url = pg_url
                out = subprocess.run([exe, url, str(n), str(flushes)], check=True, capture_output=True,
                                     text=True, timeout=600).stdout
                r = json.loads(out.strip().splitlines()[-1])
                r["store"] = store
                assert r["allocations"] == n and r["usage_flush_ms_median"] > 0, r
                results.append(r)
                print(r, flush=True)
        finally:
            if pg_url:
                subprocess.run([ROOT / "scripts" / "pg-test-server", "stop", str(pg_dir)])
    print("\n| store | live allocations | usage flush ms: median / worst | usage rows/s | allocation log (start or end of all) ms | log rows/s |")
    print("|" + "---|" * 6)
    for r in results:
        print(f"| {r['store']} | {r['allocations']:,} | {r['usage_flush_ms_median']:.0f} / {r['usage_flush_ms_max']:.0f} "
              f"| {r['usage_rows_per_s']:,.0f} | {r['allocation_log_ms_max']:.0f} | {r['allocation_rows_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
