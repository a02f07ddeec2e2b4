"""mtu's path-MTU search and what the kernel already knows, on constructed facts and scripted echo answers
(the real paths, with a black hole and a router that answers: tests/test_pmtu.py)."""

from netdoctor.facts.pathmtu import LearnedMtu
from netdoctor.facts.resolvconf import ResolvConf, ResolvConfUnavailable
from netdoctor.model import Status
from netdoctor.probes import pmtu
from tests.fakes import FakeWorld

FAR = "192.0.2.80"
NO_COUNTS = {"FragFails": 0, "IcmpInType3": 0, "IcmpOutType3": 0}


def _world(learned=(), nameservers=()):
    world = FakeWorld()
    world.uplink(mtu=1500)
    web = world.container("web", network=world.bridge_network("net", "172.20.0.0/16"), ip="172.20.0.2")
    inside = world.namespaces[web.netns_path]
    inside.readers.update(learned=list(learned), counters=NO_COUNTS)

    def resolv_conf(path):
        if not nameservers:
            raise ResolvConfUnavailable(f"cannot read {path}")
        return ResolvConf(path, tuple(nameservers), (), 1)

    world.host_files["read"] = resolv_conf
    sizes_sent = []
    scripted = inside.echo
    inside.echo = lambda destination, sizes, wait: sizes_sent.extend(sizes) or scripted(destination, sizes, wait)
    return world, web, inside, sizes_sent


def _by_key(findings):
    return {f.key: f for f in findings}


def test_black_hole_is_found_to_the_byte_in_a_handful_of_echoes():
    world, web, inside, sent = _world()
    inside.icmp[FAR] = 1400  # nothing bigger comes back, and no router says why
    found = _by_key(world.run([web], ["mtu"], probes=(f"{FAR}:443",)))
    hole = found[f"pmtu-blackhole:{FAR}"]
    assert hole.status is Status.FAIL and hole.title == f"Path MTU black hole toward {FAR}: 1400 bytes pass, 1401 do not"
    assert hole.evidence["path_mtu"] == 1400 and hole.evidence["echoes_sent"] == len(sent) <= 14
    assert any("TCPMSS --set-mss 1360" in c for c in hole.fix.commands)
    assert any("com.docker.network.driver.mtu=1400 net-mtu1400" in c for c in hole.fix.commands)
    assert found["mtu:eth0"].status is Status.PASS


def test_router_message_names_the_router_and_its_mtu():
    world, web, inside, sent = _world()
    inside.icmp[FAR] = 1280
    inside.frag_needed[FAR] = (1280, "198.51.100.254")
    smaller = _by_key(world.run([web], ["mtu"], probes=(f"{FAR}:443",)))[f"pmtu-smaller:{FAR}"]
    assert smaller.status is Status.WARN and "198.51.100.254 reports 'fragmentation needed'" in smaller.title
    assert smaller.evidence["path_mtu"] == 1280 and "the router 198.51.100.254" in smaller.detail
    assert len(sent) == 3  # the floor, the full size (refused by the router), then its MTU: checked, done


def test_host_itself_reporting_is_said_so():
    world, web, inside, _ = _world()
    inside.icmp[FAR] = 1400
    inside.frag_needed[FAR] = (1400, "198.51.100.1")  # the host's own uplink address
    smaller = _by_key(world.run([web], ["mtu"], probes=(f"{FAR}:443",)))[f"pmtu-smaller:{FAR}"]
    assert "the host itself (198.51.100.1" in smaller.detail


def test_full_size_path_passes_with_two_echoes_and_a_silent_one_is_not_measured():
    world, web, inside, sent = _world()
    inside.icmp[FAR] = 1500
    found = _by_key(world.run([web], ["mtu"], probes=(f"{FAR}:443", "192.0.2.81:443")))
    assert found[f"pmtu:{FAR}"].status is Status.PASS and found[f"pmtu:{FAR}"].evidence["echoes_sent"] == 2
    assert found["pmtu-unmeasured:192.0.2.81"].status is Status.INFO


def test_nothing_is_sent_without_an_endpoint_beyond_the_host():
    world, web, inside, sent = _world(nameservers=("192.0.2.53",))
    assert not [f for f in world.run([web], ["mtu"]) if f.key.startswith("pmtu")] and sent == []
    # on the target's own link, or the host's own address: not beyond the host either
    world.run([web], ["mtu"], probes=("172.20.0.9:80", "198.51.100.1:22"))
    assert sent == []


def test_nameservers_beyond_the_host_are_measured_with_a_named_endpoint():
    world, web, inside, _ = _world(nameservers=("192.0.2.53", "127.0.0.11"))
    inside.icmp.update({FAR: 1500, "192.0.2.53": 1300})
    found = _by_key(world.run([web], ["mtu"], probes=(f"{FAR}:443",)))
    assert found["pmtu-blackhole:192.0.2.53"].evidence["path_mtu"] == 1300
    assert not [k for k in found if k.endswith(":127.0.0.11")]


def test_a_path_mtu_the_kernel_learned_is_reported_without_sending():
    learned = LearnedMtu("192.0.2.99", 1380, "172.20.0.1", 420)
    world, web, inside, sent = _world(learned=[learned])
    found = _by_key(world.run([web], ["mtu"]))
    assert found["pmtu-learned:192.0.2.99"].status is Status.INFO and "1380" in found["pmtu-learned:192.0.2.99"].title
    assert sent == []


def test_search_stays_within_its_time_budget_when_nothing_answers():
    world, web, inside, sent = _world()
    view = world.namespaces[web.netns_path]
    result = pmtu.search(view, FAR, 1500, 0.2)
    assert result.largest_passed is None and result.probes_sent == 2 and sent == [576, 1500]
