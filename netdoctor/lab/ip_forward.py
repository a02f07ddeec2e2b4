"""ip_forward: the host does not forward packets, so containers behind its bridge cannot get out.

Built in a fake host namespace with net.ipv4.ip_forward=0 (never on the real host); its "container"
namespace sits on the fake host's bridge and tries to reach the "internet" namespace beyond the uplink.
"""

from __future__ import annotations

from netdoctor.lab import fakehost
from netdoctor.lab.scenario import Expectation, LabTarget
from netdoctor.lab.topology import Builder, BuiltScenario


class IpForward(BuiltScenario):
    name = "ip_forward"
    summary = "The host has net.ipv4.ip_forward=0: a container behind its bridge cannot reach anything beyond the host."
    expect = Expectation("ip_forward")
    needs_docker = False

    def build(self, lab: Builder) -> list[LabTarget]:
        fake = fakehost.build(lab, forwarding=False)
        return [fake.target(*fake.probe)]


SCENARIOS = [IpForward()]
