"""An ICMP echo responder for a test namespace whose kernel answers no echo (net.ipv4.icmp_echo_ignore_all=1):
a far end with a slow round trip and the losses a test asks for, which the kernel alone cannot give here
(this machine has no netem).

    ip netns exec FAR python -m tests.slowecho --delay 0.1 --lose-once-above 576 [--limit 1280]

Each reply goes back `--delay` seconds after its request. The first request bigger than `--lose-once-above`
bytes (IPv4 packet size) gets no reply: one lost packet, as on a lossy path. Requests bigger than `--limit`
never get one: a black hole. Replies only ever go to whoever sent the request.
"""

from __future__ import annotations

import argparse
import socket
import struct
import threading

from netdoctor.probes.icmp import checksum

ECHO_REQUEST, ECHO_REPLY = 8, 0


def reply_to(request: bytes) -> bytes:
    """The echo reply to an ICMP echo request (its ICMP part): same identifier, sequence and payload."""
    body = bytes([ECHO_REPLY, 0, 0, 0]) + request[4:]
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def serve(delay: float, lose_once_above: int | None, limit: int | None) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    lost_once = False
    while True:
        packet, (source, _) = sock.recvfrom(65535)
        size = struct.unpack("!H", packet[2:4])[0]
        icmp = packet[(packet[0] & 0x0F) * 4:]
        if len(icmp) < 8 or icmp[0] != ECHO_REQUEST:
            continue
        if limit is not None and size > limit:
            continue
        if lose_once_above is not None and size > lose_once_above and not lost_once:
            lost_once = True
            continue
        threading.Timer(delay, sock.sendto, (reply_to(icmp), (source, 0))).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--lose-once-above", type=int)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    serve(args.delay, args.lose_once_above, args.limit)


if __name__ == "__main__":
    main()
