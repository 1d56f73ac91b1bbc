"""Hostile networks (issue 15), in the namespace lab of tests/netlab/lab.py: Turnpike on two
public addresses (RFC 5780), client networks behind NATs of each RFC 4787 kind, a network
without UDP, one with only TCP 443, one with only an HTTP CONNECT proxy.

- `turnpike nat-check` classifies each NAT as built, and coturn's turnutils_natdiscovery (a
  tool nobody here wrote) agrees on mapping and filtering;
- headless Chromium peers (one browser per client network) make data-channel calls with
  Turnpike's own ICE list (`turnpike ice-servers`), relay-only and `all` policies; every cell
  must connect. CI runs the diagonal and the hard cells; the full matrix, which also rewrites
  the table in docs/nat-traversal.md, runs with

      TURNPIKE_NETLAB_FULL=1 python3 -m pytest -q -p no:cacheprovider tests/interop/test_netlab.py
"""

import json
import os
import pathlib
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
NETS = list(netlab.NETWORKS)
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


def nat_check(lab, net, *extra, timeout=60):
    return subprocess.run(["ip", "netns", "exec", lab.client(net), BIN, "nat-check",
                           f"stun:{netlab.SERVER}:{netlab.PORT}", *extra],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("net", list(EXPECTED))
def test_nat_check_and_natdiscovery_classify_each_nat(lab, net):
    mapping, filtering, hairpin, name = EXPECTED[net]
    p = nat_check(lab, net, "--json")
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
    t = nat_check(lab, net, "--bind", f"{lab.client_addr(net)}:{40000 + NETS.index(net)}")
    assert t.returncode == 0 and f"NAT type         {name}" in t.stdout, t.stdout + t.stderr
    assert f"local address    {lab.client_addr(net)}:{40000 + NETS.index(net)}" in t.stdout, t.stdout


def test_nat_check_reports_blocked_udp(lab):
    p = nat_check(lab, "udpblocked", "--timeout", "1")
    assert p.returncode == 2 and "no answer from 203.0.113.10:3478" in p.stderr, p.stderr


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
    p = subprocess.run([BIN, "nat-check", f"stun:127.0.0.1:{t.port}", "--timeout", "1"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "does not support RFC 5780" in p.stderr, p.stderr


def test_lab_command_up_and_down_leave_nothing(tmp_path):
    """`lab.py up` leaves a lab running (as by hand, or as a crashed run would); `down` removes its
    namespaces, their nft tables and its processes."""
    script = ROOT / "tests" / "netlab" / "lab.py"
    up = subprocess.run([sys.executable, str(script), "up", "--networks", "proxy", "--dir", str(tmp_path)],
                        capture_output=True, text=True, timeout=120)
    desc = json.loads(up.stdout) if up.returncode == 0 else None
    try:
        assert desc, up.stderr
        pids = list(desc["pids"].values())
        assert len(pids) == 2 and all(pathlib.Path(f"/proc/{p}").exists() for p in pids), desc
        nat = desc["networks"]["proxy"]["nat_ns"]
        assert "tpnl" in subprocess.run(["ip", "netns", "exec", nat, "nft", "list", "tables"],
                                        capture_output=True, text=True).stdout
    finally:
        if desc:
            down = subprocess.run([sys.executable, str(script), "down", "--id", desc["id"]],
                                  capture_output=True, text=True, timeout=120)
            assert down.returncode == 0, down.stderr
    assert not [n for n in netlab.leftovers() if n.startswith(f"{netlab.PREFIX}{desc['id']}-")]
    assert not list(pathlib.Path("/etc").glob(f"netns/{netlab.PREFIX}{desc['id']}-*"))
    deadline = time.time() + 10
    while time.time() < deadline and any(pathlib.Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)
    assert not any(pathlib.Path(f"/proc/{p}").exists() for p in pids), pids


# The call matrix. CI: every network with itself, and the cells where only one way works.
HARD = [("symmetric", "symmetric"), ("symmetric", "portrestricted"), ("udpblocked", "symmetric"),
        ("tcp443", "proxy"), ("proxy", "udpblocked"), ("fullcone", "proxy")]
CELLS = [(a, b) for a in NETS for b in NETS] if FULL else [(n, n) for n in NETS] + HARD
POLICIES = ["relay", "all"]
RESULTS = {}


@pytest.fixture(scope="module")
def peers(lab, tmp_path_factory):
    with calls.browsers(lab, NETS, tmp_path_factory.mktemp("chromium")) as b:
        yield b
    if FULL and len(RESULTS) == len(NETS) * len(NETS) * len(POLICIES):
        write_doc(RESULTS)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("a,b", CELLS)
def test_call_matrix(lab, peers, a, b, policy):
    ice = lab.ice_servers()
    r = calls.call(peers[a], peers[b], ice, policy)
    RESULTS[(a, b, policy)] = r
    assert r["connected"], (r, lab.logs()[-2000:], lab.logs("tinyproxy")[-1000:])
    if policy == "relay":
        assert r["a"]["localType"] == "relay" and r["b"]["localType"] == "relay", r
    if "proxy" in (a, b):
        side = r["a"] if a == "proxy" else r["b"]
        assert side["localType"] == "relay" and side["relayProtocol"] in ("tls", "tcp"), r
        assert "CONNECT" in lab.logs("tinyproxy"), lab.logs("tinyproxy")[-1000:]


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
