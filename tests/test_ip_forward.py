"""ip_forward against real containers, with a fake host namespace whose forwarding we control."""

import pytest

pytestmark = pytest.mark.docker


def test_forwarding_off_on_host_fails_with_fix(make_container, make_netns, netdoctor):
    web = make_container("web")
    fakehost = make_netns("host", forwarding=False)
    report = netdoctor(web.name, "--checks", "ip_forward", "--host-netns", fakehost)
    [finding] = report.of("ip_forward")
    assert finding["status"] == "fail"
    assert finding["evidence"]["net.ipv4.ip_forward"] == "0"
    assert f"ip netns exec {fakehost} sysctl -w net.ipv4.ip_forward=1" in finding["fix"]["commands"]
    assert report.exit_code == 1


def test_forwarding_on_passes(make_container, make_netns, netdoctor):
    web = make_container("web")
    fakehost = make_netns("host", forwarding=True)
    report = netdoctor(web.name, "--checks", "ip_forward", "--host-netns", fakehost)
    assert report.statuses("ip_forward") == {"pass"}
    assert report.exit_code == 0


def test_real_host_forwards_for_docker(make_container, netdoctor):
    # dockerd turns forwarding on at start: the real host is the healthy baseline
    web = make_container("web")
    assert netdoctor(web.name, "--checks", "ip_forward").statuses("ip_forward") == {"pass"}


def test_container_without_nat_network_is_not_judged(make_container, make_netns, netdoctor):
    lonely = make_container("none", network_mode="none")
    fakehost = make_netns("host", forwarding=False)
    report = netdoctor(lonely.name, "--checks", "ip_forward", "--host-netns", fakehost)
    assert report.statuses("ip_forward") == {"info"}


def test_ipv6_forwarding_checked_when_container_has_global_v6(make_network, make_container, make_netns, netdoctor):
    net = make_network("v6", enable_ipv6=True, ipam={"Driver": "default", "Config": [
        {"Subnet": "172.31.250.0/24"}, {"Subnet": "fd00:ffee:1::/64"}]})
    web = make_container("web", network=net.name)
    fakehost = make_netns("host", forwarding=True)  # IPv4 on, IPv6 left at its default 0
    report = netdoctor(web.name, "--checks", "ip_forward", "--host-netns", fakehost)
    by_title = {f["title"]: f["status"] for f in report.of("ip_forward")}
    assert "fail" in by_title.values() and "pass" in by_title.values(), by_title
    [v6] = [f for f in report.of("ip_forward") if f["status"] == "fail"]
    assert v6["evidence"]["net.ipv6.conf.all.forwarding"] == "0"
