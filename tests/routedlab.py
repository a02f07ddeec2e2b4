"""A routed lab in three namespaces we own, so host-level faults never touch the real host:

    box (the "container")            fakehost (the "host")                      remote ("the internet")
    eth0 10.88.0.2/24  <-veth->  vbox -- br0 10.88.0.1/24
    default via 10.88.0.1                up0 10.99.0.1/24 (MTU uplink_mtu) <-veth-> eth0 10.99.0.2/24
                                         default via 10.99.0.2                       TCP listener on :8080
                                         MASQUERADE -s 10.88.0.0/24 -o up0           no route back to 10.88.0.0/24

The remote knows no route back to the box's subnet, as on the internet: without the fake host's
MASQUERADE its replies go nowhere. Every address lives inside these namespaces; nothing leaves them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

from tests.conftest import sh

BOX_IP, GATEWAY_IP, BOX_SUBNET = "10.88.0.2", "10.88.0.1", "10.88.0.0/24"
UPLINK_IP, REMOTE_IP = "10.99.0.1", "10.99.0.2"
LISTEN_PORT, CLOSED_PORT = 8080, 8081
MASQUERADE = ("-t", "nat", "-A", "POSTROUTING", "-s", BOX_SUBNET, "-o", "up0", "-j", "MASQUERADE")


@dataclass
class RoutedLab:
    box: str
    fakehost: str
    remote: str
    listener: subprocess.Popen

    def in_ns(self, netns: str, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", netns, *command, check=check)

    def iptables(self, *args: str) -> None:
        self.in_ns(self.fakehost, "iptables", *args)

    def target_args(self, *extra: str) -> list[str]:
        return [f"netns:{self.box}", "--host-netns", self.fakehost, *extra]


def _veth(ns_a: str, name_a: str, ns_b: str, name_b: str, mtu: int = 1500) -> None:
    sh("ip", "-n", ns_a, "link", "add", name_a, "mtu", str(mtu), "type", "veth", "peer", "name", name_b,
       "netns", ns_b, "mtu", str(mtu))


def _wait_listening(netns: str, port: int, deadline_s: float = 10, proto: str = "tcp") -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if f":{port} " in sh("ip", "netns", "exec", netns, "ss", "-Hln" + proto[0]).stdout:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{proto} listener on :{port} in {netns} did not come up")


def build(make_netns, uplink_mtu: int = 1500) -> RoutedLab:
    fakehost = make_netns("fakehost", forwarding=True)
    box = make_netns("box")
    remote = make_netns("remote")

    sh("ip", "-n", fakehost, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", fakehost, "addr", "add", f"{GATEWAY_IP}/24", "dev", "br0")
    sh("ip", "-n", fakehost, "link", "set", "br0", "up")
    _veth(fakehost, "vbox", box, "eth0")
    sh("ip", "-n", fakehost, "link", "set", "vbox", "master", "br0", "up")
    sh("ip", "-n", box, "addr", "add", f"{BOX_IP}/24", "dev", "eth0")
    sh("ip", "-n", box, "link", "set", "eth0", "up")
    sh("ip", "-n", box, "route", "add", "default", "via", GATEWAY_IP)

    _veth(fakehost, "up0", remote, "eth0", uplink_mtu)
    sh("ip", "-n", fakehost, "addr", "add", f"{UPLINK_IP}/24", "dev", "up0")
    sh("ip", "-n", fakehost, "link", "set", "up0", "up")
    sh("ip", "-n", fakehost, "route", "add", "default", "via", REMOTE_IP)
    sh("ip", "-n", remote, "addr", "add", f"{REMOTE_IP}/24", "dev", "eth0")
    sh("ip", "-n", remote, "link", "set", "eth0", "up")
    sh("ip", "netns", "exec", fakehost, "iptables", *MASQUERADE)

    listener = subprocess.Popen(["ip", "netns", "exec", remote, sys.executable, "-m", "http.server",
                                 "--bind", REMOTE_IP, str(LISTEN_PORT)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_listening(remote, LISTEN_PORT)
    return RoutedLab(box, fakehost, remote, listener)


def stop(lab: RoutedLab) -> None:
    end(lab.listener)


def end(process: subprocess.Popen) -> None:
    """Stop a service the lab started in a namespace (killed when it does not go within 5 s)."""
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()


def connects(lab: RoutedLab, port: int = LISTEN_PORT) -> bool:
    """Ground truth without netdoctor: can the box open a TCP connection to the remote?"""
    code = ("import socket,sys\ns=socket.socket();s.settimeout(1)\n"
            f"sys.exit(s.connect_ex(('{REMOTE_IP}',{port})))")
    return lab.in_ns(lab.box, sys.executable, "-c", code, check=False).returncode == 0

