"""Hand-built STUN messages for malformed-input and protocol tests (aioice's codec for the
well-formed ones, raw bytes for the broken ones)."""

import os
import socket
import struct

from aioice import stun

COOKIE = 0x2112A442


def binding(extra=b"", tid=None):
    tid = tid or os.urandom(12)
    return struct.pack("!HHI", 0x0001, len(extra), COOKIE) + tid + extra


def attr(typ, value):
    pad = (4 - len(value) % 4) % 4
    return struct.pack("!HH", typ, len(value)) + value + b"\x00" * pad


def parse(data):
    return stun.parse_message(data)


def error_code(msg):
    ec = msg.attributes.get("ERROR-CODE")
    return ec[0] if ec else None


def udp_exchange(port, data, host="127.0.0.1", timeout=0.5):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, (host, port))
        try:
            return s.recvfrom(70000)[0]
        except socket.timeout:
            return None


def raw_attrs(data):
    """(type, value) pairs of a STUN message, parsed here without any library."""
    out = []
    pos = 20
    end = 20 + struct.unpack("!H", data[2:4])[0]
    while pos + 4 <= end:
        typ, length = struct.unpack("!HH", data[pos:pos + 4])
        out.append((typ, data[pos + 4:pos + 4 + length]))
        pos += 4 + length + (4 - length % 4) % 4
    return out


def request(method, attrs, key=None):
    """A STUN request built with aioice's codec, signed with `key` when given."""
    m = stun.Message(message_method=method, message_class=stun.Class.REQUEST)
    for k, v in attrs.items():
        m.attributes[k] = v
    if key:
        m.add_message_integrity(key)
    return m
