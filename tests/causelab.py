"""The routed lab (tests/routedlab.py: box -> fakehost -> remote) made into a host whose one planted fault
fails several checks at once, for the root-cause tests:

- the remote ("the internet") also holds the box's nameserver, 10.99.0.53, with a resolver of ours
  (netdoctor.lab.resolver), and the box's resolv.conf names it (/etc/netns/BOX/resolv.conf, what
  `ip netns exec` gives the namespace's programs), so the probe and the nameserver both lie beyond the host;
- the fake host's FORWARD jumps to a DOCKER-USER chain, as Docker's does, for the user's own rules.
Every address lives inside these namespaces; nothing leaves them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from tests import routedlab
from tests.conftest import sh
from tests.routedlab import GATEWAY_IP, LISTEN_PORT, MASQUERADE, REMOTE_IP

NAMESERVER = "10.99.0.53"
PROBE = f"{REMOTE_IP}:{LISTEN_PORT}"
NETNS_ETC = "/etc/netns"


@dataclass
class Host:
    lab: routedlab.RoutedLab
    resolver: subprocess.Popen

    @property
    def box(self) -> str:
        return self.lab.box

    def args(self, *extra: str) -> list[str]:
        """`netdoctor check` arguments for the box: every check, the probe, the fake host as the host."""
        return [*self.lab.target_args("--probe", PROBE, "--timeout", "1"), *extra]


def build(make_netns) -> Host:
    lab = routedlab.build(make_netns)
    sh("ip", "-n", lab.remote, "addr", "add", f"{NAMESERVER}/24", "dev", "eth0")
    for rule in (("-N", "DOCKER-USER"), ("-A", "DOCKER-USER", "-j", "RETURN"), ("-A", "FORWARD", "-j", "DOCKER-USER")):
        lab.iptables(*rule)
    os.makedirs(f"{NETNS_ETC}/{lab.box}", exist_ok=True)
    with open(f"{NETNS_ETC}/{lab.box}/resolv.conf", "w") as f:
        f.write(f"nameserver {NAMESERVER}\n")
    resolver = subprocess.Popen(["ip", "netns", "exec", lab.remote, sys.executable, "-m", "netdoctor.lab.resolver",
                                 "--address", NAMESERVER, "--record", f"web.test={REMOTE_IP}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host = Host(lab, resolver)
    try:
        routedlab._wait_listening(lab.remote, 53, proto="udp")
    except RuntimeError:
        stop(host)
        raise
    return host


def stop(host: Host) -> None:
    routedlab.end(host.resolver)
    routedlab.stop(host.lab)
    shutil.rmtree(f"{NETNS_ETC}/{host.box}", ignore_errors=True)


# The single faults, each as a user's machine gets it.
FAULTS = {
    "forwarding-off": lambda h: h.lab.in_ns(h.lab.fakehost, "sysctl", "-qw", "net.ipv4.ip_forward=0"),
    "gateway-removed": lambda h: sh("ip", "-n", h.lab.fakehost, "addr", "del", f"{GATEWAY_IP}/24", "dev", "br0"),
    "bridge-down": lambda h: sh("ip", "-n", h.lab.fakehost, "link", "set", "br0", "down"),
    "masquerade-missing": lambda h: h.lab.iptables(*["-D" if a == "-A" else a for a in MASQUERADE]),
    "docker-user-drop": lambda h: h.lab.iptables("-I", "DOCKER-USER", "-d", NAMESERVER, "-j", "DROP"),
}
