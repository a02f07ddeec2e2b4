"""The address of an endpoint the user named (--probe HOST:PORT, --peer NAME): shared by reachability and mtu."""

from __future__ import annotations

import ipaddress

from netdoctor.context import CheckContext
from netdoctor.dockerapi import ContainerNotFound


def endpoint_address(ctx: CheckContext, host: str) -> tuple[str | None, str]:
    """An IP literal as given, or a container's address (preferring a network it shares with the target),
    else None and why. Names are not resolved with DNS here: that would query a resolver the user did not name."""
    host = host.strip("[]")
    try:
        return str(ipaddress.ip_address(host)), ""
    except ValueError:
        pass
    try:
        peer = ctx.docker.container(host)
    except ContainerNotFound:
        return None, f"{host} is neither an IP address nor a container name (use an IP; `--resolve {host}` checks the name)"
    shared = {a.network_id for a in ctx.container.attachments} if ctx.container else set()
    addresses = sorted(peer.attachments, key=lambda a: a.network_id not in shared)
    address = next((a.ip for a in addresses if a.ip), None)
    return address, "" if address else f"container {host} has no IPv4 address (is it running?)"
