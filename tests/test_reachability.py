"""reachability against real topologies: a routed lab of namespaces we own (box -> fakehost -> remote) for
host-level faults, and real containers on Docker networks for the container cases."""

import pytest

from tests import routedlab
from tests.routedlab import BOX_SUBNET, CLOSED_PORT, GATEWAY_IP, LISTEN_PORT, MASQUERADE, REMOTE_IP

REMOTE = f"{REMOTE_IP}:{LISTEN_PORT}"


@pytest.fixture
def lab(make_netns):
    built = routedlab.build(make_netns)
    yield built
    routedlab.stop(built)


def run(netdoctor, lab, *probes):
    args = lab.target_args("--checks", "reachability", "--timeout", "1")
    for probe in probes:
        args += ["--probe", probe]
    return netdoctor(*args)


def probe_finding(report, spec):
    [finding] = [f for f in report.of("reachability") if f["evidence"].get("probe") == spec]
    return finding


def test_healthy_lab_passes(lab, netdoctor):
    assert routedlab.connects(lab)
    report = run(netdoctor, lab, REMOTE)
    assert report.statuses("reachability") == {"pass"}, report.of("reachability")
    titles = " | ".join(f["title"] for f in report.of("reachability"))
    assert f"via {GATEWAY_IP}" in titles and "MASQUERADE" in titles
    assert probe_finding(report, REMOTE)["evidence"]["outcome"] == "connected"
    assert report.exit_code == 0


def test_forwarding_off_is_the_broken_layer(lab, netdoctor):
    lab.in_ns(lab.fakehost, "sysctl", "-qw", "net.ipv4.ip_forward=0")
    assert not routedlab.connects(lab)
    finding = probe_finding(run(netdoctor, lab, REMOTE), REMOTE)
    assert finding["status"] == "fail"
    assert finding["evidence"]["layer"] == "forwarding"
    assert finding["evidence"]["host net.ipv4.ip_forward"] == "0"
    assert f"ip netns exec {lab.fakehost} sysctl -w net.ipv4.ip_forward=1" in finding["fix"]["commands"]


def test_forward_drop_rule_is_named_with_its_delete_command(lab, netdoctor):
    lab.iptables("-A", "FORWARD", "-d", REMOTE_IP, "-p", "tcp", "--dport", str(LISTEN_PORT), "-j", "DROP")
    assert not routedlab.connects(lab)
    finding = probe_finding(run(netdoctor, lab, REMOTE), REMOTE)
    assert finding["status"] == "fail" and finding["evidence"]["outcome"] == "timeout"
    assert finding["evidence"]["layer"] == "firewall"
    rule = f"-d {REMOTE_IP}/32 -p tcp -m tcp --dport {LISTEN_PORT} -j DROP"
    assert rule in finding["detail"]
    assert f"ip netns exec {lab.fakehost} iptables -D FORWARD {rule}" in finding["fix"]["commands"]


def test_forward_policy_drop_is_the_broken_layer(lab, netdoctor):
    lab.iptables("-P", "FORWARD", "DROP")
    finding = probe_finding(run(netdoctor, lab, REMOTE), REMOTE)
    assert finding["evidence"]["layer"] == "firewall"
    assert "FORWARD policy DROP" in finding["detail"]


def test_missing_masquerade_fails_statically_and_explains_the_probe(lab, netdoctor):
    lab.iptables(*(["-D" if a == "-A" else a for a in MASQUERADE]))
    assert not routedlab.connects(lab)
    report = run(netdoctor, lab, REMOTE)
    [nat] = [f for f in report.of("reachability") if "MASQUERADE" in f["title"]]
    assert nat["status"] == "fail" and nat["evidence"]["subnet"] == BOX_SUBNET
    expected = f"ip netns exec {lab.fakehost} iptables -t nat -A POSTROUTING -s {BOX_SUBNET} -o up0 -j MASQUERADE"
    assert expected in nat["fix"]["commands"]
    probe = probe_finding(report, REMOTE)
    assert probe["status"] == "fail" and probe["evidence"]["layer"] == "nat"
    assert expected in probe["fix"]["commands"]


def test_refused_port_blames_the_far_end(lab, netdoctor):
    spec = f"{REMOTE_IP}:{CLOSED_PORT}"
    finding = probe_finding(run(netdoctor, lab, spec), spec)
    assert finding["status"] == "fail"
    assert finding["evidence"]["outcome"] == "refused" and finding["evidence"]["layer"] == "refused"


def test_reject_rule_is_not_mistaken_for_a_closed_port(lab, netdoctor):
    lab.iptables("-A", "FORWARD", "-d", REMOTE_IP, "-j", "REJECT")
    finding = probe_finding(run(netdoctor, lab, REMOTE), REMOTE)
    assert finding["evidence"]["outcome"] == "refused"
    assert finding["evidence"]["layer"] == "firewall"


def test_no_default_route_in_target(lab, netdoctor):
    lab.in_ns(lab.box, "ip", "route", "del", "default")
    report = run(netdoctor, lab, REMOTE)
    [route] = [f for f in report.of("reachability") if "default route" in f["title"]]
    assert route["status"] == "fail"
    assert f"ip netns exec {lab.box} ip route add default via {GATEWAY_IP}" in route["fix"]["commands"]
    probe = probe_finding(report, REMOTE)
    assert probe["evidence"]["layer"] == "no_route" and probe["evidence"]["outcome"] == "unreachable"


def test_host_without_route_to_remote(lab, netdoctor):
    lab.in_ns(lab.fakehost, "ip", "route", "del", "default")
    spec = "10.77.0.9:80"  # inside the lab only: the box routes it to the fake host, which has no route onwards
    finding = probe_finding(run(netdoctor, lab, spec), spec)
    assert finding["evidence"]["layer"] == "host_route"


def test_gateway_address_gone(lab, netdoctor):
    lab.in_ns(lab.fakehost, "ip", "addr", "del", f"{GATEWAY_IP}/24", "dev", "br0")
    report = run(netdoctor, lab, REMOTE)
    [gateway] = [f for f in report.of("reachability") if f["title"].startswith("Gateway")]
    assert gateway["status"] == "fail" and gateway["evidence"]["arp"] in ("INCOMPLETE", "FAILED", None)
    assert f"ip netns exec {lab.fakehost} ip addr add {GATEWAY_IP}/24 dev br0" in gateway["fix"]["commands"]
    assert probe_finding(report, REMOTE)["evidence"]["layer"] == "gateway"


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


def test_learned_path_mtu_is_not_taken_for_a_route(make_netns, netdoctor):
    """The DF probe makes the box's kernel learn the 1400 path MTU (a cached route exception, as any big
    transfer would); facts must keep reading the real routing table, not that cache."""
    lab = routedlab.build(make_netns, uplink_mtu=1400)
    try:
        netdoctor(*lab.target_args("--checks", "mtu", "--probe", REMOTE, "--timeout", "1"))
        assert REMOTE_IP in lab.in_ns(lab.box, "ip", "route", "show", "cache").stdout
        report = run(netdoctor, lab, REMOTE)
        [route] = [f for f in report.of("reachability") if f["title"].startswith("Default route")]
        assert set(route["evidence"]["routes"]) == {f"default via {GATEWAY_IP} dev eth0", f"{BOX_SUBNET} dev eth0"}
        assert probe_finding(report, REMOTE)["status"] == "pass"
    finally:
        routedlab.stop(lab)
