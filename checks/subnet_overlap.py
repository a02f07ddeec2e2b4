from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Iterator

from netdoctor.checks._bridges import host_ports
from netdoctor.context import CheckContext
from netdoctor.facts.docker import NetworkInfo
from netdoctor.fixes import merge_daemon_json
from netdoctor.model import Finding, Fix, Need, Scope, Severity, Status
from netdoctor.registry import check

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PRIVATE_POOLS = tuple(ipaddress.ip_network(p) for p in ("172.16.0.0/12", "192.168.0.0/16", "10.0.0.0/8"))
ROUTED_DRIVERS = ("bridge", "overlay")  # macvlan/ipvlan share the parent's LAN subnet on purpose


@dataclass(frozen=True)
class Segment:
    """One subnet of the target, and the host device whose own routes for it are expected."""

    subnet: Network
    device: str | None            # docker0, br-..., br0; None for overlay networks (no host route)
    network: NetworkInfo | None   # the Docker network, for container targets


def _segments(ctx: CheckContext) -> tuple[list[Segment], list[str]]:
    if ctx.is_host_namespace:
        return [], [f"{ctx.target.label} uses the host's own network stack"]
    if not ctx.container:
        ports, skipped = host_ports(ctx)
        return [Segment(ipaddress.ip_network(p.subnet), p.device, None) for p in ports], skipped
    segments, skipped = [], []
    for _, network in ctx.networks():
        if network.driver not in ROUTED_DRIVERS:
            skipped.append(f"network {network.name} (driver {network.driver}) has no subnet of its own on this host")
            continue
        device = network.bridge_name if network.driver == "bridge" else None
        segments += [Segment(ipaddress.ip_network(s, strict=False), device, network) for s in network.subnets]
    return segments, skipped


def free_subnet(prefixlen: int, taken: Iterable[Network], pools: Iterable[Network] = PRIVATE_POOLS) -> Network | None:
    """The first private IPv4 block of this size that overlaps nothing in `taken`."""
    taken = [t for t in taken if t.version == 4]
    for pool in pools:
        if prefixlen < pool.prefixlen:
            continue
        for candidate in pool.subnets(new_prefix=prefixlen):
            if not any(candidate.overlaps(t) for t in taken):
                return candidate
    return None


@check(id="subnet_overlap", title="The target's subnets collide with no host route or other network",
       scope=Scope.NAMESPACE, severity=Severity.HIGH, needs={Need.ROOT, Need.NETNS, Need.HOST_NETNS})
def subnet_overlap(ctx: CheckContext) -> Iterator[Finding]:
    """A container network's subnet must not overlap the host's other routes or another Docker network.

    Docker picks bridge subnets from 172.17.0.0/16 upwards (then 192.168.0.0/16) without looking at
    routes that appear later. When a VPN, a LAN or a cloud VPC uses the same range, two routes claim the
    same addresses: a route inside the Docker subnet (or equal to it) steals replies meant for containers,
    which then time out; a wider route containing the Docker subnet loses that slice of the LAN/VPN, so
    hosts there become unreachable from the host and its containers. Overlay networks (swarm's default
    pool is 10.0.0.0/8) are allocated separately from bridges and can overlap them.

    netdoctor compares each subnet of the target's bridge/overlay networks (namespace targets: the subnet
    of each address behind a host bridge or veth) with the host namespace's main routing table, leaving
    out the default route and the network's own bridge routes, and, for containers, with every other
    Docker network's subnets. It proposes a private range that overlaps none of them. Policy-routing
    tables (wg-quick, some VPN clients) are not read.

    Fix: recreate the network on a free range (`docker network create --subnet ...`), move Docker's
    pools away from the VPN/LAN for good with daemon.json "default-address-pools" (and "bip" for docker0),
    or narrow the VPN's routes.
    """
    segments, skipped = _segments(ctx)
    if not segments:
        yield ctx.info("Not applicable: the target has no subnet of its own on the host", detail="; ".join(skipped))
        return
    host = ctx.host.facts
    others = [n for n in ctx.docker.all_networks() if not any(s.network and s.network.id == n.id for s in segments)] \
        if ctx.container else []
    taken = [r.network for r in host.routes if not r.is_default] + [s.subnet for s in segments] + \
        [ipaddress.ip_network(sub, strict=False) for n in others for sub in n.subnets]
    for segment in segments:
        conflicts = list(_route_conflicts(ctx, segment)) + list(_network_conflicts(segment, others))
        label = f"network {segment.network.name}" if segment.network else segment.device
        base = {"subnet": str(segment.subnet), "network": segment.network.name if segment.network else None,
                "device": segment.device, "host_netns": ctx.host.path}
        if not conflicts:
            yield ctx.ok(f"{label} {segment.subnet} overlaps no host route or other network",
                         evidence={**base, "routes_compared": sum(1 for r in host.routes if not r.is_default),
                                   "networks_compared": len(others)}, key=f"subnet:{segment.subnet}")
            continue
        free = free_subnet(max(segment.subnet.prefixlen, 16), taken) if segment.subnet.version == 4 else None
        pool = free_subnet(16, taken, [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("172.16.0.0/12")])
        fix = _fix(ctx, segment, free, pool)
        for status, kind, title, detail, evidence in conflicts:
            evidence = {**base, **evidence, "free_subnet": str(free) if free else None}
            yield ctx.finding(status, f"{label} {segment.subnet} {title}", detail=detail, evidence=evidence, fix=fix,
                              key=f"{kind}:{segment.subnet}")


def _route_conflicts(ctx: CheckContext, segment: Segment) -> Iterator[tuple]:
    host = ctx.host.facts
    for route in host.routes:
        link = host.link(index=route.oif) if route.oif else None
        if route.is_default or route.network.version != segment.subnet.version:
            continue
        if segment.device and link is not None and link.name == segment.device:
            continue  # the network's own connected route
        if not route.network.overlaps(segment.subnet):
            continue
        text = ctx.host.facts.route_text(route)
        evidence = {"route": text, "route_device": link.name if link else None}
        if route.network.subnet_of(segment.subnet):
            yield (Status.FAIL, f"route-inside:{route.network}", f"collides with host route {text}",
                   f"The host sends traffic for {route.network} to {link.name if link else route.gateway} instead of the "
                   f"target's network: replies to containers with those addresses go there and connections time out.",
                   evidence)
        else:
            yield (Status.WARN, f"route-around:{route.network}", f"lies inside host route {text}",
                   f"The Docker subnet is more specific, so hosts in {segment.subnet} behind "
                   f"{link.name if link else route.gateway} (a LAN or VPN) are unreachable from this host and its containers.",
                   evidence)


def _network_conflicts(segment: Segment, others: list[NetworkInfo]) -> Iterator[tuple]:
    for other in others:
        for subnet in other.subnets:
            net = ipaddress.ip_network(subnet, strict=False)
            if net.version == segment.subnet.version and net.overlaps(segment.subnet):
                yield (Status.FAIL, f"network-overlap:{other.name}", f"overlaps Docker network {other.name} ({other.driver}, {subnet})",
                       "Two Docker networks claim the same addresses (overlay pools are allocated apart from bridge "
                       "pools): traffic for one lands on the other.",
                       {"other_network": other.name, "other_subnet": subnet, "other_driver": other.driver})


def _fix(ctx: CheckContext, segment: Segment, free: Network | None, pool: Network | None) -> Fix:
    pools = {"default-address-pools": [{"base": str(pool), "size": 24}]} if pool else {}
    network = segment.network
    if free is None:
        return Fix("Move the network to a range nothing else on this host uses, or narrow the conflicting route.")
    if network is not None and network.is_default_bridge:
        bip = f"{free[1]}/{free.prefixlen}"
        return Fix(f"Renumber docker0 to {free} with daemon.json \"bip\" (and move Docker's pools off the conflicting "
                   "range), then restart Docker; or narrow the conflicting route (VPN/LAN configuration).",
                   (merge_daemon_json({"bip": bip, **pools}), "sudo systemctl restart docker"))
    if network is not None:
        new = f"{network.name}-new"
        return Fix(f"Recreate {network.name} on the free range {free} and move {ctx.target_name} to it; set "
                   "daemon.json \"default-address-pools\" so new networks avoid the range (restart Docker after). "
                   "Or narrow the conflicting route (VPN/LAN configuration).",
                   (f"docker network create --driver {network.driver} --subnet {free} {new}",
                    f"docker network disconnect {network.name} {ctx.target_name}",
                    f"docker network connect {new} {ctx.target_name}",
                    *((merge_daemon_json(pools),) if pools else ())))
    bridge = ctx.host.facts.link(name=segment.device)
    own = [a for a in ctx.host.facts.addresses_of(bridge.index) if a.interface.network == segment.subnet] if bridge else []
    commands = ([ctx.on_host(f"ip addr del {own[0].address}/{own[0].prefixlen} dev {segment.device}"),
                 ctx.on_host(f"ip addr add {free[1]}/{free.prefixlen} dev {segment.device}")] if own else [])
    return Fix(f"Renumber {segment.device} and the hosts on it to the free range {free}, or narrow the conflicting route.",
               tuple(commands))
