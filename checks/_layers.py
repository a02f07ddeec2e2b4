"""Which layer stopped a connection from a target: its own routes, the gateway, the host's forwarding,
routes, firewall and NAT, or the far end. Shared by reachability and icc; reads facts only (the TCP
connect itself is probes/tcp.py, the filter-table walk netdoctor/filterpath.py).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from netdoctor import filterpath
from netdoctor.checks._bridges import host_ports
from netdoctor.facts.firewall import Rule, Ruleset

NAT_ACTIONS = ("MASQUERADE", "SNAT")


def describe(verdict: filterpath.Verdict, chain: str = "FORWARD") -> str:
    return filterpath.rule_line(verdict.rule) if verdict.rule else f"policy {verdict.action} of {chain}"


def nat_rule(rules: Ruleset, flow: filterpath.Flow) -> Rule | None:
    """The MASQUERADE/SNAT rule of the nat table's POSTROUTING that rewrites `flow`, following jumps into
    user chains; None when the flow leaves with its own source address (no rule, or an ACCEPT/RETURN first)."""

    def visit(chain: str, depth: int) -> tuple[bool, Rule | None]:
        for rule in rules.chain("nat", chain):
            if filterpath.matches(rule, flow) is not True:
                continue
            if rule.target in NAT_ACTIONS:
                return True, rule
            if rule.target == "ACCEPT":
                return True, None
            if rule.target == "RETURN":
                return False, None
            if rules.policy("nat", rule.target) == "-" and depth < filterpath.MAX_DEPTH:
                decided, found = visit(rule.target, depth + 1)
                if decided:
                    return True, found
        return False, None

    return visit("POSTROUTING", 0)[1]


@dataclass(frozen=True)
class Layer:
    """Where a failed connection broke, in words, with the values that show it."""

    name: str        # no_route, gateway, peer_down, forwarding, host_route, firewall, nat, refused, beyond_host, far_end
    summary: str
    evidence: dict = field(default_factory=dict)
    fix_summary: str = ""
    fix_commands: tuple[str, ...] = ()


def host_device(ctx, source: str) -> str | None:
    """The host device (bridge, or routed veth) the target's `source` address sits behind."""
    ports, _ = host_ports(ctx)
    return next((p.device for p in ports if p.address == source), None)


def is_host_address(ctx, address: str) -> bool:
    return any(a.address == address for a in ctx.host.facts.addresses)


def is_private(address: str) -> bool:
    """An address the internet cannot route back to, so leaving the host needs SNAT/MASQUERADE."""
    ip = ipaddress.ip_address(address)
    return ip.is_private and not ip.is_loopback


def source_address(facts, route) -> str:
    addresses = facts.addresses_of(route.oif, socket.AF_INET) if route.oif else []
    return addresses[0].address if addresses else "0.0.0.0"


def subnet_of(facts, route) -> str:
    addresses = facts.addresses_of(route.oif, socket.AF_INET) if route.oif else []
    return str(addresses[0].interface.network) if addresses else "0.0.0.0/0"


def _firewall_fix(ctx, found: filterpath.Verdict, flow: filterpath.Flow, chain: str) -> tuple[str, tuple[str, ...]]:
    if found.rule is not None and found.rule.chain.startswith("DOCKER") and found.rule.chain != "DOCKER-USER":
        # Docker's own isolation (networks kept apart, icc=false): deleting it would open every network
        network = _docker_network_of(ctx, flow.dst)
        return ("Docker itself isolates these networks on purpose (a rule in its own chain: deleting it would "
                "remove the isolation for every network, and Docker puts it back). Put the target on the "
                "destination's network instead.",
                (f"docker network connect {network} {ctx.target_name}",) if network else ())
    if found.rule is not None:
        return (f"Delete the rule that {found.action}s this traffic (or narrow it), then make the change "
                "persistent where your firewall rules are kept.",
                (ctx.on_host(f"iptables -D {found.rule.chain} {found.rule.text}"),))
    into = "DOCKER-USER" if chain == "FORWARD" and ctx.host.firewall.has_chain("filter", "DOCKER-USER") else chain
    return (f"The {chain} chain's policy is {found.action} and no rule accepts this flow: allow it explicitly"
            + (" (DOCKER-USER is the chain Docker leaves to you)." if into == "DOCKER-USER" else "."),
            (ctx.on_host(f"iptables -I {into} -s {flow.src} -d {flow.dst} -p tcp --dport {flow.dport} -j ACCEPT"),))


def _docker_network_of(ctx, address: str) -> str | None:
    """The Docker network whose subnet holds `address`, if any."""
    ip = ipaddress.ip_address(address)
    for network in ctx.docker.all_networks():
        if any(ip in ipaddress.ip_network(subnet, strict=False) for subnet in network.subnets):
            return network.name
    return None


def explain_failure(ctx, result) -> Layer:
    """Why a TCP connect (probes/tcp.ConnectResult) from the target failed, walking outwards from the target."""
    from netdoctor.probes.icmp import NUD_ANSWERED

    dst, port = result.host, result.port
    target = ctx.netns.facts
    route = target.route_to(dst)
    if route is None:
        return Layer("no_route", f"{ctx.target.label} has no route to {dst}: the connection never left it",
                     {"target_routes": [target.route_text(r) for r in target.routes if r.family == socket.AF_INET]},
                     *default_route_fix(ctx))
    evidence: dict = {"target_route": target.route_text(route)}
    refused = Layer("refused", f"{dst} answered with a reset: the network path works, nothing accepts connections "
                               f"on port {port} there", evidence,
                    f"Start the service on {dst}:{port}, or make it listen on that address (not only 127.0.0.1).")
    out_link = target.link(index=route.oif)
    next_hop = route.gateway or dst
    source = source_address(target, route)
    device = None if ctx.is_host_namespace else host_device(ctx, source)
    if device is None:
        where = "this machine" if ctx.is_host_namespace else f"the host namespace {ctx.host.path} (the target is not plugged into it)"
        return refused if result.outcome == "refused" else \
            Layer("beyond_host", f"no answer ({result.outcome}) and nothing to blame in {where}: the loss is beyond it "
                                 "(an upstream firewall, the remote host, or its route back)", evidence)
    evidence["host_interface"] = device
    host = ctx.host.facts
    to_host = is_host_address(ctx, dst)  # addressed to the host itself: INPUT, not forwarded
    routed = bool(route.gateway) and not to_host
    host_route = host.route_to(dst) if routed else None
    # an on-link peer is bridged: the host's FORWARD chain sees it (with br_netfilter) going out the same bridge
    egress = host.link(index=host_route.oif) if host_route and host_route.oif else None
    out_iface = "" if to_host else egress.name if egress else "" if routed else device
    chain = "INPUT" if to_host else "FORWARD"
    flow = filterpath.Flow(in_iface=device, out_iface=out_iface, src=source, dst=dst, state="NEW",
                           local_subnet=subnet_of(target, route), proto="tcp", dport=port)
    rules = ctx.host.firewall
    found = filterpath.walk(rules, flow, chain) if rules.error is None else None
    if found is not None:
        evidence[f"host_{chain.lower()}_verdict"] = describe(found, chain)
    else:
        evidence["host_firewall"] = rules.error
    firewall = Layer("firewall", f"the host's firewall {found.action}s this connection: {describe(found, chain)}",
                     evidence, *_firewall_fix(ctx, found, flow, chain)) if found is not None and found.dropped else None
    if result.outcome == "refused":
        return firewall if firewall and found.action == "REJECT" else refused
    arp = ctx.netns.neighbour_state(next_hop)
    evidence[f"arp {next_hop}"] = arp or "no entry"
    if arp not in NUD_ANSWERED:
        what = "gateway" if route.gateway else "peer"
        return Layer("gateway" if route.gateway else "peer_down",
                     f"nothing answers ARP for the {what} {next_hop} on {out_link.name if out_link else 'the link'} "
                     f"(state {arp or 'none'}): packets cannot even leave the target's link", evidence,
                     *gateway_fix(ctx, route, device))
    if routed:
        forwarding = ctx.host.sysctl("net.ipv4.ip_forward")
        evidence["host net.ipv4.ip_forward"] = forwarding
        if forwarding != "1":
            return Layer("forwarding", f"the host does not forward packets (net.ipv4.ip_forward={forwarding}): "
                                       f"the SYN to {dst} stops at {next_hop}", evidence,
                         "Turn IPv4 forwarding back on in the host namespace (and persist it in /etc/sysctl.d/).",
                         (ctx.on_host("sysctl -w net.ipv4.ip_forward=1"),))
        if host_route is None:
            return Layer("host_route", f"the host has no route to {dst} (and no default route)", evidence,
                         f"Give the host a route towards {dst}, usually its default route via the uplink's router.")
        evidence["host_route"] = host.route_text(host_route)
    if firewall:
        return firewall
    if found is not None and routed and is_private(source):
        nat = nat_rule(rules, flow)
        evidence["host_nat"] = filterpath.rule_line(nat) if nat else "none"
        if nat is None:
            return Layer("nat", f"no MASQUERADE/SNAT on the host for {source} leaving by {out_iface}: {dst} sees a "
                                "private source address and its replies never find their way back", evidence,
                         *masquerade_fix(ctx, subnet_of(target, route), device, out_iface))
    where = "beyond this host: an upstream firewall, the remote host, or its route back" if routed else \
        "the host's or peer's own service (overloaded, or a firewall of its own)" if to_host else \
        "the peer itself (its own firewall, or it is overloaded)"
    return Layer("beyond_host" if routed else "far_end", f"the host passes this connection{' and NATs it' if routed else ''}; "
                 f"no answer came back ({result.outcome}), so the loss is {where}", evidence)


def masquerade_fix(ctx, subnet: str, device: str, egress: str | None) -> tuple[str, tuple[str, ...]]:
    out = f"-o {egress}" if egress and not ctx.container else f"! -o {device}"
    commands = [ctx.on_host(f"iptables -t nat -A POSTROUTING -s {subnet} {out} -j MASQUERADE")]
    summary = f"Masquerade {subnet} on its way out of the host."
    if ctx.container:
        summary += " Docker writes this rule itself at start: if something flushed the nat table, restarting Docker restores it."
        commands.append("sudo systemctl restart docker")
    return summary, tuple(commands)


def default_route_fix(ctx) -> tuple[str, tuple[str, ...]]:
    gateway = default_gateway_candidate(ctx)
    commands = [ctx.in_target(f"ip route add default via {gateway}")] if gateway else []
    summary = f"Add a default route via {gateway if gateway else 'the gateway of the target network'} in the target's namespace"
    if ctx.container:
        commands.append(f"docker restart {ctx.container.name}")
        summary += "; restarting the container makes Docker set its routes again"
    return summary + ".", tuple(commands)


def default_gateway_candidate(ctx) -> str | None:
    """The gateway the target should use: Docker's for a container, else a host address on the target's link."""
    for attachment, network in ctx.networks():
        if attachment.gateway and not network.internal:
            return attachment.gateway
    if ctx.is_host_namespace:
        return None
    for address in ctx.netns.facts.addresses:
        if address.family != socket.AF_INET or address.interface.ip.is_loopback:
            continue
        for host_address in ctx.host.facts.addresses:
            if host_address.family == socket.AF_INET and host_address.address != address.address \
                    and ipaddress.ip_address(host_address.address) in address.interface.network:
                return host_address.address
    return None


def gateway_fix(ctx, route, device: str) -> tuple[str, tuple[str, ...]]:
    gateway = route.gateway
    if not gateway:
        return ("Start the peer (or check it is still attached to this network).", ())
    prefix = next((a.prefixlen for a in ctx.netns.facts.addresses_of(route.oif, socket.AF_INET)), 24) if route.oif else 24
    commands = (ctx.on_host(f"ip addr add {gateway}/{prefix} dev {device}"), ctx.on_host(f"ip link set {device} up"))
    if ctx.container:
        return (f"The host bridge {device} does not answer for {gateway}: it lost its address or is down. "
                "Restarting Docker re-creates bridge addresses.", commands + ("sudo systemctl restart docker",))
    return (f"Give the host side {device} the gateway address {gateway} again, and make sure it is up.", commands)
