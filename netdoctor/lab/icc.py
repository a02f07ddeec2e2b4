"""icc: two containers on one network that may not talk to each other.

The network is created with com.docker.network.bridge.enable_icc=false, so Docker drops traffic between
its containers; `a` is checked with `--peer b` (b runs a web server on its exposed port 80).
"""

from __future__ import annotations

from netdoctor.lab.scenario import Expectation, LabTarget
from netdoctor.lab.topology import Builder, BuiltScenario


class Icc(BuiltScenario):
    name = "icc"
    summary = ("Two containers on a network created with enable_icc=false: they share a network, "
               "yet every connection between them is dropped.")
    expect = Expectation("icc")

    def build(self, lab: Builder) -> list[LabTarget]:
        network, dns = lab.lan(options={"com.docker.network.bridge.enable_icc": "false"})
        b = lab.container("b", network=network.name, dns=[dns], ports={"80/tcp": None})  # exposes the port to try
        a = lab.container("a", network=network.name, dns=[dns])
        return [LabTarget(a.name, ("--peer", b.name))]


SCENARIOS = [Icc()]
