from __future__ import annotations

from typing import Iterator

from netdoctor.checks import _layers as layers
from netdoctor.checks.dns import EMBEDDED_DNS
from netdoctor.context import CheckContext
from netdoctor.request import split_peer
from netdoctor.fixes import merge_daemon_json, recreate
from netdoctor.dockerapi import ContainerNotFound
from netdoctor.facts.docker import Attachment, ContainerInfo, NetworkInfo
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.netns import NamespaceError
from netdoctor.firewall import FORWARDED, Packet, follow
from netdoctor.probes import concurrently
from netdoctor.registry import check
from netdoctor.targets import container_target

ICC_OPTION = "com.docker.network.bridge.enable_icc"
MAX_SERVED_PORTS = 4  # a peer without declared ports is probed on this many of the ports it listens on
BRIDGE_NF = "net.bridge.bridge-nf-call-iptables"


def _enforcement(ctx: CheckContext, network: NetworkInfo, source: str) -> dict:
    """What the host does with traffic between two containers of `network`: the FORWARD verdict for
    bridge -> same bridge, and whether bridged traffic goes through iptables at all."""
    bridge_nf = ctx.host.sysctl(BRIDGE_NF)
    evidence = {ICC_OPTION: network.options.get(ICC_OPTION, "true (default)"), "bridge": network.bridge_name,
                f"host {BRIDGE_NF}": bridge_nf if bridge_nf is not None else "absent (br_netfilter not loaded)"}
    if bridge_nf != "1":
        evidence["note"] = ("bridged traffic bypasses iptables on this host (br_netfilter not loaded or "
                            f"{BRIDGE_NF}=0), so Docker's icc=false DROP rule never sees it: icc=false is NOT enforced")
    rules = ctx.host.firewall
    if rules.error:
        evidence["host_firewall"] = rules.error
    else:
        # bridged traffic between two ports of one bridge: the forward hook sees it (with br_netfilter)
        packet = Packet(4, src=source, iif=network.bridge_name, oif=network.bridge_name, state="new",
                        src_local=False, dst_local=False)
        verdict = follow(rules, packet, FORWARDED)
        evidence["host_forward_verdict"] = verdict.describe()
        # only then is a lost connection ICC's doing; otherwise the usual layers explain it
        evidence["icc_enforced"] = bridge_nf == "1" and verdict.dropped
    return evidence


def _isolated_fix(ctx: CheckContext, network: NetworkInfo, peer: ContainerInfo) -> Fix:
    if network.is_default_bridge:
        return Fix("ICC is off for the default bridge (dockerd --icc=false / daemon.json \"icc\": false). If these two "
                   "must talk, put them on a user-defined network of their own (names resolve there too); or turn "
                   "icc back on for the whole daemon.",
                   (f"docker network create {ctx.target_name}-{peer.name}", f"docker network connect {ctx.target_name}-{peer.name} {ctx.target_name}",
                    f"docker network connect {ctx.target_name}-{peer.name} {peer.name}",
                    merge_daemon_json({"icc": True}), "sudo systemctl restart docker"))
    shared = f"{network.name}-icc"
    return Fix(f"ICC is off on {network.name} on purpose ({ICC_OPTION}=false): its containers are isolated from each "
               f"other. If {ctx.target_name} must reach {peer.name}, give the two a network with ICC on "
               "(or publish the port and go through the host).",
               (f"docker network create {shared}", f"docker network connect {shared} {ctx.target_name}",
                f"docker network connect {shared} {peer.name}"))


def _policy(ctx: CheckContext, attachment: Attachment, network: NetworkInfo) -> Finding:
    if network.driver != "bridge":
        return ctx.info(f"Network {network.name}: ICC is a bridge-driver option; {network.driver} does not use it",
                        evidence={"network": network.name, "driver": network.driver})
    evidence = _enforcement(ctx, network, attachment.ip)
    if network.icc_enabled:
        return ctx.info(f"Network {network.name}: inter-container communication is enabled", evidence=evidence)
    enforced = "note" not in evidence
    return ctx.info(f"Network {network.name}: inter-container communication is disabled (intent)"
                    + ("" if enforced else ", but NOT enforced on this host"),
                    detail="Containers on this network cannot open connections to each other; each can still reach "
                           "the outside and published ports." if enforced else evidence["note"], evidence=evidence)


def _peer(ctx: CheckContext, spec: str) -> list[Finding]:
    name, port = split_peer(spec)
    try:
        peer = ctx.docker.container(name)
    except ContainerNotFound as exc:
        from netdoctor.swarm.peers import elsewhere  # a container, task or service on another Swarm node

        return elsewhere(ctx, name, port) or [ctx.fail(f"--peer {name}: no such container", detail=str(exc),
                                                       key=f"peer-missing:{name}")]
    mine = {a.network_id: (a, n) for a, n in ctx.networks()}
    shared = [(mine[p.network_id][0], mine[p.network_id][1], p) for p in peer.attachments if p.network_id in mine]
    evidence = {"peer": peer.name, "target_networks": sorted(n.name for _, n in mine.values()),
                "peer_networks": sorted(a.network for a in peer.attachments)}
    if not shared:
        return [_no_shared_network(ctx, peer, [n for _, n in mine.values()], evidence)]
    if not peer.running:
        wake = f"docker unpause {peer.name}" if peer.paused else f"docker start {peer.name}"
        return [ctx.fail(f"Peer {peer.name} is {peer.status}: nothing to reach", evidence=evidence,
                         fix=Fix(f"{'Unpause' if peer.paused else 'Start'} {peer.name}.", (wake,)))]
    ports = [port] if port else sorted({int(p.split("/")[0]) for p in peer.exposed if p.endswith("/tcp")})
    nothing_served = ""
    if not ports:  # no port given, none declared: what the peer really listens on
        ports, nothing_served = _served_ports(ctx, peer, {p.ip for _, _, p in shared if p.ip})
    findings = []
    for mine_attachment, network, _ in shared:
        if network.driver == "bridge" and not network.icc_enabled:
            findings.append(_policy(ctx, mine_attachment, network))
        if not ports:
            findings.append(_untested(ctx, network, peer, nothing_served))
    jobs = [(a, n, p, port) for a, n, p in shared for port in ports if p.ip]
    findings += concurrently(lambda job: _connect(ctx, peer, *job), jobs)
    return findings


FIXED_MODES = ("none", "host", "container:")  # in the order they explain a missing shared network best


def _fixed_namespace(container: ContainerInfo) -> str:
    """Why Docker refuses to connect this container to a network ("" when it can connect it)."""
    mode = container.network_mode
    if mode == "none":
        return f"{container.name} runs with --network none"
    if mode == "host":
        return f"{container.name} uses the host's network (--network host)"
    if mode.startswith("container:"):
        return f"{container.name} shares another container's network ({mode})"
    return ""


def _no_shared_network(ctx: CheckContext, peer: ContainerInfo, mine: list[NetworkInfo], evidence: dict) -> Finding:
    fixed = sorted(((c, why) for c in (peer, ctx.container) if (why := _fixed_namespace(c))),
                   key=lambda item: next(i for i, m in enumerate(FIXED_MODES) if item[0].network_mode.startswith(m)))
    if fixed:
        # `docker network connect` refuses these: only recreating the container on a network changes it
        container, why = fixed[0]
        other = ctx.container if container is peer else peer
        joinable = ([n.name for n in mine if n.driver not in ("host", "null")] if other is ctx.container
                    else [a.network for a in other.attachments if a.network not in ("host", "none")])
        if container.network_mode == "host":
            talk = (f"A host-network container and {other.name} can still talk through the host: {other.name} connects "
                    f"to the host's address (its network's gateway) on the port {container.name} serves, and "
                    f"{container.name} connects to {other.name}'s own address or a port it publishes.")
        elif container.network_mode == "none":
            talk = f"{container.name} has no network at all: nothing reaches it and it reaches nothing."
        else:
            talk = "Its network is that of the container it joined: connect that one to a network instead."
        return ctx.fail(f"{ctx.target_name} and {peer.name} share no network: {why}",
                        detail=f"Docker cannot connect such a container to another network (`docker network connect` "
                               f"refuses). {talk}",
                        evidence={**evidence, "network_mode": {c.name: c.network_mode or "default" for c in (ctx.container, peer)}},
                        fix=Fix(f"Recreate {container.name} on a network {other.name} is on, if the two must share one.",
                                recreate(container, f"--network {joinable[0] if joinable else 'NETWORK'}")),
                        key=f"no-shared-network:{peer.name}")
    # a user-defined network of the target is the best meeting point: the peer's name resolves there too
    candidates = sorted((n for n in mine if n.driver not in ("host", "null")), key=lambda n: (n.is_default_bridge, n.internal))
    commands = tuple(f"docker network connect {n.name} {peer.name}" for n in candidates[:1])
    return ctx.fail(f"{ctx.target_name} and {peer.name} share no network: they cannot reach each other directly",
                    detail="Docker isolates networks from each other (DOCKER-ISOLATION rules); only containers on a "
                           "common network talk by address and, on user-defined networks, by name.",
                    evidence=evidence,
                    fix=Fix(f"Connect {peer.name} to a network of {ctx.target_name}" + (f" ({candidates[0].name})." if candidates else "."),
                            commands), key=f"no-shared-network:{peer.name}")


def _served_ports(ctx: CheckContext, peer: ContainerInfo, addresses: set[str]) -> tuple[list[int], str]:
    """The TCP ports `peer` listens on for others (on every address, or one it has on a shared network), read
    from the listening sockets of its own namespace; when there are none, why."""
    where = container_target(peer)
    if where.netns_path is None:
        return [], where.unavailable
    try:
        listeners = ctx.session.view(where.netns_path, where.label).facts.listeners
    except (NamespaceError, OSError) as exc:
        return [], f"its listening sockets cannot be read: {exc}"
    # Docker's embedded DNS listens on 127.0.0.11 (TCP too) in every container of a user network: not the peer's
    tcp = [s for s in listeners if s.proto == "tcp" and s.address != EMBEDDED_DNS]
    ports = sorted({s.port for s in tcp if s.wildcard or s.address in addresses})
    if ports:
        return ports[:MAX_SERVED_PORTS], ""
    local = sorted({s.port for s in tcp if s.loopback_only})
    return [], (f"it listens on loopback only (TCP {', '.join(map(str, local))}), which other containers cannot reach"
                if local else "it listens on no TCP port")


def _untested(ctx: CheckContext, network: NetworkInfo, peer: ContainerInfo, why: str) -> Finding:
    return ctx.info(f"{ctx.target_name} and {peer.name} share {network.name}; nothing to try: {peer.name} declares no port "
                    f"and {why}",
                    detail=f"Name a port to test the connection for real: --peer {peer.name}:PORT.",
                    evidence={"network": network.name, "icc_enabled": network.icc_enabled, "peer_exposed": list(peer.exposed)},
                    key=f"peer-untested:{peer.name}@{network.name}")


def _connect(ctx: CheckContext, peer: ContainerInfo, mine: Attachment, network: NetworkInfo, theirs: Attachment, port: int) -> Finding:
    key = f"peer:{peer.name}:{port}@{network.name}"
    watch = layers.watch_drops(ctx)
    result = ctx.netns.connect(theirs.ip, port, ctx.options.timeout)
    endpoint = f"{peer.name}:{port} ({theirs.ip} on {network.name})"
    evidence = {"network": network.name, "icc_enabled": network.icc_enabled, **result.to_evidence()}
    isolated = network.driver == "bridge" and not network.icc_enabled
    if isolated:
        evidence.update(_enforcement(ctx, network, mine.ip))
    if result.ok:
        if isolated:
            return ctx.warn(f"{endpoint} connected although ICC is disabled on {network.name}: the isolation is not enforced",
                            detail=evidence.get("note", "Something accepts bridge-internal traffic before Docker's DROP rule."),
                            evidence=evidence,
                            fix=Fix("Make bridged traffic pass through iptables so Docker's icc=false rule applies.",
                                    (ctx.on_host("modprobe br_netfilter"), ctx.on_host(f"sysctl -w {BRIDGE_NF}=1"))),
                            key=f"peer-unisolated:{peer.name}:{port}@{network.name}")
        return ctx.ok(f"{ctx.target_name} reaches {endpoint} in {result.latency_ms:.1f} ms", evidence=evidence, key=key)
    if result.outcome == "refused":
        return ctx.fail(f"{endpoint}: connection refused, nothing listens on port {port}",
                        detail=f"{peer.name} answered with a reset, so the network between the two works"
                               + (f" (ICC=false on {network.name} is not what stops it)" if isolated else "")
                               + f": the service in {peer.name} does not listen on {port}, or only on 127.0.0.1.",
                        evidence=evidence,
                        fix=Fix(f"Make the service in {peer.name} listen on 0.0.0.0:{port}, or probe the port it uses."),
                        key=key)
    if isolated and evidence.get("icc_enforced"):
        return ctx.fail(f"{endpoint}: {result.outcome}, dropped because ICC is disabled on {network.name}",
                        detail=f"The host drops traffic between containers of {network.name}: "
                               f"{evidence.get('host_forward_verdict', 'icc=false')}.",
                        evidence=evidence, fix=_isolated_fix(ctx, network, peer), key=key)
    layer = layers.explain_failure(ctx, result, watch=watch)
    evidence.update(layer=layer.name, **layer.evidence)
    return ctx.fail(f"{endpoint}: {result.outcome} although ICC is enabled on {network.name}. Broken at: {layer.name}",
                    detail=layer.summary, evidence=evidence,
                    fix=Fix(layer.fix_summary, layer.fix_commands) if layer.fix_summary else None, key=key)


@check(id="icc", title="Containers on a shared network can talk to each other", scope=Scope.CONTAINER,
       severity=Severity.MEDIUM, needs={Need.ROOT, Need.DOCKER, Need.NETNS, Need.HOST_NETNS})
def icc(ctx: CheckContext) -> Iterator[Finding]:
    """Inter-container communication: can the target reach the containers you name with --peer?

    Two containers talk directly only when they share a Docker network, and on a bridge network only
    when inter-container communication (ICC) is on: `--opt com.docker.network.bridge.enable_icc=false`
    on a network, or dockerd's `--icc=false` (shown as that option on the default bridge), makes the
    host DROP traffic between the bridge's own ports (`-A FORWARD -i BR -o BR -j DROP`). That is an
    intent, reported as such; a fault is when a connection you expect fails. With `--peer OTHER`
    (or `--peer OTHER:PORT`), netdoctor looks for a shared network (none: fail, with the
    `docker network connect` that fixes it), reports the ICC policy of each shared network, and
    TCP-connects from inside the target to the port you gave, else the peer's exposed ports, else the
    ports it really listens on (its listening sockets, read in its own namespace; only when it listens
    on nothing others can reach is there nothing to try, said as info): dropped by ICC, refused
    (nothing listening), or lost elsewhere (the layer is named). A peer that is no container of this
    engine is looked up on the target's overlay networks (a container or service task on another
    Swarm node, or a service: its VIP or its tasks; then the embedded DNS as the target sees it), and
    a connection that fails there says whether the VXLAN data path to its node is broken while the
    node's control plane answers, or the node is down. Without --peer it
    reports the ICC policy of each of the target's networks. ICC=false only works when bridged
    traffic passes through iptables (br_netfilter loaded, net.bridge.bridge-nf-call-iptables=1);
    when it does not, netdoctor says the intent is not enforced.

    Fix: `docker network connect NET OTHER` for containers on no common network; a network with ICC
    on (or published ports) when isolated containers must talk; `modprobe br_netfilter` when an
    icc=false network must really be isolated.
    """
    if not ctx.options.peers:
        networks = ctx.networks()
        if not networks:
            yield ctx.info(f"{ctx.target_name} is on no Docker network ({ctx.container.network_mode or 'none'}): no ICC policy applies")
        for attachment, network in networks:
            yield _policy(ctx, attachment, network)
        return
    for findings in concurrently(lambda spec: _peer(ctx, spec), ctx.options.peers):
        yield from findings
