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


# DF-bit confirmation: a routed lab (tests/routedlab.py) whose "internet" sits behind a 1400-byte uplink.

@pytest.fixture
def lab_1400(make_netns):
    from tests import routedlab

    built = routedlab.build(make_netns, uplink_mtu=1400)
    yield built
    routedlab.stop(built)


def _mismatch(report):
    [finding] = [f for f in report.of("mtu") if f["evidence"].get("interface") == "eth0" and "egress_mtu" in f["evidence"]]
    return finding


def test_df_probe_beyond_the_uplink_confirms_the_mismatch(lab_1400, netdoctor):
    from tests.routedlab import REMOTE_IP

    report = netdoctor(*lab_1400.target_args("--checks", "mtu", "--probe", f"{REMOTE_IP}:8080", "--timeout", "1"))
    finding = _mismatch(report)
    assert finding["status"] == "fail" and finding["evidence"]["egress_device"] == "up0"
    assert finding["evidence"]["df_probe"].startswith("confirmed: largest DF packet that passed = 1400 bytes")
    [measured] = finding["evidence"]["df_probe_results"]
    assert measured["destination"] == REMOTE_IP
    assert measured["largest_df_packet_passed"] == 1400 and measured["smallest_df_packet_lost"] == 1401
    assert measured["router_reported_mtu"] == 1400


def test_df_probe_to_the_hosts_own_gateway_is_honestly_inconclusive(lab_1400, netdoctor):
    from tests.routedlab import GATEWAY_IP

    finding = _mismatch(netdoctor(*lab_1400.target_args("--checks", "mtu", "--timeout", "1")))
    assert finding["status"] == "fail"  # the static comparison still stands
    text = finding["evidence"]["df_probe"]
    assert text.startswith("inconclusive") and f"gateway {GATEWAY_IP}, an address of the host itself" in text
    assert "DF packets of up to 1500 bytes reach it" in text and "--probe" in text
    [measured] = finding["evidence"]["df_probe_results"]
    assert measured["largest_df_packet_passed"] == 1500


def test_df_probe_matches_a_path_that_fits(make_netns, netdoctor):
    """Uplink 1500: no mismatch is suspected, so nothing is probed and the check passes."""
    from tests import routedlab

    lab = routedlab.build(make_netns, uplink_mtu=1500)
    try:
        report = netdoctor(*lab.target_args("--checks", "mtu", "--probe", f"{routedlab.REMOTE_IP}:8080"))
        assert report.statuses("mtu") == {"pass"}
        assert all("df_probe" not in f["evidence"] for f in report.of("mtu"))
    finally:
        routedlab.stop(lab)


def test_df_probe_not_tied_to_a_host_the_target_is_not_plugged_into(make_container, host_1400, netdoctor):
    web = make_container("web")
    finding = _mismatch(netdoctor(web.name, "--checks", "mtu", "--host-netns", host_1400))
    assert finding["evidence"]["df_probe"].startswith("not probed")
    assert "df_probe_results" not in finding["evidence"]


def test_df_probe_confirmed_by_the_router_when_the_far_end_is_silent(lab_1400, netdoctor):
    """Without NAT the remote's echo replies never come back, but the fake host's 'fragmentation needed'
    does: that alone confirms the smaller link, and the evidence says who said it."""
    from tests.routedlab import MASQUERADE, REMOTE_IP, UPLINK_IP, GATEWAY_IP

    lab_1400.iptables(*(["-D" if a == "-A" else a for a in MASQUERADE]))
    finding = _mismatch(netdoctor(*lab_1400.target_args("--checks", "mtu", "--probe", f"{REMOTE_IP}:8080", "--timeout", "1")))
    text = finding["evidence"]["df_probe"]
    assert text.startswith("confirmed by a router:") and "MTU 1400" in text
    [measured] = finding["evidence"]["df_probe_results"]
    assert measured["largest_df_packet_passed"] is None
    assert measured["reported_by"] in (GATEWAY_IP, UPLINK_IP)
