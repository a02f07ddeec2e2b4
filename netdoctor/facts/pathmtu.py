"""What a namespace's kernel already knows about path MTUs, read without sending anything.

Both readers run on the namespace's thread (`view.read(pathmtu.learned)`):
- `learned()`: the route cache's PMTU exceptions: a router's ICMP "fragmentation needed" made the kernel
  lower the MTU toward one destination for ~10 minutes (`ip route show cache`: RTM_F_CLONED routes with an
  mtu metric; this kernel returns them in an ordinary route dump, flagged).
- `counters()`: /proc/thread-self/net/snmp (the namespace's own, unlike /proc/net, which follows the main
  thread): Ip FragFails (packets dropped because they needed fragmenting with DF set) and IcmpMsg
  InType3/OutType3 (destination-unreachable messages received and sent, "fragmentation needed" among them).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from netdoctor.facts.namespace import RTM_F_CLONED

USER_HZ = 100  # the unit of rta_expires, as `ip route show cache` divides it
SNMP = "/proc/thread-self/net/snmp"


@dataclass(frozen=True)
class LearnedMtu:
    destination: str
    mtu: int
    gateway: str | None
    expires_s: int

    def to_evidence(self) -> dict:
        return {"destination": self.destination, "mtu": self.mtu, "via": self.gateway, "expires_in_s": self.expires_s}


def learned() -> list[LearnedMtu]:
    from netdoctor import netlink

    found = []
    for message in netlink.routes(socket.AF_INET, cached=True):
        metrics = message.get_attr("RTA_METRICS")
        mtu = metrics.get_attr("RTAX_MTU") if metrics else None
        if not message["flags"] & RTM_F_CLONED or not mtu:
            continue
        cache = message.get_attr("RTA_CACHEINFO") or {}
        found.append(LearnedMtu(message.get_attr("RTA_DST"), mtu, message.get_attr("RTA_GATEWAY"),
                                (cache.get("rta_expires") or 0) // USER_HZ))
    return found


def counters() -> dict[str, int]:
    """{"FragFails": n, "IcmpInType3": n, "IcmpOutType3": n}; a counter the kernel has never counted is 0.
    {} when the file cannot be read: the counters are evidence, never a verdict."""
    try:
        with open(SNMP) as f:
            return parse_counters(f.read())
    except OSError:
        return {}


def parse_counters(text: str) -> dict[str, int]:
    """The counters() of an snmp file's text; a value that is not a number counts as never counted (0)."""
    tables: dict[str, dict[str, int]] = {}
    lines = text.splitlines()
    for header, values in zip(lines[::2], lines[1::2]):  # "Ip: names..." then "Ip: numbers..."
        group, _, names = header.partition(":")
        tables[group] = dict(zip(names.split(), map(_number, values.partition(":")[2].split())))
    icmp = tables.get("IcmpMsg", {})
    return {"FragFails": tables.get("Ip", {}).get("FragFails", 0),
            "IcmpInType3": icmp.get("InType3", 0), "IcmpOutType3": icmp.get("OutType3", 0)}


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0
