"""dns's judgement on constructed resolv.conf files, namespaces and scripted DNS answers (the real faults:
tests/test_dns.py)."""

from netdoctor.model import Status
from tests.fakes import FakeWorld

ROOT_NS = "."  # the liveness query: the root zone's NS set


def _world(upstream: str | None = "192.0.2.53") -> FakeWorld:
    world = FakeWorld(upstream_resolver=upstream)
    world.uplink()
    return world


def _loud(findings):
    return [f for f in findings if f.status.rank >= Status.WARN.rank]


def test_embedded_dns_on_a_user_network_that_answers_passes():
    world = _world()
    web = world.container("web", network=world.bridge_network("shop", "10.20.0.0/24"), dns=["192.0.2.53"])
    world.resolv_conf(web, "nameserver 127.0.0.11\noptions ndots:0\n")
    world.namespaces[web.netns_path].dns[("127.0.0.11", ROOT_NS)] = ("answer", ())
    [finding] = world.run([web], ["dns"])
    assert finding.status is Status.PASS and finding.key == "nameserver:127.0.0.11"
    assert finding.evidence["queries"][0]["outcome"] == "answer"


def test_loopback_nameserver_copied_from_the_host_fails_with_the_hosts_upstream_in_the_fix():
    world = _world(upstream="192.0.2.53")
    web = world.container("web", network=world.bridge_network("bridge", "172.17.0.0/16"), dns=["127.0.0.53"])
    world.resolv_conf(web, "nameserver 127.0.0.53\n")
    world.namespaces[web.netns_path].dns[("127.0.0.53", ROOT_NS)] = ("refused", ())
    [finding] = world.run([web], ["dns"])
    assert finding.status is Status.FAIL and finding.key == "nameserver-misplaced:127.0.0.53"
    assert "loopback inside web's own network namespace" in finding.evidence["reason"]
    assert "--dns 192.0.2.53" in finding.fix.summary
    assert any("--dns 192.0.2.53" in command for command in finding.fix.commands)


def test_loopback_nameserver_with_a_resolver_listening_inside_is_fine():
    world = _world()
    web = world.container("web", network=world.bridge_network("bridge", "172.17.0.0/16"))
    world.resolv_conf(web, "nameserver 127.0.0.53\n")
    inside = world.namespaces[web.netns_path]
    inside.link("lo").addr("lo", "127.0.0.1/8").listen("udp", "127.0.0.53", 53)
    inside.dns[("127.0.0.53", ROOT_NS)] = ("answer", ())
    [finding] = world.run([web], ["dns"])
    assert finding.status is Status.PASS


def test_embedded_dns_address_on_the_default_bridge_fails():
    world = _world()
    web = world.container("web", network=world.bridge_network("bridge", "172.17.0.0/16"))
    world.resolv_conf(web, "nameserver 127.0.0.11\n")
    [finding] = world.run([web], ["dns"])
    assert finding.status is Status.FAIL and finding.key == "nameserver-misplaced:127.0.0.11"
    assert "only on user-defined networks" in finding.evidence["reason"]


def test_silent_nameserver_is_blamed_on_the_host_when_the_host_does_not_forward():
    world = _world()
    world.host.sysctls["net.ipv4.ip_forward"] = "0"
    network = world.bridge_network("bridge", "172.17.0.0/16")
    web = world.container("web", network=network, dns=["192.0.2.53"])
    world.resolv_conf(web, "nameserver 192.0.2.53\n")
    world.namespaces[web.netns_path].neighbours[network.gateways[0]] = "REACHABLE"  # the gateway is there
    [finding] = world.run([web], ["dns"])  # the query itself gets no answer: not scripted
    assert finding.status is Status.FAIL and finding.key == "nameserver-silent:192.0.2.53"
    assert finding.evidence["layer"] == "forwarding", "the nameserver is not to blame: the host drops the query"
    assert "sysctl -w net.ipv4.ip_forward=1" in finding.fix.commands


def test_silent_nameserver_with_a_healthy_host_path_points_at_the_nameserver():
    world = _world()
    world.host.iptables = ("*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n"
                           "COMMIT\n*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n")
    network = world.bridge_network("bridge", "172.17.0.0/16")
    web = world.container("web", network=network, dns=["192.0.2.53"])
    world.resolv_conf(web, "nameserver 192.0.2.53\n")
    world.namespaces[web.netns_path].neighbours[network.gateways[0]] = "REACHABLE"
    [finding] = world.run([web], ["dns"])
    assert finding.status is Status.FAIL and finding.evidence["layer"] == "beyond_host"
    assert "does not answer properly: timeout" in finding.title
    assert any("nslookup . 192.0.2.53" in command for command in finding.fix.commands)


def test_servfail_is_a_failure_with_the_outcome():
    world = _world()
    web = world.container("web", network=world.bridge_network("shop", "10.20.0.0/24"), dns=["192.0.2.53"])
    world.resolv_conf(web, "nameserver 192.0.2.53\n")
    world.namespaces[web.netns_path].dns[("192.0.2.53", ROOT_NS)] = ("servfail", ())
    [finding] = world.run([web], ["dns"])
    assert finding.status is Status.FAIL and "servfail" in finding.title


def test_names_given_are_resolved_and_reported():
    world = _world()
    web = world.container("web", network=world.bridge_network("shop", "10.20.0.0/24"))
    world.resolv_conf(web, "nameserver 127.0.0.11\n")
    inside = world.namespaces[web.netns_path]
    inside.dns[("127.0.0.11", "api.internal")] = ("answer", ("10.20.0.9",))
    inside.dns[("127.0.0.11", "typo.internal")] = ("nxdomain", ())
    findings = {f.key: f for f in world.run([web], ["dns"], resolve=("api.internal", "typo.internal"))}
    assert findings["nameserver:127.0.0.11"].status is Status.PASS  # NXDOMAIN is an answer
    assert findings["name:api.internal"].status is Status.PASS and "10.20.0.9" in findings["name:api.internal"].title
    assert findings["name-unresolved:typo.internal"].status is Status.FAIL


def test_peer_on_the_default_bridge_does_not_resolve_and_the_fix_is_a_user_network():
    world = _world()
    bridge = world.bridge_network("bridge", "172.17.0.0/16")
    web = world.container("web", network=bridge, dns=["192.0.2.53"])
    world.container("db", network=bridge)
    world.resolv_conf(web, "nameserver 192.0.2.53\n")
    world.namespaces[web.netns_path].dns[("192.0.2.53", "db")] = ("nxdomain", ())
    [peer] = [f for f in world.run([web], ["dns"], peers=("db",)) if f.key == "peer-name:db"]
    assert peer.status is Status.WARN and "default bridge" in peer.title
    assert peer.fix.commands == ("docker network create web-db", "docker network connect web-db web",
                                 "docker network connect web-db db")


def test_many_search_domains_with_a_high_ndots_warn():
    world = _world()
    web = world.container("web", network=world.bridge_network("shop", "10.20.0.0/24"))
    world.resolv_conf(web, "nameserver 127.0.0.11\nsearch a.example b.example c.example\noptions ndots:5\n")
    world.namespaces[web.netns_path].dns[("127.0.0.11", ROOT_NS)] = ("answer", ())
    [warning] = _loud(world.run([web], ["dns"]))
    assert warning.key == "search-ndots" and warning.status is Status.WARN
    assert warning.evidence["ndots"] == 5 and warning.evidence["search"] == ["a.example", "b.example", "c.example"]


def test_no_nameserver_line_falls_back_to_libc_loopback():
    world = _world()
    web = world.container("web", network=world.bridge_network("bridge", "172.17.0.0/16"))
    world.resolv_conf(web, "search example.org\n")
    findings = {f.key: f for f in world.run([web], ["dns"])}
    assert findings["no-nameserver"].status is Status.INFO
    assert findings["nameserver-misplaced:127.0.0.1"].status is Status.FAIL


def test_stopped_container_is_judged_from_its_file_and_not_queried():
    world = _world()
    web = world.container("web", network=world.bridge_network("bridge", "172.17.0.0/16"), status="exited",
                          ResolvConfPath="/var/lib/docker/containers/web/resolv.conf")
    world.files["/var/lib/docker/containers/web/resolv.conf"] = "nameserver 127.0.0.53\n"
    findings = {f.key: f for f in world.run([web], ["dns"])}
    assert findings["nameserver-misplaced:127.0.0.53"].status is Status.FAIL
    assert findings["not-queried"].status is Status.SKIP


def test_container_without_network_cannot_resolve_by_design():
    world = _world()
    lonely = world.container("lonely")
    world.resolv_conf(lonely, "nameserver 192.0.2.53\n")
    [finding] = world.run([lonely], ["dns"])
    assert finding.status is Status.INFO and finding.key == "no-network"
