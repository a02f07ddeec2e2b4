"""The fake host (netdoctor/lab/fakehost.py: container -> host -> remote) made into a host whose one planted
fault fails several checks at once, for the root-cause tests:

- the remote ("the internet") also holds the container's nameserver, 203.0.113.53, with a resolver of ours
  (netdoctor.lab.resolver), and the container's resolv.conf names it (/etc/netns/CONTAINER/resolv.conf, what
  `ip netns exec` gives the namespace's programs), so the probe and the nameserver both lie beyond the host;
- the fake host's FORWARD jumps to a DOCKER-USER chain, as Docker's does, for the user's own rules.
Every address lives inside these namespaces; nothing leaves them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from netdoctor.lab import fakehost
from netdoctor.lab.fakehost import BRIDGE, HOST_LAN_IP, MASQUERADE, REMOTE, REMOTE_PORT, FakeHost
from tests.conftest import sh
from tests.fakehost import in_ns

NAMESERVER = "203.0.113.53"
PROBE = f"{REMOTE}:{REMOTE_PORT}"
NETNS_ETC = "/etc/netns"


@dataclass
class Host:
    lab: FakeHost

    def args(self, *extra: str) -> list[str]:
        """`netdoctor check` arguments for the container: every check, the probe, the fake host as the host."""
        return [*self.lab.target("--probe", PROBE, "--timeout", "1").argv, *extra]


def build(lab_netns) -> Host:
    lab = fakehost.build(lab_netns)
    sh("ip", "-n", lab.remote, "addr", "add", f"{NAMESERVER}/24", "dev", "eth0")
    for rule in (("-N", "DOCKER-USER"), ("-A", "DOCKER-USER", "-j", "RETURN"), ("-A", "FORWARD", "-j", "DOCKER-USER")):
        in_ns(lab.host, "iptables", *rule)
    os.makedirs(f"{NETNS_ETC}/{lab.container}", exist_ok=True)
    with open(f"{NETNS_ETC}/{lab.container}/resolv.conf", "w") as f:
        f.write(f"nameserver {NAMESERVER}\n")
    lab_netns.resolver("resolver", NAMESERVER, records={"web.test": REMOTE}, netns=lab.remote)
    return Host(lab)


def stop(host: Host) -> None:
    """What the namespaces do not take with them (the resolver goes with the remote's)."""
    shutil.rmtree(f"{NETNS_ETC}/{host.lab.container}", ignore_errors=True)


# The single faults, each as a user's machine gets it.
FAULTS = {
    "forwarding-off": lambda h: in_ns(h.lab.host, "sysctl", "-qw", "net.ipv4.ip_forward=0"),
    "gateway-removed": lambda h: sh("ip", "-n", h.lab.host, "addr", "del", f"{HOST_LAN_IP}/24", "dev", BRIDGE),
    "bridge-down": lambda h: sh("ip", "-n", h.lab.host, "link", "set", BRIDGE, "down"),
    "masquerade-missing": lambda h: in_ns(h.lab.host, "iptables", *["-D" if a == "-A" else a for a in MASQUERADE]),
    "docker-user-drop": lambda h: in_ns(h.lab.host, "iptables", "-I", "DOCKER-USER", "-d", NAMESERVER, "-j", "DROP"),
}
