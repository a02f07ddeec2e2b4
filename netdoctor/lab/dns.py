"""dns: containers whose nameserver cannot answer.

One has `--dns 127.0.0.53` (systemd-resolved's stub, copied from a host): inside the container's own
namespace nothing listens there. The other's nameserver is a server of ours that receives queries and
never answers. Both are on the default bridge, where resolv.conf lists the nameservers as given.
"""

from __future__ import annotations

from netdoctor.lab.scenario import Expectation, LabTarget
from netdoctor.lab.topology import Builder, BuiltScenario, gateway_of

LOOPBACK_STUB = "127.0.0.53"


class Dns(BuiltScenario):
    name = "dns"
    summary = ("Two containers that cannot resolve names: one with nameserver 127.0.0.53 (the host's systemd-resolved "
               "stub, unreachable from a container), one whose nameserver never answers.")
    expect = Expectation("dns", frozenset({"fail", "warn"}))

    def build(self, lab: Builder) -> list[LabTarget]:
        # a lab network only to own an address for the silent nameserver
        network = lab.network("net")
        silent = lab.resolver("silentdns", gateway_of(network), behaviour="silent")
        stub = lab.container("stub", dns=[LOOPBACK_STUB])
        mute = lab.container("mute", dns=[silent])
        return [LabTarget(stub.name), LabTarget(mute.name)]


SCENARIOS = [Dns()]
