"""The firewall's part of a published port (used by the ports and firewall checks): the DNAT that sends
HOST:PORT to the container, and what the forward path then does with those requests and with the
container's replies, in every backend and both families.

Docker publishes a port twice over: a DNAT rule (iptables nat DOCKER chain, or nftables
nat-prerouting-and-output in table docker-bridges) and, unless dockerd runs with "userland-proxy": false,
a docker-proxy process listening on the host port. When the DNAT is gone (the nat table flushed by a
firewall manager), the port still answers through docker-proxy, but every client appears to come from
the host; without the proxy nothing answers at all. `judge_dnat` is that judgement, shared by ports (per
container) and firewall (per host), so the two always agree. With dockerd's --iptables=false there is no
DNAT by design: docker-proxy alone serves the port.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Iterator

from netdoctor.checks import _firewall as fw_
from netdoctor.checks._firewall import Flow, Uplink
from netdoctor.context import CheckContext
from netdoctor.facts.docker import NetworkInfo, PublishedPort
from netdoctor.facts.engine import NFTABLES as NFT_BACKEND
from netdoctor.facts.processes import Process, process, socket_holders
from netdoctor.firewall import FORWARDED, NFTABLES, Firewall, Packet, Path, Rule, Step, commands, docker, follow
from netdoctor.model import Finding, Fix

LOOPBACK = ("127.0.0.1", "::1")
REQUEST_FIELDS = ("dst", "proto", "dport")               # after DNAT: the container's address and port
REPLY_FIELDS = ("src", "proto", "sport", "state")


def _targets(ctx: CheckContext, family: int) -> list[tuple[str, NetworkInfo]]:
    """The container's addresses of `family` on bridge networks, with their network."""
    found = []
    for attachment, network in ctx.networks():
        address = attachment.ip if family == 4 else attachment.ipv6
        if network.driver == "bridge" and address and not network.internal:
            found.append((address, network))
    return found


def _families(port: PublishedPort) -> list[int]:
    if port.host_ip in LOOPBACK:
        return []  # only the host itself can connect: the OUTPUT path and docker-proxy, not outside clients
    if not port.host_ip:
        return [4, 6]
    return [ipaddress.ip_address(port.host_ip).version]


def _proxy(ctx: CheckContext, port: PublishedPort, addresses: set[str]) -> Process | None:
    """The docker-proxy that holds this published port in the host namespace for this container, if any."""
    holders = ctx.session.fact(socket_holders)
    for listener in ctx.host.facts.listeners:
        if listener.proto != port.proto or listener.port != port.host_port:
            continue
        for pid in holders.get(listener.inode, ()):
            proc = ctx.session.fact(process, pid)
            if proc is not None and proc.is_docker_proxy and proc.arg("-container-ip") in addresses:
                return proc
    return None


@dataclass(frozen=True)
class Dnat:
    """What the host's prerouting makes of a request from outside to a published port."""

    pre: Path                     # the request's way through prerouting (its packet: after any DNAT)
    to_container: bool            # DNATed to one of the container's addresses, at its port
    elsewhere: Rule | None        # DNATed somewhere else: a stale or hand-written rule
    proxy: Process | None         # the docker-proxy relaying the port (looked for only without the DNAT)
    rules_off: str                # why Docker writes no DNAT at all ("" when it does)

    @property
    def lost(self) -> str:
        """"" while requests are translated as Docker means them (or dropped: another finding), else what happens:
        relayed (docker-proxy still serves the port: client addresses lost), dead (nothing serves it), elsewhere."""
        if self.to_container or self.pre.dropped:
            return ""
        if self.elsewhere is not None:
            return "elsewhere"
        return "relayed" if self.proxy is not None else "dead"


def judge_dnat(ctx: CheckContext, firewall: Firewall, port: PublishedPort, family: int, addresses: set[str],
               uplink: Uplink, outside: tuple[str, ...]) -> Dnat:
    """Send a request from a client beyond the host (not in `outside`) to the published port through prerouting."""
    request = Packet(family, dst=port.host_ip or uplink.address, proto=port.proto, dport=port.host_port,
                     iif=uplink.name, state="new", src_local=False, dst_local=True, far_outside=outside,
                     ephemeral=("sport",))
    pre = follow(firewall, request, ("prerouting",))
    to_container = pre.packet.dst in addresses and pre.packet.dport == port.container_port
    elsewhere = None if to_container else next((r for r in pre.translations("dnat") if r.action.target), None)
    proxy = None if to_container or elsewhere else _proxy(ctx, port, addresses)
    return Dnat(pre, to_container, elsewhere, proxy, fw_.docker_rules_off(ctx, firewall, family))


def outside_of(ctx: CheckContext, family: int, subnets: list[str]) -> tuple[str, ...]:
    """Where a client beyond the host is not: the host's and Docker's networks, loopback, link-local."""
    return (*fw_.far_outside(ctx, family), *subnets, "127.0.0.0/8" if family == 4 else "fe80::/10")


def dnat(ctx: CheckContext, port: PublishedPort) -> Iterator[Finding]:
    """Findings on the way from a client outside to the published port and back: its DNAT, then the forward path."""
    if port.host_port == 0 or not ctx.container.running:
        return
    firewall = ctx.host.firewall
    if firewall.error:
        return  # the ports check's other findings stand; forward_policy says the firewall could not be read
    engine = fw_.engine_of(ctx)
    for family in _families(port):
        targets = _targets(ctx, family)
        # only where this host namespace is the engine's (its bridge is here) does Docker's DNAT belong
        if not targets or not all(fw_.bridge_here(ctx, n.bridge_name) for _, n in targets) \
                or not fw_.expects_docker_rules(firewall, engine, family):
            continue
        yield from _judge(ctx, port, family, targets, firewall, engine)


def _judge(ctx: CheckContext, port: PublishedPort, family: int, targets: list[tuple[str, NetworkInfo]],
           firewall: Firewall, engine) -> Iterator[Finding]:
    c = ctx.container
    uplink = fw_.uplink_of(ctx, family)
    suffix = "6" if family == 6 else ""
    label = f"{port.label}{' (IPv6)' if family == 6 else ''}"
    addresses = {a for a, _ in targets}
    outside = outside_of(ctx, family, [s for _, n in targets for s in n.subnets])
    verdict = judge_dnat(ctx, firewall, port, family, addresses, uplink, outside)
    pre = verdict.pre
    evidence = {"published": label, "ip_version": f"IPv{family}", "uplink": uplink.name,
                "host_address": port.host_ip or uplink.address, "container_addresses": sorted(addresses), "backends": firewall.backends(family),
                **(engine.to_evidence() if engine else {})}
    if verdict.rules_off:
        evidence["docker_rules"] = f"none: {verdict.rules_off}"
    if pre.dropped:
        requests = fw_.flow("requests", pre, REQUEST_FIELDS)
        yield _dropped(ctx, port, label, suffix, requests, [requests], evidence, targets, engine)
        return
    evidence["dnat"] = [f"{r.place}: {r.text}" for r in pre.translations("dnat")] or "none"
    if verdict.to_container:
        yield from _forwarded(ctx, port, label, suffix, pre, targets, firewall, engine, uplink, evidence)
        return
    evidence["userland_proxy"] = f"docker-proxy pid {verdict.proxy.pid}" if verdict.proxy else "none"
    if verdict.lost == "elsewhere":
        rule = verdict.elsewhere
        yield ctx.fail(f"Host port {port.host_port}/{port.proto} is DNATed to {rule.action.target}, not to {c.name}",
                       detail=f"{rule.place}: {rule.text} sends requests for {label} elsewhere (a rule left from an "
                              f"earlier container, or written by hand), while Docker publishes it for {c.name} "
                              f"({', '.join(sorted(addresses))}:{port.container_port}).",
                       evidence=evidence, key=f"docker-rules-missing:dnat{suffix}:{port.host_port}/{port.proto}",
                       fix=Fix(f"Delete the stale rule; restarting Docker rewrites {c.name}'s own.",
                               (ctx.on_host(commands.delete(rule)), "sudo systemctl restart docker")))
        return
    if verdict.proxy is not None:
        into_host = follow(firewall, pre.packet, ("input",))
        evidence["input_verdict"] = into_host.describe()
        if into_host.dropped:
            requests = fw_.flow("requests", into_host, ("proto", "dport"))
            yield _dropped(ctx, port, label, suffix, requests, [requests], evidence, targets, engine)
            return
    if verdict.rules_off:
        yield _without_docker_rules(ctx, port, label, suffix, verdict, evidence)
        return
    why, fix = fw_.rules_gone_fix(firewall, engine, [n.bridge_name for _, n in targets])
    evidence["probable_cause"] = why
    key = f"docker-rules-missing:dnat{suffix}:{port.host_port}/{port.proto}"
    detail = (f"Docker publishes {label} for {c.name} with a DNAT rule, and no rule of the host's firewall translates "
              f"requests to that port any more: {why}.")
    if verdict.proxy is not None:
        yield ctx.warn(f"{label} has lost its DNAT rule: it still answers through docker-proxy, but {c.name} sees every "
                       "client as the host",
                       detail=detail + f" docker-proxy (pid {verdict.proxy.pid}) still listens on the host port and relays "
                                       "connections, so the port works, but every request reaches the container from the "
                                       "host's own address: client addresses in logs, rate limits and allow-lists are lost.",
                       evidence=evidence, fix=fix, key=key)
        return
    yield ctx.fail(f"{label} is dead: its DNAT rule is gone and no docker-proxy serves it",
                   detail=detail + " Without the userland proxy (\"userland-proxy\": false) nothing relays the port: "
                                   "connections from outside are refused, or (Docker 28+ keeps the host port bound "
                                   "itself) complete their handshake and then get no answer.",
                   evidence=evidence, fix=fix, key=key)


def _without_docker_rules(ctx: CheckContext, port: PublishedPort, label: str, suffix: str, verdict: Dnat,
                          evidence: dict) -> Finding:
    """No DNAT because Docker writes none (--iptables=false): docker-proxy serves the port, or nothing does."""
    c = ctx.container
    key = f"no-dnat{suffix}:{port.host_port}/{port.proto}"
    if verdict.proxy is not None:
        return ctx.info(f"{label} is served by docker-proxy alone: Docker writes no DNAT here",
                        detail=f"{verdict.rules_off}, so no rule translates requests to {c.name}; docker-proxy (pid "
                               f"{verdict.proxy.pid}) relays them, and {c.name} sees every client as the host's address.",
                        evidence=evidence, key=key)
    return ctx.fail(f"{label} is dead: Docker writes no DNAT here and no docker-proxy serves it",
                    detail=f"{verdict.rules_off}, and the userland proxy is off (\"userland-proxy\": false): nothing "
                           "relays requests to the container, and no rule of the host's translates them.",
                    evidence=evidence, key=key,
                    fix=Fix("Turn the userland proxy back on (daemon.json \"userland-proxy\": true, then restart Docker), "
                            f"or write the DNAT yourself, as Docker would ({c.name}'s address on its network).",
                            (ctx.on_host(f"{'ip6tables' if suffix else 'iptables'} -t nat -A PREROUTING -m addrtype "
                                         f"--dst-type LOCAL -p {port.proto} "
                                         f"--dport {port.host_port} -j DNAT --to-destination "
                                         f"{sorted(evidence['container_addresses'])[0]}:{port.container_port}"),)))


def _forwarded(ctx: CheckContext, port: PublishedPort, label: str, suffix: str, pre: Path,
               targets: list[tuple[str, NetworkInfo]], firewall: Firewall, engine, uplink: Uplink,
               evidence: dict) -> Iterator[Finding]:
    """DNATed as Docker means it: the requests forwarded into the bridge, and the container's replies back out."""
    address = pre.packet.dst
    network = next(n for a, n in targets if a == address)
    bridge = network.bridge_name
    forwarded = follow(firewall, replace(pre.packet, oif=bridge), ("forward", "postrouting"))
    reply = Packet(pre.packet.family, src=address, sport=port.container_port, proto=port.proto, iif=bridge,
                   oif=uplink.name, state="established", src_local=False, dst_local=False,
                   far_outside=pre.packet.far_outside, ephemeral=("dport",))
    back = follow(firewall, reply, FORWARDED)
    flows = [fw_.flow("requests", forwarded, REQUEST_FIELDS), fw_.flow("replies", back, REPLY_FIELDS)]
    evidence = {**evidence, "forward_verdict": forwarded.describe(), "replies_verdict": back.describe()}
    for item in flows:
        if item.path.dropped:
            yield _dropped(ctx, port, label, suffix, item, flows, evidence, targets, engine, address, network, uplink)
            return
    partial = [f"{r.place}: {r.text}" for f in flows for r in f.path.partial_drops]
    if partial:
        yield ctx.warn(f"Requests from outside to {label} or their replies may be dropped in part: {partial[0]}",
                       detail="After Docker's DNAT, a rule that also tests something netdoctor cannot see (source "
                              "addresses, a mark, a rate limit, an ipset) drops some of the connections to this port.",
                       evidence={**evidence, "may_drop": list(dict.fromkeys(partial))},
                       key=f"firewall-drop-partial:published{suffix}:{port.host_port}/{port.proto}")
        return
    yield ctx.ok(f"Requests from outside to {label} are DNATed to {address}:{port.container_port} and accepted, and "
                 "so are the replies", evidence=evidence, key=f"published{suffix}:{port.host_port}/{port.proto}")


def _dropped(ctx: CheckContext, port: PublishedPort, label: str, suffix: str, item: Flow, flows: list[Flow],
             evidence: dict, targets: list[tuple[str, NetworkInfo]], engine, container_ip: str | None = None,
             network: NetworkInfo | None = None, uplink: Uplink | None = None) -> Finding:
    step: Step = item.path.drop
    firewall = ctx.host.firewall
    bridges = {n.bridge_name for _, n in targets}
    who = docker.owner(step.rule or step.chain, bridges)
    what = step.rule.text if step.rule else step.chain.policy_text
    evidence = {**evidence, "direction": item.direction, **fw_.drop_evidence(step, bridges)}
    gone = None
    ep = fw_.container_endpoint(ctx, network.bridge_name, item.packet.family, container_ip) if network else None
    if ep is not None and uplink is not None:
        docker_decides = who == "docker" or (step.rule is None and step.chain.backend != NFTABLES
                                              and (engine is None or engine.backend != NFT_BACKEND))
        # the iptables policy (or Docker's own DROP) deciding a port Docker publishes: Docker's rules for it are gone
        if fw_.rules_gone(ctx, firewall, engine, ep, uplink, item.packet.far_outside) or \
                (docker_decides and not fw_.docker_rules_off(ctx, firewall, item.packet.family)):
            gone = fw_.rules_gone_fix(firewall, engine, sorted(bridges))[1]
    fix = fw_.unblock_fix(ctx, step, flows, bridges, engine, gone=gone)
    where = f"{step.describe()} ({docker.describe_owner(who)})"
    if item.direction == "replies":
        return ctx.fail(f"{(step.rule or step.chain).place} drops {ctx.container.name}'s replies to clients of {label}: {what}",
                        detail=f"Requests from outside reach {ctx.container.name} (DNATed to {container_ip}:"
                               f"{port.container_port} and accepted), but {where} drops its answers on their way back "
                               "out: connections to the port hang.",
                        evidence=evidence, fix=fix, key=f"firewall-drop:published{suffix}:{port.host_port}/{port.proto}")
    detail = (f"{where} drops the requests that clients outside send to host port {port.host_port}/{port.proto}"
              + (f", after Docker's DNAT sent them to {container_ip}:{port.container_port}" if container_ip else "")
              + ": they never reach the container (the replies are not the problem; no connection is ever made).")
    if who == "docker-user" and container_ip:
        detail += (f" DOCKER-USER sees the container's address and port {port.container_port}, not the host's "
                   f"{port.host_port}.")
    return ctx.fail(f"{(step.rule or step.chain).place} drops requests from outside to {label}: {what}", detail=detail,
                    evidence=evidence, fix=fix, key=f"firewall-drop:published{suffix}:{port.host_port}/{port.proto}")
