from __future__ import annotations

import hashlib
import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterator

from netdoctor.context import CheckContext
from netdoctor.dockerapi import DockerUnavailable, SwarmUnavailable
from netdoctor.facts import device, overlay
from netdoctor.facts.docker import Attachment, NetworkInfo
from netdoctor.facts.namespace import Link
from netdoctor.facts.overlay import VXLAN_OVERHEAD
from netdoctor.firewall import FROM_HOST, TO_HOST, Packet, Step, commands, follow
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.probes import concurrently, tcp
from netdoctor.registry import check

MANAGER_PORT = 2377       # TCP: joining and talking to managers (raft, dispatcher)
GOSSIP_PORT = 7946        # TCP and UDP: node discovery and the overlay's network database
DEFAULT_DATA_PORT = 4789  # UDP: the VXLAN data path (changed with `docker swarm init --data-path-port`)
ECHO_SIZE = 84            # a small echo: reachability, not MTU (the mtu check does that)
MAX_PROBES = 16


@dataclass
class Swarm:
    """This node's place in the swarm, as its engine reports it."""

    state: str                        # inactive, pending, active, error, locked
    node_addr: str
    is_manager: bool
    error: str = ""
    managers: set[str] = field(default_factory=set)        # underlay addresses
    names: dict[str, str] = field(default_factory=dict)    # underlay address -> hostname, when known
    data_port: int = DEFAULT_DATA_PORT

    def peers(self, networks: list[NetworkInfo]) -> list[str]:
        """Other nodes this one must talk to: managers, every node (seen from a manager), overlay peers."""
        found = set(self.managers) | set(self.names)
        for network in networks:
            found |= {p["IP"] for p in network.raw.get("Peers") or () if p.get("IP")}
        found.discard(self.node_addr)
        return sorted(found, key=ipaddress.ip_address)  # IPv6 node addresses too

    def label(self, address: str) -> str:
        name = self.names.get(address)
        return f"{name} ({address})" if name else address


def _swarm(ctx: CheckContext) -> Swarm:
    info = ctx.docker.info().get("Swarm") or {}
    swarm = Swarm(state=info.get("LocalNodeState") or "inactive", node_addr=info.get("NodeAddr") or "",
                  is_manager=bool(info.get("ControlAvailable")), error=info.get("Error") or "")
    swarm.managers = {m["Addr"].rpartition(":")[0].strip("[]") for m in info.get("RemoteManagers") or () if m.get("Addr")}
    swarm.data_port = (info.get("Cluster") or {}).get("DataPathPort") or DEFAULT_DATA_PORT
    if swarm.is_manager:  # only managers can list nodes
        try:
            nodes = ctx.docker.swarm_nodes()
        except SwarmUnavailable as exc:
            swarm.error = swarm.error or str(exc)
            nodes = []
        for node in nodes:
            address = (node.get("Status") or {}).get("Addr") or ""
            if address and address != "0.0.0.0":
                swarm.names[address] = (node.get("Description") or {}).get("Hostname") or node["ID"][:12]
                if node.get("ManagerStatus"):
                    swarm.managers.add(address)
    return swarm


def _underlay(ctx: CheckContext, swarm: Swarm, peers: list[str]) -> Link | None:
    """The node's device carrying swarm traffic: the one holding its advertise address, else the route to a peer."""
    facts = ctx.host.facts
    holder = next((a for a in facts.addresses if a.address == swarm.node_addr), None)
    if holder:
        return facts.link(index=holder.index)
    route = facts.route_to(peers[0]) if peers else None
    return facts.link(index=route.oif) if route and route.oif else None


def _flows(swarm: Swarm, peers: list[str], underlay: str) -> list[tuple[tuple[str, ...], str, Packet]]:
    """(hooks, what, packet) for every swarm flow in and out of this node."""
    ports = [("udp", swarm.data_port, "VXLAN data"), ("tcp", GOSSIP_PORT, "gossip"), ("udp", GOSSIP_PORT, "gossip")]
    if swarm.is_manager:
        ports.append(("tcp", MANAGER_PORT, "manager"))
    flows = []
    for peer in peers:
        family = 6 if ":" in peer else 4
        for proto, port, what in ports:
            flows.append((TO_HOST, f"{port}/{proto} ({what}) from {peer}",
                          Packet(family, src=peer, dst=swarm.node_addr, proto=proto, dport=port, iif=underlay, oif="",
                                 src_local=False, dst_local=True)))
            if port != MANAGER_PORT or peer in swarm.managers:
                flows.append((FROM_HOST, f"{port}/{proto} ({what}) to {peer}",
                              Packet(family, src=swarm.node_addr, dst=peer, proto=proto, dport=port, iif="", oif=underlay,
                                     src_local=True, dst_local=False)))
        if not swarm.is_manager and peer in swarm.managers:
            flows.append((FROM_HOST, f"{MANAGER_PORT}/tcp (manager) to {peer}",
                          Packet(family, src=swarm.node_addr, dst=peer, proto="tcp", dport=MANAGER_PORT, iif="",
                                 oif=underlay, src_local=True, dst_local=False)))
    return flows


def _undo(ctx: CheckContext, step: Step) -> str:
    """The command that removes what drops a swarm flow: the rule, or (a drop policy) back to ACCEPT."""
    if step.rule is not None:
        return ctx.on_host(commands.delete(step.rule))
    return ctx.on_host(commands.set_policy(step.chain, "accept")) + "  # or add ACCEPT rules for the swarm ports"


def _firewall(ctx: CheckContext, swarm: Swarm, peers: list[str], underlay: str) -> tuple[list[Finding], list[tuple[str, str]]]:
    """Local rules (any backend) that drop swarm ports; also returns (rule, undo command) of those dropping the data port."""
    rules = ctx.host.firewall
    if rules.error:
        return [ctx.info("Local firewall not read: swarm port rules unknown", detail=rules.error)], []
    dropped: dict[str, list[str]] = defaultdict(list)
    undo: dict[str, str] = {}
    places: dict[str, str] = {}
    partial: dict[str, list[str]] = defaultdict(list)
    data_path_drops: list[tuple[str, str]] = []
    for hooks, what, packet in _flows(swarm, peers, underlay):
        path = follow(rules, packet, hooks)
        if path.dropped:
            line = path.drop.decided_by
            dropped[line].append(what)
            undo[line] = _undo(ctx, path.drop)
            places[line] = (path.drop.rule or path.drop.chain).place
            if packet.proto == "udp" and packet.dport == swarm.data_port and line not in dict(data_path_drops):
                data_path_drops.append((line, undo[line]))
        for item in path.partial_drops:
            partial[f"{item.place}: {item.text}"].append(what)
    findings = []
    for line, flows in dropped.items():
        findings.append(ctx.fail(
            f"This node's firewall drops swarm traffic: {line}",
            detail=f"The rule catches {len(flows)} swarm flow(s), e.g. {', '.join(flows[:3])}. Swarm needs TCP "
                   f"{MANAGER_PORT} to managers, TCP+UDP {GOSSIP_PORT} and UDP {swarm.data_port} between all nodes.",
            evidence={"rule": line, "where": places[line], "flows": flows, "host_netns": ctx.host.path},
            fix=Fix("Remove the rule (or insert ACCEPT rules for the swarm ports before it) on this node.", (undo[line],)),
            # stable while the rule's text is: root-cause rules link the data-path findings to it by its evidence
            key=f"firewall-drop:swarm:{hashlib.sha1(line.encode()).hexdigest()[:8]}"))
    if partial:
        findings.append(ctx.info("Firewall rules may drop part of the swarm traffic (they match on more than netdoctor "
                                 "can tell, e.g. Docker's own rule against unencrypted traffic on encrypted overlays)",
                                 evidence={"rules": {line: flows[:5] for line, flows in partial.items()}}))
    if not dropped:
        findings.append(ctx.ok(f"This node's firewall lets swarm ports through (UDP {swarm.data_port}, "
                               f"TCP+UDP {GOSSIP_PORT}, TCP {MANAGER_PORT})",
                               evidence={"peers": peers, "host_netns": ctx.host.path}))
    return findings, data_path_drops


def _probe_ports(ctx: CheckContext, swarm: Swarm, peers: list[str]) -> dict[tuple[str, int], tcp.ConnectResult]:
    targets = [(p, GOSSIP_PORT) for p in peers] + [(p, MANAGER_PORT) for p in peers if p in swarm.managers]
    results = concurrently(lambda t: ctx.host.connect(t[0], t[1], ctx.options.timeout), targets, MAX_PROBES)
    return dict(zip(targets, results))


def _port_findings(ctx: CheckContext, swarm: Swarm, probes: dict[tuple[str, int], tcp.ConnectResult]) -> Iterator[Finding]:
    failed = {key: r for key, r in probes.items() if not r.ok}
    for (peer, port), result in sorted(failed.items()):
        role = "manager" if port == MANAGER_PORT else "gossip"
        cause = ("nothing listens there (the engine is down or not in the swarm) or a REJECT rule answers"
                 if result.outcome == "refused" else "a firewall on that node or on the path drops it, or the node is down")
        yield ctx.fail(f"TCP {port} ({role}) on node {swarm.label(peer)} is not reachable from this node: {result.outcome}",
                       detail=f"{cause}. Without TCP {port} "
                              + ("this node cannot join or follow its managers." if port == MANAGER_PORT else
                                 "nodes do not learn about each other's containers: overlay peers vanish, names do not resolve."),
                       evidence={**result.to_evidence(), "from_netns": ctx.host.path, "node": swarm.label(peer)},
                       fix=Fix(f"On {swarm.label(peer)}, let TCP {port} in from this node ({swarm.node_addr}) and check "
                               f"that its engine is in the swarm.",
                               (f"iptables -S INPUT | grep -w {port}   # on {swarm.label(peer)}: find the rule",
                                f"iptables -I INPUT -p tcp --dport {port} -s {swarm.node_addr} -j ACCEPT   # on {swarm.label(peer)}",
                                "docker info --format '{{.Swarm.LocalNodeState}}'   # on " + swarm.label(peer))))
    if probes and not failed:
        yield ctx.ok(f"Swarm ports answer on all {len({p for p, _ in probes})} peer node(s)",
                     evidence={f"{p}:{port}": r.outcome for (p, port), r in probes.items()})


def _mtu(ctx: CheckContext, network: NetworkInfo, vxlan: Link, underlay: Link | None) -> Finding | None:
    if underlay is None:
        return None
    limit = underlay.mtu - VXLAN_OVERHEAD
    evidence = {"network": network.name, "vxlan_device": vxlan.name, "vxlan_mtu": vxlan.mtu,
                "underlay_device": underlay.name, "underlay_mtu": underlay.mtu, "limit": limit}
    if vxlan.mtu <= limit:
        return ctx.ok(f"Overlay {network.name}: {vxlan.name} MTU {vxlan.mtu} fits underlay {underlay.name} "
                      f"(MTU {underlay.mtu} - {VXLAN_OVERHEAD})", evidence=evidence)
    return ctx.fail(
        f"Overlay {network.name}: {vxlan.name} MTU {vxlan.mtu} is larger than underlay {underlay.name} MTU {underlay.mtu} "
        f"minus {VXLAN_OVERHEAD}",
        detail="Every VXLAN packet carries 50 bytes of headers: full-size overlay packets become too big for the "
               "underlay and are dropped. Small requests work, large transfers and TLS handshakes between nodes hang.",
        evidence=evidence,
        fix=Fix(f"Recreate {network.name} with an MTU of {limit} (all its services and containers must be moved), or "
                f"raise the underlay MTU to {vxlan.mtu + VXLAN_OVERHEAD} on every node.",
                (f"docker network create -d overlay --attachable --opt com.docker.network.driver.mtu={limit} "
                 f"{network.name}-mtu{limit}",
                 f"docker network disconnect {network.name} {ctx.target_name}",
                 f"docker network connect {network.name}-mtu{limit} {ctx.target_name}",
                 ctx.on_host(f"ip link set dev {underlay.name} mtu {vxlan.mtu + VXLAN_OVERHEAD}  # on every node"))))


def _data_path(ctx: CheckContext, swarm: Swarm, network: NetworkInfo, attachment: Attachment,
               peers: list[overlay.OverlayPeer], underlay_ok: dict[str, bool], local_drops: list[tuple[str, str]],
               data_port: int) -> Iterator[Finding]:
    """Echo every remote endpoint from the target; judge per node, since one node's rule cuts only that node."""
    if not peers:
        yield ctx.info(f"Overlay {network.name}: no endpoint on another node yet, nothing to reach across",
                       evidence={"network": network.name})
        return
    rounds = dict(zip(peers, concurrently(lambda p: ctx.netns.echo(p.ip, [ECHO_SIZE], ctx.options.timeout), peers, MAX_PROBES)))
    names = ctx.docker.network_endpoints(network.id)
    by_node: dict[str, dict[str, bool]] = defaultdict(dict)
    for peer, result in rounds.items():
        label = f"{names[peer.ip]} ({peer.ip})" if peer.ip in names else peer.ip
        by_node[peer.vtep][label] = bool(result.answered)
    for vtep, answers in sorted(by_node.items()):
        node = swarm.label(vtep)
        evidence = {"network": network.name, "from": attachment.ip, "node": node, "vtep": vtep,
                    "endpoints": answers, "underlay_tcp_gossip": underlay_ok.get(vtep)}
        if any(answers.values()):
            yield ctx.ok(f"Overlay {network.name}: endpoints on node {node} answer over VXLAN", evidence=evidence)
            continue
        underlay = underlay_ok.get(vtep)
        if underlay is False:
            yield ctx.fail(f"Overlay {network.name}: node {node} is unreachable, on the underlay as well",
                           detail="Neither the overlay endpoints nor the node's gossip port answer: the node is down "
                                  "or the underlay between the nodes is cut (see the TCP findings above).",
                           evidence=evidence,
                           fix=Fix(f"Bring {node} back, or open the path to it: the route and TCP/UDP {GOSSIP_PORT}, "
                                   f"UDP {data_port} between the nodes.",
                                   (ctx.on_host(f"ip route get {vtep}"),
                                    f"docker node ls   # on a manager: is {node} Ready?")),
                           key=f"node-unreachable:{network.name}:{vtep}")
            continue
        if local_drops:
            where = f"this node's rule `{local_drops[0][0]}` drops the VXLAN packets (UDP {data_port})"
            fix = Fix("Remove the rule on this node.", (local_drops[0][1],))
        else:
            where = (f"node {node} (or the path to it) drops UDP {data_port}: this node's firewall lets it through, so "
                     f"look at {node}'s")
            fix = Fix(f"On {node}, find and remove the rule dropping UDP {data_port} (VMware NSX also claims 4789: "
                      f"then re-create the swarm with another --data-path-port).",
                      (f"iptables -S INPUT | grep -w {data_port}   # on {node}",
                       f"iptables -I INPUT -p udp --dport {data_port} -s {swarm.node_addr} -j ACCEPT   # on {node}"))
        underlay_said = (f"but its TCP {GOSSIP_PORT} connects from this node: the control plane is fine, the "
                         f"encapsulated traffic is lost" if underlay else
                         "and its underlay was not probed (it is not among the swarm's known peers)")
        yield ctx.fail(f"Overlay {network.name}: the VXLAN data path to node {node} is broken"
                       + (" while the underlay works" if underlay else ""),
                       detail=f"No endpoint on {node} answers over the overlay, {underlay_said}; {where}.",
                       evidence={**evidence, "local_rules_dropping_vxlan": [line for line, _ in local_drops]}, fix=fix,
                       key=f"data-path-broken:{network.name}:{vtep}")


def _offload(ctx: CheckContext, underlay: Link) -> Finding:
    dev = ctx.host.read(device.read, underlay.name)
    generic = dev.features.get("tx-checksum-ip-generic")
    evidence = {"device": underlay.name, "driver": dev.driver, "tx-checksum-ip-generic": generic,
                "source": "ethtool netlink via pyroute2, driver via ETHTOOL_GDRVINFO ioctl"}
    if dev.error:
        return ctx.info(f"Underlay {underlay.name}: offload settings not readable", detail=dev.error, evidence=evidence)
    if dev.driver == "vmxnet3" and generic:
        return ctx.warn(f"Underlay {underlay.name} is a VMware vmxnet3 with tx-checksum-ip-generic on",
                        detail="vmxnet3 with checksum offload computes wrong checksums for VXLAN on port 4789 (and VMware "
                               "NSX itself uses 4789): overlay packets are silently dropped while everything else works.",
                        evidence=evidence,
                        fix=Fix("Turn the offload off on every node (persist it in the interface config), or move the "
                                "data path off 4789 when the swarm is created.",
                                (ctx.on_host(f"ethtool -K {underlay.name} tx-checksum-ip-generic off"),
                                 "docker swarm init --data-path-port 7789   # only when (re)creating the swarm")))
    return ctx.ok(f"Underlay {underlay.name} ({dev.driver or 'no driver info'}): tx-checksum-ip-generic "
                  f"{'on' if generic else 'off'}, no known VXLAN checksum problem with this driver", evidence=evidence)


@check(id="vxlan", title="Overlay (VXLAN) and Swarm traffic flows between nodes", scope=Scope.NAMESPACE,
       severity=Severity.HIGH, needs={Need.ROOT, Need.NETNS, Need.HOST_NETNS})
def vxlan(ctx: CheckContext) -> Iterator[Finding]:
    """Swarm nodes reach each other on TCP 2377, TCP+UDP 7946 and UDP 4789, and the target's overlays carry traffic.

    Runs for a container on an overlay network, or for the host when its engine is in Swarm mode.
    It reads the swarm's nodes from the Engine API (managers, every node when asked on a manager, the
    overlay's peers), then, from the host's (node's) namespace: walks the local iptables INPUT/OUTPUT
    chains for each swarm port and peer, and TCP-connects to 7946 on every peer and 2377 on managers
    (UDP cannot be probed: a silent UDP port proves nothing). For each overlay network of the target it
    opens the overlay's own namespace (through dockerd's mount namespace), compares its vxlan device's
    MTU with the underlay device's MTU minus 50, and reads the remote endpoints from the VXLAN
    forwarding table (neighbour + FDB entries, each with its node's address); it then echoes each
    endpoint from the target. When every endpoint of one node stays silent while that node's TCP 7946
    answers, the VXLAN data path is the broken layer: either a rule on this node (named) or one on
    that node, which netdoctor cannot read from here. It also reports the underlay device's checksum
    offload, since VMware's vmxnet3 with tx-checksum-ip-generic drops VXLAN on 4789.

    Why it matters: swarm hides all of this. Services deploy, `docker node ls` is green, and yet
    containers on different nodes cannot talk, because only UDP 4789 is blocked, or the overlay's
    MTU exceeds what the underlay carries after the 50-byte VXLAN header.

    Fix: open the ports between nodes (`iptables -I INPUT -p udp --dport 4789 -s NODE -j ACCEPT`),
    remove the dropping rule named in the finding, lower the overlay MTU
    (`--opt com.docker.network.driver.mtu=N`), `ethtool -K DEV tx-checksum-ip-generic off` on vmxnet3,
    or `docker swarm init --data-path-port` to leave 4789.
    """
    overlays = [(a, n) for a, n in ctx.networks() if n.driver == "overlay"]
    if ctx.container is None and ctx.target.kind != "host":
        yield ctx.info(f"Not a container or the host: {ctx.target.label} has no overlay networks to check")
        return
    try:
        swarm = _swarm(ctx)
    except DockerUnavailable as exc:
        if ctx.container is not None:
            raise
        yield ctx.info("Docker is not reachable: no swarm to check on this host", detail=str(exc))
        return
    if swarm.state != "active":
        if overlays:
            yield ctx.fail(f"On overlay network(s) {', '.join(n.name for _, n in overlays)} but this engine's swarm "
                           f"state is {swarm.state}", detail=swarm.error or "Overlay networks need an active swarm.",
                           evidence={"swarm_state": swarm.state, "error": swarm.error},
                           fix=Fix("Join the swarm again (a manager prints the command).",
                                   ("docker swarm join-token worker   # on a manager",)))
        else:
            yield ctx.info(f"Not on an overlay network and the engine is not in Swarm mode ({swarm.state})")
        return
    if swarm.error:  # active, yet the engine reports trouble (e.g. managers without quorum)
        yield ctx.fail(f"Swarm is active but unhealthy: {swarm.error}", evidence={"swarm_state": swarm.state},
                       fix=Fix("Restore manager quorum: bring the managers back, or re-initialise from a surviving one.",
                               ("docker node ls   # on a manager", "docker swarm init --force-new-cluster   # last resort, on one manager")))
    peers = swarm.peers([n for _, n in overlays])
    underlay = _underlay(ctx, swarm, peers)
    yield ctx.ok(f"Swarm {'manager' if swarm.is_manager else 'worker'} at {swarm.node_addr}, {len(peers)} peer node(s)",
                 evidence={"node_addr": swarm.node_addr, "managers": sorted(swarm.managers),
                           "peers": [swarm.label(p) for p in peers], "underlay": underlay.name if underlay else None,
                           "data_path_port": swarm.data_port})
    firewall_findings, local_drops = _firewall(ctx, swarm, peers, underlay.name if underlay else "")
    yield from firewall_findings
    probes = _probe_ports(ctx, swarm, peers) if peers else {}
    yield from _port_findings(ctx, swarm, probes)
    underlay_ok = {peer: result.ok for (peer, port), result in probes.items() if port == GOSSIP_PORT}
    if underlay is not None:
        yield _offload(ctx, underlay)
    for attachment, network in overlays:
        try:
            view = ctx.session.view(overlay.namespace_path(ctx.container, network), f"overlay {network.name}")
        except (overlay.OverlayNamespaceUnavailable, OSError) as exc:
            yield ctx.info(f"Overlay {network.name}: its namespace cannot be opened, VXLAN device not checked",
                           detail=str(exc))
            continue
        vxlans = [l for l in view.facts.links if l.kind == "vxlan"]
        if not vxlans:
            yield ctx.fail(f"Overlay {network.name} has no vxlan device on this node",
                           detail="Without it nothing leaves the node on this overlay. Docker recreates it when the "
                                  "network is re-attached.", evidence={"overlay_netns": view.path},
                           fix=Fix("Reconnect the container so Docker rebuilds the overlay's plumbing.",
                                   (f"docker network disconnect {network.name} {ctx.target_name}",
                                    f"docker network connect {network.name} {ctx.target_name}")))
            continue
        data_port = vxlans[0].info.get("IFLA_VXLAN_PORT") or swarm.data_port
        mtu_finding = _mtu(ctx, network, vxlans[0], underlay)
        if mtu_finding:
            yield mtu_finding
        yield from _data_path(ctx, swarm, network, attachment, view.read(overlay.vxlan_peers), underlay_ok,
                              local_drops, data_port)
