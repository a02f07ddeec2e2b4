"""ICMP echo with the DF bit from inside a namespace, and the ARP state of a neighbour.

A raw ICMP socket made on the namespace thread, not scapy: scapy picks routes and source addresses from
its own table read from /proc/net/route, which follows the process's main thread (the host), not the
namespace thread, so it would send from the wrong place. Here the namespace's kernel routes each echo and
picks its source. IP_PMTUDISC_PROBE sets DF and ignores the kernel's cached path MTU (as `ping -M probe`
and tracepath do), so every echo measures the path instead of the kernel's memory of it; an echo bigger
than the outgoing interface still fails locally with EMSGSIZE.
"""

from __future__ import annotations

import random
import select
import socket
import struct
import time
from dataclasses import dataclass, field

from netdoctor.facts import NamespaceView

IP_MTU_DISCOVER = 10      # <linux/in.h>; not exported by Python's socket module
IP_PMTUDISC_PROBE = 3     # DF set, cached path MTU ignored
IP_ICMP_HEADERS = 28      # IPv4 header (20) + ICMP echo header (8)
ECHO_REQUEST, ECHO_REPLY, DEST_UNREACH, FRAG_NEEDED = 8, 0, 3, 4


@dataclass
class EchoRound:
    """What came back for a batch of echoes of given IPv4 packet sizes, all sent at once."""

    destination: str
    answered: set[int] = field(default_factory=set)           # sizes whose echo reply came back
    too_big_locally: set[int] = field(default_factory=set)    # sizes the namespace refused to send (EMSGSIZE)
    frag_needed: dict[int, tuple[int, str]] = field(default_factory=dict)  # size -> (next-hop MTU, router) reported
    unreachable: dict[int, str] = field(default_factory=dict)  # size -> "host unreachable from 10.0.0.1" ...
    send_errors: dict[int, str] = field(default_factory=dict)  # size -> local error other than EMSGSIZE


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo_request(ident: int, seq: int, size: int) -> bytes:
    payload = bytes(max(0, size - IP_ICMP_HEADERS))
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + payload


_UNREACH_CODES = {0: "network unreachable", 1: "host unreachable", 3: "port unreachable",
                  9: "network prohibited", 10: "host prohibited", 13: "administratively prohibited"}


def _read(packet: bytes, source: str, ident: int, sizes_by_seq: dict[int, int], result: EchoRound) -> None:
    """File one received IPv4 packet (header included, as raw sockets deliver it) into `result`."""
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:]
    if len(icmp) < 8:
        return
    kind, code = icmp[0], icmp[1]
    if kind == ECHO_REPLY:
        _, _, _, reply_id, seq = struct.unpack("!BBHHH", icmp[:8])
        if reply_id == ident and seq in sizes_by_seq:
            result.answered.add(sizes_by_seq[seq])
    elif kind == DEST_UNREACH and len(icmp) >= 8 + 20 + 8:
        inner = icmp[8:]
        inner_ihl = (inner[0] & 0x0F) * 4
        inner_icmp = inner[inner_ihl:inner_ihl + 8]
        if len(inner_icmp) < 8 or inner_icmp[0] != ECHO_REQUEST:
            return
        _, _, _, quoted_id, seq = struct.unpack("!BBHHH", inner_icmp)
        if quoted_id != ident or seq not in sizes_by_seq:
            return
        size = sizes_by_seq[seq]
        if code == FRAG_NEEDED:
            result.frag_needed[size] = (struct.unpack("!H", icmp[6:8])[0], source)
        else:
            result.unreachable[size] = f"{_UNREACH_CODES.get(code, f'unreachable code {code}')} from {source}"


def echo(view: NamespaceView, destination: str, sizes: list[int], wait: float) -> EchoRound:
    """Send one DF echo per IPv4 packet size to `destination` from the namespace of `view`, then collect
    replies and ICMP errors for up to `wait` seconds (less when every echo has been answered)."""
    result = EchoRound(destination)
    sock = view.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setblocking(False)
        ident = random.randrange(1, 0xFFFF)  # raw sockets see every ICMP packet of the namespace: ours carry this id
        sizes_by_seq = {}
        for seq, size in enumerate(sizes, start=1):
            try:
                sock.sendto(_echo_request(ident, seq, size), (destination, 0))
                sizes_by_seq[seq] = size
            except OSError as exc:
                if exc.errno == 90:  # EMSGSIZE: larger than the outgoing interface allows with DF
                    result.too_big_locally.add(size)
                else:
                    result.send_errors[size] = exc.strerror or str(exc)
        deadline = time.monotonic() + wait
        while len(result.answered) + len(result.frag_needed) + len(result.unreachable) < len(sizes_by_seq):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
                break
            while True:
                try:
                    packet, (source, _) = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                _read(packet, source, ident, sizes_by_seq, result)
    finally:
        sock.close()
    return result


NUD_STATES = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE",
              0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT"}
NUD_ANSWERED = {"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"}


def read_neighbour_state(address: str) -> str | None:
    """Run on a namespace thread: the ARP state the namespace holds for `address` now (None: no entry), e.g.
    after an echo to it: REACHABLE/STALE/DELAY mean something on the link answered ARP; INCOMPLETE/FAILED
    mean nothing did."""
    from netdoctor import netlink

    for entry in netlink.neighbours(socket.AF_INET6 if ":" in address else socket.AF_INET):  # ARP, or IPv6's NDP
        if entry.get_attr("NDA_DST") == address:
            return NUD_STATES.get(entry["state"], hex(entry["state"]))
    return None
