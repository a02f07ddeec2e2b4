from __future__ import annotations

import socket
from typing import Iterator

from netdoctor.checks import _firewall as fw_
from netdoctor.checks._bridges import HostPort, host_ports
from netdoctor.checks._firewall import Endpoint, Flow, Uplink
from netdoctor.context import CheckContext
from netdoctor.facts.engine import NFTABLES as NFT_BACKEND, EngineFacts
from netdoctor.firewall import FORWARDED, NFTABLES, Firewall, Packet, Rule, follow
from netdoctor.firewall import docker
from netdoctor.firewall.docker import GATEWAY_MODE, TRUSTED_INTERFACES
from netdoctor.fixes import recreate
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.registry import check


def _endpoints(ctx: CheckContext, ports: list[HostPort]) -> list[Endpoint]:
    """The target's IPv4 addresses behind host devices, and its global IPv6 addresses behind the same ones."""
    found = [Endpoint(p.device, 4, p.address, p.subnet, p.network) for p in ports]
    if ctx.container:
        for attachment, network in ctx.networks():
            if network.driver == "bridge" and attachment.ipv6:
                subnet = next((s for s in network.subnets if ":" in s), f"{attachment.ipv6}/64")
                found.append(Endpoint(network.bridge_name, 6, attachment.ipv6, subnet, network))
        return found
    target = ctx.netns.facts
    for port in ports:
        link = next((l for l in target.links if any(a.address == port.address for a in target.addresses_of(l.index))), None)
        for address in target.addresses_of(link.index, socket.AF_INET6) if link else ():
            if address.is_global_v6:
                found.append(Endpoint(port.device, 6, address.address, str(address.interface.network), None))
    return found


@check(id="forward_policy", title="Host firewall forwards the target's traffic", scope=Scope.NAMESPACE,
       severity=Severity.HIGH, needs={Need.ROOT, Need.NETNS, Need.HOST_NETNS, Need.IPTABLES})
def forward_policy(ctx: CheckContext) -> Iterator[Finding]:
    """The host's firewall, every backend of it, must let the target's traffic out and its replies back in.

    Docker accepts, per bridge network, traffic leaving the bridge and the replies coming back (20.10-27:
    rules straight in FORWARD; 28: DOCKER-FORWARD/DOCKER-CT; 29: the same without DOCKER-ISOLATION-*, or
    with `"firewall-backend": "nftables"` the `ip docker-bridges` table). Things that break it: a firewall
    manager or script wipes Docker's rules (firewalld reload, `iptables -F`, ufw reset) while the FORWARD
    policy stays DROP (moby#35043, moby#12294); a DOCKER-USER rule drops the bridge's traffic; a foreign
    chain or table drops before Docker's accepts count (ufw's forward chains, a firewalld zone that does
    not include the bridge: `inet firewalld` rejects what iptables accepted, since every base chain of a
    hook sees the packet); an iptables FORWARD policy DROP left behind after switching Docker 29 to
    nftables; a non-Docker bridge (libvirt, LXD) with no ACCEPT at all (moby#39439). Containers then reach
    each other and the host, but every connection beyond the host times out. IPv6 is judged the same way
    (ip6tables, ip6/inet tables) for a target with a global IPv6 address.

    netdoctor reads every backend in the host namespace (iptables-nft, iptables-legacy, native nftables
    tables, IPv4 and IPv6) and sends the target's two flows through every base chain of prerouting,
    forward and postrouting in priority order: new connections from its address in on its bridge and out
    through the uplink (the default route's device), and replies back (NAT undone where the kernel undoes
    it). The finding names the backend, table, chain and rule (or policy) that decides, and who owns it
    (Docker, DOCKER-USER, ufw, firewalld, Tailscale). Rules that also match on protocol, ports or
    something netdoctor cannot see drop only part of the traffic: warnings. On Docker 28+, peers reaching
    a container's address directly (a VPN such as tailscale0/wg0, or any interface of a routed-mode
    network) are checked too: Docker's raw-table DROP and unpublished-port DROP stop them; that is a
    warning only where a rule naming that interface or the container's network shows peers are meant to
    come in that way (a generic accept, such as Tailscale's of whatever it marked, shows nothing).
    With dockerd's --iptables=false (or --ip6tables=false) Docker writes no rules at all: the host's own
    rules are judged as for any bridge, and nothing is said to be "gone".

    Fix: delete the dropping rule or exempt the bridge's traffic above it (in the backend's own syntax);
    where a policy decides, accept the bridge's traffic to the uplink and its replies (never `-i BRIDGE`
    alone in DOCKER-USER, which would bypass Docker's isolation between networks); when Docker's rules
    are gone, `systemctl restart docker` rewrites them (with firewalld: the bridges in its 'docker' zone);
    for direct routing, the network options gateway_mode_ipv4=routed or trusted_host_interfaces=IFACE
    (Docker 28.2+).
    """
    ports, skipped = host_ports(ctx)
    endpoints = _endpoints(ctx, ports)
    if not endpoints:
        yield ctx.info("Not applicable: no traffic of this target is forwarded by the host",
                       detail="; ".join(skipped), key="not-applicable")
        return
    firewall = ctx.host.firewall
    if firewall.error:
        yield ctx.skip("Host firewall could not be read", detail=firewall.error, key="firewall-unread")
        return
    engine = fw_.engine_of(ctx)
    for ep in endpoints:
        if ep.network is not None and ep.network.internal:
            if ep.family == 4:
                yield ctx.info(f"{ep.label} is internal: Docker blocks its forwarding by design",
                               key=f"internal:{ep.device}")
            continue
        uplink = fw_.uplink_of(ctx, ep.family)
        far = fw_.far_outside(ctx, ep.family)
        flows = fw_.forward_flows(firewall, ep, uplink, far)
        yield from _judge(ctx, ep, flows, firewall, engine, uplink, far)
        yield from _direct(ctx, ep, firewall, uplink)


def _base_evidence(ctx: CheckContext, ep: Endpoint, firewall: Firewall, engine: EngineFacts | None, uplink: Uplink) -> dict:
    evidence = {"device": ep.device, "address": ep.address, "ip_version": f"IPv{ep.family}", "subnet": ep.subnet,
                "uplink": uplink.name, "network": ep.network.name if ep.network else None,
                "backends": firewall.backends(ep.family), "host_netns": ctx.host.path}
    if engine is not None:
        evidence.update(engine.to_evidence())
    if ep.family == 6:
        evidence["host net.ipv6.conf.all.forwarding"] = ctx.host.sysctl("net.ipv6.conf.all.forwarding")
    return evidence


def _judge(ctx: CheckContext, ep: Endpoint, flows: dict[str, Flow], firewall: Firewall, engine: EngineFacts | None,
           uplink: Uplink, far: tuple[str, ...]) -> Iterator[Finding]:
    base = _base_evidence(ctx, ep, firewall, engine, uplink)
    bridges = {ep.device}
    if ep.network is not None and fw_.bridge_here(ctx, ep.device):
        off = fw_.docker_rules_off(ctx, firewall, ep.family)
        if off:
            base["docker_rules"] = f"none: {off}; the rules for this network are the host's own"
    if fw_.rules_gone(ctx, firewall, engine, ep, uplink, far):
        yield _rules_gone(ctx, ep, flows, firewall, engine, base)
        return
    bad = False
    for item in flows.values():
        if not item.path.dropped:
            continue
        bad = True
        yield _dropped(ctx, ep, item, flows, engine, uplink, base)
    # a rule already reported as dropping one direction outright is not repeated as a partial drop
    deciding = {f.path.drop.decided_by for f in flows.values() if f.path.dropped}
    partial = {item.text: (d, item) for d, f in flows.items() for item in f.path.partial_drops if item.text not in deciding}
    for text, (direction, item) in partial.items():
        bad = True
        yield ctx.warn(f"{item.place} may drop part of {ep.label}'s {direction} traffic: {text}",
                       detail="The rule (or the policy, after a rule that accepts only some of this traffic) also "
                              "depends on protocol, ports, far-end address or something netdoctor cannot see (a mark, "
                              "a rate limit, an ipset): some connections of the target are dropped while others work. "
                              "Keep it if that is intended.",
                       evidence={**base, "direction": direction, "rule": text, "where": item.place,
                                 "owner": docker.owner(item, bridges) or "host"},
                       key=f"firewall-drop-partial:{direction}{ep.suffix}:{ep.device}")
    if not bad:
        yield ctx.ok(f"The host forwards {ep.label}'s traffic both ways",
                     evidence={**base, **{f"{d}_accepted_by": f.path.describe() for d, f in flows.items()}},
                     key=f"forwarded{ep.suffix}:{ep.device}")


def _rules_gone(ctx: CheckContext, ep: Endpoint, flows: dict[str, Flow], firewall: Firewall,
                engine: EngineFacts | None, base: dict) -> Finding:
    missing = fw_.missing_docker_parts(firewall, engine, ep.family)
    dropped = [d for d, f in flows.items() if f.path.dropped]
    why, fix = fw_.rules_gone_fix(firewall, engine, [ep.device])
    evidence = {**base, "missing": missing, "dropped": dropped,
                "outgoing_decided_by": flows["outgoing"].path.describe(), "probable_cause": why}
    detail = (f"No rule of Docker's accepts traffic from {ep.device} in the host's firewall"
              + (f" ({', '.join(missing)} gone)" if missing else " (its chains are there, but empty or not jumped to)")
              + f" although {ctx.target.label} is on Docker network {ep.network.name}: {why}. Published ports, NAT "
              "and network isolation went with them (unless dockerd runs with --iptables=false, in which case these "
              "rules are yours to write).")
    key = f"docker-rules-missing:forward{ep.suffix}:{ep.device}"
    if dropped:
        step = flows[dropped[0]].path.drop
        return ctx.fail(f"Docker's rules for {ep.label} are gone and {step.decided_by} drops its traffic; restart docker",
                        detail=detail, evidence=evidence, fix=fix, key=key)
    return ctx.warn(f"Docker's rules for {ep.label} are gone; restart docker", detail=detail, evidence=evidence,
                    fix=fix, key=key)


def _flow_text(direction: str, ep: Endpoint, uplink: Uplink) -> str:
    if direction == "outgoing":
        return f"in {ep.device}, out {uplink.name}, from {ep.address}, NEW"
    return f"in {uplink.name}, out {ep.device}, to {ep.address}, ESTABLISHED"


def _dropped(ctx: CheckContext, ep: Endpoint, item: Flow, flows: dict[str, Flow], engine: EngineFacts | None,
             uplink: Uplink, base: dict) -> Finding:
    direction, path = item.direction, item.path
    step = path.drop
    bridges = {ep.device}
    fix = fw_.unblock_fix(ctx, step, list(flows.values()), bridges, engine)
    who = docker.owner(step.rule or step.chain, bridges)
    what = (f"outgoing traffic of {ep.address} on {ep.label}" if direction == "outgoing"
            else f"replies to {ep.address} on {ep.label}")
    evidence = {**base, "direction": direction, **fw_.drop_evidence(step, bridges),
                "accepted_in_part_by": [r.text for r in path.partial_accepts]}
    key = f"firewall-drop:{direction}{ep.suffix}:{ep.device}"
    if engine is not None and engine.backend == NFT_BACKEND and step.chain.backend != NFTABLES and step.rule is None:
        return ctx.fail(f"{step.chain.place} policy {step.verdict.upper()} drops {what}, although Docker's nftables "
                        "rules accept it",
                        detail=f"This engine writes its rules into nftables (table {docker.NFT_TABLE}), but iptables' "
                               f"FORWARD chain still has policy DROP (left from when Docker used iptables, or set by "
                               "another tool): every base chain of the forward hook sees the packet, and a drop in any "
                               "of them is final.",
                        evidence=evidence, key=key, fix=fix)
    cause = "" if not who else f" ({docker.describe_owner(who)})"
    if step.rule is not None:
        title = f"{step.rule.place} {step.verdict.upper()}s {what}: {step.rule.text}"
        detail = (f"The {direction} flow ({_flow_text(direction, ep, uplink)}) meets this rule{cause} before anything "
                  "accepts it: connections from the target to anything beyond the host time out"
                  + (" or are refused." if step.verdict == "reject" else "."))
    else:
        title = f"{step.chain.place} policy {step.verdict.upper()} drops {what}: no rule accepts it"
        detail = (f"No rule of {step.chain.place} or the chains it jumps to accepts the {direction} flow "
                  f"({_flow_text(direction, ep, uplink)}), so the policy decides.")
    return ctx.fail(title, detail=detail, evidence=evidence, key=key, fix=fix)


# --- peers that reach the container's address directly (Docker 28+) --------------------------------------

def _direct_ports(ctx: CheckContext, published_only: bool) -> list[int | None]:
    ports = {p.container_port for p in (ctx.container.published if ctx.container else ()) if p.proto == "tcp"}
    if not published_only:
        ports |= {l.port for l in ctx.netns.facts.listeners if l.proto == "tcp" and not l.loopback_only}
    return sorted(ports) or [None]


def _names_the_way_in(rule: Rule) -> bool:
    """The rule is about this way in: it names the interface or the container's addresses (a rule that matched
    the packet for certain and names them at all names these ones)."""
    return any(not m.negate and (m.field == "iif" or (m.field == "dst" and all(getattr(v, "prefixlen", 32) > 0
                                                                                  for v in m.values)))
               for m in rule.matches)


def _intended(firewall: Firewall, packet: Packet, bridges: set[str]) -> bool:
    """A rule that is not Docker's accepts this traffic for certain in the forward hook, naming the interface
    or the container's network: someone means peers there to reach it directly. An accept that matches only
    in part (Tailscale's generic `-m mark --mark 0x40000/0xff0000 -j ACCEPT`) says nothing about this network."""
    path = follow(firewall, packet, ("forward",))
    return any(s.rule is not None and s.verdict == "accept" and docker.owner(s.rule, bridges) != "docker"
               and _names_the_way_in(s.rule) for s in path.steps)


def _direct(ctx: CheckContext, ep: Endpoint, firewall: Firewall, uplink: Uplink) -> Iterator[Finding]:
    mode = docker.gateway_mode(ep.network.options, ep.family) if ep.network else "nat"
    candidates = [(i, False) for i in fw_.vpn_like(ctx) if i != ep.device]
    if mode in ("routed", "nat-unprotected") and uplink.name != fw_.UNKNOWN_UPLINK:
        candidates.append((uplink.name, True))  # a routed network is meant to be reached directly
    bridges = {ep.device}
    for iface, published_only in candidates:
        drops, packet = {}, None
        for port in _direct_ports(ctx, published_only):
            packet = Packet(ep.family, dst=ep.address, iif=iface, oif=ep.device, proto="tcp" if port else None,
                            dport=port, state="new", dst_local=False, far_outside=(ep.subnet,), ephemeral=("sport",))
            step = follow(firewall, packet, FORWARDED).drop
            if step is not None and step.rule is not None and (docker.is_direct_access_drop(step.rule)
                                                                 or docker.is_unpublished_port_drop(step.rule)):
                drops.setdefault(step.rule.text, (step, []))[1].append(port)
        if not drops:
            continue
        # a routed network is meant to be reached directly; elsewhere, a rule accepting that interface says so
        intended = mode in ("routed", "nat-unprotected") or _intended(firewall, packet, bridges)
        step, ports = next(iter(drops.values()))
        rule = step.rule
        name = ep.network.name if ep.network else ep.device
        if docker.is_direct_access_drop(rule):
            where = ("addressed to a container from anywhere but its own bridge, in the raw table: before any ACCEPT "
                     "in filter, DOCKER-USER or a VPN's own chains (Tailscale's ts-forward) can count")
            fix = Fix(f"If peers on {iface} should reach containers of {name} directly: trust that interface on the "
                      "network (Docker 28.2+), or make the network routed (no NAT; only published ports open) or "
                      "nat-unprotected; networks cannot change options in place, so recreate it and reconnect its "
                      "containers. Or publish the port and use the host's address.",
                      (f"docker network create -o {TRUSTED_INTERFACES}={iface} {name}-trusted  # then docker network "
                       f"connect {name}-trusted {ctx.target_name}",
                       f"# or: docker network create -o {GATEWAY_MODE}{ep.family}=routed {name}-routed",
                       "# or (every network, Docker 28.2+): daemon.json \"allow-direct-routing\": true"))
        else:
            where = "routed into the bridge from outside it unless they go to a published port (the unpublished-port DROP)"
            publish = " ".join(f"-p {p}:{p}" for p in ports if p)
            fix = Fix(f"Publish the port(s) that peers on {iface} should reach directly (publishing opens them to direct "
                      f"routing too), or make {name} nat-unprotected, which opens every port.",
                      recreate(ctx.container, publish) if ctx.container and publish else
                      (f"docker network create -o {GATEWAY_MODE}{ep.family}=nat-unprotected {name}-open",))
        evidence = {"interface": iface, "address": ep.address, "ports": [p for p in ports if p], "network": name,
                    "gateway_mode": mode, "rules": list(drops), **fw_.drop_evidence(step, bridges),
                    "intent_seen": intended}
        status = ctx.warn if intended else ctx.info
        yield status(f"Peers on {iface} cannot reach {ctx.target_name}'s {ep.address} directly: {rule.place} drops "
                     f"them: {rule.text}",
                     detail=f"Since Docker 28, a network in gateway mode nat (the default) drops packets {where}. "
                            f"Hosts that route {ep.subnet} to this host over {iface} (a VPN, a subnet router, a static route) "
                            "reach only published ports through the host's own address."
                            + ("" if intended else f" Nothing on this host accepts traffic from {iface} to it otherwise, "
                                                   "so this may well be what you want."),
                     evidence=evidence, key=f"firewall-drop:direct{ep.suffix}:{iface}:{ep.device}", fix=fix)
