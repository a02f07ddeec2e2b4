"""icc against real containers: networks with ICC on and off, peers on no common network.

Whether icc=false is enforced depends on br_netfilter on THIS machine (bridged traffic reaches iptables
only with net.bridge.bridge-nf-call-iptables=1); the tests read it and expect what the kernel really does.
"""

from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

NO_ICC = {"com.docker.network.bridge.enable_icc": "false"}
EXPOSED_ONLY_ON_LOOPBACK = {"80/tcp": ("127.0.0.1", None)}  # exposed; published on loopback only


def bridge_nf_enforced() -> bool:
    path = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    return path.exists() and path.read_text().strip() == "1"


def non_policy(report):
    return [f for f in report.of("icc") if "(intent)" not in f["title"]]


def test_shared_network_with_icc_passes(make_network, make_container, netdoctor):
    net = make_network("icc")
    box = make_container("box", network=net.name)
    web = make_container("web", network=net.name, ports=EXPOSED_ONLY_ON_LOOPBACK)
    report = netdoctor(box.name, "--checks", "icc", "--peer", web.name)
    assert report.statuses("icc") == {"pass"}, report.of("icc")
    [finding] = report.of("icc")
    assert finding["evidence"]["endpoint"].endswith(":80") and finding["evidence"]["outcome"] == "connected"
    assert report.exit_code == 0


def test_icc_disabled_drops_the_peer(make_network, make_container, netdoctor):
    net = make_network("noicc", options=NO_ICC)
    box = make_container("box", network=net.name)
    web = make_container("web", network=net.name, ports=EXPOSED_ONLY_ON_LOOPBACK)
    report = netdoctor(box.name, "--checks", "icc", "--peer", web.name, "--timeout", "1")
    [intent] = [f for f in report.of("icc") if "(intent)" in f["title"]]
    assert intent["status"] == "info" and intent["evidence"]["com.docker.network.bridge.enable_icc"] == "false"
    [probe] = non_policy(report)
    if bridge_nf_enforced():
        assert probe["status"] == "fail" and probe["evidence"]["outcome"] == "timeout", probe
        bridge = intent["evidence"]["bridge"]
        # 20.10-27 write the DROP into FORWARD, 28+ into DOCKER-FORWARD: the rule itself is the same
        assert probe["evidence"]["host_forward_verdict"].endswith(f"-i {bridge} -o {bridge} -j DROP")
        assert f"docker network connect {net.name}-icc {web.name}" in probe["fix"]["commands"]
        assert report.exit_code == 1
    else:  # br_netfilter absent: the kernel lets it through, and netdoctor must say the intent is not enforced
        assert probe["status"] == "warn" and "not enforced" in probe["title"]
        assert "NOT enforced" in intent["title"] + intent["detail"]


def test_icc_disabled_peer_port_given_by_user(make_network, make_container, netdoctor):
    net = make_network("noicc", options=NO_ICC)
    box = make_container("box", network=net.name)
    web = make_container("web", network=net.name, command="httpd -f -p 8080")  # nothing exposed
    report = netdoctor(box.name, "--checks", "icc", "--peer", f"{web.name}:8080", "--timeout", "1")
    [probe] = non_policy(report)
    assert probe["evidence"]["endpoint"].endswith(":8080")
    assert probe["status"] == ("fail" if bridge_nf_enforced() else "warn")


def test_no_shared_network_fails_with_connect_command(make_network, make_container, netdoctor):
    net_a, net_b = make_network("a"), make_network("b")
    box = make_container("box", network=net_a.name)
    web = make_container("web", network=net_b.name)
    report = netdoctor(box.name, "--checks", "icc", "--peer", web.name)
    [finding] = report.of("icc")
    assert finding["status"] == "fail" and "share no network" in finding["title"]
    assert finding["fix"]["commands"] == [f"docker network connect {net_a.name} {web.name}"]
    assert finding["evidence"]["peer_networks"] == [net_b.name]


def test_refused_port_on_shared_network(make_network, make_container, netdoctor):
    net = make_network("icc")
    box = make_container("box", network=net.name)
    web = make_container("web", network=net.name)
    [finding] = netdoctor(box.name, "--checks", "icc", "--peer", f"{web.name}:81").of("icc")
    assert finding["status"] == "fail" and finding["evidence"]["outcome"] == "refused"


def test_unknown_peer_fails(make_container, netdoctor):
    box = make_container("box")
    [finding] = netdoctor(box.name, "--checks", "icc", "--peer", "ndt-no-such-container").of("icc")
    assert finding["status"] == "fail" and "no such container" in finding["title"]


def test_without_peer_reports_policy_of_each_network(make_network, make_container, netdoctor):
    open_net, closed_net = make_network("icc"), make_network("noicc", options=NO_ICC)
    box = make_container("box", network=open_net.name)
    closed_net.connect(box)
    report = netdoctor(box.name, "--checks", "icc")
    assert report.statuses("icc") == {"info"}
    titles = {f["evidence"]["bridge"]: f["title"] for f in report.of("icc")}
    assert len(titles) == 2
    assert any(open_net.name in t and "enabled" in t for t in titles.values())
    assert any(closed_net.name in t and "disabled (intent)" in t for t in titles.values())


# Peers tested on what they really serve: no port on --peer, no EXPOSE in the image (the busybox test image
# declares none), so the ports come from the peer's own listening sockets.

def test_peer_without_expose_is_probed_on_the_port_it_serves(make_network, make_container, netdoctor):
    net = make_network("served")
    box = make_container("box", network=net.name)
    web = make_container("web", network=net.name, command="httpd -f -p 8081")
    assert web.attrs["Config"].get("ExposedPorts") is None
    report = netdoctor(box.name, "--checks", "icc", "--peer", web.name)
    [finding] = report.of("icc")
    assert finding["status"] == "pass" and finding["key"] == f"peer:{web.name}:8081@{net.name}"
    assert finding["evidence"]["endpoint"].endswith(":8081") and finding["evidence"]["outcome"] == "connected"
    assert report.exit_code == 0


@pytest.mark.parametrize("command, reason", [("sleep 3600", "it listens on no TCP port"),
                                             ("httpd -f -p 127.0.0.1:8082", "loopback only (TCP 8082)")])
def test_peer_serving_nothing_reachable_is_info_not_a_fault(make_network, make_container, netdoctor, command, reason):
    net = make_network("idle")
    box = make_container("box", network=net.name)
    idle = make_container("idle", network=net.name, command=command)
    report = netdoctor(box.name, "--checks", "icc", "--peer", idle.name)
    [finding] = report.of("icc")
    assert finding["status"] == "info" and reason in finding["title"], finding
    assert f"--peer {idle.name}:PORT" in finding["detail"]
    assert report.exit_code == 0
