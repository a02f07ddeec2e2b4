from __future__ import annotations

import ipaddress
import socket
from typing import Iterator

from netdoctor.checks import _layers as layers
from netdoctor.checks._endpoints import endpoint_address
from netdoctor.context import CheckContext
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.firewall import Packet
from netdoctor.firewall.docker import MASQUERADE_OPTION
from netdoctor.probes import concurrently
from netdoctor.probes.icmp import NUD_ANSWERED
from netdoctor.registry import check

def _no_egress_by_design(ctx: CheckContext) -> str | None:
    """Why a container has no way out on purpose: --network none, or only --internal networks."""
    container = ctx.container
    if container is None:
        return None
    if container.network_mode == "none" or not container.attachments:
        return f"{container.name} runs with --network none"
    networks = ctx.networks()
    if networks and all(n.internal or n.driver == "null" for _, n in networks):
        names = ", ".join(n.name for _, n in networks)
        return f"{container.name} is only on internal network(s) {names} (docker network create --internal)"
    return None


@check(id="reachability", title="Target reaches its gateway and beyond", scope=Scope.NAMESPACE, severity=Severity.HIGH,
       needs={Need.ROOT, Need.NETNS, Need.HOST_NETNS})
def reachability(ctx: CheckContext) -> Iterator[Finding]:
    """The target has a way out: a default route, a gateway that answers, NAT on the host, and reaches what you name.

    Looks at the target's own routes (a default route must exist), sends a small ICMP echo to its gateway
    and reads the ARP entry that leaves behind (REACHABLE: the gateway is there; INCOMPLETE/FAILED: nothing on
    the link holds that address; a host bridge or veth end that is down is named as the cause), and checks
    that the host MASQUERADEs (or SNATs) the target's private subnet on the way out (the nat table's
    POSTROUTING). Each `--probe HOST:PORT` (an IP, or a container
    name) is TCP-connected from inside the target's namespace; when it fails, netdoctor walks outwards
    and names the layer that broke: no route in the target, no ARP answer from the gateway, forwarding off
    on the host, no host route, a DROP/REJECT rule or policy in FORWARD/DOCKER-USER, no NAT, or a reset
    from the far end (nothing listening). A container on `--internal` networks only (or `--network none`)
    has no egress by design: that is reported as info, not as a fault. Probes go only to the target's
    gateway and the endpoints you name.

    Fix: per layer, the exact command: `ip route add default via GW` in the target, re-adding the bridge
    address, `sysctl -w net.ipv4.ip_forward=1`, deleting the blocking rule, or
    `iptables -t nat -A POSTROUTING -s SUBNET ! -o BRIDGE -j MASQUERADE` (Docker recreates its own
    rules on restart).
    """
    by_design = _no_egress_by_design(ctx)
    if by_design:
        yield ctx.info(f"No egress by design: {by_design}",
                       detail="Such a container reaches its network's peers (if any) but nothing outside; that is "
                              "what it was set up for, not a fault.",
                       evidence={"networks": [n.name for _, n in ctx.networks()]},
                       fix=Fix(f"Only if {ctx.target_name} should reach outside: attach it to a non-internal network.",
                               (f"docker network connect bridge {ctx.target_name}",)), key="no-egress-by-design")
    elif ctx.is_host_namespace:
        yield from _host_default_route(ctx)
    else:
        route = yield from _default_route(ctx)
        if route is not None:
            if route.gateway:
                yield from _gateway(ctx, route)
            yield from _nat(ctx, route)
    if ctx.options.probes:
        yield from concurrently(lambda spec: _probe(ctx, spec, by_design), ctx.options.probes)


def _host_default_route(ctx: CheckContext) -> Iterator[Finding]:
    facts = ctx.netns.facts
    routes = facts.default_routes()
    if routes:
        yield ctx.ok(f"Default route: {facts.route_text(routes[0])}", key="host-default-route")
    else:
        yield ctx.warn("The host has no IPv4 default route: only directly connected and routed networks are reachable",
                       evidence={"routes": [facts.route_text(r) for r in facts.routes if r.family == socket.AF_INET]},
                       key="host-no-default-route")


def _default_route(ctx: CheckContext):
    facts = ctx.netns.facts
    routes = facts.default_routes()
    evidence = {"routes": [facts.route_text(r) for r in facts.routes if r.family == socket.AF_INET]}
    if routes:
        yield ctx.ok(f"Default route: {facts.route_text(routes[0])}", evidence=evidence, key="default-route")
        return routes[0]
    yield ctx.fail(f"{ctx.target.label} has no default route: nothing beyond its own subnets is reachable",
                   detail="Connections to other networks fail at once with 'Network is unreachable'.",
                   evidence=evidence, fix=Fix(*layers.default_route_fix(ctx)), key="no-default-route")
    return None


def _gateway(ctx: CheckContext, route) -> Iterator[Finding]:
    """A small echo to the gateway, then its ARP entry: ICMP may be filtered by the host, ARP cannot be."""
    gateway = route.gateway
    watch = layers.watch_drops(ctx)
    answered = bool(ctx.netns.echo(gateway, [64], ctx.options.timeout).answered)
    arp = ctx.netns.neighbour_state(gateway)
    evidence = {"gateway": gateway, "icmp_echo": "reply" if answered else "no reply", "arp": arp}
    if not answered and arp in NUD_ANSWERED:
        evidence.update(layers.ping_filter(ctx, route, watch))
    if answered or arp in NUD_ANSWERED:
        how = "answers ICMP echo" if answered else f"answers ARP ({arp}) though not ICMP echo (the host filters ping)"
        yield ctx.ok(f"Gateway {gateway} {how}", evidence=evidence, key="gateway-answers")
        return
    device = layers.host_device(ctx, layers.source_address(ctx.netns.facts, route))
    evidence["host_side"] = device
    title = f"Gateway {gateway} does not answer: no ICMP reply, ARP {arp or 'no entry'}"
    if device is None:
        yield ctx.fail(title, detail=f"The target's link does not lead into the host namespace {ctx.host.path}, and "
                                     "nothing on it holds the gateway address.", evidence=evidence, key="gateway-silent")
        return
    down = _down_host_side(ctx, route, device)
    if down is not None:
        yield ctx.fail(f"The host side of {ctx.target.label}'s link is down: {down.name} "
                       f"({down.kind or 'device'}, state {down.operstate})",
                       detail=f"{down.name} in the host namespace is administratively down, so it passes no frame "
                              f"between {ctx.target.label} and the host: the gateway {gateway}, the host and everything "
                              "beyond it are out of reach.",
                       evidence={"device": down.name, "kind": down.kind, "up": down.up, "operstate": down.operstate,
                                 "gateway": gateway, "host_netns": ctx.host.path},
                       fix=Fix(f"Bring {down.name} up again (and find what took it down).",
                               (ctx.on_host(f"ip link set {down.name} up"),)),
                       key=f"host-link-down:{down.name}")
    summary, commands = layers.gateway_fix(ctx, route, device)
    yield ctx.fail(title, detail=f"The host side {device} does not hold {gateway} (address removed, or link down): "
                                 "every packet to another network is lost before it leaves the link.",
                   evidence=evidence, fix=Fix(summary, commands), key="gateway-silent")


def _down_host_side(ctx: CheckContext, route, device: str):
    """The host-side link of the target's route that is administratively down: its bridge (or routed
    veth), or the host end of its veth on that bridge."""
    host = ctx.host.facts
    out = ctx.netns.facts.link(index=route.oif) if route.oif else None
    peer = host.link(index=out.peer_index) if out is not None and out.kind == "veth" and out.peer_index else None
    if peer is not None and peer.peer_index != out.index:
        peer = None  # an index of another namespace than the one taken as the host's
    return next((link for link in (host.link(name=device), peer) if link is not None and not link.up), None)


def _nat(ctx: CheckContext, route) -> Iterator[Finding]:
    facts = ctx.netns.facts
    source, subnet = layers.source_address(facts, route), layers.subnet_of(facts, route)
    device = layers.host_device(ctx, source)
    if device is None or not layers.is_host_address(ctx, route.gateway or ""):
        yield ctx.info(f"{ctx.target.label}'s gateway {route.gateway} is not in the host namespace {ctx.host.path}: "
                       "NAT, if any, happens on that other router", evidence={"source": source}, key="nat-elsewhere")
        return
    network = next((n for a, n in ctx.networks() if a.ip == source), None)
    if network is not None and network.options.get(MASQUERADE_OPTION) == "false":
        yield ctx.info(f"Network {network.name} has IP masquerading turned off ({MASQUERADE_OPTION}=false): "
                       "routed without NAT by design", evidence={"network": network.name, "subnet": subnet},
                       key="nat-off-by-design")
        return
    if not layers.is_private(source):
        yield ctx.info(f"{source} is a public address: routed without NAT", evidence={"source": source}, key="public-source")
        return
    rules = ctx.host.firewall
    if rules.error:
        yield ctx.warn("Cannot tell whether the host NATs the target's traffic", detail=rules.error, key="nat-unknown")
        return
    egress = ctx.host.facts.egress_link()
    # any destination beyond the host: a rule for one destination or port does not count
    packet = Packet(4, src=source, iif=device, oif=egress.name if egress else "", state="new", far_outside=(subnet,))
    rule = layers.nat_rule(rules, packet)
    evidence = {"source": source, "subnet": subnet, "host_side": device, "egress_device": packet.oif or None,
                "nat_postrouting": f"{rule.place}: {rule.text}" if rule else "none"}
    if rule is not None:
        yield ctx.ok(f"The host {rule.action.kind.upper()}s {subnet} on the way out: {rule.text}", evidence=evidence,
                     key="masquerade")
        return
    summary, commands = layers.masquerade_fix(ctx, subnet, device, packet.oif or None)
    yield ctx.fail(f"No MASQUERADE/SNAT on the host for {subnet}: replies from outside cannot come back",
                   detail=f"Packets leave {packet.oif or 'the host'} with the private source {source}; remote hosts "
                          "cannot route their answers to it, so every connection beyond the host times out.",
                   evidence=evidence, fix=Fix(summary, commands), key="masquerade-missing")


def _on_own_network(ctx: CheckContext, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip.version == a.interface.version and ip in a.interface.network for a in ctx.netns.facts.addresses)


def _probe(ctx: CheckContext, spec: str, by_design: str | None) -> Finding:
    host, _, port = spec.rpartition(":")
    address, why = endpoint_address(ctx, host)
    key = f"probe:{spec}"
    if address is None:
        return ctx.warn(f"--probe {spec}: not probed", detail=why, key=key)
    watch = layers.watch_drops(ctx)
    result = ctx.netns.connect(address, int(port), ctx.options.timeout)
    evidence = {"probe": spec, **result.to_evidence()}
    if result.ok:
        return ctx.ok(f"{spec}: connected from {ctx.target.label} in {result.latency_ms:.1f} ms", evidence=evidence, key=key)
    layer = layers.explain_failure(ctx, result, watch=watch)
    evidence.update(layer=layer.name, **layer.evidence)
    if by_design and layer.name in ("no_route", "firewall") and not _on_own_network(ctx, address):
        # Docker gives internal networks no way out: either no default route or its isolation DROP rule
        return ctx.info(f"{spec}: not reachable, by design ({by_design})", detail=layer.summary, evidence=evidence, key=key)
    fix = Fix(layer.fix_summary, layer.fix_commands) if layer.fix_summary else None
    return ctx.fail(f"{spec}: {result.outcome}. Broken at: {layer.name}", detail=layer.summary, evidence=evidence, fix=fix,
                    key=key)
