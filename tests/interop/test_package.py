"""The Debian package (issue 13): built with cargo-deb from the tree's binary, installed with
`dpkg -i`, its unit accepted by `systemd-analyze verify`, and started as the unit starts it
(this machine runs no systemd: the unit's ExecStart as the unit's User, with its ambient
capability, in a network namespace of the test's own): it serves STUN and the API with its
packaged configuration, keeps its data private to its user, and a stop drains and exits. The
package is purged at the end (also after a failure). The test refuses to run where a
`turnpike` package is already installed: it would replace it."""

import configparser
import os
import pathlib
import shutil
import stat
import subprocess
import time

import pytest

from conftest import BIN, ROOT
from netns import namespace

UNIT = pathlib.Path("/usr/lib/systemd/system/turnpike.service")


def installed():
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "turnpike"], capture_output=True, text=True)
    return "install ok installed" in r.stdout


def build_deb(out):
    """cargo deb on the binary the suite built (TURNPIKE_BIN's profile), without rebuilding."""
    profile = pathlib.Path(BIN).parent.name  # debug or release
    cmd = ["cargo", "deb", "-p", "turnpike", "--no-build", "--output", str(out)]
    if profile == "debug":
        cmd += ["--profile", "dev", "--fast"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    debs = list(out.glob("*.deb")) if out.is_dir() else [out]
    assert debs, r.stdout
    return debs[0]


def unit_service():
    """The installed unit's [Service] section (systemd's syntax is INI enough for these keys)."""
    p = configparser.RawConfigParser(strict=False, interpolation=None)
    p.optionxform = str
    p.read_string(UNIT.read_text())
    return p["Service"]


def test_debian_package_installs_verifies_and_serves(tmp_path):
    if installed():
        pytest.fail("a turnpike package is already installed here; this test installs and purges its own")
    deb = build_deb(tmp_path)
    info = subprocess.run(["dpkg-deb", "--info", str(deb)], capture_output=True, text=True).stdout
    assert "Package: turnpike" in info and "Depends:" in info, info
    listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True).stdout
    for path in ("./usr/bin/turnpike", "./etc/turnpike/turnpike.toml", "./usr/lib/systemd/system/turnpike.service",
                 "./usr/share/turnpike/prometheus/turnpike-rules.yml", "./usr/share/doc/turnpike/fleet.md"):
        assert path in listing, listing
    # The maintainer scripts manage the unit the Debian way (deb-systemd-helper and
    # deb-systemd-invoke, as dh_installsystemd writes them): not enabled or started on install
    # (the operator edits the configuration first), restarted on upgrade if it runs, stopped on
    # removal, its enablement state purged on purge. This machine runs no systemd, so they are
    # checked as written; the install, the upgrade and the purge below run them.
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
    prerm = (control / "prerm").read_text()
    postinst = (control / "postinst").read_text()
    postrm = (control / "postrm").read_text()
    assert "deb-systemd-invoke stop turnpike.service" in prerm and '"$1" = remove' in prerm, prerm
    assert "deb-systemd-invoke try-restart turnpike.service" in postinst, postinst
    assert "deb-systemd-invoke start" not in postinst, postinst
    assert "deb-systemd-helper update-state turnpike.service" in postinst, postinst
    assert "deb-systemd-helper purge turnpike.service" in postrm, postrm
    r = subprocess.run(["dpkg", "-i", str(deb)], capture_output=True, text=True, timeout=300)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert installed()
        # The system user, private data directory and configuration.
        assert subprocess.run(["id", "-u", "turnpike"], capture_output=True).returncode == 0
        conf = pathlib.Path("/etc/turnpike/turnpike.toml")
        st = conf.stat()
        assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 0, oct(st.st_mode)
        data = pathlib.Path("/var/lib/turnpike")
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        if shutil.which("systemd-analyze"):
            v = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, timeout=60)
            assert v.returncode == 0, v.stdout + v.stderr
        svc = unit_service()
        exec_start = svc["ExecStart"].split()
        assert exec_start[0] == "/usr/bin/turnpike", exec_start
        assert svc["User"] == "turnpike" and "CAP_NET_BIND_SERVICE" in svc["AmbientCapabilities"]
        assert svc["ProtectSystem"] == "strict" and svc["StateDirectory"] == "turnpike"
        assert int(svc["LimitNOFILE"]) >= 65536 and "USR1" in svc["ExecStop"]
        with namespace("tp-deb") as ns:
            log = open(tmp_path / "service.log", "w+")
            proc = ns.popen(["setpriv", "--reuid=turnpike", "--regid=turnpike", "--init-groups",
                             "--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service",
                             *exec_start], stdout=log, stderr=subprocess.STDOUT)
            ready = None
            for _ in range(150):
                r = ns.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9478/readyz"])
                if r.stdout == "200":
                    ready = True
                    break
                assert proc.poll() is None, (tmp_path / "service.log").read_text()
                time.sleep(0.2)
            assert ready, (tmp_path / "service.log").read_text()
            # STUN on the default port, answered by the packaged service.
            probe = ns.run([BIN, "probe", "stun:127.0.0.1:3478"], timeout=60)
            assert probe.returncode == 0, probe.stdout + probe.stderr
            # Its state is its own: the generated secret and the database, private to its user.
            secret = data / "shared-secret"
            assert secret.exists() and secret.stat().st_uid == int(subprocess.check_output(["id", "-u", "turnpike"]))
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600
            # Stop = drain (ExecStop's SIGUSR1): with no allocation left it exits by itself.
            proc.send_signal(10)
            proc.wait(timeout=30)
            logs = (tmp_path / "service.log").read_text()
            assert "drained" in logs, logs
        # An upgrade (the same package again) after the operator deleted the configuration
        # file: the postinst copes (dpkg keeps a deleted conffile deleted).
        conf.unlink()
        r = subprocess.run(["dpkg", "-i", str(deb)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert not conf.exists()
    finally:
        subprocess.run(["dpkg", "--purge", "turnpike"], capture_output=True, timeout=300)
    assert not installed()
    assert not pathlib.Path("/var/lib/turnpike").exists()
    assert not UNIT.exists()
