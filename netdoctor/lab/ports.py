"""ports: published ports that cannot work.

One container publishes port 80 while its web server listens on 127.0.0.1 inside (connections through
the published port are reset); another publishes port 80 with nothing listening at all.
"""

from __future__ import annotations

from netdoctor.lab.scenario import Expectation, LabTarget
from netdoctor.lab.topology import Builder, BuiltScenario


class Ports(BuiltScenario):
    name = "ports"
    summary = ("Two published ports that cannot work: a web server bound to 127.0.0.1 inside its container, "
               "and a published port with nothing listening behind it.")
    expect = Expectation("ports", frozenset({"fail", "warn"}))

    def build(self, lab: Builder) -> list[LabTarget]:
        network, dns = lab.lan()
        local = lab.container("local", "httpd -f -p 127.0.0.1:80", network=network.name, dns=[dns], ports={"80/tcp": None})
        idle = lab.container("idle", "sleep 86400", network=network.name, dns=[dns], ports={"80/tcp": None})
        return [LabTarget(local.name), LabTarget(idle.name)]


SCENARIOS = [Ports()]
