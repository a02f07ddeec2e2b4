"""macvlan lab scenarios: a macvlan Docker network whose parent is a veth of the lab in the host namespace (never
a real NIC), with the veth's other end in a lab namespace that plays the LAN's gateway.

`macvlan` is healthy (the host cannot reach the container, by design: the check explains the shim);
`macvlan-parent-down` sets the parent down.
"""

from __future__ import annotations

import os
import subprocess

from netdoctor.lab.scenario import LAB_LABEL, Expectation, LabTarget, Scenario
from netdoctor.lab.topology import Builder, LabError, teardown

IMAGE = os.environ.get("NETDOCTOR_TEST_IMAGE", "netdoctor-test/busybox:latest")


def _ip(*args: str, check: bool = True) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise LabError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


class MacvlanScenario(Scenario):
    name = "macvlan"
    summary = "a container on a macvlan network over a lab veth; the LAN gateway is a lab namespace"
    expect = None
    parent = "ndlab-mv-p"        # host-side veth (IFNAMSIZ: 15 characters at most)
    subnet_octet = 201           # 10.213.201.0/24: private, unused on these machines

    @property
    def subnet(self) -> str:
        return f"10.213.{self.subnet_octet}.0/24"

    @property
    def gateway(self) -> str:
        return f"10.213.{self.subnet_octet}.1"

    def up(self) -> list[LabTarget]:
        import docker
        import docker.types

        self.down()
        client = docker.from_env(version="auto", timeout=30)
        try:
            builder = Builder(self.name)  # records the namespace and the resolver in the lab's state file
            gateway_ns = builder.netns("gw")
            _ip("link", "add", self.parent, "type", "veth", "peer", "name", "lan0", "netns", gateway_ns)
            _ip("link", "set", self.parent, "up")
            _ip("-n", gateway_ns, "addr", "add", f"{self.gateway}/24", "dev", "lan0")
            _ip("-n", gateway_ns, "link", "set", "lan0", "up")
            builder.resolver("dns", self.gateway, netns=gateway_ns)
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=self.subnet, gateway=self.gateway)])
            client.networks.create(f"{self.prefix}-net", driver="macvlan", options={"parent": self.parent}, ipam=ipam,
                                   labels={LAB_LABEL: self.name})
            # --dns: our resolver in the gateway namespace, so no query ever leaves the lab
            client.containers.run(IMAGE, "httpd -f -p 80", name=f"{self.prefix}-ctr", network=f"{self.prefix}-net",
                                  dns=[self.gateway], detach=True, labels={LAB_LABEL: self.name})
            self.break_it()
        except BaseException:
            self.down()
            raise
        finally:
            client.close()
        return [LabTarget(f"{self.prefix}-ctr")]

    def break_it(self) -> None:
        """Fault scenarios add their fault here."""

    def down(self) -> None:
        teardown(self.name)  # the labelled container and network, the gateway namespace, the state file
        _ip("link", "del", self.parent, check=False)  # the one link in the host namespace (its peer goes too)


class MacvlanParentDownScenario(MacvlanScenario):
    name = "macvlan-parent-down"
    summary = "a macvlan network whose parent interface is down: the container reaches nothing"
    expect = Expectation("macvlan")
    parent = "ndlab-mvd-p"
    subnet_octet = 202

    def break_it(self) -> None:
        _ip("link", "set", self.parent, "down")


SCENARIOS = [MacvlanScenario, MacvlanParentDownScenario]
