"""A whole host in namespaces: a fake host with a bridge, a "container" namespace behind it, and a
"remote" namespace playing the internet, with a TCP service on REMOTE:REMOTE_PORT.

    [ctr] eth0 10.77.0.2 --- vethctr/br0 10.77.0.1 [host] uplink0 203.0.113.1 --- eth0 203.0.113.2 [remote]

Like Docker, the fake host forwards and MASQUERADEs the bridge subnet; the remote has no route back to
10.77.0.0/24 (private addresses are not routed on the internet), so without NAT replies never come back.
Host-level faults (forwarding off, uplink MTU, FORWARD policy) are made here, never on the real host;
netdoctor is pointed at the fake host with `--host-netns`. No packet leaves these namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from netdoctor.lab.scenario import LabTarget
from netdoctor.lab.topology import Builder

LAN = "10.77.0.0/24"
HOST_LAN_IP, CONTAINER_IP = "10.77.0.1", "10.77.0.2"
HOST_WAN_IP, REMOTE = "203.0.113.1", "203.0.113.2"   # TEST-NET-3: documentation addresses, only ever ours here
REMOTE_PORT = 80


@dataclass(frozen=True)
class FakeHost:
    host: str        # netns acting as the host
    container: str   # netns acting as a container on the host's bridge
    remote: str      # netns acting as the internet

    def target(self, *args: str) -> LabTarget:
        return LabTarget(f"netns:{self.container}", ("--host-netns", self.host, *args))

    @property
    def probe(self) -> tuple[str, str]:
        return ("--probe", f"{REMOTE}:{REMOTE_PORT}")


def build(lab: Builder, *, forwarding: bool = True, nat: bool = True, uplink_mtu: int = 1500,
          bridge_mtu: int = 1500) -> FakeHost:
    host = lab.netns("host", forwarding=forwarding)
    container = lab.netns("ctr")
    remote = lab.netns("remote")

    lab.bridge(host, "br0", bridge_mtu)
    lab.addr(host, "br0", f"{HOST_LAN_IP}/24")
    lab.veth(host, "vethctr", container, "eth0", bridge_mtu)
    lab.enslave(host, "vethctr", "br0")
    lab.addr(container, "eth0", f"{CONTAINER_IP}/24")
    lab.route(container, "default", "via", HOST_LAN_IP)

    lab.veth(host, "uplink0", remote, "eth0", uplink_mtu)
    lab.addr(host, "uplink0", f"{HOST_WAN_IP}/24")
    lab.addr(remote, "eth0", f"{REMOTE}/24")
    lab.route(host, "default", "via", REMOTE)
    if nat:
        lab.iptables(host, "-t", "nat", "-A", "POSTROUTING", "-s", LAN, "!", "-o", "br0", "-j", "MASQUERADE")
    lab.listener("remoteweb", remote, REMOTE_PORT)
    return FakeHost(host, container, remote)
