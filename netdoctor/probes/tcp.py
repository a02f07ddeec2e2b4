"""TCP connect from inside a namespace: the socket is made on the namespace thread, the wait happens here."""

from __future__ import annotations

import errno
import socket
import time
from dataclasses import dataclass

from netdoctor.facts import NamespaceView


@dataclass(frozen=True)
class ConnectResult:
    host: str
    port: int
    outcome: str          # connected, refused, timeout, unreachable, error
    latency_ms: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "connected"

    def to_evidence(self) -> dict:
        return {"endpoint": f"{self.host}:{self.port}", "outcome": self.outcome,
                "latency_ms": round(self.latency_ms, 1), **({"error": self.error} if self.error else {})}


_OUTCOMES = {errno.ECONNREFUSED: "refused", errno.ETIMEDOUT: "timeout", errno.EHOSTUNREACH: "unreachable",
             errno.ENETUNREACH: "unreachable", errno.EACCES: "blocked", errno.EPERM: "blocked"}


def connect(view: NamespaceView, host: str, port: int, timeout: float) -> ConnectResult:
    """Try one TCP handshake to host:port from the namespace of `view`; never raises for network errors.

    `refused` means a RST came back (host reachable, nothing listening or a REJECT rule); `timeout` means
    silence (a DROP rule, a dead host, or no return path); `unreachable`/`blocked` come from an ICMP error
    or a local rule/route.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = view.socket(family, socket.SOCK_STREAM)
    started = time.monotonic()
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
        return ConnectResult(host, port, "connected", (time.monotonic() - started) * 1000)
    except socket.timeout:
        return ConnectResult(host, port, "timeout", (time.monotonic() - started) * 1000)
    except OSError as exc:
        return ConnectResult(host, port, _OUTCOMES.get(exc.errno, "error"), (time.monotonic() - started) * 1000,
                             exc.strerror or str(exc))
    finally:
        sock.close()
