"""Network namespaces for tests: hosts with documentation-range addresses, made by the test and
removed when it ends (also after a failure). Needs root and iproute2."""

import contextlib
import os
import shutil
import subprocess

import pytest


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class Namespace:
    """One network namespace with loopback up; `veth_host` adds an address on a veth pair
    inside it (both ends in the namespace, so nothing is left in the root namespace)."""

    def __init__(self, name):
        self.name = name
        self.procs = []

    def sh(self, script, check=True):
        return subprocess.run(["ip", "netns", "exec", self.name, "sh", "-c", script],
                              capture_output=True, text=True, check=check, timeout=30)

    def run(self, args, timeout=60, **kw):
        return subprocess.run(["ip", "netns", "exec", self.name, *args], capture_output=True,
                              text=True, timeout=timeout, **kw)

    def popen(self, args, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", self.name, *args], **kw)
        self.procs.append(p)
        return p

    def veth_host(self, addr, gateway=None, prefix=24):
        """An interface with `addr` (and a default route via `gateway`, which the other end of
        the pair holds)."""
        self.sh("ip link add v0 type veth peer name v1")
        self.sh(f"ip addr add {addr}/{prefix} dev v0 && ip link set v0 up")
        if gateway:
            self.sh(f"ip addr add {gateway}/{prefix} dev v1 && ip link set v1 up")
            self.sh(f"ip route add default via {gateway} dev v0")
        else:
            self.sh("ip link set v1 up")

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        _ip("netns", "del", self.name, check=False)


@contextlib.contextmanager
def namespace(prefix="tp"):
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("network namespace tests need root and iproute2 (ip)")
    name = f"{prefix}-{os.getpid()}-{os.urandom(3).hex()}"
    _ip("netns", "add", name)
    ns = Namespace(name)
    try:
        ns.sh("ip link set lo up")
        yield ns
    finally:
        ns.close()
