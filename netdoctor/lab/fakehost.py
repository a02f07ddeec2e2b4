"""A whole host in namespaces: a fake host with a bridge, a "container" namespace behind it, and a "remote"
namespace playing the internet, with a TCP service on REMOTE:REMOTE_PORT. The one builder of this
topology, for the lab's scenarios and for the tests.

    [container] eth0 10.77.0.2 --- vethctr/br0 10.77.0.1 [host] uplink0 203.0.113.1 --- eth0 203.0.113.2 [remote]

Like Docker, the fake host forwards and MASQUERADEs the bridge subnet; the remote has no route back to
10.77.0.0/24 (private addresses are not routed on the internet), so without NAT replies never come back.
Host-level faults (forwarding off, uplink MTU, FORWARD policy) are made here, never on the real host;
netdoctor is pointed at the fake host with `--host-netns`. No packet leaves these namespaces.

`lab` makes the namespaces and the remote's service and does the plumbing (topology.Plumbing): a
scenario's Builder (its objects recorded, removed by `netdoctor lab down`), or the tests' namespaces
(tests/fakehost.py: deleted after each test). The steps (bridge, attach, uplink) also serve tests that
put the pieces together their own way.
"""

from __future__ import annotations

from dataclasses import dataclass

from netdoctor.lab.scenario import LabTarget

LAN = "10.77.0.0/24"
HOST_LAN_IP, CONTAINER_IP = "10.77.0.1", "10.77.0.2"
HOST_WAN_IP, REMOTE = "203.0.113.1", "203.0.113.2"   # TEST-NET-3: documentation addresses, only ever ours here
REMOTE_PORT, CLOSED_PORT = 80, 81                    # the remote's service; a port where nothing listens
BRIDGE, UPLINK, CONTAINER_END = "br0", "uplink0", "vethctr"
MASQUERADE = ("-t", "nat", "-A", "POSTROUTING", "-s", LAN, "!", "-o", BRIDGE, "-j", "MASQUERADE")


@dataclass(frozen=True)
class FakeHost:
    host: str        # netns acting as the host
    container: str   # netns acting as a container on the host's bridge
    remote: str      # netns acting as the internet

    def target(self, *args: str) -> LabTarget:
        """The container as netdoctor's target, with the fake host as the host."""
        return LabTarget(f"netns:{self.container}", ("--host-netns", self.host, *args))

    @property
    def probe(self) -> tuple[str, str]:
        return ("--probe", f"{REMOTE}:{REMOTE_PORT}")


def bridge(lab, netns: str, cidr: str, name: str = BRIDGE, mtu: int = 1500) -> None:
    """A bridge in `netns` holding the host's address on that segment (like docker0)."""
    lab.bridge(netns, name, mtu)
    lab.addr(netns, name, cidr)


def attach(lab, host: str, bridge_name: str, guest: str, cidr: str, gateway: str | None = None,
           host_end: str = CONTAINER_END, mtu: int = 1500) -> str:
    """Plug namespace `guest` (eth0 with `cidr`, a default route via `gateway`) into `bridge_name` of `host`
    by a veth, like a container on a bridge network; returns the host end's name."""
    lab.veth(host, host_end, guest, "eth0", mtu)
    lab.enslave(host, host_end, bridge_name)
    lab.addr(guest, "eth0", cidr)
    if gateway:
        lab.route(guest, "default", "via", gateway)
    return host_end


def uplink(lab, host: str, remote: str | None = None, mtu: int = 1500, name: str = UPLINK,
           routes_back: bool = False) -> str:
    """The host's way out: `name` (HOST_WAN_IP, MTU `mtu`) and the default route via REMOTE. With `remote`,
    a veth into that namespace (eth0 with REMOTE): the "internet", which has no route back to the host's
    private subnets unless `routes_back` (then a private network of the host's, reached without NAT).
    Without `remote`, its far end stays in the host, so the egress path exists (its device, its MTU) but
    nothing answers beyond it. Returns REMOTE."""
    far, far_end = (remote, "eth0") if remote else (host, f"{name}p")
    lab.veth(host, name, far, far_end, mtu)
    lab.addr(host, name, f"{HOST_WAN_IP}/24")
    if remote:
        lab.addr(remote, far_end, f"{REMOTE}/24")
        if routes_back:
            lab.route(remote, "default", "via", HOST_WAN_IP)
    lab.route(host, "default", "via", REMOTE)
    return REMOTE


def build(lab, *, forwarding: bool = True, nat: bool = True, uplink_mtu: int = 1500, bridge_mtu: int = 1500) -> FakeHost:
    host = lab.netns("host", forwarding=forwarding)
    container = lab.netns("ctr")
    remote = lab.netns("remote")
    bridge(lab, host, f"{HOST_LAN_IP}/24", mtu=bridge_mtu)
    attach(lab, host, BRIDGE, container, f"{CONTAINER_IP}/24", gateway=HOST_LAN_IP, mtu=bridge_mtu)
    uplink(lab, host, remote, mtu=uplink_mtu)
    if nat:
        lab.iptables(host, *MASQUERADE)
    lab.listener("remoteweb", remote, REMOTE_PORT)
    return FakeHost(host, container, remote)
