"""forward_policy against real iptables rulesets in fake host namespaces.

Two kinds of topology: a namespace lab (fake host with a bridge, a 'container' netns on it and an
'outside' netns behind the default route) where we also prove with a TCP connect that the fault is real
and that netdoctor's own fix commands clear it; and real Docker networks whose bridge the fake host's
rules name, using a copy of the filter table Docker itself wrote on the real host (20.10's or 28's layout,
whichever engine runs). Docker's rules wiped on an engine's own host: tests/test_firewall.py.
"""

import subprocess

import pytest

from netdoctor.facts import NamespaceView
from netdoctor.lab import fakehost
from netdoctor.lab.fakehost import UPLINK
from netdoctor.netns import NamespaceWorker
from netdoctor.probes.tcp import connect
from tests.conftest import sh

pytestmark = pytest.mark.docker

BRIDGE = "brfp"
PORT = 8080


def iptables(netns: str, *args: str) -> None:
    sh("ip", "netns", "exec", netns, "iptables", *args)


class Lab:
    def __init__(self, host: str, guest: str, outside: str, outside_ip: str):
        self.host, self.guest, self.outside, self.outside_ip = host, guest, outside, outside_ip
        self._workers = [NamespaceWorker(f"/run/netns/{n}") for n in (guest, outside)]
        self._listener = self._workers[1].socket()
        self._listener.bind((outside_ip, PORT))
        self._listener.listen(8)  # the kernel completes handshakes without accept()

    def guest_connects(self) -> str:
        return connect(NamespaceView(self._workers[0], self.guest), self.outside_ip, PORT, timeout=1.0).outcome

    def close(self) -> None:
        self._listener.close()
        for worker in self._workers:
            worker.close()


@pytest.fixture
def lab(make_netns, lab_netns):
    host, guest, outside = make_netns("host", forwarding=True), make_netns("ctr"), make_netns("out")
    fakehost.bridge(lab_netns, host, "10.77.1.1/24", name=BRIDGE)
    fakehost.attach(lab_netns, host, BRIDGE, guest, "10.77.1.2/24", gateway="10.77.1.1")
    lab = Lab(host, guest, outside, fakehost.uplink(lab_netns, host, outside, routes_back=True))  # no NAT here
    yield lab
    lab.close()


def run_fix(commands: list[str], host_netns: str) -> None:
    """Apply netdoctor's printed fix, but only if every command is confined to the fake host: a fix that
    would touch the real host is a test failure, never something to run."""
    confined = f"ip netns exec {host_netns} "
    assert all(c.startswith(confined) for c in commands), commands
    for command in commands:
        subprocess.run(command, shell=True, check=True, capture_output=True)


def test_policy_drop_without_accept_rule_fails_and_the_fix_restores_traffic(lab, netdoctor):
    assert lab.guest_connects() == "connected"  # the lab works before the fault
    iptables(lab.host, "-P", "FORWARD", "DROP")
    assert lab.guest_connects() == "timeout"
    report = netdoctor(f"netns:{lab.guest}", "--checks", "forward_policy", "--host-netns", lab.host)
    failures = [f for f in report.of("forward_policy") if f["status"] == "fail"]
    assert {f["evidence"]["direction"] for f in failures} == {"outgoing", "replies"}
    outgoing = next(f for f in failures if f["evidence"]["direction"] == "outgoing")
    assert outgoing["evidence"]["decided_by"] == "FORWARD policy DROP"
    assert outgoing["evidence"]["device"] == BRIDGE and outgoing["evidence"]["uplink"] == UPLINK
    # the bridge's way out and its replies, never `-i BRIDGE` alone (that would open the way to other bridges)
    assert outgoing["fix"]["commands"] == [
        f"ip netns exec {lab.host} iptables -I FORWARD -i {BRIDGE} -o {UPLINK} -j ACCEPT",
        f"ip netns exec {lab.host} iptables -I FORWARD -i {UPLINK} -o {BRIDGE} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    assert report.exit_code == 1
    run_fix(outgoing["fix"]["commands"], lab.host)
    assert lab.guest_connects() == "connected"
    assert netdoctor(f"netns:{lab.guest}", "--checks", "forward_policy", "--host-netns", lab.host).statuses("forward_policy") == {"pass"}


def test_docker_user_drop_is_named_and_exempting_the_bridge_fixes_it(lab, netdoctor):
    for rule in (["-N", "DOCKER-USER"], ["-A", "FORWARD", "-j", "DOCKER-USER"],
                 ["-A", "FORWARD", "-o", BRIDGE, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
                 ["-A", "FORWARD", "-i", BRIDGE, "-j", "ACCEPT"], ["-P", "FORWARD", "DROP"]):
        iptables(lab.host, *rule)
    assert lab.guest_connects() == "connected"
    iptables(lab.host, "-A", "DOCKER-USER", "-s", "10.77.0.0/16", "-j", "DROP")
    assert lab.guest_connects() == "timeout"
    report = netdoctor(f"netns:{lab.guest}", "--checks", "forward_policy", "--host-netns", lab.host)
    [finding] = [f for f in report.of("forward_policy") if f["status"] != "pass"]
    assert finding["status"] == "fail" and finding["evidence"]["direction"] == "outgoing"
    assert finding["evidence"]["decided_by"] == "-A DOCKER-USER -s 10.77.0.0/16 -j DROP"
    # the rule may also drop replies from far ends inside 10.77.0.0/16: the exemption covers both directions
    delete, *exempt = finding["fix"]["commands"]
    assert delete == f"ip netns exec {lab.host} iptables -D DOCKER-USER -s 10.77.0.0/16 -j DROP"
    assert exempt == [f"ip netns exec {lab.host} iptables -I DOCKER-USER -i {BRIDGE} -o {UPLINK} -j RETURN",
                      f"ip netns exec {lab.host} iptables -I DOCKER-USER -i {UPLINK} -o {BRIDGE} -m conntrack "
                      "--ctstate RELATED,ESTABLISHED -j RETURN"]
    run_fix(exempt, lab.host)  # keep the admin's rule, exempt only this bridge
    assert lab.guest_connects() == "connected"
    after = netdoctor(f"netns:{lab.guest}", "--checks", "forward_policy", "--host-netns", lab.host)
    assert after.statuses("forward_policy") == {"pass"}, [(f["title"], f["detail"], f["evidence"]) for f in after.of("forward_policy")]


def test_rule_dropping_only_some_ports_warns(lab, netdoctor):
    iptables(lab.host, "-A", "FORWARD", "-i", BRIDGE, "-p", "tcp", "--dport", "443", "-j", "REJECT")
    report = netdoctor(f"netns:{lab.guest}", "--checks", "forward_policy", "--host-netns", lab.host)
    [warning] = [f for f in report.of("forward_policy") if f["status"] == "warn"]
    assert warning["evidence"]["rule"] == f"-A FORWARD -i {BRIDGE} -p tcp -m tcp --dport 443 -j REJECT --reject-with icmp-port-unreachable"
    assert warning["id"].startswith(f"forward_policy/firewall-drop-partial:outgoing:{BRIDGE}@")
    assert lab.guest_connects() == "connected"  # port 8080 still passes: a warning, not a failure
    assert "fail" not in report.statuses("forward_policy")


# --- real Docker networks: the fake host's rules name the real bridge and subnet ---------------------

@pytest.fixture
def docker_rules_host(make_netns, lab_netns):
    """A fake host holding a copy of the filter table Docker wrote on the real host (read, never changed)."""
    host = make_netns("host", forwarding=True)
    fakehost.uplink(lab_netns, host)
    rules = sh("iptables-save", "-t", "filter").stdout
    subprocess.run(["ip", "netns", "exec", host, "iptables-restore"], input=rules, text=True, check=True)
    return host


@pytest.fixture
def on_network(make_network, make_container):
    network = make_network("fwd")
    container = make_container("web", network=network.name)
    return network, container, f"br-{network.id[:12]}"


def test_docker_rules_accept_a_user_network(on_network, docker_rules_host, netdoctor):
    _, container, bridge = on_network
    [finding] = netdoctor(container.name, "--checks", "forward_policy", "--host-netns", docker_rules_host).of("forward_policy")
    assert finding["status"] == "pass"
    # 20.10-27: "-A FORWARD -i BR ! -o BR -j ACCEPT"; 28+: "-A DOCKER-FORWARD -i BR -j ACCEPT"
    accepted = finding["evidence"]["outgoing_accepted_by"]
    assert f" -i {bridge} " in accepted and accepted.endswith("-j ACCEPT") and ": -A " in accepted


def test_docker_user_drop_for_the_bridge_fails(on_network, docker_rules_host, netdoctor):
    network, container, bridge = on_network
    iptables(docker_rules_host, "-I", "DOCKER-USER", "-i", bridge, "-j", "DROP")
    [finding] = netdoctor(container.name, "--checks", "forward_policy", "--host-netns", docker_rules_host).of("forward_policy")
    assert finding["status"] == "fail"
    assert finding["evidence"]["network"] == network.name
    assert finding["evidence"]["decided_by"] == f"-A DOCKER-USER -i {bridge} -j DROP"
    assert f"ip netns exec {docker_rules_host} iptables -D DOCKER-USER -i {bridge} -j DROP" in finding["fix"]["commands"]


def test_docker_user_reject_of_replies_by_subnet_fails(on_network, docker_rules_host, netdoctor):
    network, container, bridge = on_network
    subnet = network.attrs["IPAM"]["Config"][0]["Subnet"]
    iptables(docker_rules_host, "-I", "DOCKER-USER", "-d", subnet, "-j", "REJECT")
    [finding] = netdoctor(container.name, "--checks", "forward_policy", "--host-netns", docker_rules_host).of("forward_policy")
    assert finding["status"] == "fail" and finding["evidence"]["direction"] == "replies"
    assert f"-o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN" in finding["fix"]["commands"][1]


def test_a_host_namespace_without_the_bridge_is_judged_by_its_own_rules(on_network, make_netns, lab_netns, netdoctor):
    """--host-netns naming a namespace that does not hold the network's bridge is not the engine's: its missing
    Docker rules are no fault of Docker's (tests/test_firewall.py wipes them on a real engine's host)."""
    _, container, bridge = on_network
    host = make_netns("host", forwarding=True)
    fakehost.uplink(lab_netns, host)
    iptables(host, "-P", "FORWARD", "DROP")
    report = netdoctor(container.name, "--checks", "forward_policy", "--host-netns", host)
    drops = [f for f in report.of("forward_policy") if f["status"] == "fail"]
    assert {f["id"].split("/")[1].split("@")[0] for f in drops} == {f"firewall-drop:outgoing:{bridge}",
                                                                      f"firewall-drop:replies:{bridge}"}
    assert all(f["evidence"]["decided_by"] == "FORWARD policy DROP" for f in drops)
    assert f"ip netns exec {host} iptables -I FORWARD -i {bridge} -o uplink0 -j ACCEPT" in drops[0]["fix"]["commands"]
    iptables(host, "-P", "FORWARD", "ACCEPT")
    assert netdoctor(container.name, "--checks", "forward_policy", "--host-netns", host).statuses("forward_policy") == {"pass"}


def test_real_host_forwards_a_user_network(on_network, netdoctor):
    _, container, _ = on_network
    assert netdoctor(container.name, "--checks", "forward_policy").statuses("forward_policy") == {"pass"}


@pytest.mark.parametrize("mode", ["host", "none"])
def test_host_and_none_networking_are_not_applicable(make_container, make_netns, netdoctor, mode):
    container = make_container(mode, network_mode=mode, command="sleep 3600")  # no listener on the real host
    host = make_netns("host")
    iptables(host, "-P", "FORWARD", "DROP")
    assert netdoctor(container.name, "--checks", "forward_policy", "--host-netns", host).statuses("forward_policy") == {"info"}


def test_internal_network_is_not_judged(make_network, make_container, make_netns, netdoctor):
    network = make_network("internal", internal=True)
    container = make_container("web", network=network.name)
    [finding] = netdoctor(container.name, "--checks", "forward_policy").of("forward_policy")
    assert finding["status"] == "info" and network.name in finding["title"]
