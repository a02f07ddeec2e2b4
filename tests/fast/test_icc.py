"""icc's policy part (no --peer): what each of a container's networks intends and whether this host enforces
it, from constructed options, sysctls and rules (the real faults and the peer probes: tests/test_icc.py)."""

from netdoctor.model import Status
from tests.fakes import FakeWorld

BRIDGE_NF = "net.bridge.bridge-nf-call-iptables"
OFF = {"com.docker.network.bridge.enable_icc": "false"}


def _policy(icc_options: dict, bridge_nf: str | None, drop_rule: bool = True):
    world = FakeWorld()
    world.uplink()
    if bridge_nf is not None:
        world.host.sysctls[BRIDGE_NF] = bridge_nf
    network = world.bridge_network("isolated", "10.50.0.0/24", **icc_options)
    rule = f"-A FORWARD -i {network.bridge_name} -o {network.bridge_name} -j DROP\n" if drop_rule else ""
    world.host.iptables = f"*filter\n:FORWARD ACCEPT [0:0]\n{rule}COMMIT\n"
    [finding] = world.run([world.container("web", network=network)], ["icc"])
    return finding


def test_icc_enabled_is_reported_as_such():
    finding = _policy({}, "1", drop_rule=False)
    assert finding.status is Status.INFO and finding.title == "Network isolated: inter-container communication is enabled"
    assert finding.evidence["icc_enforced"] is False


def test_icc_disabled_and_enforced_is_an_intent_not_a_fault():
    finding = _policy(OFF, "1")
    assert finding.status is Status.INFO
    assert finding.title == "Network isolated: inter-container communication is disabled (intent)"
    assert finding.evidence["icc_enforced"] is True and "note" not in finding.evidence


def test_icc_disabled_but_bridged_traffic_skipping_iptables_is_not_enforced():
    for bridge_nf in ("0", None):
        finding = _policy(OFF, bridge_nf)
        assert finding.title.endswith(", but NOT enforced on this host")
        assert finding.evidence["icc_enforced"] is False and "icc=false is NOT enforced" in finding.detail


def test_other_drivers_and_containers_without_networks():
    world = FakeWorld()
    world.uplink()
    overlaid = world.container("ov", network=world.network("swarm-ov", "overlay", "10.214.0.0/24", scope="swarm"))
    lonely = world.container("lonely")
    findings = {f.target: f for f in world.run([overlaid, lonely], ["icc"])}
    assert "ICC is a bridge-driver option; overlay does not use it" in findings["container:ov"].title
    assert findings["container:lonely"].status is Status.INFO and "is on no Docker network" in findings["container:lonely"].title


def test_every_network_of_the_container_is_reported():
    world = FakeWorld()
    world.uplink()
    front = world.bridge_network("front", "10.51.0.0/24")
    back = world.bridge_network("back", "10.52.0.0/24", **OFF)
    findings = world.run([world.container("web", network=front, networks=[back])], ["icc"])
    assert sorted(f.title.split(":")[0] for f in findings) == ["Network back", "Network front"]
