"""macvlan against real macvlan Docker networks whose parent is a veth of our own in the host namespace; its
other end sits in a namespace of ours that plays the LAN's gateway. Subnets are private 10.213.x.0/24."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

import pytest

from tests.conftest import sh

pytestmark = pytest.mark.docker


@dataclass
class Lan:
    parent: str       # host-side veth, the network's parent
    gateway_ns: str
    subnet: str
    gateway: str
    network: object

    def host(self, n: int) -> str:
        return self.subnet.rsplit(".", 1)[0] + f".{n}"


@pytest.fixture
def lan(make_netns, make_network):
    import docker.errors
    import docker.types

    tag = uuid.uuid4().hex[:6]
    parent, far = f"ndm{tag}p", f"ndm{tag}g"  # 10 characters: within IFNAMSIZ
    gateway_ns = make_netns("lan")
    sh("ip", "link", "add", parent, "type", "veth", "peer", "name", far, "netns", gateway_ns)
    try:
        sh("ip", "link", "set", parent, "up")
        for _ in range(10):  # another run may hold a subnet: Docker refuses overlapping pools
            subnet = f"10.213.{random.randrange(1, 200)}.0/24"
            gateway = subnet.rsplit(".", 1)[0] + ".1"
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet, gateway=gateway)])
            try:
                network = make_network("mv", driver="macvlan", options={"parent": parent}, ipam=ipam)
                break
            except docker.errors.APIError:
                continue
        else:
            pytest.fail("no free 10.213.x.0/24 subnet for the macvlan network after 10 tries")
        sh("ip", "-n", gateway_ns, "addr", "add", f"{gateway}/24", "dev", far)
        sh("ip", "-n", gateway_ns, "link", "set", far, "up")
        yield Lan(parent, gateway_ns, subnet, gateway, network)
    finally:
        sh("ip", "link", "del", parent, check=False)  # takes its peer and any shim on it along


@pytest.fixture
def web(lan, make_container):
    # --dns: the gateway, a namespace of ours (nothing listens there: no query leaves the lab)
    return make_container("web", network=lan.network.name, dns=[lan.gateway])


def test_healthy_macvlan_is_quiet_and_explains_the_shim(lan, web, netdoctor):
    report = netdoctor(web.name, "--checks", "macvlan")
    assert report.statuses("macvlan") <= {"pass", "info"}, report.of("macvlan")
    [parent] = [f for f in report.of("macvlan") if f["title"].startswith("Parent")]
    details = sh("ip", "-d", "link", "show", lan.parent).stdout.split()
    assert parent["status"] == "pass" and parent["evidence"]["promiscuity"] == int(details[details.index("promiscuity") + 1])
    assert parent["evidence"]["parent_driver"] == "veth" and parent["evidence"]["wireless"] is False
    [gateway] = [f for f in report.of("macvlan") if "gateway" in f["evidence"]]
    assert gateway["status"] == "pass" and gateway["evidence"]["echo_answered"] is True
    [host] = [f for f in report.of("macvlan") if "container_ip" in f["evidence"]]
    assert host["status"] == "info" and "cannot reach" in host["title"]
    shim = f"{lan.network.name[:10]}-shim"
    assert host["fix"]["commands"] == [f"ip link add {shim} link {lan.parent} type macvlan mode bridge",
                                       f"ip addr add {lan.host(254)}/32 dev {shim}", f"ip link set {shim} up",
                                       f"ip route add {lan.subnet} dev {shim}"]
    assert report.exit_code == 0, report.findings


def test_parent_down(lan, web, netdoctor):
    sh("ip", "link", "set", lan.parent, "down")
    report = netdoctor(web.name, "--checks", "macvlan", "--timeout", "1")
    [down] = [f for f in report.of("macvlan") if f["title"].startswith("Parent")]
    assert down["status"] == "fail" and down["evidence"]["parent_up"] is False
    assert down["fix"]["commands"] == [f"ip link set {lan.parent} up"]
    [gateway] = [f for f in report.of("macvlan") if "gateway" in f["evidence"]]
    assert gateway["status"] == "fail" and f"the parent {lan.parent} is down" in gateway["detail"]
    assert report.exit_code == 1


def test_parent_missing(lan, web, netdoctor):
    sh("ip", "link", "del", lan.parent)
    report = netdoctor(web.name, "--checks", "macvlan", "--timeout", "1")
    [missing] = [f for f in report.of("macvlan") if f["title"].startswith("Parent")]
    assert missing["status"] == "fail" and "does not exist" in missing["title"]
    assert "deleted" in missing["detail"]  # the container's macvlan interface went with its parent
    assert f"docker network connect {lan.network.name} {web.name}" in missing["fix"]["commands"]


def test_host_on_the_parent_cannot_reach_its_container(lan, web, netdoctor):
    """The usual setup: the host has its own address on the parent's LAN, and still cannot reach the container."""
    sh("ip", "addr", "add", f"{lan.host(250)}/24", "dev", lan.parent)
    [host] = [f for f in netdoctor(web.name, "--checks", "macvlan").of("macvlan") if "container_ip" in f["evidence"]]
    assert host["status"] == "warn" and host["evidence"]["echo_answered"] is False
    assert host["evidence"]["host_route"]["dev"] == lan.parent
    assert f"link {lan.parent} type macvlan mode bridge" in host["fix"]["commands"][0]


def test_host_reaches_its_container_through_a_shim(lan, web, netdoctor):
    shim = f"{lan.parent}s"
    sh("ip", "link", "add", shim, "link", lan.parent, "type", "macvlan", "mode", "bridge")
    sh("ip", "addr", "add", f"{lan.host(254)}/32", "dev", shim)
    sh("ip", "link", "set", shim, "up")
    sh("ip", "route", "add", lan.subnet, "dev", shim)
    report = netdoctor(web.name, "--checks", "macvlan")
    [host] = [f for f in report.of("macvlan") if "container_ip" in f["evidence"]]
    assert host["status"] == "pass" and host["evidence"]["echo_answered"] is True
    assert host["evidence"]["host_route"]["dev"] == shim
    assert report.statuses("macvlan") == {"pass"}


def test_container_on_a_bridge_network_is_not_concerned(make_container, netdoctor):
    assert netdoctor(make_container("web").name, "--checks", "macvlan").statuses("macvlan") == {"info"}


def test_mtu_judges_a_macvlan_interface_by_its_parent_not_the_host_uplink(lan, web, netdoctor):
    # the parent veth is 1500 while this host's uplink is 1400: macvlan frames never take the uplink route
    report = netdoctor(web.name, "--checks", "mtu")
    assert report.statuses("mtu") == {"pass"}, report.of("mtu")
    assert "parent" in report.of("mtu")[0]["title"]
