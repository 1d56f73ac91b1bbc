"""Fixtures that start the real `turnpike` binary and coturn's test peer on 127.0.0.1."""

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("TURNPIKE_BIN", str(ROOT / "target" / "debug" / "turnpike"))


# Ports this run has handed out: the kernel may offer a just-released port again, and two
# listeners of one server (or of two) must not be given the same number.
_HANDED_OUT = set()


def free_port(kind=socket.SOCK_DGRAM, family=socket.AF_INET, host="127.0.0.1"):
    """A port free for both UDP and TCP on host (so one number serves both listeners), never
    one handed out before in this run."""
    import random

    for _ in range(500):
        # Below the kernel's ephemeral range (32768 and up by default), so a client socket
        # opened meanwhile cannot take the port before the server binds it; and below
        # free_port_range()'s span, so single ports scattered over a run cannot leave no
        # room for a run of consecutive ones.
        port = random.randrange(10000, 20000)
        if port in _HANDED_OUT:
            continue
        with socket.socket(family, socket.SOCK_DGRAM) as u:
            try:
                u.bind((host, port))
            except OSError:
                continue
            try:
                with socket.socket(family, socket.SOCK_STREAM) as t:
                    t.bind((host, port))
                # Servers listen on ::1 with the same number too: free there as well.
                if host == "127.0.0.1" and socket.has_ipv6:
                    for k in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                        with socket.socket(socket.AF_INET6, k) as s6:
                            s6.bind(("::1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port")


def free_port_range(n, lo=20000, hi=32000):
    """`n` consecutive ports free for UDP and TCP on 127.0.0.1, none handed out before (from a
    span free_port() never uses)."""
    import random

    for _ in range(200):
        start = random.randrange(lo, hi - n)
        ports = range(start, start + n)
        if any(p in _HANDED_OUT for p in ports):
            continue
        ok = True
        for p in ports:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    try:
                        s.bind(("127.0.0.1", p))
                    except OSError:
                        ok = False
        if ok:
            _HANDED_OUT.update(ports)
            return start, start + n - 1
    raise RuntimeError("no free port range")


def stun_binding(port, host="127.0.0.1", timeout=0.5):
    """Sends a STUN Binding request; returns the raw response or None."""
    req = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(req, (host, port))
        try:
            data, _ = s.recvfrom(2048)
            return data
        except socket.timeout:
            return None


# Relay ports above the kernel's ephemeral range (32768-60999 by default), where free_port()'s
# listener ports, echo peers and client sockets live: a relay port equal to one of those made
# the server refuse a peer as its own endpoint (403) or a client reach the wrong socket.
RELAY_RANGE = (61000, 65000)


class Turnpike:
    """One running turnpike process with its own config file, ports and data dir."""

    def __init__(self, tmp_path, extra_toml="", args=(), env=None, relay_range=RELAY_RANGE,
                 preexec_fn=None):
        self.port = free_port()
        self.metrics_port = free_port()
        self.tls_port = free_port()
        self.mux_port = free_port()
        self.dir = tmp_path / f"turnpike-{self.port}"
        self.dir.mkdir()
        self.config = self.dir / "turnpike.toml"
        self.config.write_text(
            f'realm = "test"\n'
            f'listen_udp = ["127.0.0.1:{self.port}", "[::1]:{self.port}"]\n'
            f'listen_tcp = ["127.0.0.1:{self.port}", "[::1]:{self.port}"]\n'
            f'listen_tls = ["127.0.0.1:{self.tls_port}", "[::1]:{self.tls_port}"]\n'
            f'listen_dtls = ["127.0.0.1:{self.tls_port}", "[::1]:{self.tls_port}"]\n'
            f'listen_mux = ["127.0.0.1:{self.mux_port}"]\n'
            f'relay_ipv6 = "::1"\n'
            f'metrics_listen = "127.0.0.1:{self.metrics_port}"\n'
            f'data_dir = "{self.dir / "data"}"\n'
            f'relay_port_min = {relay_range[0]}\nrelay_port_max = {relay_range[1]}\n'
            + extra_toml
        )
        self.log = open(self.dir / "turnpike.log", "w+")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [BIN, "--config", str(self.config), *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=full_env,
            preexec_fn=preexec_fn,
        )
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"turnpike exited early:\n{self.logs()}")
            if stun_binding(self.port) is not None:
                return
            time.sleep(0.05)
        raise RuntimeError(f"turnpike did not answer STUN:\n{self.logs()}")

    def logs(self):
        if not self.log.closed:
            self.log.flush()
        return (self.dir / "turnpike.log").read_text()

    def metrics(self):
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name, **labels):
        """Sum of samples of `name` whose labels include `labels`."""
        total = 0.0
        found = False
        for line in self.metrics().splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric_name = head.split("{")[0]
            if metric_name != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
                found = True
        return total if found else None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def turnpike(tmp_path):
    started = []

    def start(extra_toml="", args=(), env=None, **kw):
        t = Turnpike(tmp_path, extra_toml, args, env, **kw)
        started.append(t)
        return t

    yield start
    for t in started:
        t.stop()


USERS = 'users = ["u:p", "alice:wonderland"]\n'
LOOPBACK_OK = 'danger_allow_peer_ranges = ["127.0.0.0/8", "::1/128"]\n'


@pytest.fixture(scope="session")
def peer():
    """coturn's UDP echo peer on 127.0.0.1 and ::1."""
    port = free_port()
    procs = [
        subprocess.Popen(["turnutils_peer", "-L", "127.0.0.1", "-L", "::1", "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ]
    time.sleep(0.3)
    yield port
    for p in procs:
        p.terminate()
        p.wait()


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def chromium(extra_args=()):
    """Debian's headless Chromium, driven by Playwright with that executable."""
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed (scripts/install-prereqs installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS + list(extra_args))
        try:
            yield b
        finally:
            b.close()
