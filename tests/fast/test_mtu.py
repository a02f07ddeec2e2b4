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


class _SlowPath:
    """A destination whose echoes take `rtt` seconds to come back, on a clock of its own (pmtu's `time`):
    sizes in `lose_once` vanish the first time they are sent (a lossy path), sizes above `limit` always (a
    black hole). A lost echo costs the whole wait."""

    def __init__(self, rtt: float, lose_once=(), limit: int | None = None):
        self.now, self.rtt, self.lose_once, self.limit = 0.0, rtt, set(lose_once), limit

    def monotonic(self) -> float:
        return self.now

    def echo(self, destination, sizes, wait):
        from netdoctor.probes.icmp import EchoRound

        [size] = sizes
        result = EchoRound(destination)
        lost = size in self.lose_once or (self.limit is not None and size > self.limit) or self.rtt > wait
        self.lose_once.discard(size)
        self.now += wait if lost else self.rtt
        if not lost:
            result.answered.add(size)
        return result


def _slow_search(monkeypatch, path: _SlowPath, timeout: float = 1.0) -> pmtu.PmtuResult:
    monkeypatch.setattr(pmtu, "time", path)
    result = pmtu.search(path, FAR, 1500, timeout)
    assert path.now <= timeout + 1e-9  # within the one --timeout it was given
    return result


def test_a_search_cut_short_by_its_budget_confirms_the_boundary_before_calling_it_a_black_hole(monkeypatch):
    """A slow round trip (0.1 s: a lost echo costs 0.4 s) and the full size lost once: the budget ends the
    halving long before it narrows down, and the full size, sent again, comes back: loss, not a limit."""
    lossy = _slow_search(monkeypatch, _SlowPath(0.1, lose_once={1500}))
    assert lossy.consistent is False and lossy.smallest_failed == 1500
    # a real limit on the same slow path is still a black hole: both bounds hold when sent again
    hole = _slow_search(monkeypatch, _SlowPath(0.1, limit=1280))
    assert hole.consistent is True and hole.largest_passed <= 1280 < hole.smallest_failed
    assert not hole.complete  # cut short: the finding says between which sizes the search stopped


def test_the_check_reports_loss_and_not_a_black_hole_on_a_slow_lossy_path(monkeypatch):
    world, web, inside, _ = _world()
    path = _SlowPath(0.1, lose_once={1500})
    monkeypatch.setattr(pmtu, "time", path)
    inside.echo = path.echo
    found = _by_key(world.run([web], ["mtu"], probes=(f"{FAR}:443",), timeout=1.0))
    assert f"pmtu-blackhole:{FAR}" not in found
    assert found[f"pmtu-unstable:{FAR}"].status is Status.INFO
