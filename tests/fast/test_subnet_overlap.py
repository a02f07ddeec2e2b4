"""subnet_overlap's judgement from constructed host routes and Docker networks (the real faults, with a
"VPN" route in a fake host namespace: tests/test_subnet_overlap.py)."""

import ipaddress

from netdoctor.model import Status
from tests.fakes import FakeWorld

SUBNET = "10.30.0.0/24"


def _world(*routes: tuple[str, str]):
    """`web` on user network `shop` (10.30.0.0/24); the host also routes each (destination, device)."""
    world = FakeWorld()
    world.uplink()
    for destination, device in routes:
        if device not in {l.name for l in world.host.links}:
            world.host.link(device, kind="tun")
        world.host.route(destination, dev=device)
    shop = world.bridge_network("shop", SUBNET)
    return world, shop, world.container("web", network=shop)


def _overlaps_nothing(subnet: str, *others: str) -> bool:
    net = ipaddress.ip_network(subnet)
    return not any(net.overlaps(ipaddress.ip_network(o)) for o in others)


def test_vpn_route_inside_the_network_fails_with_a_free_subnet_to_move_to():
    world, shop, web = _world(("10.30.0.128/25", "tun0"))
    [finding] = world.run([web], ["subnet_overlap"])
    assert finding.status is Status.FAIL and "collides with host route 10.30.0.128/25 dev tun0" in finding.title
    free = finding.evidence["free_subnet"]
    assert _overlaps_nothing(free, SUBNET, "10.30.0.128/25")
    assert f"docker network create --driver bridge --subnet {free} shop-new" in finding.fix.commands
    assert "docker network connect shop-new web" in finding.fix.commands


def test_wider_lan_route_around_the_network_warns():
    world, _, web = _world(("10.30.0.0/16", "eth1"))
    [finding] = world.run([web], ["subnet_overlap"])
    assert finding.status is Status.WARN and "lies inside host route 10.30.0.0/16" in finding.title


def test_another_docker_network_on_the_same_addresses_fails():
    world, _, web = _world()
    world.network("swarm-ov", "overlay", "10.30.0.0/16", scope="swarm")
    [finding] = world.run([web], ["subnet_overlap"])
    assert finding.status is Status.FAIL and "overlaps Docker network swarm-ov (overlay, 10.30.0.0/16)" in finding.title


def test_nothing_in_the_way_passes_and_says_what_it_compared():
    world, _, web = _world(("10.250.0.0/16", "tun0"))
    world.network("other", "bridge", "10.31.0.0/24")
    [finding] = world.run([web], ["subnet_overlap"])
    assert finding.status is Status.PASS
    assert finding.evidence["routes_compared"] == 1 and finding.evidence["networks_compared"] == 1


def test_the_default_bridge_is_renumbered_through_daemon_json():
    world = FakeWorld()
    world.uplink()
    world.host.link("tun0", kind="tun").route("172.17.5.0/24", dev="tun0")
    web = world.container("web", network=world.bridge_network("bridge", "172.17.0.0/16"))
    [finding] = world.run([web], ["subnet_overlap"])
    assert finding.status is Status.FAIL
    free = ipaddress.ip_network(finding.evidence["free_subnet"])
    assert "bip" in finding.fix.commands[0] and f"{free[1]}/{free.prefixlen}" in finding.fix.commands[0]
    assert _overlaps_nothing(str(free), "172.17.0.0/16") and "sudo systemctl restart docker" in finding.fix.commands


def test_a_namespace_behind_a_plain_bridge_is_renumbered_with_ip_addr():
    world = FakeWorld()
    world.uplink()
    world.host_bridge("br0", "10.40.0.1/24")
    world.host.route("10.40.0.0/24", dev="br0")
    world.host.link("tun0", kind="tun").route("10.40.0.0/25", dev="tun0")
    box = world.plug(world.namespace("box"), "br0", "10.40.0.2/24", gateway="10.40.0.1")
    [finding] = world.run([world.target(box)], ["subnet_overlap"])
    assert finding.status is Status.FAIL and finding.evidence["device"] == "br0"
    free = finding.evidence["free_subnet"]
    assert finding.fix.commands == ("ip addr del 10.40.0.1/24 dev br0",
                                    f"ip addr add {ipaddress.ip_network(free)[1]}/{ipaddress.ip_network(free).prefixlen} dev br0")


def test_host_networking_has_no_subnet_of_its_own():
    world = FakeWorld()
    world.uplink()
    host_mode = world.container("hostnet", network_mode="host")
    [finding] = world.run([host_mode], ["subnet_overlap"])
    assert finding.status is Status.INFO and "Not applicable" in finding.title
