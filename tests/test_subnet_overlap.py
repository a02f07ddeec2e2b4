"""subnet_overlap: a real Docker network on 172.30.X.0/24 against fake hosts whose routing tables carry a
VPN-like route (no packet is sent to its gateway), and a namespace lab where the stolen route is shown
to break a real connection."""

import ipaddress
import random

import docker.errors
import pytest

from netdoctor.checks.subnet_overlap import free_subnet
from netdoctor.facts import NamespaceView
from netdoctor.netns import NamespaceWorker
from netdoctor.probes.tcp import connect
from netdoctor.lab.fakehost import REMOTE, UPLINK, attach, bridge, uplink
from tests.conftest import sh

pytestmark = pytest.mark.docker


@pytest.fixture
def network_24(make_network):
    """A user network on a free 172.30.X.0/24 (Docker refuses a pool another network holds: try again)."""
    for third in random.sample(range(256), 20):
        subnet = f"172.30.{third}.0/24"
        try:
            return make_network("ovl", ipam={"Driver": "default", "Config": [{"Subnet": subnet}]}), subnet
        except docker.errors.APIError:
            continue
    pytest.fail("no free 172.30.X.0/24 for the test network")


@pytest.fixture
def fakehost(make_netns, lab_netns):
    host = make_netns("host", forwarding=True)
    uplink(lab_netns, host)
    return host


def add_route(netns: str, dst: str) -> None:
    sh("ip", "-n", netns, "route", "add", dst, "via", REMOTE, "dev", UPLINK)


def overlap(netdoctor, target: str, host: str) -> list[dict]:
    return netdoctor(target, "--checks", "subnet_overlap", "--host-netns", host).of("subnet_overlap")


def test_vpn_route_inside_the_network_fails_with_a_free_subnet(network_24, make_container, fakehost, netdoctor, docker_client):
    network, subnet = network_24
    web = make_container("web", network=network.name)
    vpn = str(ipaddress.ip_network(subnet).subnets(1).__next__())  # the lower /25
    add_route(fakehost, vpn)
    [finding] = overlap(netdoctor, web.name, fakehost)
    assert finding["status"] == "fail"
    assert finding["evidence"]["route"] == f"{vpn} via {REMOTE} dev {UPLINK}"
    free = ipaddress.ip_network(finding["evidence"]["free_subnet"])
    assert free.prefixlen == 24 and free.is_private
    in_use = [ipaddress.ip_network(c["Subnet"]) for n in docker_client.networks.list()
              for c in (n.attrs["IPAM"]["Config"] or []) if ":" not in c.get("Subnet", ":")]
    in_use += [ipaddress.ip_network(line.split()[0]) for line in sh("ip", "-n", fakehost, "route").stdout.splitlines()
               if not line.startswith("default")]
    assert not any(free.overlaps(n) for n in in_use)
    commands = finding["fix"]["commands"]
    assert commands[:3] == [f"docker network create --driver bridge --subnet {free} {network.name}-new",
                            f"docker network disconnect {network.name} {web.name}",
                            f"docker network connect {network.name}-new {web.name}"]
    assert "default-address-pools" in commands[3]


def test_wider_lan_route_around_the_network_warns(network_24, make_container, fakehost, netdoctor):
    network, _ = network_24
    web = make_container("web", network=network.name)
    add_route(fakehost, "172.30.0.0/16")
    [finding] = overlap(netdoctor, web.name, fakehost)
    assert finding["status"] == "warn" and "172.30.0.0/16" in finding["title"]


def test_no_overlap_passes(network_24, make_container, fakehost, netdoctor):
    network, subnet = network_24
    web = make_container("web", network=network.name)
    add_route(fakehost, "10.250.0.0/16")
    [finding] = overlap(netdoctor, web.name, fakehost)
    assert finding["status"] == "pass" and finding["evidence"]["subnet"] == subnet


def test_real_host_routes_do_not_collide_with_a_fresh_network(network_24, make_container, netdoctor):
    network, _ = network_24
    web = make_container("web", network=network.name)
    assert netdoctor(web.name, "--checks", "subnet_overlap").statuses("subnet_overlap") == {"pass"}


def test_stolen_route_breaks_a_bridge_neighbour_and_is_found(make_netns, lab_netns, netdoctor):
    host, guest, outside = make_netns("host", forwarding=True), make_netns("ctr"), make_netns("out")
    bridge(lab_netns, host, "10.79.1.1/24", name="brso")
    attach(lab_netns, host, "brso", guest, "10.79.1.200/24", gateway="10.79.1.1")
    uplink(lab_netns, host, outside)
    guest_worker, host_worker = NamespaceWorker(f"/run/netns/{guest}"), NamespaceWorker(f"/run/netns/{host}")
    listener = guest_worker.socket()
    try:
        listener.bind(("10.79.1.200", 8080))
        listener.listen(8)
        from_host = NamespaceView(host_worker, "host")
        assert connect(from_host, "10.79.1.200", 8080, timeout=1.0).ok
        assert {f["status"] for f in overlap(netdoctor, f"netns:{guest}", host)} == {"pass"}
        sh("ip", "-n", host, "route", "add", "10.79.1.128/25", "via", REMOTE)  # a VPN's route
        assert not connect(from_host, "10.79.1.200", 8080, timeout=1.0).ok
        [finding] = overlap(netdoctor, f"netns:{guest}", host)
        assert finding["status"] == "fail" and finding["evidence"]["device"] == "brso"
        free = finding["evidence"]["free_subnet"]
        assert finding["fix"]["commands"] == [f"ip netns exec {host} ip addr del 10.79.1.1/24 dev brso",
                                              f"ip netns exec {host} ip addr add {ipaddress.ip_network(free)[1]}/24 dev brso"]
    finally:
        listener.close()
        guest_worker.close()
        host_worker.close()


def test_free_subnet_skips_every_taken_range():
    taken = [ipaddress.ip_network(n) for n in ("172.16.0.0/13", "172.24.0.0/24")]
    assert free_subnet(24, taken) == ipaddress.ip_network("172.24.1.0/24")
    assert free_subnet(16, taken) == ipaddress.ip_network("172.25.0.0/16")
    assert free_subnet(24, [ipaddress.ip_network("172.16.0.0/12"), ipaddress.ip_network("192.168.0.0/16")]) == \
        ipaddress.ip_network("10.0.0.0/24")
