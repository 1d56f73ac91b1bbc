"""RFC 5780 NAT behaviour discovery with coturn's turnutils_natdiscovery and
turnutils_stunclient against a node with two addresses (127.0.0.1 and 127.0.0.2 on loopback)."""

import subprocess

from conftest import BIN, USERS, free_port


def test_natdiscovery_mapping_and_filtering(turnpike):
    alt_port = free_port(host="127.0.0.2")
    t = turnpike(USERS + f'rfc5780_alternate_ip = "127.0.0.2"\nrfc5780_alternate_port = {alt_port}\n')
    p = subprocess.run(["turnutils_natdiscovery", "-m", "-f", "-H", "-p", str(t.port), "127.0.0.1"],
                       capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert "NAT with Endpoint Independent Mapping!" in out, out
    assert "NAT with Endpoint Independent Filtering!" in out, out
    p = subprocess.run(["turnutils_stunclient", "-p", str(t.port), "127.0.0.1"], capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    assert "RFC 5780 response" in out, out
    assert f"Other addr: : 127.0.0.2:{alt_port}" in out, out
    assert f"Response origin: : 127.0.0.2:{alt_port}" in out, out


def test_without_second_address_change_request_is_refused(turnpike):
    t = turnpike(USERS)
    p = subprocess.run(["turnutils_stunclient", "-p", str(t.port), "127.0.0.1"], capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    assert "UDP reflexive addr: 127.0.0.1" in out, out
    assert "Other addr" not in out, out


def test_rfc5780_config_errors_name_the_key(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('listen_udp = ["0.0.0.0:3478"]\nrfc5780_alternate_ip = "127.0.0.2"\n')
    p = subprocess.run([BIN, "--config", str(f), "check-config"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "rfc5780_primary_ip" in p.stderr, p.stderr
    f.write_text('listen_udp = ["127.0.0.1:3478"]\nrfc5780_alternate_ip = "127.0.0.1"\n')
    p = subprocess.run([BIN, "--config", str(f), "check-config"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "rfc5780_alternate_ip" in p.stderr, p.stderr
