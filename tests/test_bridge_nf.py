"""bridge_nf: br_netfilter's per-namespace switch (net.bridge.bridge-nf-call-iptables, Linux >= 5.3) set in
fake host namespaces we own; the real host's value is only read.

The namespace lab proves both faults with real traffic between two neighbours on one bridge: policy DROP
plus bridge-nf-call-iptables=1 cuts them off, and with 0 an isolating DROP rule is silently ignored.
"""

import subprocess
from pathlib import Path

import pytest

from netdoctor.facts import NamespaceView
from netdoctor.netns import NamespaceWorker
from netdoctor.probes.tcp import connect
from netdoctor.lab.fakehost import attach, bridge
from tests.conftest import sh

pytestmark = pytest.mark.docker

BRIDGE = "brnf"
KEY = "net.bridge.bridge-nf-call-iptables"
PORT = 8080


def set_bridge_nf(netns: str, value: int) -> None:
    sh("ip", "netns", "exec", netns, "sysctl", "-qw", f"{KEY}={value}")


def iptables(netns: str, *args: str) -> None:
    sh("ip", "netns", "exec", netns, "iptables", *args)


class Neighbours:
    """Two namespaces on one bridge of a fake host; `b` listens on PORT."""

    def __init__(self, host: str, a: str, b: str):
        self.host, self.a = host, a
        self._workers = [NamespaceWorker(f"/run/netns/{n}") for n in (a, b)]
        self._listener = self._workers[1].socket()
        self._listener.bind(("10.78.1.3", PORT))
        self._listener.listen(8)

    def a_reaches_b(self) -> str:
        return connect(NamespaceView(self._workers[0], self.a), "10.78.1.3", PORT, timeout=1.0).outcome

    def close(self) -> None:
        self._listener.close()
        for worker in self._workers:
            worker.close()


@pytest.fixture
def neighbours(make_netns, lab_netns):
    host, a, b = make_netns("host"), make_netns("a"), make_netns("b")
    bridge(lab_netns, host, "10.78.1.1/24", name=BRIDGE)
    attach(lab_netns, host, BRIDGE, a, "10.78.1.2/24", host_end="vetha")
    attach(lab_netns, host, BRIDGE, b, "10.78.1.3/24", host_end="vethb")
    pair = Neighbours(host, a, b)
    yield pair
    pair.close()


def check(netdoctor, target: str, host: str) -> list[dict]:
    return netdoctor(target, "--checks", "bridge_nf", "--host-netns", host).of("bridge_nf")


def test_policy_drop_with_bridge_nf_on_cuts_neighbours_off_and_the_fix_works(neighbours, netdoctor):
    set_bridge_nf(neighbours.host, 1)
    iptables(neighbours.host, "-P", "FORWARD", "DROP")  # what Docker does to every host it runs on
    assert neighbours.a_reaches_b() == "timeout"
    [finding] = check(netdoctor, f"netns:{neighbours.a}", neighbours.host)
    assert finding["status"] == "fail"
    assert finding["evidence"][KEY] == "1" and finding["evidence"]["decided_by"] == "FORWARD policy DROP"
    [command] = finding["fix"]["commands"]
    assert command == f"ip netns exec {neighbours.host} iptables -I FORWARD -i {BRIDGE} -o {BRIDGE} -j ACCEPT"
    subprocess.run(command, shell=True, check=True)
    assert neighbours.a_reaches_b() == "connected"
    assert {f["status"] for f in check(netdoctor, f"netns:{neighbours.a}", neighbours.host)} == {"pass"}


def test_isolating_rule_is_ignored_with_bridge_nf_off(neighbours, netdoctor):
    iptables(neighbours.host, "-A", "FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "DROP")  # Docker's icc=false rule
    set_bridge_nf(neighbours.host, 0)
    assert neighbours.a_reaches_b() == "connected"  # the rule exists and nothing enforces it
    [finding] = check(netdoctor, f"netns:{neighbours.a}", neighbours.host)
    assert finding["status"] == "warn"
    assert finding["evidence"]["decided_by"] == f"-A FORWARD -i {BRIDGE} -o {BRIDGE} -j DROP"
    assert f"ip netns exec {neighbours.host} sysctl -w {KEY}=1" in finding["fix"]["commands"]
    set_bridge_nf(neighbours.host, 1)
    assert neighbours.a_reaches_b() == "timeout"  # now enforced, as intended
    assert {f["status"] for f in check(netdoctor, f"netns:{neighbours.a}", neighbours.host)} == {"pass"}


def test_unfiltered_bridge_with_bridge_nf_off_passes(neighbours, netdoctor):
    set_bridge_nf(neighbours.host, 0)
    assert {f["status"] for f in check(netdoctor, f"netns:{neighbours.a}", neighbours.host)} == {"pass"}


# --- Docker networks: icc=false needs bridge-nf-call-iptables=1 in the host namespace -----------------

@pytest.fixture
def isolated(make_network, make_container):
    network = make_network("noicc", options={"com.docker.network.bridge.enable_icc": "false"})
    return network, make_container("web", network=network.name)


def test_icc_false_without_bridge_nf_fails(isolated, make_netns, netdoctor):
    network, container = isolated
    host = make_netns("host")
    set_bridge_nf(host, 0)
    [finding] = check(netdoctor, container.name, host)
    assert finding["status"] == "fail" and network.name in finding["title"]
    assert finding["evidence"] == {"network": network.name, "bridge": f"br-{network.id[:12]}", "enable_icc": False,
                                   KEY: "0", "host_netns": f"/run/netns/{host}"}
    assert f"ip netns exec {host} sysctl -w {KEY}=1" in finding["fix"]["commands"]


def test_icc_false_with_bridge_nf_on_passes(isolated, make_netns, netdoctor):
    _, container = isolated
    host = make_netns("host")
    set_bridge_nf(host, 1)
    assert {f["status"] for f in check(netdoctor, container.name, host)} == {"pass"}


def test_icc_enabled_without_bridge_nf_is_only_info(make_network, make_container, make_netns, netdoctor):
    network = make_network("icc")
    container = make_container("web", network=network.name)
    host = make_netns("host")
    set_bridge_nf(host, 0)
    assert {f["status"] for f in check(netdoctor, container.name, host)} == {"info"}


def test_real_host_enforces_icc_false(isolated, netdoctor):
    _, container = isolated
    path = Path("/proc/sys") / KEY.replace(".", "/")
    real = path.read_text().strip() if path.exists() else None
    statuses = netdoctor(container.name, "--checks", "bridge_nf").statuses("bridge_nf")
    assert statuses == ({"pass"} if real == "1" else {"fail"})


def test_host_network_is_not_applicable(make_container, netdoctor):
    container = make_container("host", network_mode="host", command="sleep 3600")  # no listener on the real host
    assert netdoctor(container.name, "--checks", "bridge_nf").statuses("bridge_nf") == {"info"}
