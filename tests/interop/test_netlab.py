"""Hostile networks (issue 15), in the namespace lab of tests/netlab/lab.py: Turnpike on two
public addresses (RFC 5780), client networks behind NATs of each RFC 4787 kind, a network
without UDP, one with only TCP 443, one with only an HTTP CONNECT proxy.

- `turnpike nat-check` classifies each NAT as built, and coturn's turnutils_natdiscovery (a
  tool nobody here wrote) agrees on mapping and filtering;
- headless Chromium peers (one browser per client network) make data-channel calls with
  Turnpike's own ICE list (`turnpike ice-servers`), relay-only and `all` policies; every cell
  must connect, and the cells where only the relay can work must go through Turnpike. CI runs
  the diagonal and the hard cells; the full matrix, which also rewrites
  the table in docs/nat-traversal.md, runs with

      TURNPIKE_NETLAB_FULL=1 python3 -m pytest -q -p no:cacheprovider tests/interop/test_netlab.py
"""

import json
import os
import pathlib
import random
import re
import subprocess
import sys
import time

import pytest

from conftest import BIN, ROOT, USERS

sys.path.insert(0, str(ROOT / "tests" / "netlab"))
import calls  # noqa: E402
import lab as netlab  # noqa: E402

FULL = os.environ.get("TURNPIKE_NETLAB_FULL") == "1"
# The matrix's networks; `symmetric2` (a second symmetric NAT) serves the hard cell between two
# different symmetric NATs only.
NETS = [n for n in netlab.NETWORKS if n != "symmetric2"]
# nat-check's --timeout where an answer is expected (CPU load must not turn a late answer into
# a wrong classification); a short one only where none can come.
ANSWER_TIMEOUT = "10"
# --bind ports: below the kernel's ephemeral range (32768 and up), so no earlier socket of the
# run (nat-check's own, Chromium's) has used them and left conntrack or nft set entries that
# open the filter; a fresh span each run.
BIND_BASE = random.randrange(10000, 32000 - len(NETS))
DOC = ROOT / "docs" / "nat-traversal.md"

# What each NAT is built to be: (mapping, filtering, hairpinning, common name).
EXPECTED = {
    "fullcone": ("endpoint-independent", "endpoint-independent", True, "full cone"),
    "restricted": ("endpoint-independent", "address-dependent", False, "restricted cone"),
    "portrestricted": ("endpoint-independent", "address-and-port-dependent", False, "port restricted cone"),
    "symmetric": ("address-and-port-dependent", "address-and-port-dependent", False, "symmetric"),
}
# turnutils_natdiscovery's words for the same behaviours.
NATDISCOVERY = {
    "endpoint-independent": "Endpoint Independent",
    "address-dependent": "Address Dependent",
    "address-and-port-dependent": "Address and Port Dependent",
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = netlab.Lab(tmp_path_factory.mktemp("netlab"))
    lab.up()
    try:
        yield lab
    finally:
        run = lab.id
        lab.down()
        assert not [n for n in netlab.leftovers() if n.startswith(f"{netlab.PREFIX}{run}-")]


def nat_check(lab, net, *extra, timeout=180):
    return subprocess.run(["ip", "netns", "exec", lab.client(net), BIN, "nat-check",
                           f"stun:{netlab.SERVER}:{netlab.PORT}", *extra],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("net", list(EXPECTED))
def test_nat_check_and_natdiscovery_classify_each_nat(lab, net):
    mapping, filtering, hairpin, name = EXPECTED[net]
    p = nat_check(lab, net, "--json", "--timeout", ANSWER_TIMEOUT)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["nat"] is True and r["mapped"].startswith(lab.public_addr(net) + ":"), r
    assert r["other_address"] == f"{netlab.SERVER_ALT}:{netlab.ALT_PORT}", r
    assert (r["mapping"], r["filtering"], r["hairpinning"], r["nat_type"]) == \
        (mapping, filtering, hairpin, name), r
    # The independent tool, in the same network.
    d = subprocess.run(["ip", "netns", "exec", lab.client(net), "turnutils_natdiscovery", "-m", "-f",
                        "-H", netlab.SERVER], capture_output=True, text=True, timeout=90)
    out = d.stdout + d.stderr
    assert f"NAT with {NATDISCOVERY[mapping]} Mapping!" in out, out
    assert f"NAT with {NATDISCOVERY[filtering]} Filtering!" in out, out
    assert ("maybe a successful hairpinning" in out) == hairpin, out
    # The text report, from a port given with --bind, names the same.
    port = BIND_BASE + NETS.index(net)
    t = nat_check(lab, net, "--bind", f"{lab.client_addr(net)}:{port}", "--timeout", ANSWER_TIMEOUT)
    assert t.returncode == 0 and f"NAT type         {name}" in t.stdout, t.stdout + t.stderr
    assert f"local address    {lab.client_addr(net)}:{port}" in t.stdout, t.stdout


# No answer can come in these networks (the NAT drops UDP; only TCP to 443 passes; no route
# at all), so a short --timeout only shortens the wait.
@pytest.mark.parametrize("net", ["udpblocked", "tcp443"])
def test_nat_check_reports_blocked_udp(lab, net):
    p = nat_check(lab, net, "--timeout", "1")
    assert p.returncode == 2 and "no answer from 203.0.113.10:3478 (UDP blocked" in p.stderr, p.stderr
    assert p.stdout == "", p.stdout


def test_nat_check_reports_no_route(lab):
    """The proxy network has no route out: the send fails (ENETUNREACH), which is no answer."""
    p = nat_check(lab, "proxy", "--timeout", "1")
    assert p.returncode == 2, p.stderr
    assert "no answer from 203.0.113.10:3478: no route to it" in p.stderr, p.stderr
    assert "cannot send" not in p.stderr and p.stdout == "", p.stderr


def test_nat_check_binding_lifetime(lab):
    """RFC 5780 §4.6 against the port restricted NAT: Linux conntrack forgets a UDP flow that saw
    one request and one answer after nf_conntrack_udp_timeout (30 s) idle."""
    if not FULL:
        pytest.skip("about a minute and a half: runs with TURNPIKE_NETLAB_FULL=1")
    p = nat_check(lab, "portrestricted", "--json", "--lifetime", "--lifetime-max", "64", timeout=400)
    assert p.returncode == 0, p.stderr
    life = json.loads(p.stdout)["lifetime"]
    timeout = int(subprocess.run(["ip", "netns", "exec", lab.nat("portrestricted"), "sysctl", "-n",
                                  "net.netfilter.nf_conntrack_udp_timeout"],
                                 capture_output=True, text=True).stdout)
    assert life["alive_after"] < timeout + 1 and life["gone_after"] is not None, life
    assert life["gone_after"] >= timeout - 1, (life, timeout)


def test_nat_check_names_a_server_without_rfc5780(turnpike):
    t = turnpike(USERS)
    p = subprocess.run([BIN, "nat-check", f"stun:127.0.0.1:{t.port}", "--timeout", ANSWER_TIMEOUT],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "does not support RFC 5780" in p.stderr, p.stderr


def test_lab_command_rejects_ids_that_are_not_a_run_id():
    """`down --id` never takes a pattern: an id like `*` would have matched every run."""
    script = ROOT / "tests" / "netlab" / "lab.py"
    for bad in ("*", "..", "abc", "0123456G", "01234567-x"):
        p = subprocess.run([sys.executable, str(script), "down", "--id", bad],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and "bad --id" in p.stderr, (bad, p.stderr)
    assert not netlab.is_lab_name("tpnl-foo")
    assert not netlab.is_lab_name("tpnl-0123456-core")
    assert not netlab.is_lab_name("tpnl-01234567-core-x")
    assert netlab.is_lab_name("tpnl-01234567-cli-symmetric", "01234567")
    assert not netlab.is_lab_name("tpnl-01234567-cli-symmetric", "01234568")


def test_lab_command_up_and_down_leave_nothing(tmp_path):
    """`lab.py up` leaves a lab running (as by hand, or as a crashed run would); `down` removes its
    namespaces, their nft tables and its processes."""
    script = ROOT / "tests" / "netlab" / "lab.py"
    # The id is ours: whatever happens to `up` (a failure, a timeout that kills it halfway),
    # `down --id` removes this run and nothing else.
    run = netlab.new_id()
    pids = []
    try:
        up = subprocess.run([sys.executable, str(script), "up", "--networks", "proxy", "--dir", str(tmp_path),
                             "--id", run], capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stderr
        desc = json.loads(up.stdout)
        assert desc["id"] == run, desc
        pids = list(desc["pids"].values())
        assert len(pids) == 2 and all(pathlib.Path(f"/proc/{p}").exists() for p in pids), desc
        nat = desc["networks"]["proxy"]["nat_ns"]
        assert "tpnl" in subprocess.run(["ip", "netns", "exec", nat, "nft", "list", "tables"],
                                        capture_output=True, text=True, timeout=30).stdout
        # The id is taken now: another `up` with it refuses and leaves this run alone.
        again = subprocess.run([sys.executable, str(script), "up", "--networks", "proxy", "--id", run],
                               capture_output=True, text=True, timeout=120)
        assert again.returncode != 0 and "in use" in again.stderr, again.stderr
        assert all(pathlib.Path(f"/proc/{p}").exists() for p in pids), pids
        assert netlab.leftovers(run) == sorted(desc["namespaces"]) and len(desc["namespaces"]) == 4, \
            (netlab.leftovers(run), desc)
    finally:
        down = subprocess.run([sys.executable, str(script), "down", "--id", run],
                              capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr
    assert not netlab.leftovers(run)
    assert not list(pathlib.Path("/etc").glob(f"netns/{netlab.PREFIX}{run}-*"))
    assert not (netlab.STATE_DIR / f"{run}.json").exists()
    deadline = time.time() + 10
    while time.time() < deadline and any(pathlib.Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)
    assert not any(pathlib.Path(f"/proc/{p}").exists() for p in pids), pids


# The call matrix. CI: every network with itself, and the cells where only one way works.
# Two different symmetric NATs (the diagonal's symmetric cell puts both peers behind one NAT,
# where they reach each other's host addresses).
HARD = [("symmetric", "symmetric2"), ("symmetric", "portrestricted"), ("udpblocked", "symmetric"),
        ("tcp443", "proxy"), ("proxy", "udpblocked"), ("fullcone", "proxy")]
CELLS = [(a, b) for a in NETS for b in NETS] + [("symmetric", "symmetric2")] if FULL \
    else [(n, n) for n in NETS] + HARD
POLICIES = ["relay", "all"]
RESULTS = {}
# Cells where no direct path can exist, so even with policy `all` the call must go through
# Turnpike: a symmetric NAT against a port restricted or another symmetric one (RFC 4787: the
# symmetric side's mapping towards the peer is not the one the peer learnt, and the other
# side's filter drops it), and every call with a network that sends no UDP out (udpblocked,
# tcp443, proxy) between two different networks.
NO_UDP = {"udpblocked", "tcp443", "proxy"}


def must_relay(a, b):
    if a == b:
        return False  # two pages of one browser behind one NAT: host candidates may work
    pair = {a, b}
    return bool(pair & NO_UDP) or pair in ({"symmetric", "symmetric2"}, {"symmetric", "portrestricted"},
                                           {"symmetric2", "portrestricted"})


# tinyproxy's log line for each CONNECT it established to Turnpike's TLS port.
PROXY_CONNECT = re.compile(r'^CONNECT .*Established connection to host "' + re.escape(netlab.SERVER) + '"',
                           re.M)


def proxy_connects(lab):
    return len(PROXY_CONNECT.findall(lab.logs("tinyproxy")))


@pytest.fixture(scope="module")
def peers(lab, tmp_path_factory):
    nets = sorted({n for cell in CELLS for n in cell}, key=list(netlab.NETWORKS).index)
    with calls.browsers(lab, nets, tmp_path_factory.mktemp("chromium")) as b:
        yield b
    if FULL and len(RESULTS) == len(CELLS) * len(POLICIES):
        write_doc(RESULTS)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("a,b", CELLS)
def test_call_matrix(lab, peers, a, b, policy):
    ice = lab.ice_servers()
    connects = proxy_connects(lab)
    r = calls.call(peers[a], peers[b], ice, policy)
    RESULTS[(a, b, policy)] = r
    assert r["connected"], (r, lab.logs()[-2000:], lab.logs("tinyproxy")[-1000:])
    if policy == "relay" or must_relay(a, b):
        assert calls.relayed(r), r
    if policy == "relay":
        assert r["a"]["localType"] == "relay" and r["b"]["localType"] == "relay", r
    if "proxy" in (a, b):
        side = r["a"] if a == "proxy" else r["b"]
        assert side["localType"] == "relay" and side["relayProtocol"] in ("tls", "tcp"), r
        # This call's own CONNECT through the proxy (the log holds every earlier call's too).
        assert proxy_connects(lab) > connects, lab.logs("tinyproxy")[-1000:]


def write_doc(results):
    head = ("| caller \\ callee | " + " | ".join(NETS) + " |\n|---|" + "---|" * len(NETS) + "\n")
    tables = []
    for policy in POLICIES:
        rows = "".join(f"| **{a}** | " + " | ".join(calls.describe(results[(a, b, policy)]) for b in NETS)
                       + " |\n" for a in NETS)
        tables.append(f"#### `iceTransportPolicy: \"{policy}\"`\n\n{head}{rows}")
    block = ("<!-- matrix:begin (generated by tests/interop/test_netlab.py; regenerate with\n"
             "TURNPIKE_NETLAB_FULL=1 python3 -m pytest -q -p no:cacheprovider tests/interop/test_netlab.py) -->\n"
             f"Generated {time.strftime('%Y-%m-%d', time.gmtime())} by "
             "`TURNPIKE_NETLAB_FULL=1 python3 -m pytest -q -p no:cacheprovider tests/interop/test_netlab.py` "
             "(Debian's Chromium, headless). Each cell: the caller's selected local candidate ↔ the "
             "callee's, as `type/protocol` (for relay candidates the protocol between the browser and "
             "Turnpike).\n\n" + "\n".join(tables) + "<!-- matrix:end -->")
    text = DOC.read_text()
    new = re.sub(r"<!-- matrix:begin.*?<!-- matrix:end -->", lambda _: block, text, flags=re.S)
    DOC.write_text(new)
