"""The firewall's part of a published port (used by the ports check): the DNAT that sends HOST:PORT to the
container, and what the forward path then does with those requests, in every backend and both families.

Docker publishes a port twice over: a DNAT rule (iptables nat DOCKER chain, or nftables
nat-prerouting-and-output in table docker-bridges) and, unless dockerd runs with "userland-proxy": false,
a docker-proxy process listening on the host port. When the DNAT is gone (the nat table flushed by a
firewall manager), the port still answers through docker-proxy, but every client appears to come from
the host; without the proxy nothing answers at all.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Iterator

from netdoctor.checks import _firewall as fw_
from netdoctor.context import CheckContext
from netdoctor.facts.docker import NetworkInfo, PublishedPort
from netdoctor.facts.processes import Process, process, socket_holders
from netdoctor.firewall import NFTABLES, Firewall, Packet, Step, commands, docker, follow
from netdoctor.model import Finding, Fix

LOOPBACK = ("127.0.0.1", "::1")


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


def dnat(ctx: CheckContext, port: PublishedPort) -> Iterator[Finding]:
    """Findings on the way from a client outside to the published port: its DNAT, then the forward path."""
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
    host_address = port.host_ip or uplink.address
    # a client beyond the host: not in the container's networks, never loopback or link-local
    outside = (*(s for _, n in targets for s in n.subnets), "127.0.0.0/8" if family == 4 else "fe80::/10")
    request = Packet(family, dst=host_address, proto=port.proto, dport=port.host_port, iif=uplink.name, state="new",
                     src_local=False, dst_local=True, far_outside=outside)
    pre = follow(firewall, request, ("prerouting",))
    evidence = {"published": label, "ip_version": f"IPv{family}", "uplink": uplink.name, "host_address": host_address,
                "container_addresses": [a for a, _ in targets], "backends": firewall.backends(family),
                **(engine.to_evidence() if engine else {})}
    if pre.dropped:
        yield _dropped(ctx, port, label, suffix, pre.drop, evidence, targets)
        return
    addresses = {a for a, _ in targets}
    translations = pre.translations("dnat")
    evidence["dnat"] = [f"{r.place}: {r.text}" for r in translations] or "none"
    if pre.packet.dst in addresses and pre.packet.dport == port.container_port:
        network = next(n for a, n in targets if a == pre.packet.dst)
        forwarded = follow(firewall, replace(pre.packet, oif=network.bridge_name), ("forward", "postrouting"))
        evidence["forward_verdict"] = forwarded.describe()
        if forwarded.dropped:
            yield _dropped(ctx, port, label, suffix, forwarded.drop, evidence, targets, pre.packet.dst)
            return
        if forwarded.partial_drops:
            rules = [f"{r.place}: {r.text}" for r in forwarded.partial_drops]
            yield ctx.warn(f"Requests from outside to {label} may be dropped in part: {rules[0]}",
                           detail="After Docker's DNAT, a rule that also tests something netdoctor cannot see (source "
                                  "addresses, a mark, a rate limit, an ipset) drops some of the requests to this port.",
                           evidence={**evidence, "may_drop": rules}, key=f"firewall-drop-partial:published{suffix}:"
                                                                         f"{port.host_port}/{port.proto}")
            return
        yield ctx.ok(f"Requests from outside to {label} are DNATed to {pre.packet.dst}:{port.container_port} and accepted",
                     evidence=evidence, key=f"published{suffix}:{port.host_port}/{port.proto}")
        return
    proxy = _proxy(ctx, port, addresses)
    evidence["userland_proxy"] = f"docker-proxy pid {proxy.pid}" if proxy else "none"
    elsewhere = [r for r in translations if r.action.target]
    why, fix = fw_.rules_gone_fix(firewall, engine, [n.bridge_name for _, n in targets])
    evidence["probable_cause"] = why
    key = f"docker-rules-missing:dnat{suffix}:{port.host_port}/{port.proto}"
    if elsewhere:
        yield ctx.fail(f"Host port {port.host_port}/{port.proto} is DNATed to {elsewhere[0].action.target}, not to {c.name}",
                       detail=f"{elsewhere[0].place}: {elsewhere[0].text} sends requests for {label} elsewhere (a rule left "
                              f"from an earlier container, or written by hand), while Docker publishes it for {c.name} "
                              f"({', '.join(sorted(addresses))}:{port.container_port}).",
                       evidence=evidence, key=key,
                       fix=Fix(f"Delete the stale rule; restarting Docker rewrites {c.name}'s own.",
                               (ctx.on_host(commands.delete(elsewhere[0])), "sudo systemctl restart docker")))
        return
    detail = (f"Docker publishes {label} for {c.name} with a DNAT rule, and no rule of the host's firewall translates "
              f"requests to that port any more: {why} (or dockerd runs with --iptables=false).")
    if proxy is not None:
        into_host = follow(firewall, pre.packet, ("input",))
        evidence["input_verdict"] = into_host.describe()
        if into_host.dropped:
            yield _dropped(ctx, port, label, suffix, into_host.drop, evidence, targets)
            return
        yield ctx.warn(f"{label} has lost its DNAT rule: it still answers through docker-proxy, but {c.name} sees every "
                       "client as the host",
                       detail=detail + f" docker-proxy (pid {proxy.pid}) still listens on the host port and relays "
                                       "connections, so the port works, but every request reaches the container from the "
                                       "host's own address: client addresses in logs, rate limits and allow-lists are lost.",
                       evidence=evidence, fix=fix, key=key)
        return
    yield ctx.fail(f"{label} is dead: its DNAT rule is gone and no docker-proxy serves it",
                   detail=detail + " Without the userland proxy (\"userland-proxy\": false) nothing relays the port: "
                                   "connections from outside are refused, or (Docker 28+ keeps the host port bound "
                                   "itself) complete their handshake and then get no answer.",
                   evidence=evidence, fix=fix, key=key)


def _dropped(ctx: CheckContext, port: PublishedPort, label: str, suffix: str, step: Step, evidence: dict,
             targets: list[tuple[str, NetworkInfo]], container_ip: str | None = None) -> Finding:
    bridges = {n.bridge_name for _, n in targets}
    who = docker.owner(step.rule or step.chain, bridges)
    what = step.rule.text if step.rule else step.chain.policy_text
    evidence = {**evidence, **fw_.drop_evidence(step, bridges)}
    detail = (f"{step.describe()} ({docker.describe_owner(who)}) drops the requests that clients outside send to "
              f"host port {port.host_port}/{port.proto}" + (f", after Docker's DNAT sent them to {container_ip}:"
                                                             f"{port.container_port}" if container_ip else "")
              + ": they never reach the container (the replies are not the problem; no connection is ever made).")
    if who == "docker-user" and step.rule is not None and container_ip:
        # DOCKER-USER sees the packet after DNAT: an exemption matches the container's address and port
        exempt = commands.insert(step.rule.backend, step.rule.family, "filter", docker.USER_CHAIN,
                                 f"-d {container_ip} -p {port.proto} --dport {port.container_port} -j RETURN")
        fix = Fix(f"Delete the rule (first command), or exempt {ctx.container.name}'s published port above it (second "
                  f"command; DOCKER-USER sees the container's address and port {port.container_port}, not the host's "
                  f"{port.host_port}).", (ctx.on_host(commands.delete(step.rule)), ctx.on_host(exempt)))
    elif step.rule is not None and who != "docker":
        fix = Fix("Delete or narrow the rule, then persist the change where the rule comes from.",
                  (ctx.on_host(commands.delete(step.rule)),))
    elif step.rule is None and step.chain.backend != NFTABLES:
        spec = f"-p {port.proto} --dport {port.container_port if container_ip else port.host_port} -j ACCEPT"
        fix = Fix(f"Accept the published port above the {step.chain.policy_text} policy.",
                  (ctx.on_host(commands.insert(step.chain.backend, step.chain.family, step.chain.table, step.chain.name, spec)),))
    else:
        fix = Fix("Publish the port again so Docker rewrites its rules (recreate the container), or restart Docker.",
                  ("sudo systemctl restart docker",))
    return ctx.fail(f"{(step.rule or step.chain).place} drops requests from outside to {label}: {what}", detail=detail,
                    evidence=evidence, fix=fix, key=f"firewall-drop:published{suffix}:{port.host_port}/{port.proto}")
