"""forward_policy: the host's firewall drops forwarded traffic.

In the fake host, the FORWARD chain's policy is DROP and nothing accepts the bridge's traffic (what a
firewall script or firewalld reload that flushes Docker's rules leaves behind).
"""

from __future__ import annotations

from netdoctor.lab import fakehost
from netdoctor.lab.scenario import Expectation, LabTarget
from netdoctor.lab.topology import Builder, BuiltScenario


class ForwardPolicy(BuiltScenario):
    name = "forward_policy"
    summary = ("A host whose FORWARD chain drops everything (policy DROP, no rule accepting the bridge): "
               "the container's traffic dies in the host's firewall.")
    expect = Expectation("forward_policy", frozenset({"fail", "warn"}))
    needs_docker = False

    def build(self, lab: Builder) -> list[LabTarget]:
        fake = fakehost.build(lab)
        lab.iptables(fake.host, "-P", "FORWARD", "DROP")
        return [fake.target(*fake.probe)]


SCENARIOS = [ForwardPolicy()]
