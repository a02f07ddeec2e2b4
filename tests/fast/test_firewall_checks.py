"""forward_policy, ports, firewall and reachability judging constructed firewalls (tests/fakes.py).

The rulesets are the fixtures of test_firewall_model.py (real 20.10/28.5 captures, moby's 29 documents, a
firewalld-style table); the real faults behind each judgement are built in tests/test_firewall*.py.
"""

import pytest

from netdoctor.facts.processes import Process
from netdoctor.firewall import from_dumps
from netdoctor.model import Status
from tests.fakes import FakeWorld
from tests.fast.test_firewall_model import FIXTURES, text

BRIDGE = {"com.docker.network.bridge.name": "bridge1"}
PROXY = ("/usr/sbin/docker-proxy", "-proto", "tcp", "-host-ip", "0.0.0.0", "-host-port", "8080",
         "-container-ip", "192.0.2.2", "-container-port", "80")


def world(iptables: str = "docker-28.v4.rules", nft: str | None = None, engine: str = "28.5.2",
          driver: str = "iptables", proxy: bool = True) -> tuple[FakeWorld, object]:
    """A host with eth0 (198.51.100.1) and the fixtures' network bridge1 with c1 (192.0.2.2) publishing 8080->80."""
    w = FakeWorld()
    w.host.link("eth0").addr("eth0", "198.51.100.1/24").route("default", via="198.51.100.254", dev="eth0")
    w.docker.engine_info.update(ServerVersion=engine, FirewallBackend={"Driver": driver})
    w.docker.engine_version.update(Version=engine, ApiVersion="1.51")
    network = w.bridge_network("bridge1", "192.0.2.0/24", **BRIDGE)
    c1 = w.container("c1", network=network, ip="192.0.2.2", published=[(80, "tcp", "", 8080)])
    w.namespaces[c1.netns_path].listen("tcp", "0.0.0.0", 80)
    w.host.iptables = (FIXTURES / iptables).read_text() if iptables else ""
    w.host.nft = nft or ""
    w.host.listen("tcp", "0.0.0.0", 8080, inode=777)
    w.host_files["socket_holders"] = {777: (4242,)} if proxy else {}
    w.host_files["process"] = lambda pid: Process(pid, "docker-proxy", PROXY)
    return w, c1


def loud(findings):
    return [f for f in findings if f.status.rank >= Status.WARN.rank]


@pytest.mark.parametrize("iptables,nft,engine,driver", [
    ("docker-20.10.v4.rules", None, "20.10.24", ""), ("docker-28.v4.rules", None, "28.5.2", "iptables"),
    ("docker-29.v4.rules", None, "29.1.0", "iptables"), ("", "docker-29.json", "29.1.0", "nftables")])
def test_every_layout_is_quiet_when_healthy(iptables, nft, engine, driver):
    w, c1 = world(iptables, text(nft) if nft else None, engine, driver)
    findings = w.run([c1], ["forward_policy", "ports", "firewall"])
    assert loud(findings) == [], [(f.key, f.title) for f in loud(findings)]
    assert {f.key for f in findings} >= {"forwarded:bridge1", "published:8080/tcp", "firewall-read"}


def test_firewalld_rejecting_the_bridge_is_named_with_its_zone_fix():
    w, c1 = world(nft=text("firewalld.json"))
    [drop] = loud(w.run([c1], ["forward_policy"]))
    assert drop.key == "firewall-drop:outgoing:bridge1" and drop.status is Status.FAIL
    assert drop.evidence["where"] == "nftables inet firewalld filter_FORWARD" and drop.evidence["owner"] == "firewalld"
    assert "reject with icmpx admin-prohibited" in drop.title
    assert "sudo firewall-cmd --permanent --zone=docker --add-interface=bridge1" in drop.fix.commands


def test_docker_user_rule_dropping_a_published_port_drops_the_requests():
    w, c1 = world()
    w.host.iptables = w.host.iptables.replace("-A FORWARD -j DOCKER-USER",
                                              "-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -p tcp -m tcp --dport 80 -j DROP")
    [published] = [f for f in w.run([c1], ["ports"]) if f.key == "firewall-drop:published:8080/tcp"]
    assert published.status is Status.FAIL and "requests" in published.detail and "replies" not in published.title
    assert published.evidence["rule"] == "-A DOCKER-USER -p tcp -m tcp --dport 80 -j DROP"
    assert published.fix.commands == ("iptables -D DOCKER-USER -p tcp -m tcp --dport 80 -j DROP",
                                      "iptables -I DOCKER-USER -d 192.0.2.2 -p tcp --dport 80 -j RETURN")


@pytest.mark.parametrize("proxy,status", [(True, Status.WARN), (False, Status.FAIL)])
def test_a_published_port_without_its_dnat(proxy, status):
    w, c1 = world(proxy=proxy)
    w.host.iptables = w.host.iptables.replace(
        "-A DOCKER ! -i bridge1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.0.2.2:80\n", "")
    [missing] = [f for f in w.run([c1], ["ports"]) if f.key.startswith("docker-rules-missing")]
    assert missing.key == "docker-rules-missing:dnat:8080/tcp" and missing.status is status
    assert missing.evidence["userland_proxy"] == ("docker-proxy pid 4242" if proxy else "none")
    assert "sudo systemctl restart docker" in missing.fix.commands


def test_wiped_filter_table_is_docker_rules_missing_with_the_culprit():
    w, c1 = world()
    w.host.iptables = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n" \
                      ":ufw-user-forward - [0:0]\nCOMMIT\n"
    [gone] = loud(w.run([c1], ["forward_policy"]))
    assert gone.key == "docker-rules-missing:forward:bridge1" and gone.status is Status.FAIL
    assert gone.evidence["missing"] == ["DOCKER", "DOCKER-USER", "DOCKER-ISOLATION-STAGE-1"]
    assert "ufw is active" in gone.evidence["probable_cause"]
    [host] = [f for f in w.run([w.session().host_target], ["firewall"]) if f.key == "docker-rules-missing"]
    assert host.evidence["missing"]["bridge1"] == ["forward ACCEPT for bridge1 (IPv4)", "MASQUERADE for 192.0.2.0/24",
                                                   "DNAT 8080/tcp -> c1:80"]


def test_iptables_policy_left_behind_under_the_nftables_backend():
    w, c1 = world(iptables="", nft=text("docker-29.json"), engine="29.1.0", driver="nftables")
    w.host.iptables = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    drops = loud(w.run([c1], ["forward_policy"]))
    assert {f.key for f in drops} == {"firewall-drop:outgoing:bridge1", "firewall-drop:replies:bridge1"}
    assert all("Docker's nftables rules accept it" in f.title for f in drops)
    assert drops[0].fix.commands == ("iptables -I FORWARD -i bridge1 -j ACCEPT", "iptables -I FORWARD -o bridge1 -j ACCEPT",
                                     "# or: iptables -P FORWARD ACCEPT")
    [left] = loud(w.run([w.session().host_target], ["firewall"]))
    assert left.key == "firewall-drop:iptables-policy" and left.fix.commands == drops[0].fix.commands
    assert left.evidence["bridges_dropped"] == ["bridge1"]
    # the accepts forward_policy suggests are enough: neither check fails any more (both walk each network's flows)
    w.host.iptables = ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                       "-A FORWARD -i bridge1 -j ACCEPT\n-A FORWARD -o bridge1 -j ACCEPT\nCOMMIT\n")
    assert loud(w.run([c1], ["forward_policy"])) == [] and loud(w.run([w.session().host_target], ["firewall"])) == []


def test_mixed_backends_warn():
    w, c1 = world()
    w.host.iptables_legacy = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" \
                             "-A FORWARD -o eth0 -p udp -j DROP\nCOMMIT\n"
    [mixed] = loud(w.run([w.session().host_target], ["firewall"]))
    assert mixed.key == "mixed-backends" and mixed.evidence["legacy_tables"] == ["ip filter"]


def test_direct_routing_over_a_vpn_meets_28s_raw_drop():
    w, c1 = world()
    w.host.link("tailscale0", kind="tun")
    [direct] = [f for f in w.run([c1], ["forward_policy"]) if f.key.startswith("firewall-drop:direct")]
    assert direct.key == "firewall-drop:direct:tailscale0:bridge1"
    assert direct.evidence["rule"] == "-A PREROUTING -d 192.0.2.2/32 ! -i bridge1 -j DROP"
    assert direct.status is Status.INFO                                   # nothing shows that peers are meant to
    assert any("trusted_host_interfaces=tailscale0" in c for c in direct.fix.commands)
    w.host.iptables = w.host.iptables.replace("-A FORWARD -j DOCKER-USER",
                                              "-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -i tailscale0 -j ACCEPT")
    [direct] = [f for f in w.run([c1], ["forward_policy"]) if f.key.startswith("firewall-drop:direct")]
    assert direct.status is Status.WARN and direct.evidence["intent_seen"]


def test_the_probes_dropping_rule_is_found_by_its_counter():
    """A rule matching on something netdoctor cannot evaluate (a packet length) drops the probe: only its
    counter, read before and after, can tell."""
    w = FakeWorld()
    w.host.link("br0", kind="bridge").addr("br0", "10.88.0.1/24").link("up0").addr("up0", "10.99.0.1/24")
    w.host.route("default", via="10.99.0.2", dev="up0")
    w.host.sysctls["net.ipv4.ip_forward"] = "1"
    box = w.namespace("box")
    w.host.link("vbox", kind="veth", master="br0")
    box.link("eth0", kind="veth", peer_index=w.host.index_of("vbox")).addr("eth0", "10.88.0.2/24")
    box.route("default", via="10.88.0.1", dev="eth0")
    from dataclasses import replace
    w.host.links[-1] = replace(w.host.links[-1], peer_index=box.index_of("eth0"))
    box.neighbours["10.88.0.1"] = "REACHABLE"
    dump = ("*filter\n:FORWARD ACCEPT [0:0]\n[{n}:{b}] -A FORWARD -m length --length 0:100 -j DROP\nCOMMIT\n"
            "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 10.88.0.0/24 -o up0 -j MASQUERADE\nCOMMIT\n")
    w.host.iptables = dump.format(n=10, b=600)
    w.host.firewall_after = from_dumps(iptables=dump.format(n=12, b=720))
    [probe] = [f for f in w.run([w.target(box)], ["reachability"], probes=("10.99.0.2:80",)) if f.key.startswith("probe")]
    assert probe.status is Status.FAIL and probe.evidence["layer"] == "firewall"
    assert probe.evidence["counters_moved"] == [
        "iptables-nft filter FORWARD: -A FORWARD -m length --length 0:100 -j DROP (+2 packets during the probe)"]
    assert "iptables -D FORWARD -m length --length 0:100 -j DROP" in probe.fix.commands
    assert "nftrace" in probe.evidence["counter_method"]
