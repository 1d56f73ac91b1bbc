#!/usr/bin/env python3
"""The hostile-networks lab (issue 15): network namespaces joined by veth pairs, NATs of each
RFC 4787 kind made with nftables, and Turnpike on two public addresses (RFC 5780).

    python3 tests/netlab/lab.py up [--networks a,b,...] [--id ID]  # prints the lab as JSON, leaves it up
    python3 tests/netlab/lab.py status
    python3 tests/netlab/lab.py down [--id ID]             # removes every lab run's leftovers (or ID's)

From Python (pytest): `with Lab(tmpdir) as lab: ...` (or `Lab(...).up()` / `.down()`).

Topology (documentation addresses only):

    srv   203.0.113.10 and .11 /24 (Turnpike: UDP/TCP 3478, RFC 5780 alternate 203.0.113.11:3479,
          TURN over TLS on 443); gateway 203.0.113.1 in `core`
    core  a router: 203.0.113.1/24 to srv, 198.51.100.(4k+1)/30 to NAT router k
    nat-X NAT router of network X: wan 198.51.100.(4k+2)/30, lan 192.0.2.(16k+1)/28, nftables
    cli-X the client of network X: 192.0.2.(16k+2)/28, default route via its NAT router

Nothing routes 192.0.2.0/24 between networks: a client reaches the outside through its NAT only.

Every namespace's name is `tpnl-RUNID-ROLE` (RUNID: 8 hex digits, drawn again while any
namespace, /etc/netns entry or state file of that id exists; the state file is created
exclusively, so two runs never share an id). Processes are started in the lab's namespaces only,
so `down` stops a run's processes by asking the kernel which pids live in its namespaces
(`ip netns pids`), then deletes the namespaces, which takes their veths and nft tables along.
A state file per run (/run/turnpike-netlab/RUNID.json) names what `up` made; `down` also removes
namespaces of the lab's name format that a crashed run left without a state file. A run that
fails to come up removes only the namespaces it made itself.
"""

import argparse
import contextlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("TURNPIKE_BIN", str(ROOT / "target" / "debug" / "turnpike"))
STATE_DIR = pathlib.Path(os.environ.get("TURNPIKE_NETLAB_STATE", "/run/turnpike-netlab"))
PREFIX = "tpnl-"
ID_RE = re.compile(r"[0-9a-f]{8}")

SERVER = "203.0.113.10"
SERVER_ALT = "203.0.113.11"
PORT, ALT_PORT, TLS_PORT = 3478, 3479, 443
SECRET = "netlab-shared-secret"
PROXY_PORT = 8888

# Network name -> (index k, what it is). The RFC 4787 names: EIM/EIF "full cone", EIM/ADF
# "restricted cone", EIM/APDF "port restricted cone", APDM/APDF "symmetric".
NETWORKS = {
    "fullcone": (1, "endpoint-independent mapping and filtering (full cone), hairpinning"),
    "restricted": (2, "endpoint-independent mapping, address-dependent filtering (restricted cone)"),
    "portrestricted": (3, "endpoint-independent mapping, address-and-port-dependent filtering (port restricted cone)"),
    "symmetric": (4, "address-and-port-dependent mapping and filtering (symmetric, snat fully-random)"),
    # A second symmetric NAT: a call between two clients behind two different symmetric NATs
    # (the matrix's diagonal puts both peers behind the same NAT).
    "symmetric2": (8, "a second symmetric NAT, for calls between two different symmetric NATs"),
    "udpblocked": (5, "port restricted cone NAT that drops all UDP"),
    "tcp443": (6, "NAT that forwards only TCP to port 443"),
    "proxy": (7, "no route out: only an HTTP CONNECT proxy (tinyproxy, port 443 only) in the NAT router"),
}
NAT_TYPES = ["fullcone", "restricted", "portrestricted", "symmetric"]
# A lab namespace's whole name: tpnl-RUNID-ROLE.
NAME_RE = re.compile(r"tpnl-([0-9a-f]{8})-(core|srv|(?:nat|cli)-(?:"
                     + "|".join(map(re.escape, NETWORKS)) + r"))")


def is_lab_name(name, run_id=None):
    """Whether `name` is a lab namespace (of run `run_id` when given)."""
    m = NAME_RE.fullmatch(name)
    return bool(m) and (run_id is None or m.group(1) == run_id)


def check_id(run_id):
    if not isinstance(run_id, str) or not ID_RE.fullmatch(run_id):
        raise ValueError(f"bad run id {run_id!r}: 8 lowercase hex digits")
    return run_id


def _netns_names():
    listed = _run(["ip", "netns", "list"], check=False).stdout.split("\n")
    return [line.split()[0] for line in listed if line.strip()]


def _etc_names():
    etc = pathlib.Path("/etc/netns")
    return [p.name for p in etc.iterdir()] if etc.is_dir() else []


def id_in_use(run_id):
    """Whether any namespace, /etc/netns entry or state file of run `run_id` exists."""
    prefix = f"{PREFIX}{run_id}-"
    return (any(n.startswith(prefix) for n in _netns_names() + _etc_names())
            or (STATE_DIR / f"{run_id}.json").exists())


def new_id():
    """A run id nothing on this machine uses yet (4 random bytes, drawn again on a clash)."""
    for _ in range(100):
        run_id = os.urandom(4).hex()
        if not id_in_use(run_id):
            return run_id
    raise RuntimeError("no free lab run id after 100 draws")


def wan(k):
    return f"198.51.100.{4 * k + 1}", f"198.51.100.{4 * k + 2}"


def lan(k):
    return f"192.0.2.{16 * k + 1}", f"192.0.2.{16 * k + 2}"


def _run(args, check=True, timeout=30, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def ns_exec(ns, args, **kw):
    return _run(["ip", "netns", "exec", ns, *args], **kw)


def ns_sh(ns, script, **kw):
    return ns_exec(ns, ["sh", "-c", script], **kw)


def nft_rules(name, k):
    """The nftables ruleset of network `name`'s NAT router."""
    pub = wan(k)[1]
    router, client = lan(k)
    snat = f'oifname "wan" snat to {pub}'
    if name.startswith("symmetric"):
        # A new random port for every new conntrack entry: every destination (address and
        # port) sees another mapping (RFC 4787 address-and-port-dependent mapping).
        snat += " fully-random"
    pre, post, fwd, inp = [], [snat], [], []
    if name in ("fullcone", "restricted"):
        # Linux SNAT keeps the client's port when it is free, so the mapping is the client's
        # own port: inbound UDP to any port is handed to the client (endpoint-independent
        # filtering; `restricted` filters it below).
        pre.append(f'iifname "wan" ip daddr {pub} udp dport 1024-65535 dnat to {client}')
    if name == "fullcone":
        # Hairpinning: the client's packets to its own mapped address come back to it, from
        # the mapped address.
        pre.append(f'iifname "lan" ip daddr {pub} udp dport 1024-65535 dnat to {client}')
        post.append(f'iifname "lan" oifname "lan" ip daddr {client} snat to {pub}')
    if name == "restricted":
        # Address-dependent filtering: a new inbound flow passes only from an address the
        # client's port has sent to (any port of it).
        fwd.append(f'iifname "lan" oifname "wan" meta l4proto udp update @contacted {{ ip daddr . udp sport }}')
        fwd.append(f'iifname "wan" ct state new ip saddr . udp dport @contacted accept')
        fwd.append('iifname "wan" ct state new drop')
    if name == "udpblocked":
        fwd.append('iifname "lan" meta l4proto udp drop')
    if name == "tcp443":
        fwd.append('iifname "lan" tcp dport 443 accept')
        fwd.append('iifname "lan" drop')
    if name == "proxy":
        fwd.append("drop")
        inp.append(f'iifname "lan" tcp dport {PROXY_PORT} accept')
        inp.append('iifname "lan" ct state established,related accept')
        inp.append('iifname "lan" drop')
    body = "table ip tpnl {\n"
    if name == "restricted":
        body += ("  set contacted { type ipv4_addr . inet_service; flags dynamic,timeout; "
                 "timeout 5m; }\n")
    for chain, hook, prio, rules in (("nl_pre", "prerouting", "dstnat", pre),
                                      ("nl_post", "postrouting", "srcnat", post)):
        body += f"  chain {chain} {{ type nat hook {hook} priority {prio}; policy accept;\n"
        body += "".join(f"    {r}\n" for r in rules) + "  }\n"
    for chain, hook, rules in (("nl_fwd", "forward", fwd), ("nl_in", "input", inp)):
        body += f"  chain {chain} {{ type filter hook {hook} priority filter; policy accept;\n"
        body += "".join(f"    {r}\n" for r in rules) + "  }\n"
    return body + "}\n"


def turnpike_toml(data_dir):
    return (
        f'realm = "netlab"\n'
        f'listen_udp = ["{SERVER}:{PORT}"]\n'
        f'listen_tcp = ["{SERVER}:{PORT}"]\n'
        f'listen_tls = ["{SERVER}:{TLS_PORT}"]\nlisten_dtls = []\n'
        f'rfc5780_alternate_ip = "{SERVER_ALT}"\nrfc5780_alternate_port = {ALT_PORT}\n'
        f'relay_ipv4 = "{SERVER}"\n'
        f'tls_self_signed_names = ["turn.netlab.test", "{SERVER}"]\n'
        f'shared_secrets = ["{SECRET}"]\nusers = ["lab:lab"]\n'
        f'danger_allow_peer_ranges = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]\n'
        f'metrics_listen = "127.0.0.1:9478"\ndata_dir = "{data_dir}"\n'
        'demo_enabled = false\n'
    )


TINYPROXY_CONF = """Port {port}
Listen {addr}
Timeout 120
MaxClients 64
Allow {net}
ConnectPort 443
LogLevel Info
LogFile "{log}"
PidFile "{pid}"
"""


class Lab:
    """One lab run. `networks`: names from NETWORKS (default: all)."""

    def __init__(self, workdir=None, networks=None, run_id=None, turnpike=True):
        if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None:
            raise RuntimeError("the lab needs root, iproute2 (ip) and nftables (nft)")
        # A given id must be free when `up` claims it; a drawn one is drawn again then if taken.
        self.fixed_id = run_id is not None
        self.id = check_id(run_id) if run_id is not None else new_id()
        self.networks = list(networks or NETWORKS)
        for n in self.networks:
            if n not in NETWORKS:
                raise ValueError(f"unknown network {n!r}: one of {', '.join(NETWORKS)}")
        self.dir = pathlib.Path(workdir or tempfile.mkdtemp(prefix=f"turnpike-netlab-{self.id}-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.with_turnpike = turnpike
        self.namespaces = []
        self.procs = {}
        # Whether this run holds its state file (claimed in `up`), and whether it created
        # /etc/netns itself (then `down` removes it when it is left empty).
        self.claimed = False
        self.etc_netns_created = False

    # names
    def ns(self, role):
        return f"{PREFIX}{self.id}-{role}"

    @property
    def core(self):
        return self.ns("core")

    @property
    def srv(self):
        return self.ns("srv")

    def nat(self, network):
        return self.ns(f"nat-{network}")

    def client(self, network):
        return self.ns(f"cli-{network}")

    def client_addr(self, network):
        return lan(NETWORKS[network][0])[1]

    def public_addr(self, network):
        return wan(NETWORKS[network][0])[1]

    def proxy(self, network="proxy"):
        return f"{lan(NETWORKS[network][0])[0]}:{PROXY_PORT}"

    # lifecycle
    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()

    def _state(self):
        return STATE_DIR / f"{self.id}.json"

    def _save(self):
        if self.claimed:
            self._state().write_text(json.dumps(self.describe(), indent=2))

    def _claim(self):
        """Makes this run's state file, exclusively: the run id is this run's from here on."""
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            if not id_in_use(self.id):
                try:
                    with open(self._state(), "x") as f:
                        f.write(json.dumps(self.describe(), indent=2))
                    self.claimed = True
                    return
                except FileExistsError:
                    pass
            if self.fixed_id:
                raise RuntimeError(f"lab run id {self.id} is in use (python3 tests/netlab/lab.py status)")
            self.id = new_id()
        raise RuntimeError("no free lab run id after 100 draws")

    def _add_ns(self, name):
        # `ip netns add` fails on a name that exists: nothing of another run is touched.
        _run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self._save()
        # `ip netns exec` mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf: programs in
        # the lab (Chromium) ask a resolver on the namespace's own loopback, not the host's.
        etc_root = pathlib.Path("/etc/netns")
        if not etc_root.exists():
            etc_root.mkdir(parents=True)
            self.etc_netns_created = True
            self._save()
        etc = etc_root / name
        etc.mkdir()
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        ns_sh(name, "ip link set lo up")

    def _link(self, a, a_if, a_addr, b, b_if, b_addr):
        _run(["ip", "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns", b])
        ns_sh(a, f"ip addr add {a_addr} dev {a_if} && ip link set {a_if} up")
        ns_sh(b, f"ip addr add {b_addr} dev {b_if} && ip link set {b_if} up")

    def up(self):
        self._claim()
        try:
            self._build()
        except BaseException:
            # Only what this run made: its processes, its namespaces, its state file.
            self.down()
            raise
        return self

    def _build(self):
        self._add_ns(self.core)
        ns_sh(self.core, "sysctl -qw net.ipv4.ip_forward=1")
        self._add_ns(self.srv)
        self._link(self.core, "srv", "203.0.113.1/24", self.srv, "eth0", f"{SERVER}/24")
        ns_sh(self.srv, f"ip addr add {SERVER_ALT}/24 dev eth0 && ip route add default via 203.0.113.1")
        for name in self.networks:
            k = NETWORKS[name][0]
            core_a, pub = wan(k)
            router, client = lan(k)
            nat, cli = self.nat(name), self.client(name)
            self._add_ns(nat)
            self._add_ns(cli)
            self._link(self.core, f"n{k}", f"{core_a}/30", nat, "wan", f"{pub}/30")
            self._link(nat, "lan", f"{router}/28", cli, "eth0", f"{client}/28")
            ns_sh(nat, f"ip route add default via {core_a} && sysctl -qw net.ipv4.ip_forward=1 "
                       "net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.lan.send_redirects=0")
            if name != "proxy":
                ns_sh(cli, f"ip route add default via {router}")
            rules = self.dir / f"nft-{name}.conf"
            rules.write_text(nft_rules(name, k))
            ns_exec(nat, ["nft", "-f", str(rules)])
            if name == "proxy":
                self._start_proxy(nat, router, client)
        if self.with_turnpike:
            self._start_turnpike()
        self._save()

    def _popen(self, key, ns, args, log):
        out = open(log, "w")
        p = subprocess.Popen(["ip", "netns", "exec", ns, *args], stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        self.procs[key] = p
        self._save()
        return p

    def _start_proxy(self, nat, router, client):
        conf = self.dir / "tinyproxy.conf"
        conf.write_text(TINYPROXY_CONF.format(port=PROXY_PORT, addr=router, net=f"{client}/32",
                                              log=self.dir / "tinyproxy.log", pid=self.dir / "tinyproxy.pid"))
        exe = shutil.which("tinyproxy")
        if exe is None:
            raise RuntimeError("tinyproxy is not installed (scripts/install-prereqs installs it)")
        p = self._popen("tinyproxy", nat, [exe, "-d", "-c", str(conf)], self.dir / "tinyproxy.out")
        check = f"import socket; socket.create_connection(('{router}', {PROXY_PORT}), 1).close()"
        self._wait(lambda: ns_exec(nat, [sys.executable, "-c", check], check=False, timeout=5).returncode == 0,
                   p, "tinyproxy", self.dir / "tinyproxy.out")

    def _start_turnpike(self):
        cfg = self.dir / "turnpike.toml"
        cfg.write_text(turnpike_toml(self.dir / "turnpike-data"))
        p = self._popen("turnpike", self.srv, [BIN, "--config", str(cfg)], self.dir / "turnpike.log")
        probe = stun_probe_script(SERVER, PORT)
        self._wait(lambda: ns_exec(self.srv, [sys.executable, "-c", probe], check=False,
                                   timeout=5).returncode == 0,
                   p, "turnpike", self.dir / "turnpike.log")

    def _wait(self, ready, proc, what, log, limit=20):
        deadline = time.time() + limit
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited early:\n{pathlib.Path(log).read_text()[-3000:]}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} did not come up in {limit} s:\n{pathlib.Path(log).read_text()[-3000:]}")

    def ice_servers(self, user="lab"):
        """Turnpike's own ICE list (`turnpike ice-servers`) with a fresh credential."""
        r = _run([BIN, "--config", str(self.dir / "turnpike.toml"), "ice-servers", "--user", user])
        return json.loads(r.stdout)["iceServers"]

    def logs(self, what="turnpike"):
        p = self.dir / ("turnpike.log" if what == "turnpike" else "tinyproxy.log")
        return p.read_text() if p.exists() else ""

    def describe(self):
        return {
            "id": self.id, "dir": str(self.dir), "namespaces": self.namespaces,
            "etc_netns_created": self.etc_netns_created,
            "pids": {k: p.pid for k, p in self.procs.items()},
            "server": {"primary": f"{SERVER}:{PORT}", "alternate": f"{SERVER_ALT}:{ALT_PORT}",
                       "tls": f"{SERVER}:{TLS_PORT}"},
            "networks": {n: {"what": NETWORKS[n][1], "client_ns": self.client(n), "nat_ns": self.nat(n),
                             "client": self.client_addr(n), "public": self.public_addr(n)}
                         for n in self.networks},
        }

    def down(self):
        """Stops this run's processes and deletes the namespaces it made (and nothing else);
        safe to call twice."""
        for p in self.procs.values():
            _stop(p)
        _remove(self.namespaces, self.etc_netns_created)
        if self.claimed:
            self._state().unlink(missing_ok=True)
            self.claimed = False
        self.procs = {}
        self.namespaces = []


def stun_probe_script(host, port):
    return ("import os,socket,sys\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(0.5)\n"
            f"s.sendto(b'\\x00\\x01\\x00\\x00\\x21\\x12\\xa4\\x42'+os.urandom(12),('{host}',{port}))\n"
            "try:\n s.recvfrom(2048)\nexcept OSError:\n sys.exit(1)\n")


def _stop(p):
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)


def _kill_ns_pids(ns):
    """Stops whatever runs in lab namespace `ns` (only the lab starts processes there)."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        pids = [int(x) for x in _run(["ip", "netns", "pids", ns], check=False).stdout.split() if x.isdigit()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        while time.time() < deadline:
            if not _run(["ip", "netns", "pids", ns], check=False).stdout.split():
                return
            time.sleep(0.1)


def _remove(namespaces, etc_netns_created=False):
    """Stops what runs in the lab namespaces `namespaces`, deletes them and their /etc/netns
    entries; /etc/netns itself too when the lab created it and it is left empty."""
    existing = set(_netns_names())
    doomed = sorted(n for n in set(namespaces) if is_lab_name(n))
    for ns in doomed:
        if ns in existing:
            _kill_ns_pids(ns)
    for ns in doomed:
        if ns in existing:
            _run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(pathlib.Path("/etc/netns") / ns, ignore_errors=True)
    if etc_netns_created:
        with contextlib.suppress(OSError):
            pathlib.Path("/etc/netns").rmdir()  # only when empty
    return [n for n in doomed if n in existing]


def teardown(run_id=None):
    """Removes run `run_id`'s namespaces (and what runs in them), or every lab run's when
    `run_id` is None; their state files go with them. Only names of the lab's own format
    (tpnl-RUNID-ROLE) are touched."""
    if run_id is not None:
        check_id(run_id)
    states = []
    if STATE_DIR.exists():
        for f in STATE_DIR.glob("*.json"):
            if ID_RE.fullmatch(f.stem) and (run_id is None or f.stem == run_id):
                try:
                    states.append((f, json.loads(f.read_text())))
                except (OSError, ValueError):
                    states.append((f, {}))
    names = {n for n in _netns_names() + _etc_names() if is_lab_name(n, run_id)}
    for _, st in states:
        names |= {n for n in st.get("namespaces", []) if is_lab_name(n, run_id)}
    gone = _remove(names, any(st.get("etc_netns_created") for _, st in states))
    for f, _ in states:
        f.unlink(missing_ok=True)
    return gone


def leftovers(run_id=None):
    """Lab namespaces present (of run `run_id` when given)."""
    return sorted(n for n in _netns_names() if is_lab_name(n, run_id))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="bring a lab up and leave it running (prints it as JSON)")
    u.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated: " + ",".join(NETWORKS))
    u.add_argument("--dir", help="work directory (configs, logs); default: a new temporary one")
    u.add_argument("--id", help="the run id (8 hex digits; must be free); default: a new one")
    sub.add_parser("status", help="list lab runs and leftover namespaces")
    d = sub.add_parser("down", help="tear down every lab run (or --id one)")
    d.add_argument("--id")
    a = ap.parse_args(argv)
    if a.cmd == "up":
        if a.id is not None and not ID_RE.fullmatch(a.id):
            print(f"bad --id {a.id!r}: 8 lowercase hex digits", file=sys.stderr)
            return 2
        lab = Lab(a.dir, [n for n in a.networks.split(",") if n], run_id=a.id).up()
        print(json.dumps(lab.describe(), indent=2))
        print(f"# run a command behind a NAT: ip netns exec {lab.client('symmetric') if 'symmetric' in lab.networks else lab.client(lab.networks[0])} "
              f"{BIN} nat-check stun:{SERVER}:{PORT}", file=sys.stderr)
        print(f"# tear down: python3 tests/netlab/lab.py down --id {lab.id}", file=sys.stderr)
    elif a.cmd == "status":
        runs = [json.loads(f.read_text()) for f in sorted(STATE_DIR.glob("*.json"))] if STATE_DIR.exists() else []
        print(json.dumps({"runs": runs, "namespaces": leftovers()}, indent=2))
    else:
        if a.id is not None and not ID_RE.fullmatch(a.id):
            print(f"bad --id {a.id!r}: 8 lowercase hex digits", file=sys.stderr)
            return 2
        gone = teardown(a.id)
        print(f"removed {len(gone)} namespaces" + (": " + " ".join(gone) if gone else ""))
        left = leftovers(a.id)
        if left:
            print("still present: " + " ".join(left), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
