"""mtu: interfaces bigger than the path out of the host, so full-size packets are dropped.

Two real mismatches: a Docker network created with an MTU 100 bytes above this host's uplink (on a host
with a 1400 uplink that is the classic 1500 bridge), and a fake host whose uplink is 1400 while its
bridge and "container" are 1500.
"""

from __future__ import annotations

from netdoctor.lab import fakehost
from netdoctor.lab.scenario import Expectation, LabTarget
from netdoctor.lab.topology import Builder, BuiltScenario, host_egress_mtu

SMALL_UPLINK = 1400


class Mtu(BuiltScenario):
    name = "mtu"
    summary = ("Containers whose interface MTU is larger than the host's uplink: a Docker network created with "
               "a bigger MTU than this host's egress, and a namespace host with a 1400 uplink behind a 1500 bridge.")
    expect = Expectation("mtu")
    needs_docker = False

    def build(self, lab: Builder) -> list[LabTarget]:
        fake = fakehost.build(lab, uplink_mtu=SMALL_UPLINK)
        targets = [fake.target()]
        if lab.has_docker:
            network, dns = lab.lan(mtu=host_egress_mtu() + 100)
            web = lab.container("web", network=network.name, dns=[dns])
            targets.insert(0, LabTarget(web.name))
        return targets


SCENARIOS = [Mtu()]
