"""Which layer stopped a connection from a target: its own routes, the gateway, the host's forwarding,
routes, firewall and NAT, or the far end. Shared by reachability and icc; reads facts only (the TCP
connect itself is probes/tcp.py, the packet's way through the firewall netdoctor/firewall).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from netdoctor.checks import _firewall as fw_
from netdoctor.checks._bridges import host_ports
from netdoctor.firewall import FORWARDED, FROM_HOST, TO_HOST, Packet, Rule, commands, docker, follow
from netdoctor.firewall.counters import DropWatch, syns_sent
from netdoctor.netns import NamespaceError


def watch_drops(ctx) -> DropWatch | None:
    """Take right before an active probe (gateway, --probe, --peer, a nameserver): it reads the host firewall's
    counters then, and after a failure `explain_failure(..., watch=)` names the rule whose counter moved by at
    least the probe's packets."""
    try:
        return DropWatch(ctx.host)
    except (OSError, TimeoutError, NamespaceError):  # the host namespace cannot be entered or read in time
        return None


def nat_rule(firewall, packet: Packet) -> Rule | None:
    """The MASQUERADE/SNAT rule (any backend) that rewrites `packet` on its way out; None when it leaves with its
    own source address (no such rule, or an ACCEPT/RETURN before one)."""
    found = follow(firewall, packet, ("postrouting",)).translations()
    return next((r for r in found if r.action.kind in ("masquerade", "snat")), None)


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


def ping_filter(ctx, route, watch: DropWatch | None) -> dict:
    """Evidence on what in the host's firewall stops an echo to the gateway that ARP shows is there."""
    source = source_address(ctx.netns.facts, route)
    packet = Packet(4, src=source, dst=route.gateway, proto="icmp", iif=host_device(ctx, source), oif="", state="new",
                    src_local=False, dst_local=True)
    firewall = ctx.host.firewall
    if firewall.error:
        return {}
    path = follow(firewall, packet, TO_HOST)
    evidence = {"host_input_verdict": path.describe()}
    if watch is not None:
        evidence.update(watch.blame([path]).to_evidence())
    return evidence


def is_host_address(ctx, address: str) -> bool:
    return any(a.address == address for a in ctx.host.facts.addresses)


def is_private(address: str) -> bool:
    """An address the internet cannot route back to, so leaving the host needs SNAT/MASQUERADE."""
    ip = ipaddress.ip_address(address)
    return ip.is_private and not ip.is_loopback


def source_address(facts, route) -> str:
    """The address the target sends from along `route`, of the route's own family (IPv4 or IPv6)."""
    addresses = _global_addresses(facts, route)
    return addresses[0].address if addresses else ("::" if route.family == socket.AF_INET6 else "0.0.0.0")


def subnet_of(facts, route) -> str:
    addresses = _global_addresses(facts, route)
    return str(addresses[0].interface.network) if addresses else ("::/0" if route.family == socket.AF_INET6 else "0.0.0.0/0")


def _global_addresses(facts, route) -> list:
    addresses = facts.addresses_of(route.oif, route.family) if route.oif else []
    return [a for a in addresses if not a.interface.ip.is_link_local] or addresses


def host_device_of(ctx, facts, route) -> str | None:
    """The host device behind the target's interface that `route` leaves by. The host's side is known by the
    interface's IPv4 address, so an IPv6 route on the same interface finds it too."""
    ipv4 = facts.addresses_of(route.oif, socket.AF_INET) if route.oif else []
    return host_device(ctx, ipv4[0].address) if ipv4 else None


def is_own_address(facts, address: str) -> bool:
    """IPv4 loopback, or an address the target's interfaces hold (::1 only where IPv6 is on): a connection
    to it never leaves the namespace."""
    ip = ipaddress.ip_address(address)
    return (ip.version == 4 and ip.is_loopback) or any(ipaddress.ip_address(a.address) == ip for a in facts.addresses)


def _docker_network_of(ctx, address: str) -> str | None:
    """The Docker network whose subnet holds `address`, if any."""
    ip = ipaddress.ip_address(address)
    for network in ctx.docker.all_networks():
        if any(ip in ipaddress.ip_network(subnet, strict=False) for subnet in network.subnets):
            return network.name
    return None


def _reply(packet: Packet, to_host: bool, routed: bool, egress, ctx, firewall) -> tuple[Packet, tuple[str, ...]]:
    """The far end's answers, as the host's hooks see them, and the hooks they cross: from the host itself
    (output), or forwarded back in; NATed on the way out, they come back to the egress address and conntrack
    restores the target's at the dstnat priority."""
    back = Packet(packet.family, src=packet.dst, dst=packet.src, proto=packet.proto, sport=packet.dport,
                  iif="" if to_host else packet.oif, oif=packet.iif, state="established", src_local=to_host,
                  dst_local=False, far_outside=packet.far_outside, ephemeral=("dport",))
    if to_host:
        return back, FROM_HOST
    if routed and egress is not None and nat_rule(firewall, packet) is not None:
        wanted = socket.AF_INET6 if packet.family == 6 else socket.AF_INET
        own = [a.address for a in ctx.host.facts.addresses_of(egress.index, wanted) if a.scope == 0]
        if own:
            back = Packet(packet.family, src=packet.dst, dst=own[0], denat_dst=packet.src, proto=packet.proto,
                          sport=packet.dport, iif=packet.oif, oif=packet.iif, state="established", dst_local=True,
                          far_outside=packet.far_outside, ephemeral=("dport",))
    return back, FORWARDED


def _walk(ctx, firewall, packet: Packet, hooks: tuple[str, ...], to_host: bool, routed: bool, egress) -> list:
    """The connection's two directions through the host's hooks, as flows a fix can name."""
    back, back_hooks = _reply(packet, to_host, routed, egress, ctx, firewall)
    fields = ("src", "dst", "proto", "dport")
    return [fw_.flow("outgoing", follow(firewall, packet, hooks), fields),
            fw_.flow("replies", follow(firewall, back, back_hooks), ("src", "dst", "proto", "sport", "state"))]


def _firewall_layer(ctx, result, flows: list, device: str, watch: DropWatch | None, packets: int | None,
                    evidence: dict) -> Layer | None:
    """The host's firewall as the place the connection broke: a rule whose counter the probe's packets moved,
    else what the walk says drops the connection, on its way out or on its way back."""
    if packets is None:
        packets = syns_sent(result.latency_ms / 1000) if flows[0].packet.proto == "tcp" else 1
    blame = watch.blame([f.path for f in flows], packets) if watch is not None else None
    if blame is not None:
        evidence.update(blame.to_evidence())
    culprit = blame.culprit if blame is not None else None
    dropped = next((f for f in flows if f.path.dropped), None)
    decided = dropped.path.drop if dropped else None
    if culprit is not None and not (decided is not None and culprit.key == (decided.rule or decided.chain).key):
        moved = dict((item.key, delta) for item, delta in blame.moved)[culprit.key]
        return Layer("firewall", f"the counter of {culprit.place}: {culprit.text} moved by {moved} packet(s) (the probe "
                                 f"sent {blame.packets}) while the probe ran: it dropped the probe", evidence,
                     "Delete or narrow that rule (it matches this traffic on something netdoctor cannot see "
                     "statically), then make the change persistent where your firewall rules are kept.",
                     (ctx.on_host(commands.delete(culprit)),) if isinstance(culprit, Rule) else ())
    if decided is None:
        return None
    verb = "rejects" if decided.verdict == "reject" else "drops"
    what = "this connection" if dropped.direction == "outgoing" else "the replies of this connection on their way back"
    family = flows[0].packet.family
    ep = fw_.container_endpoint(ctx, device, family, flows[0].packet.src)
    engine = fw_.engine_of(ctx)
    gone = None
    if ep is not None:
        uplink, far = fw_.uplink_of(ctx, family), fw_.far_outside(ctx, family)
        if fw_.rules_gone(ctx, ctx.host.firewall, engine, ep, uplink, far):
            gone = fw_.rules_gone_fix(ctx.host.firewall, engine, [device])[1]
    join = _docker_network_of(ctx, flows[0].packet.dst) if decided.rule is not None and \
        docker.owner(decided.rule) == "docker" else None
    fix = fw_.unblock_fix(ctx, decided, flows, {device}, engine, gone=gone, join=join)
    return Layer("firewall", f"the host's firewall {verb} {what}: {decided.describe()}"
                 + (" (its counter moved during the probe)" if culprit is not None else ""),
                 evidence, fix.summary, fix.commands)


def explain_failure(ctx, result, proto: str = "tcp", watch: DropWatch | None = None, packets: int | None = None) -> Layer:
    """Why a TCP connect (probes/tcp.ConnectResult) from the target failed, walking outwards from the target,
    on the way out and on the way back. `proto` "udp": a datagram exchange (a DNS query, host/port/outcome
    alike) that got no answer. `watch` (watch_drops, taken right before the probe): the rule whose counter
    moved by at least the probe's `packets` (for TCP: the SYNs its wait surely sent) is named."""
    from netdoctor.probes.icmp import NUD_ANSWERED

    dst, port = result.host, result.port
    target = ctx.netns.facts
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    if is_own_address(target, dst):  # loopback or its own address: the kernel answers inside the namespace
        return Layer("refused" if result.outcome == "refused" else "far_end",
                     f"{dst} is {ctx.target.label}'s own address: the connection never left its namespace, and "
                     + (f"nothing listens on port {port} there" if result.outcome == "refused" else
                        f"no answer ({result.outcome}) means its own firewall drops it or the service is stuck"),
                     {"destination": "the target itself"},
                     f"Start the service on port {port} in {ctx.target.label} (listening on {dst} or on all addresses)."
                     if result.outcome == "refused" else "")
    route = target.route_to(dst)
    if route is None:
        return Layer("no_route", f"{ctx.target.label} has no {'IPv6 ' if family == socket.AF_INET6 else ''}route to "
                                 f"{dst}: the connection never left it",
                     {"target_routes": [target.route_text(r) for r in target.routes if r.family == family],
                      "family": "ipv6" if family == socket.AF_INET6 else "ipv4"},
                     *default_route_fix(ctx, family))
    source = source_address(target, route)
    evidence: dict = {"target_route": target.route_text(route), "source": source}
    refused = Layer("refused", f"{dst} answered with a reset: the network path works, nothing accepts connections "
                               f"on port {port} there", evidence,
                    f"Start the service on {f'[{dst}]' if family == socket.AF_INET6 else dst}:{port}, or make it listen on "
                    f"that address (not only {'::1' if family == socket.AF_INET6 else '127.0.0.1'}).")
    out_link = target.link(index=route.oif)
    next_hop = route.gateway or dst
    device = None if ctx.is_host_namespace else host_device_of(ctx, target, route)
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
    hooks = TO_HOST if to_host else FORWARDED
    hook = "input" if to_host else "forward"
    packet = Packet(6 if family == socket.AF_INET6 else 4, src=source, dst=dst, proto=proto, dport=port, iif=device,
                    oif=out_iface, state="new", src_local=False, dst_local=to_host,
                    far_outside=() if routed else (subnet_of(target, route),), ephemeral=("sport",))
    rules = ctx.host.firewall
    flows = _walk(ctx, rules, packet, hooks, to_host, routed, egress) if rules.error is None else []
    for item in flows:
        evidence[f"host_{hook if item.direction == 'outgoing' else 'replies'}_verdict"] = item.path.describe()
    partial = [f"{r.place}: {r.text}" for item in flows for r in item.path.partial_drops]
    if partial:
        evidence["may_drop_in_part"] = list(dict.fromkeys(partial))
    if rules.error is not None:
        evidence["host_firewall"] = rules.error
    firewall = None
    if flows and result.outcome != "connected":
        firewall = _firewall_layer(ctx, result, flows, device, watch, packets, evidence)
    found = flows[0].path if flows else None
    if result.outcome == "refused":
        return firewall if firewall and found.verdict == "reject" else refused
    arp = ctx.netns.neighbour_state(next_hop)
    lookup = "ARP" if family == socket.AF_INET else "neighbour discovery"
    evidence[f"{'arp' if family == socket.AF_INET else 'ndp'} {next_hop}"] = arp or "no entry"
    if arp not in NUD_ANSWERED:
        what = "gateway" if route.gateway else "peer"
        return Layer("gateway" if route.gateway else "peer_down",
                     f"nothing answers {lookup} for the {what} {next_hop} on {out_link.name if out_link else 'the link'} "
                     f"(state {arp or 'none'}): packets cannot even leave the target's link", evidence,
                     *gateway_fix(ctx, route, device))
    if routed:
        switch = "net.ipv4.ip_forward" if family == socket.AF_INET else "net.ipv6.conf.all.forwarding"
        forwarding = ctx.host.sysctl(switch)
        evidence[f"host {switch}"] = forwarding
        if forwarding != "1":
            return Layer("forwarding", f"the host does not forward packets ({switch}={forwarding}): "
                                       f"the SYN to {dst} stops at {next_hop}", evidence,
                         f"Turn IPv{4 if family == socket.AF_INET else 6} forwarding back on in the host namespace "
                         "(and persist it in /etc/sysctl.d/).",
                         (ctx.on_host(f"sysctl -w {switch}=1"),))
        if host_route is None:
            return Layer("host_route", f"the host has no route to {dst} (and no default route)", evidence,
                         f"Give the host a route towards {dst}, usually its default route via the uplink's router.")
        evidence["host_route"] = host.route_text(host_route)
    if firewall:
        return firewall
    if found is not None and routed and is_private(source):
        nat = nat_rule(rules, packet)
        evidence["host_nat"] = f"{nat.place}: {nat.text}" if nat else "none"
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
    tool = "ip6tables" if ":" in subnet else "iptables"
    commands_ = [ctx.on_host(f"{tool} -t nat -A POSTROUTING -s {subnet} {out} -j MASQUERADE")]
    summary = f"Masquerade {subnet} on its way out of the host."
    off = fw_.docker_rules_off(ctx, ctx.host.firewall, 6 if ":" in subnet else 4) if ctx.container else ""
    if off:
        summary += f" Docker writes no such rule here ({off}): it is yours to keep."
    elif ctx.container:
        summary += (" Docker writes this rule itself at start (iptables backend: the nat table; nftables backend: "
                    f"table {docker.NFT_TABLE}): if something flushed it, restarting Docker restores it.")
        commands_.append("sudo systemctl restart docker")
    return summary, tuple(commands_)


def default_route_fix(ctx, family: int = socket.AF_INET) -> tuple[str, tuple[str, ...]]:
    if family == socket.AF_INET6:
        return _ipv6_route_fix(ctx)
    gateway = default_gateway_candidate(ctx)
    commands = [ctx.in_target(f"ip route add default via {gateway}")] if gateway else []
    summary = f"Add a default route via {gateway if gateway else 'the gateway of the target network'} in the target's namespace"
    if ctx.container:
        commands.append(f"docker restart {ctx.container.name}")
        summary += "; restarting the container makes Docker set its routes again"
    return summary + ".", tuple(commands)


def _ipv6_route_fix(ctx) -> tuple[str, tuple[str, ...]]:
    """No IPv6 route: usually no IPv6 at all (Docker networks have none unless created with --ipv6)."""
    if not ctx.netns.facts.has_global_v6():
        if ctx.container:
            return (f"{ctx.target_name} has no IPv6 address: its networks were created without IPv6. Connect it to "
                    "a network made with --ipv6 and an IPv6 subnet, or probe the destination's IPv4 address.",
                    (f"docker network create --ipv6 --subnet fd00:d0c::/64 {ctx.target_name}-v6",
                     f"docker network connect {ctx.target_name}-v6 {ctx.target_name}"))
        return ("The target has no IPv6 address besides link-local ones: give its interface one (and a route), "
                "or probe the destination's IPv4 address.", ())
    return ("Add an IPv6 default route in the target's namespace (via the router on its link).",
            (ctx.in_target("ip -6 route add default via ROUTER-ADDRESS dev IFACE"),))


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
    default = 64 if route.family == socket.AF_INET6 else 24
    prefix = next((a.prefixlen for a in ctx.netns.facts.addresses_of(route.oif, route.family)), default) if route.oif else default
    commands = (ctx.on_host(f"ip addr add {gateway}/{prefix} dev {device}"), ctx.on_host(f"ip link set {device} up"))
    if ctx.container:
        return (f"The host bridge {device} does not answer for {gateway}: it lost its address or is down. "
                "Restarting Docker re-creates bridge addresses.", commands + ("sudo systemctl restart docker",))
    return (f"Give the host side {device} the gateway address {gateway} again, and make sure it is up.", commands)
