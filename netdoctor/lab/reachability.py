"""reachability: a container that cannot reach a server beyond its host because NAT is missing.

The fake host forwards, but nothing MASQUERADEs its bridge subnet: packets reach the "internet" namespace
with the container's private source address, and the replies have no way back.
"""

from __future__ import annotations

from netdoctor.lab import fakehost
from netdoctor.lab.scenario import Expectation, LabTarget
from netdoctor.lab.topology import Builder, BuiltScenario


class Reachability(BuiltScenario):
    name = "reachability"
    summary = (f"A host that forwards but does not NAT its bridge subnet: the container's connection to "
               f"{fakehost.REMOTE}:{fakehost.REMOTE_PORT} (a server beyond the host) never gets an answer.")
    expect = Expectation("reachability")
    needs_docker = False

    def build(self, lab: Builder) -> list[LabTarget]:
        fake = fakehost.build(lab, nat=False)
        return [fake.target(*fake.probe)]


SCENARIOS = [Reachability()]
