"""What a network namespace holds: links, addresses, routes and listening sockets.

Each reader makes one kind of netlink dump (netdoctor/netlink.py) on sockets of the namespace (made on a
thread inside it: see netns.NamespaceWorker). NamespaceView (netdoctor/facts/__init__.py) reads each kind
once per run, when a check first asks for it; `gather()` reads all four at once.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

from netdoctor import ipcache

IFF_UP = 0x1
TCP_LISTEN = 10
RTM_F_CLONED = 0x200
MAIN_TABLE = 254
UDP_UNCONNECTED = 7  # UDP sockets report TCP_CLOSE when bound but not connected




@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str            # veth, bridge, vxlan, macvlan, ... ("" for physical/loopback)
    mtu: int
    up: bool             # administratively up (IFF_UP)
    operstate: str       # UP, DOWN, UNKNOWN, LOWERLAYERDOWN ...
    promiscuity: int
    address: str
    master: int | None   # bridge/bond this link is enslaved to
    peer_index: int | None  # IFLA_LINK: veth peer or macvlan/vxlan parent, maybe in another namespace
    info: dict[str, Any] = field(default_factory=dict)  # kind-specific data (vxlan id/port/dev, macvlan mode)

    @property
    def is_loopback(self) -> bool:
        return self.name == "lo"


@dataclass(frozen=True)
class Address:
    index: int
    family: int
    address: str
    prefixlen: int
    scope: int

    @property
    def interface(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        return ipcache.interface(f"{self.address}/{self.prefixlen}")

    @property
    def is_global_v6(self) -> bool:
        """Kernel scope "global" (ULA included: NAT66 setups route it through the host too)."""
        return self.family == socket.AF_INET6 and self.scope == 0 and not self.interface.ip.is_link_local


@dataclass(frozen=True)
class Route:
    family: int
    dst: str             # "default" or "10.0.0.0/24"
    gateway: str | None
    oif: int | None
    table: int
    mtu: int | None      # RTAX_MTU metric, when the route sets one
    priority: int

    @property
    def is_default(self) -> bool:
        return self.dst == "default"

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipcache.network("0.0.0.0/0" if self.is_default and self.family == socket.AF_INET
                        else "::/0" if self.is_default else self.dst)


@dataclass(frozen=True)
class Listener:
    proto: str           # tcp or udp
    family: int
    address: str
    port: int
    inode: int = 0       # the socket's inode, to find the process holding it (facts.processes)

    @property
    def loopback_only(self) -> bool:
        return ipcache.address(self.address).is_loopback

    @property
    def wildcard(self) -> bool:
        return ipcache.address(self.address).is_unspecified


class FactLookups:
    """Questions about a namespace, answered from its links, addresses, routes and listening sockets."""

    links: tuple[Link, ...]
    addresses: tuple[Address, ...]
    routes: tuple[Route, ...]
    listeners: tuple[Listener, ...]

    def link(self, index: int | None = None, name: str | None = None) -> Link | None:
        return next((l for l in self.links if (index is not None and l.index == index) or l.name == name), None)

    def addresses_of(self, index: int, family: int | None = None) -> list[Address]:
        return [a for a in self.addresses if a.index == index and (family is None or a.family == family)]

    def default_routes(self, family: int = socket.AF_INET) -> list[Route]:
        return sorted((r for r in self.routes if r.family == family and r.is_default), key=lambda r: r.priority)

    def egress_link(self, family: int = socket.AF_INET) -> Link | None:
        """The device of the default route (the best by metric): this namespace's way out."""
        defaults = self.default_routes(family)
        return self.link(index=defaults[0].oif) if defaults and defaults[0].oif else None

    def route_to(self, address: str) -> Route | None:
        """Longest-prefix match in the main table (no packet sent, no kernel lookup)."""
        ip = ipcache.address(address)
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        candidates = [r for r in self.routes if r.family == family and ip in r.network]
        return max(candidates, key=lambda r: (r.network.prefixlen, -r.priority), default=None)

    def egress_mtu(self, route: Route) -> int | None:
        """MTU of the path a route takes: the route's own mtu metric, else its device's MTU."""
        link = self.link(index=route.oif) if route.oif else None
        mtus = [m for m in (route.mtu, link.mtu if link else None) if m]
        return min(mtus) if mtus else None

    def route_text(self, route: Route) -> str:
        """A route as `ip route` prints it: "default via 10.88.0.1 dev eth0"."""
        link = self.link(index=route.oif) if route.oif else None
        return route.dst + (f" via {route.gateway}" if route.gateway else "") + (f" dev {link.name}" if link else "")

    def has_global_v6(self) -> bool:
        return any(a.is_global_v6 for a in self.addresses)


@dataclass(frozen=True)
class NamespaceFacts(FactLookups):
    """A snapshot of all four at once (the lab's host, tests' constructed namespaces)."""

    links: tuple[Link, ...]
    addresses: tuple[Address, ...]
    routes: tuple[Route, ...]
    listeners: tuple[Listener, ...]


# What _link reads of a link message (the dump leaves the rest undecoded).
LINK_ATTRIBUTES = ("IFLA_IFNAME", "IFLA_MTU", "IFLA_OPERSTATE", "IFLA_PROMISCUITY", "IFLA_ADDRESS", "IFLA_MASTER",
                   "IFLA_LINK", "IFLA_LINKINFO")


def _link(msg) -> Link:
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo else None
    data = linkinfo.get_attr("IFLA_INFO_DATA") if linkinfo else None
    info = {}
    if data is not None and hasattr(data, "get_attrs"):
        info = {name: value for name, value in data.get("attrs", []) if not isinstance(value, (dict, list))}
    return Link(index=msg["index"], name=msg.get_attr("IFLA_IFNAME"), kind=kind or "",
                mtu=msg.get_attr("IFLA_MTU") or 0, up=bool(msg["flags"] & IFF_UP),
                operstate=msg.get_attr("IFLA_OPERSTATE") or "UNKNOWN",
                promiscuity=msg.get_attr("IFLA_PROMISCUITY") or 0,
                address=msg.get_attr("IFLA_ADDRESS") or "", master=msg.get_attr("IFLA_MASTER"),
                peer_index=msg.get_attr("IFLA_LINK"), info=info)


def _route(msg) -> Route:
    dst = msg.get_attr("RTA_DST")
    metrics = msg.get_attr("RTA_METRICS")
    mtu = metrics.get_attr("RTAX_MTU") if metrics else None
    return Route(family=msg["family"], dst=f"{dst}/{msg['dst_len']}" if dst else "default",
                 gateway=msg.get_attr("RTA_GATEWAY"), oif=msg.get_attr("RTA_OIF"), table=_table(msg), mtu=mtu,
                 priority=msg.get_attr("RTA_PRIORITY") or 0)


def _table(msg) -> int:
    return msg.get_attr("RTA_TABLE") or msg["table"]


def _main_route(msg) -> Route | None:
    """A unicast route of the main table; not one of the kernel's cached exceptions (a learned path MTU, a redirect)."""
    if msg["type"] != 1 or msg["flags"] & RTM_F_CLONED or _table(msg) != MAIN_TABLE:
        return None
    return _route(msg)


def _address(msg) -> Address:
    return Address(msg["index"], msg["family"], msg.get_attr("IFA_ADDRESS"), msg["prefixlen"], msg["scope"])


# Each reader makes one kind of netlink dump (netdoctor/netlink.py) of the namespace its sockets come from:
# `opener` makes them (NamespaceView's opens them on the namespace's thread); without one, the calling
# thread's namespace.

def read_links(opener=None) -> tuple[Link, ...]:
    from netdoctor import netlink

    return tuple(netlink.links(_link, opener=opener, attributes=LINK_ATTRIBUTES))


def read_addresses(opener=None) -> tuple[Address, ...]:
    from netdoctor import netlink

    return tuple(netlink.addresses(_address, opener=opener))


def read_routes(opener=None) -> tuple[Route, ...]:
    from netdoctor import netlink

    return tuple(route for family in (socket.AF_INET, socket.AF_INET6)
                 for route in netlink.routes(family, _main_route, table=MAIN_TABLE, opener=opener) if route is not None)


def read_listeners(opener=None) -> tuple[Listener, ...]:
    from netdoctor import netlink

    return tuple(Listener(proto, sock.family, sock.address, sock.port, sock.inode)
                 for family in (socket.AF_INET, socket.AF_INET6)
                 for proto, number, state in (("tcp", socket.IPPROTO_TCP, TCP_LISTEN), ("udp", socket.IPPROTO_UDP, UDP_UNCONNECTED))
                 for sock in netlink.sockets(family, number, 1 << state, opener=opener))


def gather() -> NamespaceFacts:
    return NamespaceFacts(read_links(), read_addresses(), read_routes(), read_listeners())


def read_sysctl(key: str) -> str | None:
    """Read net.ipv4.ip_forward style keys from /proc/sys; /proc/sys follows the calling thread's netns."""
    try:
        with open("/proc/sys/" + key.replace(".", "/")) as f:
            return f.read().strip()
    except OSError:
        return None
