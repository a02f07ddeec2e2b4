"""bridge_nf: an isolation rule for a bridge that is never applied.

In a fake host namespace, FORWARD has the DROP rule `-i br0 -o br0` that icc=false installs, but
net.bridge.bridge-nf-call-iptables=0 there, so frames switched by br0 never reach iptables and neighbours
talk freely. The sysctl is per network namespace on this kernel (and on one where it is not, the
namespace has no such sysctl and `up` fails); the real host's value is checked to be untouched.
"""

from __future__ import annotations

from netdoctor.facts.namespace import read_sysctl
from netdoctor.lab import fakehost
from netdoctor.lab.scenario import Expectation, LabTarget
from netdoctor.lab.topology import Builder, BuiltScenario, LabError

KEY = "net.bridge.bridge-nf-call-iptables"


class BridgeNf(BuiltScenario):
    name = "bridge_nf"
    summary = ("A host with an isolation rule for its bridge (DROP -i br0 -o br0, as icc=false makes) while "
               "bridge-nf-call-iptables=0: bridged frames skip iptables, so the rule is silently never applied.")
    expect = Expectation("bridge_nf", frozenset({"fail", "warn"}))
    needs_docker = False

    def build(self, lab: Builder) -> list[LabTarget]:
        fake = fakehost.build(lab)
        real_host = read_sysctl(KEY)  # this process runs in the real host's namespace
        lab.sysctl(fake.host, KEY, 0)
        if read_sysctl(KEY) != real_host:
            raise LabError(f"{KEY} is not per-namespace on this kernel; the bridge_nf scenario cannot be built here")
        lab.iptables(fake.host, "-I", "FORWARD", "-i", "br0", "-o", "br0", "-j", "DROP")
        return [fake.target()]


SCENARIOS = [BridgeNf()]
