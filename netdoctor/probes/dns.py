"""DNS queries from inside a namespace on a socket created in that namespace: dnspython makes the query and
reads the answer (dns.message); the exchange itself, one datagram each way on our own connected socket, is
done here. dns.query would do the same in its `udp()`, but importing it brings its TCP, TLS, DoH, DoQ and
zone-transfer code (about 10 ms of a run) for those two system calls."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from netdoctor.facts import NamespaceView


@dataclass(frozen=True)
class QueryResult:
    server: str
    name: str
    outcome: str          # answer, nxdomain, servfail, refused, timeout, error
    latency_ms: float
    addresses: tuple[str, ...] = ()
    error: str = ""

    @property
    def server_answered(self) -> bool:
        """The server is alive and authoritative about the answer (NXDOMAIN is an answer)."""
        return self.outcome in ("answer", "nxdomain")

    def to_evidence(self) -> dict:
        data = {"server": self.server, "name": self.name, "outcome": self.outcome, "latency_ms": round(self.latency_ms, 1)}
        if self.addresses:
            data["addresses"] = list(self.addresses)
        if self.error:
            data["error"] = self.error
        return data


def query(view: NamespaceView, server: str, name: str, timeout: float, rdtype: str = "A", port: int = 53) -> QueryResult:
    import dns.exception
    import dns.message
    import dns.rcode

    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    sock = view.socket(family, socket.SOCK_DGRAM)
    started = time.monotonic()
    try:
        sock.connect((server, port))  # connected UDP: an ICMP port-unreachable surfaces as "refused"
    except OSError as exc:
        sock.close()
        return QueryResult(server, name, "unreachable", 0.0, error=exc.strerror or str(exc))
    elapsed = lambda: (time.monotonic() - started) * 1000  # noqa: E731
    try:
        request = dns.message.make_query(name, rdtype)
        sock.settimeout(timeout)
        sock.send(request.to_wire())
        response = dns.message.from_wire(sock.recv(65535))  # the connected socket hears only the server
        if not request.is_response(response):
            raise dns.exception.FormError("the reply does not answer the question asked")
    except socket.timeout:
        return QueryResult(server, name, "timeout", elapsed())
    except OSError as exc:
        return QueryResult(server, name, "refused" if exc.errno == 111 else "error", elapsed(), error=exc.strerror or str(exc))
    except dns.exception.DNSException as exc:
        return QueryResult(server, name, "error", elapsed(), error=str(exc))
    finally:
        sock.close()
    rcode = response.rcode()
    if rcode == dns.rcode.NOERROR:
        addresses = tuple(item.address for rrset in response.answer for item in rrset if hasattr(item, "address"))
        return QueryResult(server, name, "answer", elapsed(), addresses)
    outcome = {dns.rcode.NXDOMAIN: "nxdomain", dns.rcode.SERVFAIL: "servfail", dns.rcode.REFUSED: "refused"}.get(rcode, "error")
    return QueryResult(server, name, outcome, elapsed(), error=dns.rcode.to_text(rcode))
