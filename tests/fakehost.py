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


def add_bridge(netns: str, name: str, cidr: str) -> None:
    """A bridge in the fake host carrying the host's address on that segment (like docker0)."""
    sh("ip", "-n", netns, "link", "add", name, "type", "bridge")
    sh("ip", "-n", netns, "addr", "add", cidr, "dev", name)
    sh("ip", "-n", netns, "link", "set", name, "up")


def attach(host: str, bridge: str, guest: str, cidr: str, gateway: str | None = None, host_end: str = "") -> str:
    """Plug netns `guest` into `bridge` of netns `host` by a veth (eth0 inside), like a container on a bridge
    network; returns the host end's name."""
    host_end = host_end or f"v{guest[-4:]}{bridge[-3:]}"[:15]
    sh("ip", "-n", guest, "link", "add", "eth0", "type", "veth", "peer", "name", host_end, "netns", host)
    sh("ip", "-n", guest, "addr", "add", cidr, "dev", "eth0")
    sh("ip", "-n", guest, "link", "set", "eth0", "up")
    sh("ip", "-n", host, "link", "set", host_end, "master", bridge, "up")
    if gateway:
        sh("ip", "-n", guest, "route", "add", "default", "via", gateway)
    return host_end


def add_outside(host: str, outside: str, name: str = "up0") -> str:
    """Route the fake host's default route into netns `outside` (the 'internet' of a test); returns the
    outside's address. Packets stay between namespaces the test created."""
    sh("ip", "-n", host, "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", outside)
    sh("ip", "-n", host, "addr", "add", "198.51.100.1/24", "dev", name)
    sh("ip", "-n", host, "link", "set", name, "up")
    sh("ip", "-n", outside, "addr", "add", "198.51.100.254/24", "dev", "eth0")
    sh("ip", "-n", outside, "link", "set", "eth0", "up")
    sh("ip", "-n", host, "route", "add", "default", "via", "198.51.100.254", "dev", name)
    sh("ip", "-n", outside, "route", "add", "default", "via", "198.51.100.1")
    return "198.51.100.254"
