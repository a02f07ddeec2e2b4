"""Where a target's traffic meets the host: the host device (a bridge, or a routed veth) each of its
IPv4 addresses sits behind. Shared by forward_policy, bridge_nf and subnet_overlap.

Containers: from Docker's inspect data (bridge name, IP, subnet), which stays right when --host-netns
points at a namespace that does not hold the real bridge. Namespace targets: from the host-side peer of
each of the target's veths, found in the host namespace's link dump.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from netdoctor.context import CheckContext
from netdoctor.facts.docker import NetworkInfo


@dataclass(frozen=True)
class HostPort:
    device: str                    # docker0, br-0123456789ab, br0, or the host end of a routed veth
    is_bridge: bool
    address: str                   # the target's IPv4 address behind `device`
    subnet: str
    network: NetworkInfo | None    # the Docker network, for container targets

    @property
    def label(self) -> str:
        return f"network {self.network.name} ({self.device})" if self.network else self.device


def host_ports(ctx: CheckContext) -> tuple[list[HostPort], list[str]]:
    """The target's host ports, and for what is left out, why (host networking, macvlan, no address...)."""
    if ctx.is_host_namespace:
        return [], [f"{ctx.target.label} uses the host's own network stack"]
    if ctx.container:
        return _container_ports(ctx)
    return _namespace_ports(ctx)


def _container_ports(ctx: CheckContext) -> tuple[list[HostPort], list[str]]:
    ports, skipped = [], []
    for attachment, network in ctx.networks():
        if network.driver == "bridge" and attachment.ip:
            ports.append(HostPort(network.bridge_name, True, attachment.ip, attachment.subnet, network))
        else:
            skipped.append(f"network {network.name} (driver {network.driver}) is not a host bridge")
    if not ctx.networks():
        skipped.append(f"container {ctx.container.name} is on no network")
    return ports, skipped


def _namespace_ports(ctx: CheckContext) -> tuple[list[HostPort], list[str]]:
    ports, skipped = [], []
    target, host = ctx.netns.facts, ctx.host.facts
    for link in target.links:
        if link.is_loopback or not link.up:
            continue
        addresses = [a for a in target.addresses_of(link.index, socket.AF_INET) if a.scope == 0]
        if not addresses:
            continue
        peer = host.link(index=link.peer_index) if link.kind == "veth" and link.peer_index else None
        if peer is None or peer.kind != "veth" or peer.peer_index != link.index:
            skipped.append(f"{link.name} ({link.kind or 'device'}) has no host-side veth in the host namespace")
            continue
        bridge = host.link(index=peer.master) if peer.master else None
        for address in addresses:
            subnet = str(ipaddress.ip_interface(f"{address.address}/{address.prefixlen}").network)
            ports.append(HostPort(bridge.name if bridge else peer.name, bridge is not None and bridge.kind == "bridge",
                                  address.address, subnet, None))
    if not ports and not skipped:
        skipped.append(f"{ctx.target.label} has no IPv4 address")
    return ports, skipped
