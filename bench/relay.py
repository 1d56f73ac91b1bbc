#!/usr/bin/env python3
"""Turnpike and coturn side by side under the same turnload load, in one run (issue 14).

Each case starts each server afresh on 127.0.0.1 pinned to CPU 1 (`taskset -c 1`; Turnpike with
`--workers 1`), runs `turnload` pinned to CPU 0 (`taskset -c 0`: clients, echo peers and
measurement in one thread), stops the server, and goes on with the next server: same ports,
same static user u:p in realm "test", same relay port range, same loads. Three servers:

- coturn: Debian's turnserver 4.6.1, static user (--user=u:p), no CLI, TLS with the test cert;
- turnpike: static user (--users u:p);
- turnpike+meter: a stored credential created through the REST API (bench/compare.py's
  helpers), so every relayed packet is metered per allocation and written to SQLite.

What is compared (ratios Turnpike / coturn):
- UDP ChannelData relay, 100 B and 1200 B, one way and two way: an open-loop ramp; throughput
  = the highest delivered rate of a step with loss <= 0.1 %; server CPU per relayed datagram
  at the highest offered rate every server carried with <= 0.1 % loss;
- TCP and TLS client legs: CPU per relayed datagram at a fixed rate;
- latency: RTT p50/p99 at 50 % of coturn's saturation rate (100 B, two way);
- allocation setup rate and server RSS per allocation (static user, and REST shared secret);
- the metered path vs the static user.

Usage: bench/relay.py [--quick] [--out bench/out/relay.md] [--json bench/out/relay.json]
Every turnload run is bounded by its own step times and a subprocess timeout; every server
started here is stopped here (try/finally), by its own process handle. The work runs in a child
process in a session of its own (for its autogroup priority, see own_autogroup); this process
forwards SIGINT/SIGTERM to it and, when it ends, ends whatever is left of the child's process
group, so an interrupted run (Ctrl-C, a CI job killed) leaves no server or turnload behind.
"""

import argparse
import json
import os
import pathlib
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import compare  # noqa: E402  (start_coturn/start_turnpike/make_metered_credential, same ports)

ROOT = compare.ROOT
SECRET = "bench-rest-secret-0123456789"
# Server and generator both run at nice -19, so builds or tests running on the machine at the
# same time take little of their cores (a CFS weight of about 70:1 against nice 0).
NICE = ["nice", "-n", "-19"]
compare.SERVER_PREFIX = NICE
LOSS_OK = 0.1  # per cent


def turnload_bin():
    if os.environ.get("TURNLOAD_BIN"):
        return pathlib.Path(os.environ["TURNLOAD_BIN"])
    release = "/release/" in str(compare.TURNPIKE)
    cmd = ["cargo", "build", "--locked", "-q", "-p", "turnload"] + (["--release"] if release else [])
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=1200)
    return ROOT / "target" / ("release" if release else "debug") / "turnload"


def start_server(server, tmp, rest, turnpike_args=()):
    if server == "coturn":
        if not rest:
            return compare.start_coturn(tmp), None
        cmd = [*NICE, "taskset", "-c", compare.SERVER_CPU, "turnserver", "-n", "--listening-ip=127.0.0.1",
               "--relay-ip=127.0.0.1", f"--listening-port={compare.PORT}", "--no-tls", "--no-dtls",
               "--use-auth-secret", f"--static-auth-secret={SECRET}", "--realm=test",
               "--allow-loopback-peers", "--no-cli", f"--log-file={tmp}/coturn-rest.log", "--simple-log",
               f"--pidfile={tmp}/coturn.pid", "--no-stdout-log", "--min-port=40000", "--max-port=60000"]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), None
    metered = server == "turnpike+meter"
    proc = compare.start_turnpike(tmp, metered, turnpike_args) if not rest else start_turnpike_rest(tmp)
    return proc, metered


def start_turnpike_rest(tmp):
    data = tempfile.mkdtemp(dir=tmp)
    cmd = [*NICE, "taskset", "-c", compare.SERVER_CPU, str(compare.TURNPIKE), "--listen-udp", f"127.0.0.1:{compare.PORT}",
           "--listen-tcp", f"127.0.0.1:{compare.PORT}", "--shared-secrets", SECRET, "--realm", "test",
           "--workers", "1", "--danger-allow-peer-ranges", "127.0.0.0/8", "--relay-port-min", "40000",
           "--relay-port-max", "60000", "--log-level", "warn", "--data-dir", data]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stun_answers(port):
    """True when a STUN Binding request to 127.0.0.1:port is answered within 0.2 s."""
    import socket
    req = struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, os.urandom(12))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        try:
            s.sendto(req, ("127.0.0.1", port))
            return s.recv(2048)[:2] == b"\x01\x01"
        except OSError:
            return False


def wait_ready(proc, server, metered):
    """Until the server answers STUN (and its API, when metered, is up); at most 20 s."""
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{server} exited at start (code {proc.returncode})")
        if stun_answers(compare.PORT):
            break
        time.sleep(0.1)
    else:
        raise RuntimeError(f"{server} did not answer STUN within 20 s")
    while metered and time.time() < deadline:
        try:
            compare.api("GET", "/v1/tenants", compare.ADMIN_KEY)
            break
        except Exception:  # noqa: BLE001 (not up yet)
            time.sleep(0.1)
    time.sleep(0.3)  # let the other listeners (TCP, TLS) finish starting


def run_turnload(tl, server, proc, args, tmp, name, timeout):
    out = tmp / f"{name}-{server}.json"
    user, password = ("u", "p")
    auth = ["--user", user, "--password", password]
    if server == "turnpike+meter":
        compare.make_metered_credential()
        auth = ["--user", compare.METERED[0], "--password", compare.METERED[1]]
    if "--secret" in args:
        auth = ["--user", "bench"]
    cmd = [*NICE, "taskset", "-c", compare.CLIENT_CPU, str(tl), "--server-pid", str(proc.pid), "--label", server,
           "--json", str(out), *auth, *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    sys.stdout.write(r.stdout)
    if r.returncode != 0:
        raise RuntimeError(f"turnload failed against {server} ({name}): {r.stderr.strip()[-2000:]}\n"
                           f"command: {' '.join(cmd)}")
    return json.loads(out.read_text()), " ".join(["turnload", *args])


def run_case(tl, case, servers, tmp):
    res = {}
    for server in servers:
        proc = None
        try:
            proc, metered = start_server(server, tmp, case.get("rest", False), case.get("turnpike_args", ()))
            wait_ready(proc, server, metered)
            res[server] = run_turnload(tl, server, proc, case["args"], tmp, case["name"], case["timeout"])
        finally:
            if proc is not None:
                compare.stop(proc)
    return res


def counted_steps(rep):
    """The ramp's steps up to (not including) its first step with more than 0.1 % loss, and that
    first lossy step (None when every step was within 0.1 %). A step after the first lossy one
    does not count, even when it lost nothing: a server that drops packets at 50k/s has not
    shown it carries 80k/s because one later step happened to be clean."""
    for i, s in enumerate(rep["steps"]):
        if s["loss_pct"] > LOSS_OK:
            return rep["steps"][:i], s
    return list(rep["steps"]), None


def throughput(rep):
    """The delivered rate of the last step before the first step with > 0.1 % loss, whether
    there was such a step (saturated; otherwise the ramp ended first and the figure is a lower
    bound), and whether the generator fell behind in one of the steps that decided it."""
    good, first_lossy = counted_steps(rep)
    best = good[-1]["delivered_pps"] if good else 0.0
    decided = good + ([first_lossy] if first_lossy else [])
    gen_limited = any(s["sent_pps"] < 0.98 * s["offered_pps"] for s in decided)
    return best, first_lossy is not None, gen_limited


def cpu_at_common_rate(reps):
    """CPU µs per datagram at the highest offered rate below every server's first lossy step
    (> 0.1 % loss), i.e. a rate each server carried with every step up to it within 0.1 %."""
    common = None
    for rep in reps.values():
        rates = {s["offered_pps"] for s in counted_steps(rep)[0]}
        common = rates if common is None else common & rates
    if not common:
        return None, {}
    rate = max(common)
    return rate, {k: next(s["cpu_us_per_datagram"] for s in rep["steps"] if s["offered_pps"] == rate)
                  for k, rep in reps.items()}


def ratio(a, b):
    return a / b if a and b else None


class Interrupted(Exception):
    """SIGTERM in the worker: unwinds through every try/finally that stops a server."""


def worker_signals():
    """In the worker: SIGTERM or SIGINT unwinds the stack once (Interrupted), so each `finally` stops the server or turnload it started; a second
    signal during that cleanup is ignored rather than cutting it short. Also asks the kernel
    for SIGTERM should the parent die without forwarding one (SIGKILL)."""
    state = {"raised": False}

    def on_signal(sig, _frame):
        if state["raised"]:
            return
        state["raised"] = True
        raise Interrupted(f"signal {sig}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        parent = os.environ.get("TURNPIKE_BENCH_PARENT")
        if parent and os.getppid() != int(parent):
            raise Interrupted("parent already gone")
    except (OSError, AttributeError):
        pass


def group_alive(pgid):
    """Whether a process other than a zombie is still in process group `pgid` (from /proc)."""
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def end_group(pgid, grace=15.0):
    """SIGTERM to the worker's process group (the worker, its servers, turnload, cargo), up to
    `grace` seconds for them to exit, then SIGKILL. Called while the worker is not yet reaped, so
    the group id cannot have been reused: only processes the worker started are in it."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_worker(max_secs=4 * 3600, grace=30.0):
    """Runs this script again as the worker, in a session (and so an autogroup) of its own, and
    waits for it. SIGINT/SIGTERM sent to this process (Ctrl-C, a CI job's group kill) are
    forwarded to the worker, which stops its servers; whatever is left of the worker's group
    is then ended here (SIGTERM, SIGKILL after a bounded wait). The worker gets `grace` seconds
    after a signal to stop its servers itself. Returns the worker's exit code."""
    env = dict(os.environ, TURNPIKE_BENCH_WORKER="1", TURNPIKE_BENCH_PARENT=str(os.getpid()))
    child = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve()), *sys.argv[1:]],
                             env=env, start_new_session=True)
    got = []

    def forward(sig, _frame):
        got.append((sig, time.monotonic()))
        try:
            os.kill(child.pid, sig)  # not reaped until below, so the pid is still the worker's
        except ProcessLookupError:
            pass

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        deadline = time.monotonic() + max_secs
        while time.monotonic() < deadline:
            # WNOWAIT: notice the exit without reaping, so the group id stays reserved.
            if os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                break
            if got and time.monotonic() - got[0][1] > grace:
                print(f"relay.py: the worker did not stop within {grace} s of the signal", file=sys.stderr,
                      flush=True)
                break
            time.sleep(0.2)
        else:
            print(f"relay.py: the run took more than {max_secs} s; stopping it", file=sys.stderr, flush=True)
    finally:
        end_group(child.pid)
        rc = child.wait()
        for sig, h in old.items():
            signal.signal(sig, h)
    if got:
        print(f"relay.py: stopped by signal {got[0][0]}; its servers and turnload were stopped",
              file=sys.stderr, flush=True)
        return 128 + got[0][0]
    return rc


def own_autogroup():
    """With autogroup scheduling (kernel.sched_autogroup_enabled), nice only ranks processes
    within one session, and every session gets an equal share of a core: a build in another
    session would take half of the server's or the generator's core. The worker runs in a
    session of its own (run_worker) and gives that session's autogroup nice -19; server and
    generator inherit it. Best effort: without the rights it just runs."""
    try:
        pathlib.Path("/proc/self/autogroup").write_text("-19\n")
    except OSError as e:
        print(f"(could not raise this session's autogroup priority: {e})", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="short steps and few allocations (smoke test, < 3 min)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "relay.md"))
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "relay.json"))
    a = ap.parse_args()
    if os.environ.get("TURNPIKE_BENCH_WORKER") != "1":
        sys.exit(run_worker())
    worker_signals()
    own_autogroup()
    # The hold cases keep ~19,000 sockets open in the server and in turnload.
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if not compare.TURNPIKE.exists():
        sys.exit(f"{compare.TURNPIKE} missing: build it first (bench/run does)")
    tl = turnload_bin()
    q = a.quick
    step = "1" if q else "2"
    allocs = "50" if q else "200"
    ramp2 = "20000:40000:100000" if q else "10000:10000:120000"   # round trips/s offered
    ramp1 = "40000:80000:200000" if q else "20000:20000:240000"   # packets/s offered (one way)
    nset = "200" if q else "5000"
    all3 = ["coturn", "turnpike", "turnpike+meter"]
    two = ["coturn", "turnpike"]
    # Turnpike by default gives one username at most a quarter of its relay capacity; coturn
    # has no such cap, so the cases that make thousands of allocations lift it.
    uncapped = ["--max-allocations", "0", "--max-allocations-per-user", "0"]
    cases = [
        {"name": "setup", "servers": all3, "timeout": 120, "turnpike_args": uncapped,
         "args": ["--setup-only", "--allocations", nset]},
        {"name": "setup-rest", "servers": two, "rest": True, "timeout": 120,
         "args": ["--setup-only", "--allocations", nset, "--secret", SECRET]},
        {"name": "udp-100-two-way", "servers": all3, "timeout": 300, "ramp": True,
         "args": ["--allocations", allocs, "--size", "100", "--direction", "two-way", "--gso",
                  "--ramp", ramp2, "--step-secs", step]},
    ]
    if not q:
        cases += [
            {"name": "udp-1200-two-way", "servers": two, "timeout": 300, "ramp": True,
             "args": ["--allocations", allocs, "--size", "1200", "--direction", "two-way", "--gso",
                      "--ramp", ramp2, "--step-secs", step]},
            {"name": "udp-100-one-way", "servers": two, "timeout": 300, "ramp": True,
             "args": ["--allocations", allocs, "--size", "100", "--direction", "one-way", "--gso",
                      "--ramp", ramp1, "--step-secs", step]},
            {"name": "udp-1200-one-way", "servers": two, "timeout": 300, "ramp": True,
             "args": ["--allocations", allocs, "--size", "1200", "--direction", "one-way", "--gso",
                      "--ramp", ramp1, "--step-secs", step]},
        ]
    fixed = "2" if q else "5"
    cases += [
        {"name": "tcp-100-two-way", "servers": all3 if not q else two, "timeout": 120,
         "args": ["--transport", "tcp", "--allocations", "40", "--size", "100", "--direction", "two-way",
                  "--rate", "20000", "--duration", fixed]},
        {"name": "tls-100-two-way", "servers": all3 if not q else two, "timeout": 120,
         "args": ["--transport", "tls", "--server", f"127.0.0.1:{compare.TLS_PORT}", "--insecure",
                  "--allocations", "40", "--size", "100", "--direction", "two-way",
                  "--rate", "20000", "--duration", fixed]},
    ]
    # Holding allocations (idle, then each refreshed once per hold): both servers at a count
    # coturn can hold under this machine's 20,000-descriptor limit, then Turnpike alone near
    # that limit with its relays spread over eight loopback addresses (relay_ipv4 list).
    hold_secs = "3" if q else "30"
    cases += [
        {"name": "hold", "servers": two, "timeout": 300, "turnpike_args": uncapped,
         "args": ["--allocations", "500" if q else "9000", "--hold", hold_secs]},
        {"name": "hold-max", "servers": ["turnpike"], "timeout": 400,
         "turnpike_args": [*uncapped, "--relay-ipv4", ",".join(f"127.0.0.{i}" for i in range(2, 10))],
         "args": ["--allocations", "1000" if q else "19000", "--hold", hold_secs]},
    ]
    results, commands = {}, {}
    t_start = time.time()
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        for case in cases:
            print(f"== {case['name']}", flush=True)
            res = run_case(tl, case, case["servers"], tmp)
            results[case["name"]] = {k: v[0] for k, v in res.items()}
            commands[case["name"]] = next(iter(res.values()))[1]
        # Latency at 50 % of coturn's saturation (100 B two way): a fixed rate for each server.
        sat, _, _ = throughput(results["udp-100-two-way"]["coturn"])
        half = max(1000, int(sat * 0.5 // 1000 * 1000))
        lat_case = {"name": "latency-100-two-way", "servers": all3 if not q else two, "timeout": 120,
                    "args": ["--allocations", allocs, "--size", "100", "--direction", "two-way", "--gso",
                             "--rate", str(half), "--duration", fixed]}
        print(f"== {lat_case['name']} at {half}/s (50 % of coturn's {sat:.0f} round trips/s)", flush=True)
        res = run_case(tl, lat_case, lat_case["servers"], tmp)
        results[lat_case["name"]] = {k: v[0] for k, v in res.items()}
        commands[lat_case["name"]] = next(iter(res.values()))[1]
    elapsed = time.time() - t_start

    rows = ["| goal | load | coturn | turnpike | turnpike+meter | ratio turnpike / coturn | ratio meter / static |",
            "|---|---|---|---|---|---|---|"]

    def row(goal, load, vals, fmt, lower_better):
        c, t, m = vals.get("coturn"), vals.get("turnpike"), vals.get("turnpike+meter")
        f = lambda v: "–" if v is None else fmt.format(v)  # noqa: E731
        r = ratio(t, c)
        rm = ratio(m, t) if m is not None else None
        rs = "–" if r is None else f"**{r:.2f}×**"
        rows.append(f"| {goal} | {load} | {f(c)} | {f(t)} | {f(m)} | {rs}"
                    f"{' (lower is better)' if lower_better else ''} | {'–' if rm is None else f'{rm:.2f}×'} |")  # noqa: E501

    for name in ["udp-100-two-way", "udp-1200-two-way", "udp-100-one-way", "udp-1200-one-way"]:
        if name not in results:
            continue
        reps = results[name]
        unit = "round trips/s" if "two-way" in name else "packets/s"
        tp = {}
        notes = []
        for k, rep in reps.items():
            best, saturated, gl = throughput(rep)
            tp[k] = best
            if not saturated:
                notes.append(f"{k} not saturated by the ramp (lower bound)")
            if gl:
                notes.append(f"{k}: generator fell behind in a step")
        row("throughput at ≤ 0.1 % loss", f"{name} ({unit}){'; ' + '; '.join(notes) if notes else ''}",
            tp, "{:.0f}", False)
        rate, cpu = cpu_at_common_rate(reps)
        if rate:
            row("server CPU µs per relayed datagram", f"{name} at {rate} offered/s", cpu, "{:.2f}", True)
    for name in ["tcp-100-two-way", "tls-100-two-way"]:
        reps = results[name]
        cpu = {k: rep["steps"][0]["cpu_us_per_datagram"] for k, rep in reps.items()}
        loss = ", ".join(f"{k} {rep['steps'][0]['loss_pct']:.2f} %" for k, rep in reps.items())
        row("server CPU µs per relayed datagram", f"{name} at 20000 round trips/s (loss: {loss})", cpu, "{:.2f}", True)
    reps = results["latency-100-two-way"]
    rate = reps["coturn"]["steps"][0]["offered_pps"]
    for q_, key in [("p50", "lat_p50_us"), ("p99", "lat_p99_us")]:
        row(f"RTT {q_} µs", f"100 B two way at {rate}/s (50 % of coturn's saturation)",
            {k: rep["steps"][0][key] for k, rep in reps.items()}, "{:.1f}", True)
    for name, label in [("setup", "static user / stored credential"), ("setup-rest", "REST shared secret")]:
        reps = results[name]
        n = next(iter(reps.values()))["setup"]["allocations"]
        row("allocation setup rate (allocations/s)", f"{n} allocations, {label}",
            {k: rep["setup"]["allocations_per_s"] for k, rep in reps.items()}, "{:.0f}", False)
        row("server RSS per allocation (kB)", f"{n} allocations, {label}",
            {k: rep["setup"]["server_rss_per_allocation_kb"] for k, rep in reps.items()}, "{:.1f}", True)
    for name in ["hold", "hold-max"]:
        reps = results[name]
        n = next(iter(reps.values()))["hold"]["allocations"]
        h = {k: rep["hold"] for k, rep in reps.items()}
        row("server CPU % of one core, allocations idle", f"{n} allocations held",
            {k: v["idle_cpu_pct"] for k, v in h.items()}, "{:.2f}", True)
        row("server CPU µs per refresh request", f"{n} allocations, each refreshed once in {hold_secs} s "
            "(Refresh + ChannelBind)", {k: v["cpu_us_per_request"] for k, v in h.items()}, "{:.1f}", True)
        row("server CPU % of one core at the natural refresh rate", f"{n} allocations, 2 requests per "
            "allocation per 300 s", {k: v["natural_cpu_pct"] for k, v in h.items()}, "{:.2f}", True)
    table = "\n".join(rows)
    cmd_lines = "\n".join(f"- {k}: `{v}`" for k, v in commands.items())
    print("\n" + table + "\n\nturnload commands (plus --server-pid/--user/--password or --secret):\n" + cmd_lines)
    print(f"\nwall time of the comparison: {elapsed:.0f} s")
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n\n" + cmd_lines + "\n")
    pathlib.Path(a.json).write_text(json.dumps({"results": results, "commands": commands}, indent=1))


if __name__ == "__main__":
    try:
        main()
    except (Interrupted, KeyboardInterrupt) as e:
        sys.exit(f"relay.py worker: interrupted ({e or 'SIGINT'}); its servers were stopped")
