"""mtu against real containers, compared with a fake host uplink of known MTU and with the real host."""

import pytest

from netdoctor.lab import fakehost
from netdoctor.lab.fakehost import HOST_LAN_IP, HOST_WAN_IP, MASQUERADE, REMOTE, REMOTE_PORT, UPLINK
from tests.fakehost import in_ns

pytestmark = pytest.mark.docker
ENDPOINT = f"{REMOTE}:{REMOTE_PORT}"


@pytest.fixture
def host_1400(make_netns, lab_netns):
    name = make_netns("host", forwarding=True)
    fakehost.uplink(lab_netns, name, mtu=1400)
    return name


def test_default_bridge_1500_over_1400_uplink_fails(make_container, host_1400, netdoctor):
    web = make_container("web")
    report = netdoctor(web.name, "--checks", "mtu", "--host-netns", host_1400)
    [finding] = [f for f in report.of("mtu") if f["status"] != "pass"]
    assert finding["status"] == "fail"
    assert finding["evidence"]["interface_mtu"] == 1500 and finding["evidence"]["egress_mtu"] == 1400
    from netdoctor.fixes import merge_daemon_json

    assert merge_daemon_json({"mtu": 1400}) in finding["fix"]["commands"]  # tests/test_fixes.py runs that command


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


# Measured beyond the uplink: a fake host (netdoctor/lab/fakehost.py) whose "internet" sits behind a 1400-byte
# uplink, so the fake host itself answers bigger DF packets with "fragmentation needed" (the path-MTU search's
# own tests are in tests/test_pmtu.py).

@pytest.fixture
def lab_1400(lab_netns):
    return fakehost.build(lab_netns, uplink_mtu=1400)


def _mismatch(report):
    [finding] = [f for f in report.of("mtu") if f["key"] == "mtu-mismatch:eth0"]
    return finding


def test_measured_path_mtu_beyond_the_uplink_follows_from_the_mismatch(lab_1400, netdoctor):
    report = netdoctor(*lab_1400.target("--checks", "mtu", "--probe", ENDPOINT, "--timeout", "1").argv)
    mismatch = _mismatch(report)
    assert mismatch["status"] == "fail" and mismatch["evidence"]["egress_device"] == UPLINK
    assert mismatch["evidence"]["measured_path_mtu"] == {REMOTE: 1400}
    [measured] = [f for f in report.of("mtu") if f["key"] == f"pmtu-smaller:{REMOTE}"]
    assert measured["status"] == "warn" and measured["evidence"]["path_mtu"] == 1400
    assert measured["evidence"]["smallest_df_packet_lost"] == 1401
    assert measured["evidence"]["reported_by"] in (HOST_LAN_IP, HOST_WAN_IP) and "the host itself" in measured["detail"]
    # the same fault seen twice: the measurement is the static comparison's consequence
    assert measured["caused_by"] == mismatch["id"] and mismatch["caused_by"] is None


def test_without_a_probe_only_the_interfaces_are_compared(lab_1400, netdoctor):
    report = netdoctor(*lab_1400.target("--checks", "mtu", "--timeout", "1").argv)
    assert _mismatch(report)["status"] == "fail" and "measured_path_mtu" not in _mismatch(report)["evidence"]
    assert not [f for f in report.of("mtu") if f["key"].startswith("pmtu")]


def test_path_that_fits_passes_measured(lab_netns, netdoctor):
    lab = fakehost.build(lab_netns, uplink_mtu=1500)
    report = netdoctor(*lab.target("--checks", "mtu", "--probe", ENDPOINT).argv)
    assert report.statuses("mtu") == {"pass"}
    [measured] = [f for f in report.of("mtu") if f["key"] == f"pmtu:{REMOTE}"]
    assert measured["evidence"]["largest_df_packet_passed"] == 1500


def test_router_message_is_believed_when_the_far_end_is_silent(lab_1400, netdoctor):
    """Without NAT the remote's echo replies never come back, but the fake host's 'fragmentation needed'
    does: the path MTU is what it says, and the evidence says who said it."""
    in_ns(lab_1400.host, "iptables", *(["-D" if a == "-A" else a for a in MASQUERADE]))
    report = netdoctor(*lab_1400.target("--checks", "mtu", "--probe", ENDPOINT, "--timeout", "1").argv)
    [measured] = [f for f in report.of("mtu") if f["key"] == f"pmtu-smaller:{REMOTE}"]
    assert measured["evidence"]["largest_df_packet_passed"] is None and measured["evidence"]["path_mtu"] == 1400
    assert measured["evidence"]["reported_by"] in (HOST_LAN_IP, HOST_WAN_IP)
    assert "did not answer echo" in measured["detail"]
