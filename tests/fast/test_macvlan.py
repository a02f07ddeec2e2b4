"""macvlan's judgement of a parent interface, the gateway over it and the host's way to its own macvlan
containers, from constructed links, routes and echo answers (the real faults: tests/test_macvlan.py)."""

from netdoctor.facts.device import Device
from netdoctor.model import Status
from tests.fakes import FakeWorld

GATEWAY, WEB_IP = "192.168.50.1", "192.168.50.10"


def _world(parent_up: bool = True, operstate: str | None = None, wireless: bool = False, parent: str | None = "eth1",
           gateway_answers: bool = True):
    """`web` on macvlan network `lan` (192.168.50.0/24) whose parent is the host's eth1."""
    world = FakeWorld()
    world.uplink()
    world.host.link("eth1", up=parent_up, operstate=operstate)
    world.host.readers["read"] = lambda name: Device(name, "e1000e" if not wireless else "iwlwifi", {}, wireless)
    options = {"parent": parent} if parent else {}
    lan = world.network("lan", "macvlan", "192.168.50.0/24", GATEWAY, **options)
    web = world.container("web", network=lan, ip=WEB_IP)
    if gateway_answers:
        world.namespaces[web.netns_path].icmp[GATEWAY] = 1500
    return world, web


def _by_key(findings):
    return {f.key: f for f in findings}


def test_healthy_parent_and_gateway_and_the_hosts_blind_spot_explained_with_a_shim():
    world, web = _world()
    findings = world.run([web], ["macvlan"])
    assert [f.status for f in findings] == [Status.PASS, Status.PASS, Status.INFO]
    parent, gateway, host = findings
    assert "Parent eth1 of lan is up" in parent.title and parent.evidence["wireless"] is False
    assert gateway.title == f"Gateway {GATEWAY} answers web over lan"
    assert "has no shim interface on eth1" in host.title
    assert host.fix.commands == ("ip link add lan-shim link eth1 type macvlan mode bridge",
                                 "ip addr add 192.168.50.254/32 dev lan-shim", "ip link set lan-shim up",
                                 "ip route add 192.168.50.0/24 dev lan-shim")


def test_missing_parent_fails_and_the_gateway_cannot_answer():
    world, web = _world(parent="eth9", gateway_answers=False)
    findings = _by_key(world.run([web], ["macvlan"]))
    assert findings["parent-missing:lan"].status is Status.FAIL
    assert findings["gateway-silent:lan"].status is Status.FAIL
    assert "the parent interface is missing" in findings["gateway-silent:lan"].detail


def test_parent_down_is_named_as_the_cause_of_the_silent_gateway():
    world, web = _world(parent_up=False, gateway_answers=False)
    findings = _by_key(world.run([web], ["macvlan"]))
    assert findings["parent-down:lan"].fix.commands == ("ip link set eth1 up",)
    assert "the parent eth1 is down" in findings["gateway-silent:lan"].detail


def test_parent_without_carrier_fails():
    world, web = _world(operstate="LOWERLAYERDOWN")
    findings = _by_key(world.run([web], ["macvlan"]))
    assert findings["parent-no-carrier:lan"].status is Status.FAIL


def test_wireless_parent_fails_with_the_ipvlan_fix():
    world, web = _world(wireless=True)
    [wifi] = [f for f in world.run([web], ["macvlan"]) if "wireless" in f.title]
    assert wifi.status is Status.FAIL
    assert wifi.fix.commands == ("docker network create -d ipvlan -o parent=eth1 -o ipvlan_mode=l2 "
                                 "--subnet 192.168.50.0/24 lan-ipvlan",)


def test_host_reaching_its_container_through_a_shim_is_probed():
    world, web = _world()
    world.host.link("lan-shim", kind="macvlan", peer_index=world.host.index_of("eth1")).route("192.168.50.0/24", dev="lan-shim")
    world.host.icmp[WEB_IP] = 1500
    [*_, host] = world.run([web], ["macvlan"])
    assert host.status is Status.PASS and "through its shim lan-shim" in host.title


def test_host_route_out_of_the_parent_itself_warns():
    world, web = _world()
    world.host.addr("eth1", "192.168.50.2/24").route("192.168.50.0/24", dev="eth1")
    [*_, host] = world.run([web], ["macvlan"])
    assert host.status is Status.WARN and "its route goes out the parent eth1 itself" in host.title


def test_macvlan_without_parent_and_containers_on_no_macvlan():
    world = FakeWorld()
    world.uplink()
    internal = world.container("inner", network=world.network("dummy", "macvlan", "10.9.0.0/24"))
    plain = world.container("plain", network=world.bridge_network("bridge", "172.17.0.0/16"))
    findings = {f.target: f for f in world.run([internal, plain], ["macvlan"])}
    assert findings["container:inner"].status is Status.INFO and "has no parent" in findings["container:inner"].title
    assert findings["container:plain"].status is Status.INFO and "on no macvlan or ipvlan network" in findings["container:plain"].title
