"""bridge_nf's judgement of bridged traffic and the firewall, from constructed sysctls and rules (the real
faults, in fake host namespaces: tests/test_bridge_nf.py)."""

from netdoctor.model import Status
from tests.fakes import FakeWorld

KEY = "net.bridge.bridge-nf-call-iptables"
ISOLATE_BR0 = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -i br0 -o br0 -j DROP\nCOMMIT\n"
POLICY_DROP = "*filter\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\nCOMMIT\n"


def _docker(icc: bool, value: str | None):
    world = FakeWorld()
    world.uplink()
    if value is not None:
        world.host.sysctls[KEY] = value
    options = {} if icc else {"com.docker.network.bridge.enable_icc": "false"}
    web = world.container("web", network=world.bridge_network("isolated", "10.30.0.0/24", **options))
    [finding] = world.run([web], ["bridge_nf"])
    return finding


def _plain(value: str | None, rules: str):
    """A namespace `box` behind the host's own bridge br0 (not a Docker network)."""
    world = FakeWorld()
    world.uplink()
    if value is not None:
        world.host.sysctls[KEY] = value
    world.host.iptables = rules
    world.host_bridge("br0", "10.40.0.1/24")
    box = world.plug(world.namespace("box"), "br0", "10.40.0.2/24", gateway="10.40.0.1")
    [finding] = world.run([world.target(box)], ["bridge_nf"])
    return finding


def test_icc_false_is_not_enforced_when_bridged_traffic_skips_iptables():
    finding = _docker(icc=False, value="0")
    assert finding.status is Status.FAIL and finding.key == "icc-unenforced:isolated"
    assert f"sysctl -w {KEY}=1" in finding.fix.commands and "sudo modprobe br_netfilter" not in finding.fix.commands


def test_icc_false_without_br_netfilter_loads_the_module_in_the_fix():
    finding = _docker(icc=False, value=None)
    assert finding.status is Status.FAIL and "br_netfilter is not loaded" in finding.title
    assert finding.fix.commands[0] == "sudo modprobe br_netfilter"


def test_icc_false_with_bridged_traffic_through_iptables_is_enforced():
    finding = _docker(icc=False, value="1")
    assert finding.status is Status.PASS and "icc=false is enforced" in finding.title


def test_icc_on_with_bridged_traffic_skipping_iptables_is_only_information():
    assert _docker(icc=True, value="0").status is Status.INFO


def test_own_bridge_cut_off_by_forward_policy_drop():
    finding = _plain("1", POLICY_DROP)
    assert finding.status is Status.FAIL and "cannot talk" in finding.title
    assert finding.fix.commands == ("iptables -I DOCKER-USER -i br0 -o br0 -j ACCEPT",)


def test_isolation_rule_never_applied_when_bridged_traffic_skips_iptables():
    finding = _plain("0", ISOLATE_BR0)
    assert finding.status is Status.WARN and "never applied" in finding.title


def test_isolation_rule_applied_as_intended():
    finding = _plain("1", ISOLATE_BR0)
    assert finding.status is Status.PASS and "as that rule intends" in finding.title


def test_own_bridge_passing_the_firewall_is_fine():
    finding = _plain("1", "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n")
    assert finding.status is Status.PASS


def test_a_container_on_no_bridge_is_not_concerned():
    world = FakeWorld()
    world.uplink()
    [finding] = world.run([world.container("lonely")], ["bridge_nf"])
    assert finding.status is Status.INFO and "Not applicable" in finding.title
