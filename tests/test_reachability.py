"""reachability against real topologies: a fake host in namespaces we own (container -> host -> remote,
netdoctor/lab/fakehost.py) for host-level faults, and real containers on Docker networks for the container cases."""

import pytest

from netdoctor.lab import fakehost
from netdoctor.lab.fakehost import BRIDGE, CLOSED_PORT, HOST_LAN_IP, LAN, MASQUERADE, REMOTE, REMOTE_PORT, UPLINK
from tests.fakehost import connects, in_ns

ENDPOINT = f"{REMOTE}:{REMOTE_PORT}"


@pytest.fixture
def lab(lab_netns):
    return fakehost.build(lab_netns)


def run(netdoctor, lab, *probes):
    args = lab.target("--checks", "reachability", "--timeout", "1").argv
    for probe in probes:
        args += ["--probe", probe]
    return netdoctor(*args)


def probe_finding(report, spec):
    [finding] = [f for f in report.of("reachability") if f["evidence"].get("probe") == spec]
    return finding


def test_healthy_lab_passes(lab, netdoctor):
    assert connects(lab)
    report = run(netdoctor, lab, ENDPOINT)
    assert report.statuses("reachability") == {"pass"}, report.of("reachability")
    titles = " | ".join(f["title"] for f in report.of("reachability"))
    assert f"via {HOST_LAN_IP}" in titles and "MASQUERADE" in titles
    assert probe_finding(report, ENDPOINT)["evidence"]["outcome"] == "connected"
    assert report.exit_code == 0


def test_forwarding_off_is_the_broken_layer(lab, netdoctor):
    in_ns(lab.host, "sysctl", "-qw", "net.ipv4.ip_forward=0")
    assert not connects(lab)
    finding = probe_finding(run(netdoctor, lab, ENDPOINT), ENDPOINT)
    assert finding["status"] == "fail"
    assert finding["evidence"]["layer"] == "forwarding"
    assert finding["evidence"]["host net.ipv4.ip_forward"] == "0"
    assert f"ip netns exec {lab.host} sysctl -w net.ipv4.ip_forward=1" in finding["fix"]["commands"]


def test_forward_drop_rule_is_named_with_its_delete_command(lab, netdoctor):
    in_ns(lab.host, "iptables", "-A", "FORWARD", "-d", REMOTE, "-p", "tcp", "--dport", str(REMOTE_PORT), "-j", "DROP")
    assert not connects(lab)
    finding = probe_finding(run(netdoctor, lab, ENDPOINT), ENDPOINT)
    assert finding["status"] == "fail" and finding["evidence"]["outcome"] == "timeout"
    assert finding["evidence"]["layer"] == "firewall"
    rule = f"-d {REMOTE}/32 -p tcp -m tcp --dport {REMOTE_PORT} -j DROP"
    assert rule in finding["detail"]
    assert f"ip netns exec {lab.host} iptables -D FORWARD {rule}" in finding["fix"]["commands"]


def test_forward_policy_drop_is_the_broken_layer(lab, netdoctor):
    in_ns(lab.host, "iptables", "-P", "FORWARD", "DROP")
    finding = probe_finding(run(netdoctor, lab, ENDPOINT), ENDPOINT)
    assert finding["evidence"]["layer"] == "firewall"
    assert "FORWARD policy DROP" in finding["detail"]


def test_missing_masquerade_fails_statically_and_explains_the_probe(lab, netdoctor):
    in_ns(lab.host, "iptables", *(["-D" if a == "-A" else a for a in MASQUERADE]))
    assert not connects(lab)
    report = run(netdoctor, lab, ENDPOINT)
    [nat] = [f for f in report.of("reachability") if "MASQUERADE" in f["title"]]
    assert nat["status"] == "fail" and nat["evidence"]["subnet"] == LAN
    expected = f"ip netns exec {lab.host} iptables -t nat -A POSTROUTING -s {LAN} -o {UPLINK} -j MASQUERADE"
    assert expected in nat["fix"]["commands"]
    probe = probe_finding(report, ENDPOINT)
    assert probe["status"] == "fail" and probe["evidence"]["layer"] == "nat"
    assert expected in probe["fix"]["commands"]


def test_refused_port_blames_the_far_end(lab, netdoctor):
    spec = f"{REMOTE}:{CLOSED_PORT}"
    finding = probe_finding(run(netdoctor, lab, spec), spec)
    assert finding["status"] == "fail"
    assert finding["evidence"]["outcome"] == "refused" and finding["evidence"]["layer"] == "refused"


def test_reject_rule_is_not_mistaken_for_a_closed_port(lab, netdoctor):
    in_ns(lab.host, "iptables", "-A", "FORWARD", "-d", REMOTE, "-j", "REJECT")
    finding = probe_finding(run(netdoctor, lab, ENDPOINT), ENDPOINT)
    assert finding["evidence"]["outcome"] == "refused"
    assert finding["evidence"]["layer"] == "firewall"


def test_no_default_route_in_target(lab, netdoctor):
    in_ns(lab.container, "ip", "route", "del", "default")
    report = run(netdoctor, lab, ENDPOINT)
    [route] = [f for f in report.of("reachability") if "default route" in f["title"]]
    assert route["status"] == "fail"
    assert f"ip netns exec {lab.container} ip route add default via {HOST_LAN_IP}" in route["fix"]["commands"]
    probe = probe_finding(report, ENDPOINT)
    assert probe["evidence"]["layer"] == "no_route" and probe["evidence"]["outcome"] == "unreachable"


def test_host_without_route_to_remote(lab, netdoctor):
    in_ns(lab.host, "ip", "route", "del", "default")
    spec = "10.78.0.9:80"  # the container routes it to the fake host, which has no route onwards: it stays there
    finding = probe_finding(run(netdoctor, lab, spec), spec)
    assert finding["evidence"]["layer"] == "host_route"


def test_gateway_address_gone(lab, netdoctor):
    in_ns(lab.host, "ip", "addr", "del", f"{HOST_LAN_IP}/24", "dev", BRIDGE)
    report = run(netdoctor, lab, ENDPOINT)
    [gateway] = [f for f in report.of("reachability") if f["title"].startswith("Gateway")]
    assert gateway["status"] == "fail" and gateway["evidence"]["arp"] in ("INCOMPLETE", "FAILED", None)
    assert f"ip netns exec {lab.host} ip addr add {HOST_LAN_IP}/24 dev {BRIDGE}" in gateway["fix"]["commands"]
    assert probe_finding(report, ENDPOINT)["evidence"]["layer"] == "gateway"


def test_netns_without_default_route_fails(make_netns, netdoctor):
    lonely = make_netns("lonely")
    report = netdoctor(f"netns:{lonely}", "--checks", "reachability")
    assert report.statuses("reachability") == {"fail"}
    assert report.exit_code == 1


@pytest.mark.docker
def test_internal_network_is_no_egress_by_design(make_network, make_container, netdoctor):
    net = make_network("internal", internal=True)
    elsewhere = make_network("elsewhere")
    # the "outside" is a container of ours on another network: even if Docker let the SYN out, it stays here
    web = make_container("web", network=elsewhere.name)
    box = make_container("box", network=net.name)
    spec = f"{web.name}:80"
    report = netdoctor(box.name, "--checks", "reachability", "--probe", spec)
    assert report.statuses("reachability") == {"info"}, report.of("reachability")
    probe = probe_finding(report, spec)
    assert "by design" in probe["title"] and probe["evidence"]["layer"] in ("no_route", "firewall")
    assert report.exit_code == 0


@pytest.mark.docker
def test_container_on_user_network_reaches_peer_httpd(make_network, make_container, netdoctor):
    net = make_network("reach")
    box = make_container("box", network=net.name)
    web = make_container("web", network=net.name)
    web_ip = web.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
    report = netdoctor(box.name, "--checks", "reachability", "--probe", f"{web_ip}:80", "--probe", f"{web.name}:80")
    assert report.statuses("reachability") == {"pass"}, report.of("reachability")
    nat = [f for f in report.of("reachability") if "MASQUERADE" in f["title"]]
    assert nat and nat[0]["evidence"]["host_side"].startswith("br-")


@pytest.mark.docker
def test_container_peer_port_closed(make_network, make_container, netdoctor):
    net = make_network("reach")
    box = make_container("box", network=net.name)
    web = make_container("web", network=net.name)
    spec = f"{web.name}:81"
    finding = probe_finding(netdoctor(box.name, "--checks", "reachability", "--probe", spec), spec)
    assert finding["status"] == "fail" and finding["evidence"]["layer"] == "refused"


def test_learned_path_mtu_is_not_taken_for_a_route(lab_netns, netdoctor):
    """The DF probe makes the container's kernel learn the 1400 path MTU (a cached route exception, as any big
    transfer would); facts must keep reading the real routing table, not that cache."""
    lab = fakehost.build(lab_netns, uplink_mtu=1400)
    netdoctor(*lab.target("--checks", "mtu", "--probe", ENDPOINT, "--timeout", "1").argv)
    assert REMOTE in in_ns(lab.container, "ip", "route", "show", "cache").stdout
    report = run(netdoctor, lab, ENDPOINT)
    [route] = [f for f in report.of("reachability") if f["title"].startswith("Default route")]
    assert set(route["evidence"]["routes"]) == {f"default via {HOST_LAN_IP} dev eth0", f"{LAN} dev eth0"}
    assert probe_finding(report, ENDPOINT)["status"] == "pass"
