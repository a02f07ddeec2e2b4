"""The runner on a constructed machine: a check that raises, hangs, needs what the target lacks, or whose
target vanished still gives a finding, and the others run on (the real ones: tests/test_runner.py)."""

import threading
import time
from dataclasses import dataclass

from netdoctor.dockerapi import DockerUnavailable
from netdoctor.model import Need, Scope, Status
from netdoctor.netns import NamespaceError
from netdoctor.registry import check
from netdoctor.request import Options
from netdoctor.runner import MAX_PARALLEL, plan, run
from netdoctor.targets import Target
from tests.fakes import FakeWorld


@dataclass(frozen=True)
class QuickOptions(Options):
    """A hung check is abandoned after 0.3 s instead of 3 x timeout + 10 s."""

    @property
    def check_deadline(self) -> float:
        return 0.3


@check(id="t_boom", title="Raises", scope=Scope.NAMESPACE)
def boom(ctx):
    yield ctx.ok("said before crashing", key="before")
    raise KeyError("kaboom")


@check(id="t_no_docker", title="Needs the engine", scope=Scope.NAMESPACE)
def no_docker(ctx):
    raise DockerUnavailable("the Docker engine at unix:///fake is not reachable")


@check(id="t_no_netns", title="Enters a namespace", scope=Scope.NAMESPACE)
def no_netns(ctx):
    raise NamespaceError(1, "cannot enter network namespace /proc/1/ns/net: Operation not permitted")


@check(id="t_silent", title="Says nothing", scope=Scope.NAMESPACE)
def silent(ctx):
    return iter(())


released = threading.Event()


@check(id="t_hang", title="Hangs", scope=Scope.NAMESPACE)
def hang(ctx):
    released.wait(5)
    yield ctx.ok("too late")


@check(id="t_links", title="Reads links", scope=Scope.NAMESPACE, needs={Need.NETNS})
def links(ctx):
    yield ctx.ok(f"{len(ctx.netns.facts.links)} links", key="links")


@check(id="t_container_only", title="Needs a container", scope=Scope.CONTAINER, needs={Need.DOCKER})
def container_only(ctx):
    yield ctx.ok(f"{ctx.container.name} is a container", key="container")


@check(id="t_host_once", title="Host-wide", scope=Scope.HOST)
def host_once(ctx):
    yield ctx.ok("the host", key="host")


def _run(world: FakeWorld, targets, *checks, options: Options | None = None, explicit: bool = True):
    session = world.session(options or Options(timeout=0.1))
    return list(run([c.__netdoctor_check__ for c in checks], targets, session, explicit))


def _world():
    world = FakeWorld()
    world.uplink()
    box = world.namespace("box").link("lo").link("eth0")
    return world, world.target(box)


def test_failures_of_checks_become_error_findings_and_keep_what_was_said_before():
    world, box = _world()
    findings: dict[str, list] = {}
    for f in _run(world, [box], boom, no_docker, no_netns, silent, links):
        findings.setdefault(f.check, []).append(f)
    before, crashed = findings["t_boom"]
    assert before.key == "before" and before.status is Status.PASS
    assert crashed.status is Status.ERROR and crashed.key == "crashed"
    assert "KeyError: 'kaboom'" in crashed.detail and "test_runner.py" in crashed.detail
    assert [(f.key, f.status) for f in findings["t_no_docker"]] == [("docker-unreachable", Status.ERROR)]
    assert [(f.key, f.status) for f in findings["t_no_netns"]] == [("netns-unavailable", Status.ERROR)]
    assert [(f.key, f.status) for f in findings["t_silent"]] == [("no-finding", Status.ERROR)]
    assert [(f.key, f.title) for f in findings["t_links"]] == [("links", "2 links")]


def test_a_hung_check_is_abandoned_at_its_deadline_and_the_others_finish():
    world, box = _world()
    released.clear()
    started = time.monotonic()
    try:
        findings = {f.check: f for f in _run(world, [box], hang, links, options=QuickOptions(timeout=0.1))}
    finally:
        released.set()
    assert time.monotonic() - started < 3
    assert findings["t_hang"].status is Status.ERROR and findings["t_hang"].key == "hung"
    assert findings["t_links"].status is Status.PASS


def test_hung_checks_do_not_starve_the_queue():
    """More hung jobs than workers: each abandoned one gives its place to a new worker."""
    world = FakeWorld()
    boxes = [world.target(world.namespace(f"box{i}")) for i in range(MAX_PARALLEL + 2)]
    released.clear()
    try:
        findings = _run(world, boxes, hang, links, options=QuickOptions(timeout=0.1))
    finally:
        released.set()
    assert sorted((f.check, f.status) for f in findings) == sorted(
        [("t_hang", Status.ERROR)] * len(boxes) + [("t_links", Status.PASS)] * len(boxes))


def test_unmet_needs_and_vanished_namespaces():
    world, box = _world()
    web = world.container("web", network=world.bridge_network("bridge", "172.17.0.0/16"))
    gone = Target("netns", "gone", "fake:gone")  # its namespace file disappeared since it was named
    findings = {(f.check, f.target): f for f in _run(world, [box, web, gone], container_only, links)}
    skipped = findings[("t_container_only", "netns:box")]
    assert skipped.status is Status.SKIP and "only applies to Docker containers" in skipped.detail
    assert findings[("t_container_only", "container:web")].status is Status.PASS
    assert findings[("t_links", "netns:gone")].status is Status.ERROR
    assert findings[("t_links", "netns:gone")].key == "target-vanished"


def test_plan_runs_host_checks_once_and_container_checks_on_containers_unless_named():
    world, box = _world()
    web = world.container("web")
    infos = [host_once.__netdoctor_check__, container_only.__netdoctor_check__, links.__netdoctor_check__]
    host = Target("host", "host", world.host.path)
    jobs = [(info.id, target.label) for info, target in plan(infos, [box, web], host, explicit=False)]
    assert jobs == [("t_host_once", "host"), ("t_container_only", "container:web"), ("t_links", "netns:box"),
                    ("t_links", "container:web")]
    explicit = [(info.id, target.label) for info, target in plan(infos[1:2], [box, web], host, explicit=True)]
    assert explicit == [("t_container_only", "netns:box"), ("t_container_only", "container:web")]


def test_findings_carry_how_long_their_check_took():
    world, box = _world()
    [finding] = _run(world, [box], links)
    assert 0 <= finding.duration_ms < 1000
