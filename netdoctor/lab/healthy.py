"""healthy: nothing is broken. Every check must stay quiet here (no warn, no fail): the baseline that
proves the fault scenarios' findings come from their faults."""

from __future__ import annotations

from netdoctor.lab import fakehost
from netdoctor.lab.scenario import LabTarget
from netdoctor.lab.topology import Builder, BuiltScenario, host_port_of


class Healthy(BuiltScenario):
    name = "healthy"
    summary = ("Nothing is broken: a web container and a peer on a user network whose MTU matches the host's "
               "uplink, a published port, DNS through our resolver; and a namespace host that forwards and NATs.")
    expect = None
    needs_docker = False  # without Docker, only the namespace part is built

    def build(self, lab: Builder) -> list[LabTarget]:
        fake = fakehost.build(lab)
        targets = [fake.target(*fake.probe)]
        if lab.has_docker:
            network, dns = lab.lan()
            peer = lab.container("peer", network=network.name, dns=[dns], ports={"80/tcp": None})
            web = lab.container("web", network=network.name, dns=[dns], ports={"80/tcp": None})
            host_port_of(web)  # published and bound, or building the scenario failed
            targets.insert(0, LabTarget(web.name, ("--peer", peer.name)))
        return targets


SCENARIOS = [Healthy()]
