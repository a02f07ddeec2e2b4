"""subnet_overlap: a Docker network whose subnet the host also routes elsewhere (a VPN, a LAN).

The host is a fake host namespace that has a `vpn0` link routing the Docker network's exact subnet, as a
VPN pushing a 172.x route does; the container is checked with `--host-netns` pointing at it.
"""

from __future__ import annotations

from netdoctor.lab.scenario import Expectation, LabTarget
from netdoctor.lab.topology import Builder, BuiltScenario, subnet_of

VPN_PEER = "198.18.0.2"  # benchmarking range: the fake VPN's far end, inside a lab namespace


class SubnetOverlap(BuiltScenario):
    name = "subnet_overlap"
    summary = ("A host route (through a VPN link) covering the same subnet as a Docker network: replies meant "
               "for containers go down the VPN instead.")
    expect = Expectation("subnet_overlap", frozenset({"fail", "warn"}))

    def build(self, lab: Builder) -> list[LabTarget]:
        network, dns = lab.lan()
        web = lab.container("web", network=network.name, dns=[dns])
        host = lab.netns("host", forwarding=True)
        vpn = lab.netns("vpn")
        lab.veth(host, "vpn0", vpn, "eth0")
        lab.addr(host, "vpn0", "198.18.0.1/30")
        lab.addr(vpn, "eth0", f"{VPN_PEER}/30")
        lab.route(host, subnet_of(network), "via", VPN_PEER, "dev", "vpn0")
        return [LabTarget(web.name, ("--host-netns", host))]


SCENARIOS = [SubnetOverlap()]
