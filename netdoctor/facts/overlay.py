"""Docker overlay networks as the kernel holds them: the overlay's own namespace and its VXLAN forwarding table.

Docker keeps one namespace per overlay network on each node (`<exec-root>/netns/1-<network id[:10]>`,
next to the containers' sandboxes), holding a bridge, the vxlan device and static entries for every
remote endpoint: a neighbour (overlay IP -> MAC) and an FDB entry (MAC -> VTEP, the peer node's underlay
address). That namespace file is a bind mount in dockerd's mount namespace only; the container's parent
process (its containerd shim) lives in that mount namespace, so /proc/<shim>/root reaches it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from netdoctor.facts.docker import ContainerInfo, NetworkInfo

VXLAN_OVERHEAD = 50  # outer Ethernet + IP + UDP + VXLAN headers


class OverlayNamespaceUnavailable(Exception):
    pass


@dataclass(frozen=True)
class OverlayPeer:
    ip: str       # the remote endpoint's overlay address
    mac: str
    vtep: str     # underlay address of the node it lives on


def _parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    raise OverlayNamespaceUnavailable(f"process {pid} has no parent")


def namespace_path(container: ContainerInfo, network: NetworkInfo) -> str:
    """Path of `network`'s overlay namespace on the container's node, as seen from here."""
    sandbox = ((container.raw.get("NetworkSettings") or {}).get("SandboxKey")) or ""
    if not container.running or not sandbox:
        raise OverlayNamespaceUnavailable(f"container {container.name} is not running: no sandbox to start from")
    relative = os.path.join(os.path.dirname(sandbox), f"1-{network.id[:10]}")
    try:
        shim = _parent_pid(container.pid)
    except OSError as exc:
        raise OverlayNamespaceUnavailable(f"cannot read process {container.pid}: {exc.strerror}") from None
    path = f"/proc/{shim}/root{relative}"
    if not os.path.exists(path):
        raise OverlayNamespaceUnavailable(f"{relative} does not exist in the mount namespace of dockerd's shim (pid {shim})")
    return path


def vxlan_peers() -> list[OverlayPeer]:
    """Run on the overlay namespace's thread: remote endpoints from the vxlan devices' neighbour and FDB entries."""
    from netdoctor import netlink

    peers = []
    vxlans = [link["index"] for link in netlink.links()
              if (info := link.get_attr("IFLA_LINKINFO")) and info.get_attr("IFLA_INFO_KIND") == "vxlan"]
    fdb = {entry.get_attr("NDA_LLADDR"): entry.get_attr("NDA_DST") for entry in netlink.neighbours(socket.AF_BRIDGE)
           if entry["ifindex"] in vxlans and entry.get_attr("NDA_DST")}
    for entry in netlink.neighbours(socket.AF_INET):
        mac = entry.get_attr("NDA_LLADDR")
        if entry["ifindex"] in vxlans and mac in fdb:
            peers.append(OverlayPeer(entry.get_attr("NDA_DST"), mac, fdb[mac]))
    return sorted(peers, key=lambda p: (p.vtep, socket.inet_aton(p.ip)))
