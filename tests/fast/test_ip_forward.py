"""ip_forward's judgement on constructed facts (the real fault is proven in tests/test_ip_forward.py)."""

from netdoctor.model import Status
from tests.fakes import FakeWorld


def _world(forwarding: str) -> FakeWorld:
    world = FakeWorld()
    world.host.link("eth0", mtu=1500).addr("eth0", "192.0.2.10/24").route("default", via="192.0.2.1", dev="eth0")
    world.host.sysctls["net.ipv4.ip_forward"] = forwarding
    return world


def test_forwarding_off_fails_for_a_bridge_container():
    world = _world("0")
    web = world.container("web", network=world.bridge_network("bridge", "172.17.0.0/16"))
    [finding] = world.run([web], ["ip_forward"])
    assert finding.status is Status.FAIL
    assert finding.evidence["net.ipv4.ip_forward"] == "0"
    assert any("sysctl -w net.ipv4.ip_forward=1" in c for c in finding.fix.commands)


def test_forwarding_on_passes():
    world = _world("1")
    web = world.container("web", network=world.bridge_network("bridge", "172.17.0.0/16"))
    assert [f.status for f in world.run([web], ["ip_forward"])] == [Status.PASS]


def test_container_without_network_does_not_rely_on_forwarding():
    world = _world("0")
    lonely = world.container("lonely")
    [finding] = world.run([lonely], ["ip_forward"])
    assert finding.status is Status.INFO
