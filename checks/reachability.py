from __future__ import annotations

import ipaddress
import socket
from typing import Iterator

from netdoctor.checks import _layers as layers
from netdoctor.context import CheckContext
from netdoctor.dockerapi import ContainerNotFound
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.filterpath import Flow, rule_line
from netdoctor.probes import concurrently
from netdoctor.probes.icmp import NUD_ANSWERED
from netdoctor.registry import check

MASQUERADE_OPTION = "com.docker.network.bridge.enable_ip_masquerade"


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


def _probe_address(ctx: CheckContext, host: str) -> tuple[str | None, str]:
    """An IP literal as given, or a container's address (preferring a network it shares with the target).
    Names are not resolved with DNS here: that would query a resolver the user did not name."""
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


@check(id="reachability", title="Target reaches its gateway and beyond", scope=Scope.NAMESPACE, severity=Severity.HIGH,
       needs={Need.ROOT, Need.NETNS, Need.HOST_NETNS})
def reachability(ctx: CheckContext) -> Iterator[Finding]:
    """The target has a way out: a default route, a gateway that answers, NAT on the host, and reaches what you name.

    Looks at the target's own routes (a default route must exist), sends a small ICMP echo to its gateway
    and reads the ARP entry that leaves behind (REACHABLE: the gateway is there; INCOMPLETE/FAILED: nothing on
    the link holds that address), and checks that the host MASQUERADEs (or SNATs) the target's private
    subnet on the way out (the nat table's POSTROUTING). Each `--probe HOST:PORT` (an IP, or a container
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
                               (f"docker network connect bridge {ctx.target_name}",)))
    elif ctx.is_host_namespace:
        yield from _host_default_route(ctx)
    else:
        route = yield from _default_route(ctx)
        if route is not None:
            if route.gateway:
                yield _gateway(ctx, route)
            yield from _nat(ctx, route)
    if ctx.options.probes:
        yield from concurrently(lambda spec: _probe(ctx, spec, by_design), ctx.options.probes)


def _host_default_route(ctx: CheckContext) -> Iterator[Finding]:
    facts = ctx.netns.facts
    routes = facts.default_routes()
    if routes:
        yield ctx.ok(f"Default route: {facts.route_text(routes[0])}")
    else:
        yield ctx.warn("The host has no IPv4 default route: only directly connected and routed networks are reachable",
                       evidence={"routes": [facts.route_text(r) for r in facts.routes if r.family == socket.AF_INET]})


def _default_route(ctx: CheckContext):
    facts = ctx.netns.facts
    routes = facts.default_routes()
    evidence = {"routes": [facts.route_text(r) for r in facts.routes if r.family == socket.AF_INET]}
    if routes:
        yield ctx.ok(f"Default route: {facts.route_text(routes[0])}", evidence=evidence)
        return routes[0]
    yield ctx.fail(f"{ctx.target.label} has no default route: nothing beyond its own subnets is reachable",
                   detail="Connections to other networks fail at once with 'Network is unreachable'.",
                   evidence=evidence, fix=Fix(*layers.default_route_fix(ctx)))
    return None


def _gateway(ctx: CheckContext, route) -> Finding:
    """A small echo to the gateway, then its ARP entry: ICMP may be filtered by the host, ARP cannot be."""
    gateway = route.gateway
    answered = bool(ctx.netns.echo(gateway, [64], ctx.options.timeout).answered)
    arp = ctx.netns.neighbour_state(gateway)
    evidence = {"gateway": gateway, "icmp_echo": "reply" if answered else "no reply", "arp": arp}
    if answered or arp in NUD_ANSWERED:
        how = "answers ICMP echo" if answered else f"answers ARP ({arp}) though not ICMP echo (the host filters ping)"
        return ctx.ok(f"Gateway {gateway} {how}", evidence=evidence)
    device = layers.host_device(ctx, layers.source_address(ctx.netns.facts, route))
    evidence["host_side"] = device
    title = f"Gateway {gateway} does not answer: no ICMP reply, ARP {arp or 'no entry'}"
    if device is None:
        return ctx.fail(title, detail=f"The target's link does not lead into the host namespace {ctx.host.path}, and "
                                      "nothing on it holds the gateway address.", evidence=evidence)
    summary, commands = layers.gateway_fix(ctx, route, device)
    return ctx.fail(title, detail=f"The host side {device} does not hold {gateway} (address removed, or link down): "
                                  "every packet to another network is lost before it leaves the link.",
                    evidence=evidence, fix=Fix(summary, commands))


def _nat(ctx: CheckContext, route) -> Iterator[Finding]:
    facts = ctx.netns.facts
    source, subnet = layers.source_address(facts, route), layers.subnet_of(facts, route)
    device = layers.host_device(ctx, source)
    if device is None or not layers.is_host_address(ctx, route.gateway or ""):
        yield ctx.info(f"{ctx.target.label}'s gateway {route.gateway} is not in the host namespace {ctx.host.path}: "
                       "NAT, if any, happens on that other router", evidence={"source": source})
        return
    network = next((n for a, n in ctx.networks() if a.ip == source), None)
    if network is not None and network.options.get(MASQUERADE_OPTION) == "false":
        yield ctx.info(f"Network {network.name} has IP masquerading turned off ({MASQUERADE_OPTION}=false): "
                       "routed without NAT by design", evidence={"network": network.name, "subnet": subnet})
        return
    if not layers.is_private(source):
        yield ctx.info(f"{source} is a public address: routed without NAT", evidence={"source": source})
        return
    rules = ctx.host.firewall
    if rules.error:
        yield ctx.warn("Cannot tell whether the host NATs the target's traffic", detail=rules.error)
        return
    host = ctx.host.facts
    defaults = host.default_routes()
    egress = host.link(index=defaults[0].oif) if defaults and defaults[0].oif else None
    # any destination beyond the host: a rule for one destination or port does not count
    flow = Flow(in_iface=device, out_iface=egress.name if egress else "", src=source, dst=None, state="NEW",
                local_subnet=subnet)
    rule = layers.nat_rule(rules, flow)
    evidence = {"source": source, "subnet": subnet, "host_side": device, "egress_device": flow.out_iface or None,
                "nat_postrouting": rule_line(rule) if rule else "none"}
    if rule is not None:
        yield ctx.ok(f"The host {rule.target}s {subnet} on the way out: {rule_line(rule)}", evidence=evidence)
        return
    summary, commands = layers.masquerade_fix(ctx, subnet, device, flow.out_iface or None)
    yield ctx.fail(f"No MASQUERADE/SNAT on the host for {subnet}: replies from outside cannot come back",
                   detail=f"Packets leave {flow.out_iface or 'the host'} with the private source {source}; remote hosts "
                          "cannot route their answers to it, so every connection beyond the host times out.",
                   evidence=evidence, fix=Fix(summary, commands))


def _on_own_network(ctx: CheckContext, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in a.interface.network for a in ctx.netns.facts.addresses if a.family == socket.AF_INET)


def _probe(ctx: CheckContext, spec: str, by_design: str | None) -> Finding:
    host, _, port = spec.rpartition(":")
    address, why = _probe_address(ctx, host)
    if address is None:
        return ctx.warn(f"--probe {spec}: not probed", detail=why)
    result = ctx.netns.connect(address, int(port), ctx.options.timeout)
    evidence = {"probe": spec, **result.to_evidence()}
    if result.ok:
        return ctx.ok(f"{spec}: connected from {ctx.target.label} in {result.latency_ms:.1f} ms", evidence=evidence)
    layer = layers.explain_failure(ctx, result)
    evidence.update(layer=layer.name, **layer.evidence)
    if by_design and layer.name in ("no_route", "firewall") and not _on_own_network(ctx, address):
        # Docker gives internal networks no way out: either no default route or its isolation DROP rule
        return ctx.info(f"{spec}: not reachable, by design ({by_design})", detail=layer.summary, evidence=evidence)
    fix = Fix(layer.fix_summary, layer.fix_commands) if layer.fix_summary else None
    return ctx.fail(f"{spec}: {result.outcome}. Broken at: {layer.name}", detail=layer.summary, evidence=evidence, fix=fix)
