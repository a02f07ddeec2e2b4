"""mtu against real containers, compared with a fake host uplink of known MTU and with the real host."""

import pytest

from tests.fakehost import add_uplink

pytestmark = pytest.mark.docker


@pytest.fixture
def host_1400(make_netns):
    name = make_netns("host", forwarding=True)
    add_uplink(name, 1400)
    return name


def test_default_bridge_1500_over_1400_uplink_fails(make_container, host_1400, netdoctor):
    web = make_container("web")
    report = netdoctor(web.name, "--checks", "mtu", "--host-netns", host_1400)
    [finding] = [f for f in report.of("mtu") if f["status"] != "pass"]
    assert finding["status"] == "fail"
    assert finding["evidence"]["interface_mtu"] == 1500 and finding["evidence"]["egress_mtu"] == 1400
    assert any('"mtu": 1400' in c for c in finding["fix"]["commands"])


def test_network_with_matching_mtu_passes(make_network, make_container, host_1400, netdoctor):
    net = make_network("mtu1400", options={"com.docker.network.driver.mtu": "1400"})
    web = make_container("web", network=net.name)
    report = netdoctor(web.name, "--checks", "mtu", "--host-netns", host_1400)
    assert report.statuses("mtu") == {"pass"}


def test_user_network_fix_names_the_network_and_container(make_network, make_container, host_1400, netdoctor):
    net = make_network("big")
    web = make_container("web", network=net.name)
    [finding] = netdoctor(web.name, "--checks", "mtu", "--host-netns", host_1400).of("mtu")
    assert finding["status"] == "fail"
    commands = " ".join(finding["fix"]["commands"])
    assert f"com.docker.network.driver.mtu=1400 {net.name}-mtu1400" in commands
    assert f"docker network connect {net.name}-mtu1400 {web.name}" in commands


def test_internal_network_is_not_compared(make_network, make_container, host_1400, netdoctor):
    net = make_network("internal", internal=True)
    web = make_container("web", network=net.name)
    assert netdoctor(web.name, "--checks", "mtu", "--host-netns", host_1400).statuses("mtu") == {"pass"}


def test_against_the_real_host_uplink(make_container, netdoctor):
    """On these machines the uplink is 1400 and docker0 1500: the real mismatch."""
    from tests.conftest import sh

    route = sh("ip", "-o", "route", "show", "default").stdout.split()
    dev = route[route.index("dev") + 1]
    uplink_mtu = int(open(f"/sys/class/net/{dev}/mtu").read())
    web = make_container("web")
    statuses = netdoctor(web.name, "--checks", "mtu").statuses("mtu")
    assert statuses == ({"fail"} if uplink_mtu < 1500 else {"pass"})
