"""vxlan against a real three-node Swarm (netdoctor.lab.swarm), built once for the module; each test breaks one
node with a real iptables rule or MTU inside that node's namespace and restores it afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netdoctor.lab.swarm import NODES, SwarmScenario
from netdoctor.lab.topology import STATE_ROOT, Builder
from tests.conftest import RUN_ID, sh

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def swarm(request, test_image):
    lab = SwarmScenario(f"swarm{RUN_ID}")  # our own name: never collides with a `netdoctor lab up swarm`
    request.addfinalizer(lab.down)
    lab.up()
    return lab


@pytest.fixture
def on_node(swarm):
    """Run a command in a node's namespace; iptables rules inserted this way are deleted afterwards and the
    swarm is back in its converged state before the next test."""
    inserted: list[tuple[str, list[str]]] = []
    mtus: list[str] = []

    def run(node: str, *command: str) -> str:
        if command[:3] == ("iptables", "-I", "INPUT"):
            inserted.append((node, list(command[3:])))
        if command[:4] == ("ip", "link", "set", "eth0") and "mtu" in command:
            mtus.append(node)
        return sh("ip", "netns", "exec", swarm.netns(node), *command).stdout

    yield run
    for node, rule in inserted:
        sh("ip", "netns", "exec", swarm.netns(node), "iptables", "-D", "INPUT", *rule)
    for node in mtus:
        sh("ip", "netns", "exec", swarm.netns(node), "ip", "link", "set", "eth0", "mtu", "1500")
    swarm.wait_converged()


def diagnose(netdoctor, swarm, node: str, *args: str):
    report = netdoctor(swarm.container(node), "--node", swarm.node_name(node), "--checks", "vxlan", *args)
    assert report.doc is not None, report.stderr
    return report


def loud(report) -> list[dict]:
    return [f for f in report.of("vxlan") if f["status"] not in ("pass", "info")]


def data_path(report, swarm, node: str) -> dict:
    [finding] = [f for f in report.of("vxlan") if f["evidence"].get("vtep") == swarm.address(node)]
    return finding


def test_healthy_swarm_is_quiet_on_every_node(swarm, netdoctor):
    for node in NODES:
        report = diagnose(netdoctor, swarm, node)
        assert not loud(report), [(f["status"], f["title"]) for f in loud(report)]
        others = [n for n in NODES if n != node]
        for other in others:  # the data path was really exercised, to each other node
            finding = data_path(report, swarm, other)
            assert finding["status"] == "pass"
            assert finding["evidence"]["endpoints"][f"{swarm.container(other)} ({_overlay_ip(swarm, other)})"] is True
        [membership] = [f for f in report.of("vxlan") if "node_addr" in f["evidence"]]
        assert membership["evidence"]["node_addr"] == swarm.address(node)
        assert len(membership["evidence"]["peers"]) == 2
        assert report.exit_code == 0


def test_udp_4789_dropped_on_one_node(swarm, on_node, netdoctor):
    on_node("worker2", "iptables", "-I", "INPUT", "-p", "udp", "--dport", "4789", "-j", "DROP")

    # seen from the manager: worker2 is cut off on the data path only; worker1 is fine
    report = diagnose(netdoctor, swarm, "manager")
    broken = data_path(report, swarm, "worker2")
    assert broken["status"] == "fail" and "while the underlay works" in broken["title"]
    assert broken["evidence"]["underlay_tcp_gossip"] is True
    assert "worker2" in broken["detail"] and "UDP 4789" in broken["detail"]
    assert any("iptables -S INPUT | grep -w 4789" in c and "worker2" in c for c in broken["fix"]["commands"])
    assert data_path(report, swarm, "worker1")["status"] == "pass"
    assert report.exit_code == 1

    # seen from worker2 itself: its own rule is named, as the cause, with the command that removes it
    report = diagnose(netdoctor, swarm, "worker2")
    rule = "-A INPUT -p udp -m udp --dport 4789 -j DROP"
    [firewall] = [f for f in report.of("vxlan") if f["evidence"].get("rule") == rule]
    assert firewall["status"] == "fail"
    removal = f"ip netns exec {swarm.netns('worker2')} iptables -D INPUT -p udp -m udp --dport 4789 -j DROP"
    assert removal in firewall["fix"]["commands"]
    for other in ("manager", "worker1"):
        finding = data_path(report, swarm, other)
        assert finding["status"] == "fail" and rule in finding["detail"]
        assert removal in finding["fix"]["commands"]


def test_tcp_7946_dropped_on_one_node(swarm, on_node, netdoctor):
    on_node("worker2", "iptables", "-I", "INPUT", "-p", "tcp", "--dport", "7946", "-j", "DROP")

    report = diagnose(netdoctor, swarm, "manager", "--timeout", "1")
    [probe] = [f for f in loud(report) if f["evidence"].get("endpoint") == f"{swarm.address('worker2')}:7946"]
    assert probe["status"] == "fail" and probe["evidence"]["outcome"] == "timeout"
    assert not [f for f in loud(report) if f["evidence"].get("endpoint", "").startswith(swarm.address("worker1"))]

    report = diagnose(netdoctor, swarm, "worker2", "--timeout", "1")
    [firewall] = [f for f in loud(report) if f["evidence"].get("rule")]
    assert firewall["evidence"]["rule"] == "-A INPUT -p tcp -m tcp --dport 7946 -j DROP"
    assert any("7946/tcp (gossip) from " + swarm.address("manager") in flow for flow in firewall["evidence"]["flows"])


def test_tcp_2377_dropped_on_the_manager(swarm, on_node, netdoctor):
    on_node("manager", "iptables", "-I", "INPUT", "-p", "tcp", "--dport", "2377", "-j", "DROP")

    report = diagnose(netdoctor, swarm, "worker1", "--timeout", "1")
    [probe] = loud(report)
    assert probe["evidence"]["endpoint"] == f"{swarm.address('manager')}:2377"
    assert "cannot join or follow its managers" in probe["detail"]

    report = diagnose(netdoctor, swarm, "manager", "--timeout", "1")
    [firewall] = loud(report)
    assert firewall["evidence"]["rule"] == "-A INPUT -p tcp -m tcp --dport 2377 -j DROP"
    assert len(firewall["evidence"]["flows"]) == 2  # from both workers


def test_overlay_mtu_larger_than_underlay_minus_50(swarm, on_node, netdoctor):
    on_node("worker1", "ip", "link", "set", "eth0", "mtu", "1400")

    [finding] = loud(diagnose(netdoctor, swarm, "worker1"))
    assert finding["evidence"] == {"network": swarm.overlay, "vxlan_device": "vxlan0", "vxlan_mtu": 1450,
                                   "underlay_device": "eth0", "underlay_mtu": 1400, "limit": 1350}
    assert f"--opt com.docker.network.driver.mtu=1350 {swarm.overlay}-mtu1350" in " ".join(finding["fix"]["commands"])


def test_underlay_offload_is_read_from_the_node(swarm, on_node, netdoctor):
    """The setting reported is the node's own eth0's, as `ethtool -k` shows it there."""
    def reported() -> dict:
        [finding] = [f for f in diagnose(netdoctor, swarm, "worker1").of("vxlan") if "tx-checksum-ip-generic" in f["evidence"]]
        return finding["evidence"]

    def ethtool() -> bool:
        line = [l for l in on_node("worker1", "ethtool", "-k", "eth0").splitlines() if "tx-checksum-ip-generic" in l]
        return line[0].split(":")[1].split()[0] == "on"

    before = reported()
    assert before["driver"] == "veth" and before["tx-checksum-ip-generic"] is ethtool()
    on_node("worker1", "ethtool", "-K", "eth0", "tx-checksum-ip-generic", "off")
    try:
        assert reported()["tx-checksum-ip-generic"] is False is ethtool()
    finally:
        on_node("worker1", "ethtool", "-K", "eth0", "tx-checksum-ip-generic", "on")


def test_node_host_target_checks_the_swarm_without_overlays(swarm, netdoctor):
    report = netdoctor("host", "--node", swarm.node_name("worker1"), "--checks", "vxlan")
    titles = [f["title"] for f in report.of("vxlan")]
    assert report.statuses("vxlan") == {"pass"}
    assert any(t.startswith("Swarm worker at " + swarm.address("worker1")) for t in titles)
    assert not any("Overlay" in t for t in titles)


def test_container_outside_swarm_is_not_applicable(make_container, netdoctor):
    web = make_container("web")
    report = netdoctor(web.name, "--checks", "vxlan")
    assert report.statuses("vxlan") == {"info"}


def test_unknown_node_is_bad_input(netdoctor):
    report = netdoctor("host", "--node", f"nosuch{RUN_ID}")
    assert report.exit_code == 2 and "no lab node named" in report.stderr


def test_down_from_a_partial_state_leaves_nothing(test_image):
    """Engines started, swarm never formed (as after a crash during `up`): down removes all of it."""
    lab = SwarmScenario(f"swpart{RUN_ID}")
    try:
        lab._underlay(Builder(lab.name))
        lab._start_engines()
        engines = [int(lab.pidfile(n).read_text()) for n in NODES]
    finally:
        lab.down()
    assert not [n for n in sh("ip", "netns", "list").stdout.split() if n.startswith(lab.prefix)]
    assert not [p for p in engines if os.path.exists(f"/proc/{p}")]
    assert not any(Path(p).exists() for n in NODES for p in (lab.socket(n), lab.pidfile(n), lab.exec_root(n)))
    assert not Path(f"/var/lib/netdoctor-lab/{lab.name}").exists()
    assert not (STATE_ROOT / lab.name).exists()  # the resolver it recorded there was stopped with it
    assert not [p for p in os.listdir("/proc") if p.isdigit() and lab.name in _cmdline(p)]


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _overlay_ip(swarm, node: str) -> str:
    client = swarm.client(node)
    try:
        return client.containers.get(swarm.container(node)).attrs["NetworkSettings"]["Networks"][swarm.overlay]["IPAddress"]
    finally:
        client.close()
