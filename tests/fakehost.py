"""A fake host: a netns with an 'uplink' veth of a chosen MTU and a default route through it.

Lets tests control host-side facts (forwarding, uplink MTU) without touching the real host's sysctls.
No packet is sent: the route's gateway is never contacted.
"""

from __future__ import annotations

from tests.conftest import sh


def add_uplink(netns: str, mtu: int, name: str = "uplink0") -> None:
    sh("ip", "-n", netns, "link", "add", name, "mtu", str(mtu), "type", "veth", "peer", "name", name + "p", "mtu", str(mtu))
    sh("ip", "-n", netns, "addr", "add", "198.51.100.1/24", "dev", name)
    sh("ip", "-n", netns, "link", "set", name, "up")
    sh("ip", "-n", netns, "link", "set", name + "p", "up")
    sh("ip", "-n", netns, "route", "add", "default", "via", "198.51.100.254", "dev", name)
