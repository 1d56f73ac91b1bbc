"""Runs coturn's turnutils_uclient and reads its summary."""

import re
import subprocess
from dataclasses import dataclass


@dataclass
class Result:
    rc: int
    sent: int
    received: int
    lost: int
    output: str


def run(server_port, args, host="127.0.0.1", timeout=120, netns=None):
    """Runs uclient against host:server_port (inside network namespace `netns` if given)."""
    cmd = ["turnutils_uclient", "-p", str(server_port), *args, host]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    sent = received = lost = -1
    m = re.findall(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$", out, re.M)
    if m:
        sent, received = map(int, m[-1])
    m = re.search(r"Total lost packets (\d+)", out)
    if m:
        lost = int(m.group(1))
    return Result(p.returncode, sent, received, lost, out)
