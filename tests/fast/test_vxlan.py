"""vxlan's judgement of a swarm node from constructed engine info, rules, probe answers and an overlay's
forwarding table (the real faults, on a three-node swarm in namespaces: tests/test_vxlan.py)."""

import pytest

from netdoctor.facts import overlay
from netdoctor.facts.device import Device
from netdoctor.facts.overlay import OverlayPeer
from netdoctor.model import Status
from netdoctor.targets import Target
from tests.fakes import FakeWorld

MANAGER, WORKER, OTHER = "10.212.0.11", "10.212.0.12", "10.212.0.13"
DROP_VXLAN = "*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p udp -m udp --dport 4789 -j DROP\nCOMMIT\n"


def _worker(rules: str = "", driver: str = "virtio_net", generic: bool = True) -> FakeWorld:
    """This host is a swarm worker (10.212.0.12 on eth0) whose manager is 10.212.0.11; OTHER is a worker too."""
    world = FakeWorld()
    world.host.link("eth0").addr("eth0", f"{WORKER}/24").route("10.212.0.0/24", dev="eth0")
    world.docker.engine_info["Swarm"] = {"LocalNodeState": "active", "NodeAddr": WORKER, "ControlAvailable": False,
                                         "RemoteManagers": [{"NodeID": "m1", "Addr": f"{MANAGER}:2377"}]}
    world.host.iptables = rules
    world.host.readers["read"] = lambda name: Device(name, driver, {"tx-checksum-ip-generic": generic})
    return world


def _host(world: FakeWorld) -> Target:
    return Target("host", "host", world.host.path)


def _by_key(findings):
    return {f.key: f for f in findings}


def test_healthy_worker_reaches_its_manager_on_every_swarm_port():
    world = _worker()
    world.host.tcp.update({(MANAGER, 7946): "connected", (MANAGER, 2377): "connected"})
    findings = world.run([_host(world)], ["vxlan"])
    assert [f.status for f in findings if f.status.rank >= Status.WARN.rank] == []
    assert "Swarm worker at 10.212.0.12, 1 peer node(s)" in [f.title for f in findings]
    assert "Swarm ports answer on all 1 peer node(s)" in [f.title for f in findings]


def test_a_local_rule_dropping_udp_4789_is_named_with_its_delete_command():
    world = _worker(DROP_VXLAN)
    world.host.tcp.update({(MANAGER, 7946): "connected", (MANAGER, 2377): "connected"})
    [drop] = [f for f in world.run([_host(world)], ["vxlan"]) if f.key.startswith("firewall-drop:swarm:")]
    assert drop.status is Status.FAIL and "-A INPUT -p udp -m udp --dport 4789 -j DROP" in drop.title
    assert drop.fix.commands == ("iptables -D INPUT -p udp -m udp --dport 4789 -j DROP",)


def test_a_peer_whose_gossip_port_is_silent_fails():
    world = _worker()
    world.host.tcp[(MANAGER, 2377)] = "connected"  # 7946 not scripted: silence
    [silent] = [f for f in world.run([_host(world)], ["vxlan"]) if f.status is Status.FAIL]
    assert silent.title == f"TCP 7946 (gossip) on node {MANAGER} is not reachable from this node: timeout"


def test_vmxnet3_with_checksum_offload_warns():
    world = _worker(driver="vmxnet3", generic=True)
    world.host.tcp.update({(MANAGER, 7946): "connected", (MANAGER, 2377): "connected"})
    [warning] = [f for f in world.run([_host(world)], ["vxlan"]) if f.status is Status.WARN]
    assert "vmxnet3" in warning.title and "ethtool -K eth0 tx-checksum-ip-generic off" in warning.fix.commands


def test_overlay_container_of_an_engine_out_of_the_swarm_fails():
    world = _worker()
    world.docker.engine_info["Swarm"] = {"LocalNodeState": "inactive"}
    web = world.container("web", network=world.network("ov", "overlay", "10.214.0.0/24", scope="swarm"))
    [finding] = world.run([web], ["vxlan"])
    assert finding.status is Status.FAIL and "swarm state is inactive" in finding.title


def test_swarm_without_quorum_is_unhealthy():
    world = _worker()
    world.docker.engine_info["Swarm"]["Error"] = "rpc error: code = Unknown desc = The swarm does not have a leader"
    world.host.tcp.update({(MANAGER, 7946): "connected", (MANAGER, 2377): "connected"})
    [unhealthy] = [f for f in world.run([_host(world)], ["vxlan"]) if "unhealthy" in f.title]
    assert unhealthy.status is Status.FAIL


def test_namespace_targets_and_hosts_out_of_a_swarm_have_nothing_to_check():
    world = FakeWorld()
    box = world.target(world.namespace("box"))
    findings = world.run([box, _host(world)], ["vxlan"])
    assert [f.status for f in findings] == [Status.INFO, Status.INFO]


@pytest.fixture
def overlay_world(monkeypatch):
    """`web` on overlay `ov` whose own namespace holds vxlan0 and endpoints on the manager and on OTHER."""

    def build(rules: str = "", answering: tuple[str, ...] = (), vxlan_mtu: int = 1450):
        world = _worker(rules)
        world.docker.engine_info["Swarm"]["RemoteManagers"].append({"NodeID": "w2", "Addr": f"{OTHER}:2377"})
        ov = world.network("ov", "overlay", "10.214.0.0/24", scope="swarm")
        web = world.container("web", network=ov, ip="10.214.0.2")
        ov_ns = world.namespace("ov")
        ov_ns.link("vxlan0", kind="vxlan", mtu=vxlan_mtu, IFLA_VXLAN_PORT=4789)
        ov_ns.readers["vxlan_peers"] = [OverlayPeer("10.214.0.3", "02:42:0a:d6:00:03", MANAGER),
                                        OverlayPeer("10.214.0.4", "02:42:0a:d6:00:04", OTHER)]
        monkeypatch.setattr(overlay, "namespace_path", lambda container, network: ov_ns.path)
        world.host.tcp.update({(p, port): "connected" for p in (MANAGER, OTHER) for port in (7946, 2377)})
        for address in answering:
            world.namespaces[web.netns_path].icmp[address] = 1500
        return world, web

    return build


def test_overlay_endpoints_answering_on_every_node_pass(overlay_world):
    world, web = overlay_world(answering=("10.214.0.3", "10.214.0.4"))
    findings = world.run([web], ["vxlan"])
    assert [f for f in findings if f.status.rank >= Status.WARN.rank] == []
    assert sum("answer over VXLAN" in f.title for f in findings) == 2


def test_silent_node_while_its_gossip_port_answers_is_a_broken_data_path_on_that_node(overlay_world):
    world, web = overlay_world(answering=("10.214.0.3",))
    findings = _by_key(world.run([web], ["vxlan"]))
    broken = findings[f"data-path-broken:ov:{OTHER}"]
    assert broken.status is Status.FAIL and "while the underlay works" in broken.title
    assert f"on {OTHER}" in broken.fix.commands[0], "this node's firewall is clean: the other node's is to blame"


def test_silent_nodes_with_a_local_vxlan_drop_blame_this_nodes_rule(overlay_world):
    world, web = overlay_world(rules=DROP_VXLAN)
    broken = _by_key(world.run([web], ["vxlan"]))[f"data-path-broken:ov:{MANAGER}"]
    assert "this node's rule" in broken.detail
    assert broken.fix.commands == ("iptables -D INPUT -p udp -m udp --dport 4789 -j DROP",)


def test_overlay_mtu_above_the_underlay_minus_50_fails(overlay_world):
    world, web = overlay_world(answering=("10.214.0.3", "10.214.0.4"), vxlan_mtu=1500)
    [mtu] = [f for f in world.run([web], ["vxlan"]) if "MTU" in f.title and f.status is Status.FAIL]
    assert mtu.evidence["limit"] == 1450 and mtu.evidence["vxlan_mtu"] == 1500
