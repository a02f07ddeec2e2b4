"""Facts: what netdoctor reads about a namespace, the host's firewall and Docker, gathered once per run."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Callable

from netdoctor.facts import namespace
from netdoctor.facts.namespace import FactLookups, read_sysctl
from netdoctor.netns import NamespaceWorker

if TYPE_CHECKING:
    from netdoctor.firewall import Firewall

# How long a call may wait for its namespace's thread: only a backstop for a thread that never answers. The
# calls queue on that one thread, so on a starved machine (20 runs on 2 cores) a read that takes 0.5 s alone
# waits tens of seconds, which is slow, not hung; the runner's progress-aware deadline tells the two apart.
CALL_TIMEOUT = 300.0


class NamespaceView:
    """Everything read from one network namespace, each piece read on first use and then shared."""

    def __init__(self, worker: NamespaceWorker, label: str):
        self.worker = worker
        self.path = worker.path
        self.label = label
        self._cache: dict[str, Any] = {}
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self._facts = _LiveFacts(self)

    def _once(self, key: str, compute: Callable[[], Any]) -> Any:
        with self._guard:
            lock = self._locks[key]
        with lock:
            if key not in self._cache:
                try:
                    self._cache[key] = (True, compute())
                except Exception as exc:  # remembered, so every check sees the same failure once
                    self._cache[key] = (False, exc)
            ok, value = self._cache[key]
        if not ok:
            raise value
        return value

    def socket(self, family: int, type: int, proto: int = 0):
        """A socket living in this namespace, to be used (and closed) by the caller."""
        return self.worker.socket(family, type, proto)

    @property
    def facts(self) -> FactLookups:
        """Links, addresses, routes and listening sockets, each kind read when a check first asks for it."""
        return self._facts

    def _dump(self, kind: str, reader: Callable[..., Any]) -> Any:
        # Only the socket is made on the namespace's thread; the dump is read and decoded by the thread asking,
        # so a host's big link dump does not hold up a sysctl read queued behind it.
        return self._once(kind, lambda: reader(self._netlink_socket))

    def _netlink_socket(self, protocol: int):
        from netdoctor import netlink

        return self.worker.call(netlink.open_here, protocol, timeout=CALL_TIMEOUT)

    def sysctl(self, key: str) -> str | None:
        return self._once("sysctl " + key, lambda: self.worker.call(read_sysctl, key, timeout=CALL_TIMEOUT))

    @property
    def firewall(self) -> "Firewall":
        """Every backend's rules in this namespace (netdoctor.firewall), read once per run."""
        return self._once("firewall", self.fresh_firewall)

    def fresh_firewall(self) -> "Firewall":
        """Read the firewall again, not cached: its counters now (firewall.counters compares two reads)."""
        from netdoctor.firewall import read

        return read.read(lambda func, *args: self.worker.call(func, *args, timeout=CALL_TIMEOUT))

    # Active probes from inside this namespace, each bounded by its own timeout. Checks call these (never
    # the probe modules), so a test can answer them from a script instead of the network.

    def connect(self, host: str, port: int, timeout: float):
        """One TCP handshake (probes/tcp.py)."""
        from netdoctor.probes import tcp

        return tcp.connect(self, host, port, timeout)

    def query(self, server: str, name: str, timeout: float, rdtype: str = "A"):
        """One DNS query over UDP (probes/dns.py)."""
        from netdoctor.probes import dns

        return dns.query(self, server, name, timeout, rdtype)

    def echo(self, destination: str, sizes: list[int], wait: float):
        """DF ICMP echoes of the given IPv4 packet sizes (probes/icmp.py)."""
        from netdoctor.probes import icmp

        return icmp.echo(self, destination, sizes, wait)

    def neighbour_state(self, address: str) -> str | None:
        """The ARP state held for `address` now (probes/icmp.py), not cached: it changes as probes run."""
        from netdoctor.probes import icmp

        return self.worker.call(icmp.read_neighbour_state, address, timeout=CALL_TIMEOUT)

    def read(self, reader: Callable[..., Any], *args: Any) -> Any:
        """Any other fact: `reader(*args)` run once on this namespace's thread, its result shared
        (e.g. `view.read(device.read, "eth0")`)."""
        key = f"{reader.__module__}.{reader.__qualname__}{args!r}"
        return self._once(key, lambda: self.worker.call(reader, *args, timeout=CALL_TIMEOUT))


class _Dump:
    """One kind of fact (links, addresses, routes, listeners): its namespace.read_KIND dump, made on first use."""

    def __set_name__(self, owner, name: str) -> None:
        self.kind = name

    def __get__(self, facts: "_LiveFacts | None", owner=None):
        if facts is None:
            return self
        return facts.view._dump(self.kind, getattr(namespace, f"read_{self.kind}"))


class _LiveFacts(FactLookups):
    """A namespace's facts read on first use, one netlink dump per kind: a check that reads routes does not
    wait for the listening sockets, and one that reads nothing costs no dump."""

    links = _Dump()
    addresses = _Dump()
    routes = _Dump()
    listeners = _Dump()

    def __init__(self, view: NamespaceView):
        self.view = view
