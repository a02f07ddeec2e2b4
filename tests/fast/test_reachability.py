"""reachability's route and gateway part, from constructed routes, echo answers and ARP states (the real
faults, in a routed lab of namespaces: tests/test_reachability.py; probes through the host's firewall:
test_firewall_checks.py)."""

from dataclasses import replace

from netdoctor.model import Status
from netdoctor.targets import Target
from tests.fakes import FakeWorld

MASQUERADE = ("*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\nCOMMIT\n"
              "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n")


def _world(rules: str = MASQUERADE):
    world = FakeWorld()
    world.uplink()
    world.host.iptables = rules
    web = world.container("web", network=world.bridge_network("bridge", "172.17.0.0/16"), ip="172.17.0.2")
    return world, web, world.namespaces[web.netns_path]


def _by_key(findings):
    return {f.key: f for f in findings}


def test_default_route_answering_gateway_and_masquerade_pass():
    world, web, inside = _world()
    inside.icmp["172.17.0.1"] = 1500
    findings = _by_key(world.run([web], ["reachability"]))
    assert sorted(findings) == ["default-route", "gateway-answers", "masquerade"]
    assert all(f.status is Status.PASS for f in findings.values())
    assert findings["default-route"].title == "Default route: default via 172.17.0.1 dev eth0"


def test_container_without_default_route_fails_with_its_gateway_and_a_restart():
    world, web, inside = _world()
    inside.routes.clear()
    [finding] = world.run([web], ["reachability"])
    assert finding.key == "no-default-route" and finding.status is Status.FAIL
    assert finding.fix.commands == (f"nsenter --net=/proc/{web.pid}/ns/net ip route add default via 172.17.0.1",
                                    "docker restart web")


def test_namespace_without_default_route_gets_the_host_address_on_its_link_as_gateway():
    world = FakeWorld()
    world.uplink()
    world.host_bridge("br0", "10.40.0.1/24")
    box = world.plug(world.namespace("box"), "br0", "10.40.0.2/24")
    [finding] = world.run([world.target(box)], ["reachability"])
    assert finding.key == "no-default-route"
    assert finding.fix.commands == ("ip netns exec box ip route add default via 10.40.0.1",)


def test_gateway_that_filters_ping_but_answers_arp_is_there():
    world, web, inside = _world()
    inside.neighbours["172.17.0.1"] = "REACHABLE"
    gateway = _by_key(world.run([web], ["reachability"]))["gateway-answers"]
    assert gateway.status is Status.PASS and "answers ARP (REACHABLE) though not ICMP echo" in gateway.title


def test_silent_gateway_is_put_back_on_the_host_bridge():
    world, web, inside = _world()
    inside.neighbours["172.17.0.1"] = "FAILED"
    gateway = _by_key(world.run([web], ["reachability"]))["gateway-silent"]
    assert gateway.status is Status.FAIL and gateway.evidence["host_side"] == "docker0"
    assert gateway.fix.commands == ("ip addr add 172.17.0.1/16 dev docker0", "ip link set docker0 up",
                                    "sudo systemctl restart docker")


def test_host_bridge_down_is_named_as_the_cause():
    world, web, _ = _world()
    bridge = world.host.index_of("docker0")
    world.host.links[bridge - 1] = replace(world.host.links[bridge - 1], up=False, operstate="DOWN")
    findings = _by_key(world.run([web], ["reachability"]))
    assert findings["host-link-down:docker0"].fix.commands == ("ip link set docker0 up",)
    assert findings["gateway-silent"].status is Status.FAIL


def test_missing_masquerade_fails_with_the_rule_docker_writes():
    world, web, inside = _world(rules="*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n")
    inside.icmp["172.17.0.1"] = 1500
    nat = _by_key(world.run([web], ["reachability"]))["masquerade-missing"]
    assert nat.status is Status.FAIL
    assert nat.fix.commands == ("iptables -t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
                                "sudo systemctl restart docker")


def test_internal_networks_and_no_network_have_no_egress_by_design():
    world = FakeWorld()
    world.uplink()
    internal = world.container("inner", network=world.bridge_network("backend", "10.60.0.0/24", internal=True))
    lonely = world.container("lonely")
    findings = world.run([internal, lonely], ["reachability"])
    assert [(f.target, f.key, f.status) for f in sorted(findings, key=lambda f: f.target)] == [
        ("container:inner", "no-egress-by-design", Status.INFO), ("container:lonely", "no-egress-by-design", Status.INFO)]


def test_the_host_itself_only_needs_a_default_route():
    world = FakeWorld()
    world.uplink()
    host = Target("host", "host", world.host.path)
    assert [f.key for f in world.run([host], ["reachability"])] == ["host-default-route"]
    world.host.routes.clear()
    [missing] = world.run([host], ["reachability"])
    assert missing.key == "host-no-default-route" and missing.status is Status.WARN
