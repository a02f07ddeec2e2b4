"""`--peer NAME[:PORT]` anywhere in the Swarm: a container or service task on another node, or a service.

The icc check asks here when NAME is no container of the target's own engine. On each overlay network
of the target, the engine's verbose view (`docker network inspect --verbose`) lists every node's tasks and
attached containers with their overlay address and their node's address, and each service with its VIP:

    a service name     its VIP (endpoint mode vip), else its tasks' addresses (dnsrr)
    a task or container by name (`web.1`, `web.1.<task id>`, a standalone container on an attachable overlay)

Failing that, the embedded DNS answers as the target sees it (127.0.0.11, queried from the target's
namespace). Each address is then TCP-connected from the target; when that fails, the node it lives on is
asked whether its control plane answers (TCP 7946 from this node's namespace) and this node's firewall
whether it drops the VXLAN port, which tells a broken data path from a node that is down.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netdoctor.facts.docker import NetworkInfo
from netdoctor.firewall import FROM_HOST, TO_HOST, Packet, commands, follow
from netdoctor.model import Finding, Fix
from netdoctor.probes import concurrently

EMBEDDED_DNS = "127.0.0.11"
GOSSIP_PORT = 7946
DEFAULT_DATA_PORT = 4789


@dataclass(frozen=True)
class RemotePeer:
    name: str                                  # as the user named it
    kind: str                                  # service, task, container, or name (only DNS knew it)
    network: NetworkInfo                       # the overlay the target shares with it
    endpoints: tuple[tuple[str, str], ...]     # (overlay address, its node's address; "" for a VIP or from DNS)
    found_by: str
    endpoint_mode: str = ""                    # vip or dnsrr, for a service

    def describe(self) -> str:
        if self.kind == "service":
            return f"service {self.name} ({'its VIP' if self.endpoint_mode == 'vip' else 'its tasks, endpoint mode dnsrr'})"
        return f"{self.kind} {self.name}"


def find(ctx, name: str) -> RemotePeer | None:
    overlays = [network for _, network in ctx.networks() if network.driver == "overlay"]
    for network in overlays:
        services = ctx.docker.network_verbose(network.id).get("Services") or {}
        service = services.get(name) if name else None
        if service is not None:
            vip = (service.get("VIP") or "").partition("/")[0]
            if vip and vip != "<nil>":
                return RemotePeer(name, "service", network, ((vip, ""),), "the overlay's services", "vip")
            return RemotePeer(name, "service", network, _tasks(service), "the overlay's services", "dnsrr")
        for service_name, entry in services.items():
            for task in entry.get("Tasks") or ():
                if task.get("Name") == name or (task.get("Name") or "").startswith(name + "."):
                    return RemotePeer(name, "task" if service_name else "container", network, _tasks({"Tasks": [task]}),
                                      "the overlay's endpoints")
    for network in overlays:
        answer = ctx.netns.query(EMBEDDED_DNS, name, ctx.options.timeout)
        inside = [a for a in answer.addresses if any(ipaddress.ip_address(a) in ipaddress.ip_network(s) for s in network.subnets)]
        if inside:
            return RemotePeer(name, "name", network, tuple((a, "") for a in inside), f"the embedded DNS ({EMBEDDED_DNS})")
    return None


def _tasks(service: dict) -> tuple[tuple[str, str], ...]:
    return tuple((t["EndpointIP"], (t.get("Info") or {}).get("Host IP", "")) for t in service.get("Tasks") or ()
                 if t.get("EndpointIP"))


def elsewhere(ctx, name: str, port: int | None) -> list[Finding] | None:
    """Findings for a peer on another node, or None when no overlay of the target knows `name`."""
    peer = find(ctx, name)
    if peer is None:
        return None
    evidence = {"peer": peer.describe(), "network": peer.network.name, "found_by": peer.found_by,
                "endpoints": [address for address, _ in peer.endpoints]}
    if port is None:
        return [ctx.warn(f"{ctx.target_name} and {peer.describe()} share {peer.network.name}, but no port was given to try",
                         detail="It is on another node, whose containers' ports are not known here: name the port "
                                f"it serves, --peer {name}:PORT.", evidence=evidence, key=f"peer-untested:{name}@{peer.network.name}")]
    nodes = _node_names(ctx)
    return concurrently(lambda endpoint: _connect(ctx, peer, port, *endpoint, nodes, evidence), peer.endpoints)


def _node_names(ctx) -> dict[str, str]:
    """Node address -> hostname, when this engine is a manager (a worker cannot list nodes)."""
    from netdoctor.dockerapi import SwarmUnavailable

    try:
        return {(n.get("Status") or {}).get("Addr", ""): (n.get("Description") or {}).get("Hostname", "")
                for n in ctx.docker.swarm_nodes()}
    except SwarmUnavailable:
        return {}


def _connect(ctx, peer: RemotePeer, port: int, address: str, node_addr: str, nodes: dict[str, str],
             evidence: dict) -> Finding:
    key = f"peer:{peer.name}:{port}@{peer.network.name}"
    node = f"{nodes[node_addr]} ({node_addr})" if nodes.get(node_addr) else node_addr
    where = f"{address} on {peer.network.name}" + (f", on node {node}" if node else "")
    endpoint = f"{peer.name}:{port} ({where})"
    result = ctx.netns.connect(address, port, ctx.options.timeout)
    evidence = {**evidence, **result.to_evidence(), "node": node or None}
    if result.ok:
        return ctx.ok(f"{ctx.target_name} reaches {endpoint} in {result.latency_ms:.1f} ms", evidence=evidence, key=key)
    if result.outcome == "refused":
        return ctx.fail(f"{endpoint}: connection refused, nothing listens on port {port}",
                        detail=f"The overlay delivered the connection and {peer.name} answered with a reset: the "
                               f"service there does not listen on {port}, or only on 127.0.0.1.",
                        evidence={**evidence, "layer": "refused"},
                        fix=Fix(f"Make the service in {peer.name} listen on 0.0.0.0:{port}, or name the port it uses."),
                        key=key)
    if not node_addr:
        return ctx.fail(f"{endpoint}: {result.outcome} over the overlay",
                        detail=f"Which node it lives on is not known here ({peer.found_by}): run `check --swarm` for "
                               "the node matrix, which shows which node drops what.",
                        evidence={**evidence, "layer": "overlay"}, key=key)
    return _explain(ctx, peer, endpoint, node, node_addr, result, evidence, key)


def _explain(ctx, peer: RemotePeer, endpoint: str, node: str, node_addr: str, result, evidence: dict, key: str) -> Finding:
    """The peer's node answers on its control plane but not over VXLAN: the data path is broken, here or there."""
    control = ctx.host.connect(node_addr, GOSSIP_PORT, ctx.options.timeout)
    data_port = int(((ctx.docker.info().get("Swarm") or {}).get("Cluster") or {}).get("DataPathPort") or DEFAULT_DATA_PORT)
    evidence = {**evidence, "node_tcp_7946": control.outcome, "data_port": data_port}
    if not control.ok:
        return ctx.fail(f"{endpoint}: {result.outcome}; its node is unreachable as well (TCP {GOSSIP_PORT}: {control.outcome})",
                        detail=f"Neither {peer.name} nor its node's gossip port answers: the node is down or the "
                               "underlay between the nodes is cut.", evidence={**evidence, "layer": "peer_down"},
                        fix=Fix(f"Bring {node} back, or open the path to it.",
                                (ctx.on_host(f"ip route get {node_addr}"), f"docker node ls   # on a manager: is {node} Ready?")),
                        key=key)
    local, undo = _local_drop(ctx, node_addr, data_port)
    if local:
        where = f"this node's rule `{local}` drops it"
        fix = Fix("Remove the rule on this node.", (ctx.on_host(undo),))
    else:
        where = f"this node's firewall lets it through, so {node} (or the path to it) drops it"
        fix = Fix(f"On {node}, find and remove what drops UDP {data_port} (`check --swarm` names the rule).",
                  (f"iptables -S INPUT | grep -w {data_port}   # on {node}",))
    return ctx.fail(f"{endpoint}: {result.outcome}; the VXLAN data path to node {node} is broken while its control plane answers",
                    detail=f"{node} answers on TCP {GOSSIP_PORT} from this node, but {peer.name} on it does not over the "
                           f"overlay: the encapsulated traffic (UDP {data_port}) is lost; {where}.",
                    evidence={**evidence, "layer": "overlay", "local_rule": local or None}, fix=fix, key=key)


def _local_drop(ctx, node_addr: str, data_port: int) -> tuple[str, str]:
    """This node's rule (or policy) dropping VXLAN to or from `node_addr`, and the command that removes it."""
    rules = ctx.host.firewall
    if rules.error:
        return "", ""
    family = 6 if ":" in node_addr else 4
    for hooks, packet in ((FROM_HOST, Packet(family, dst=node_addr, proto="udp", dport=data_port, iif="", src_local=True,
                                             dst_local=False)),
                          (TO_HOST, Packet(family, src=node_addr, proto="udp", dport=data_port, oif="", src_local=False,
                                           dst_local=True))):
        drop = follow(rules, packet, hooks).drop
        if drop:
            return drop.decided_by, (commands.delete(drop.rule) if drop.rule else commands.set_policy(drop.chain, "accept"))
    return "", ""
