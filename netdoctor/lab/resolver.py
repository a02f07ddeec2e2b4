"""A tiny authoritative DNS server so that lab and test containers never ask a resolver we do not own.

It answers A queries from its own table, NXDOMAIN for other names, and never forwards anywhere.
`behaviour` lets a lab break it on purpose: "answer", "servfail", or "silent" (drops every query).
"""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class Resolver:
    def __init__(self, address: str, port: int = 53, records: dict[str, str] | None = None, behaviour: str = "answer"):
        self.address, self.port = address, port
        self.records = {name.rstrip(".").lower(): ip for name, ip in (records or {}).items()}
        self.behaviour = behaviour
        self.queries: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # two test runs at once (CI and a developer) each start the same resolver on the bridge gateway:
        # the kernel shares the queries out between them, and both answer alike
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._sock.bind((address, port))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"resolver {address}:{port}", daemon=True)

    def start(self) -> "Resolver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        name = query.question[0].name.to_text().rstrip(".").lower() if query.question else ""
        self.queries.append(name)
        if self.behaviour == "silent":
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if self.behaviour == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name in self.records:
            if query.question[0].rdtype == dns.rdatatype.A:
                response.answer.append(dns.rrset.from_text(name + ".", 30, "IN", "A", self.records[name]))
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            try:
                reply = self.answer(wire)
            except Exception:  # a malformed query is dropped, the server goes on
                continue
            if reply is not None:
                self._sock.sendto(reply, peer)


def main(argv: list[str] | None = None) -> None:
    """`python -m netdoctor.lab.resolver`: the lab's resolver as a background process (the lab outlives
    `netdoctor lab up`); the pidfile is written once the socket is bound, and SIGTERM stops it."""
    import argparse
    import os
    import signal
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="netdoctor.lab.resolver")
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--record", action="append", default=[], metavar="NAME=IP")
    parser.add_argument("--behaviour", choices=("answer", "servfail", "silent"), default="answer")
    parser.add_argument("--pidfile", type=Path)
    args = parser.parse_args(argv)
    records = dict(item.split("=", 1) for item in args.record)
    server = Resolver(args.address, args.port, records, args.behaviour).start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    if args.pidfile:
        args.pidfile.write_text(str(os.getpid()))
    while not stopping.wait(0.5):
        pass
    server.stop()


if __name__ == "__main__":
    main()
