from __future__ import annotations

import socket
from typing import Iterator

from netdoctor.checks import _firewall as fw_
from netdoctor.checks._bridges import HostPort, host_ports
from netdoctor.checks._firewall import Endpoint, Uplink
from netdoctor.context import CheckContext
from netdoctor.facts.engine import NFTABLES as NFT_BACKEND, EngineFacts
from netdoctor.firewall import FORWARDED, NFTABLES, Firewall, Packet, Path, follow
from netdoctor.firewall import commands, docker
from netdoctor.fixes import recreate
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.registry import check

GATEWAY_MODE = "com.docker.network.bridge.gateway_mode_ipv"
TRUSTED = "com.docker.network.bridge.trusted_host_interfaces"


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
    network) are checked too: Docker's raw-table DROP and unpublished-port DROP stop them.

    Fix: delete the dropping rule or exempt the bridge above it (in the backend's own syntax); when
    Docker's rules are gone, `systemctl restart docker` rewrites them (with firewalld: the bridges in its
    'docker' zone); for direct routing, the network options gateway_mode_ipv4=routed or
    trusted_host_interfaces=IFACE (Docker 28.2+).
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
        paths = fw_.forward_paths(firewall, ep, uplink)
        yield from _judge(ctx, ep, paths, firewall, engine, uplink)
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


def _judge(ctx: CheckContext, ep: Endpoint, paths: dict[str, Path], firewall: Firewall, engine: EngineFacts | None,
           uplink: Uplink) -> Iterator[Finding]:
    base = _base_evidence(ctx, ep, firewall, engine, uplink)
    bridges = {ep.device}
    if ep.network is not None and fw_.bridge_here(ctx, ep.device) and fw_.expects_docker_rules(firewall, engine, ep.family) \
            and not fw_.docker_accepts(firewall, fw_.outgoing(ep, uplink), bridges):
        yield _rules_gone(ctx, ep, paths, firewall, engine, base)
        return
    bad = False
    for direction, path in paths.items():
        if not path.dropped:
            continue
        bad = True
        yield _dropped(ctx, ep, direction, path, firewall, engine, uplink, base)
    # a rule already reported as dropping one direction outright is not repeated as a partial drop
    deciding = {p.drop.decided_by for p in paths.values() if p.dropped}
    partial = {item.text: (d, item) for d, p in paths.items() for item in p.partial_drops if item.text not in deciding}
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
                     evidence={**base, **{f"{d}_accepted_by": p.describe() for d, p in paths.items()}},
                     key=f"forwarded{ep.suffix}:{ep.device}")


def _rules_gone(ctx: CheckContext, ep: Endpoint, paths: dict[str, Path], firewall: Firewall,
                engine: EngineFacts | None, base: dict) -> Finding:
    missing = fw_.missing_docker_parts(firewall, engine, ep.family)
    dropped = [d for d, p in paths.items() if p.dropped]
    why, fix = fw_.rules_gone_fix(firewall, engine, [ep.device])
    evidence = {**base, "missing": missing, "dropped": dropped, "outgoing_decided_by": paths["outgoing"].describe(),
                "probable_cause": why}
    detail = (f"No rule of Docker's accepts traffic from {ep.device} in the host's firewall"
              + (f" ({', '.join(missing)} gone)" if missing else " (its chains are there, but empty or not jumped to)")
              + f" although {ctx.target.label} is on Docker network {ep.network.name}: {why}. Published ports, NAT "
              "and network isolation went with them (unless dockerd runs with --iptables=false, in which case these "
              "rules are yours to write).")
    key = f"docker-rules-missing:forward{ep.suffix}:{ep.device}"
    if dropped:
        step = paths[dropped[0]].drop
        return ctx.fail(f"Docker's rules for {ep.label} are gone and {step.decided_by} drops its traffic; restart docker",
                        detail=detail, evidence=evidence, fix=fix, key=key)
    return ctx.warn(f"Docker's rules for {ep.label} are gone; restart docker", detail=detail, evidence=evidence,
                    fix=fix, key=key)


def _flow_text(direction: str, ep: Endpoint, uplink: Uplink) -> str:
    if direction == "outgoing":
        return f"in {ep.device}, out {uplink.name}, from {ep.address}, NEW"
    return f"in {uplink.name}, out {ep.device}, to {ep.address}, ESTABLISHED"


def _dropped(ctx: CheckContext, ep: Endpoint, direction: str, path: Path, firewall: Firewall,
             engine: EngineFacts | None, uplink: Uplink, base: dict) -> Finding:
    step = path.drop
    bridges = {ep.device}
    who = docker.owner(step.rule or step.chain, bridges)
    what = (f"outgoing traffic of {ep.address} on {ep.label}" if direction == "outgoing"
            else f"replies to {ep.address} on {ep.label}")
    evidence = {**base, "direction": direction, **fw_.drop_evidence(step, bridges),
                "accepted_in_part_by": [r.text for r in path.partial_accepts]}
    key = f"firewall-drop:{direction}{ep.suffix}:{ep.device}"
    if engine is not None and engine.backend == NFT_BACKEND and step.chain.backend != NFTABLES and step.rule is None:
        tool = commands.tool(step.chain.backend, step.chain.family)
        return ctx.fail(f"{step.chain.place} policy {step.verdict.upper()} drops {what}, although Docker's nftables "
                        "rules accept it",
                        detail=f"This engine writes its rules into nftables (table {docker.NFT_TABLE}), but iptables' "
                               f"FORWARD chain still has policy DROP (left from when Docker used iptables, or set by "
                               "another tool): every base chain of the forward hook sees the packet, and a drop in any "
                               "of them is final.",
                        evidence=evidence, key=key,
                        fix=Fix(f"Accept {ep.device}'s traffic in iptables' FORWARD chain too, or set its policy back "
                                "to ACCEPT if nothing else relies on it.",
                                (ctx.on_host(f"{tool} -I FORWARD -i {ep.device} -j ACCEPT"),
                                 ctx.on_host(f"{tool} -I FORWARD -o {ep.device} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
                                 "# or: " + ctx.on_host(f"{tool} -P FORWARD ACCEPT"))))
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
    return ctx.fail(title, detail=detail, evidence=evidence, key=key,
                    fix=fw_.exempt_fix(ctx, step, ep.device, direction, bridges))


# --- peers that reach the container's address directly (Docker 28+) --------------------------------------

def _direct_ports(ctx: CheckContext, published_only: bool) -> list[int | None]:
    ports = {p.container_port for p in (ctx.container.published if ctx.container else ()) if p.proto == "tcp"}
    if not published_only:
        ports |= {l.port for l in ctx.netns.facts.listeners if l.proto == "tcp" and not l.loopback_only}
    return sorted(ports) or [None]


def _intended(firewall: Firewall, packet: Packet, bridges: set[str]) -> bool:
    """Some rule that is not Docker's accepts this traffic in the forward hook: someone means it to pass."""
    path = follow(firewall, packet, ("forward",))
    accepting = [s.rule for s in path.steps if s.rule is not None and s.verdict == "accept"] + path.partial_accepts
    return any(docker.owner(r, bridges) != "docker" for r in accepting)


def _direct(ctx: CheckContext, ep: Endpoint, firewall: Firewall, uplink: Uplink) -> Iterator[Finding]:
    mode = ep.network.options.get(f"{GATEWAY_MODE}{ep.family}", "nat") if ep.network else "nat"
    candidates = [(i, False) for i in fw_.vpn_like(ctx) if i != ep.device]
    if mode in ("routed", "nat-unprotected") and uplink.name != fw_.UNKNOWN_UPLINK:
        candidates.append((uplink.name, True))  # a routed network is meant to be reached directly
    bridges = {ep.device}
    for iface, published_only in candidates:
        drops, packet = {}, None
        for port in _direct_ports(ctx, published_only):
            packet = Packet(ep.family, dst=ep.address, iif=iface, oif=ep.device, proto="tcp" if port else None,
                            dport=port, state="new", dst_local=False, far_outside=(ep.subnet,))
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
                      (f"docker network create -o {TRUSTED}={iface} {name}-trusted  # then docker network "
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
