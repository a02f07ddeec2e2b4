"""netdoctor.core.diagnose on a constructed machine: what it refuses before anything runs, how a named target
that cannot be diagnosed is reported (strict for `check`, tolerant for the TUI), plugins that fail to load,
acceptances from the config, selectors, and containers that change while they are diagnosed."""

import datetime as dt
from dataclasses import replace

import pytest

from netdoctor import core, targets
from netdoctor.config import Accept, Config
from netdoctor.dockerapi import ContainerNotFound, DockerUnavailable
from netdoctor.errors import BadInput, CannotCheck, ExitCode
from netdoctor.model import ABOUT_RUN, Scope, Status
from netdoctor.registry import Catalogue, LoadError, check
from netdoctor.request import Options, Request, Selector
from netdoctor.selection import SelectionError
from tests.fakes import FakeWorld

TODAY = dt.date.today()


@check(id="t_judge", title="Judges", scope=Scope.CONTAINER)
def judge(ctx):
    yield ctx.fail(f"{ctx.container.name} is broken", key="broken")


@check(id="t_stops_it", title="The container stops while this check runs", scope=Scope.CONTAINER)
def stops_it(ctx):
    world = ctx.session.world
    if ctx.container.name in world.stop_during_run:
        world.stop_during_run[ctx.container.name]()
    yield ctx.ok("looked", key="looked")


CATALOGUE = Catalogue((judge.__netdoctor_check__, stops_it.__netdoctor_check__), ())


@pytest.fixture(autouse=True)
def on_a_host(monkeypatch):
    """Target resolution as on a host (not inside a container), whatever machine the tests run on."""
    monkeypatch.setattr(targets, "_sees_host_pids", lambda: True)
    monkeypatch.setattr(targets, "network_owner_id", lambda: None)
    monkeypatch.setattr(targets, "_runs_here", lambda container: True)  # the fake engine's pids count as ours


def _world():
    world = FakeWorld()
    world.uplink()
    world.stop_during_run = {}
    network = world.bridge_network("shop", "10.70.0.0/24")
    for name in ("web", "db"):
        world.container(name, network=network, labels={"tier": name})
    return world


def _diagnose(world, tolerant=False, catalogue=CATALOGUE, **request):
    request = Request(**{"checks": ("t_judge",), "options": Options(timeout=0.1), **request})
    return core.diagnose(request, session=world.session(request.options), tolerant=tolerant, catalogue=catalogue)


def test_findings_for_named_containers():
    with _diagnose(_world(), targets=("web", "db")) as run:
        findings = list(run)
    assert [t.label for t in run.targets] == ["container:web", "container:db"]
    assert sorted(f.id for f in findings) == ["t_judge/broken@container:db", "t_judge/broken@container:web"]
    assert run.gate.exit_code(findings) is ExitCode.FINDINGS


def test_bad_input_is_refused_before_anything_runs():
    world = _world()
    with pytest.raises(BadInput, match="unknown check id"):
        _diagnose(world, targets=("web",), checks=("nope",))
    with pytest.raises(BadInput, match="name a target"):
        _diagnose(world)
    with pytest.raises(BadInput, match="no check left"):
        _diagnose(world, targets=("web",), skip=("t_judge",))
    with pytest.raises(BadInput, match="accept names unknown check"):
        _diagnose(world, targets=("web",), config=Config("x.yml", accept=(Accept("nope", "*", "r", TODAY),)))


def test_a_missing_container_is_bad_input_for_check_and_a_finding_for_the_tui():
    world = _world()
    with pytest.raises(ContainerNotFound):
        _diagnose(world, targets=("ghost", "web"))
    with _diagnose(world, tolerant=True, targets=("ghost", "web")) as run:
        findings = list(run)
    ghost = next(f for f in findings if f.target == "ghost")
    assert ghost.check == ABOUT_RUN and ghost.status is Status.ERROR and ghost.key == "unresolved"
    assert [f.target for f in findings if f.check == "t_judge"] == ["container:web"]


def test_docker_unreachable_cannot_check_or_becomes_a_finding():
    world = _world()

    def unreachable(name, fresh=False):
        raise DockerUnavailable("the Docker engine at unix:///fake is not reachable (no socket there)")

    world.docker.container = unreachable
    with pytest.raises(CannotCheck, match="cannot check containers"):
        _diagnose(world, targets=("web",))
    with _diagnose(world, tolerant=True, targets=("web",)) as run:
        [finding] = list(run)
    assert finding.key == "unresolved" and "Docker is not reachable" in finding.title


def test_a_plugin_that_failed_to_load_is_an_error_finding_and_the_run_goes_on():
    broken = Catalogue(CATALOGUE.checks, (LoadError("entry point nd_bad", "ImportError: missing dependency foo"),))
    with _diagnose(_world(), catalogue=broken, targets=("web",)) as run:
        findings = list(run)
    assert findings[0].check == ABOUT_RUN and findings[0].status is Status.ERROR
    assert "nd_bad failed to load" in findings[0].title and "missing dependency foo" in findings[0].detail
    assert [f.check for f in findings[1:]] == ["t_judge"]


def test_acceptances_mark_findings_and_expired_ones_trip_the_gate_again():
    config = Config("x.yml", accept=(Accept("t_judge", "web", "known, INFRA-1", TODAY),
                                     Accept("t_judge", "container:d*", "was known", TODAY - dt.timedelta(days=1))))
    with _diagnose(_world(), targets=("web", "db"), config=config) as run:
        findings = {f.target: f for f in run}
    web, db = findings["container:web"], findings["container:db"]
    assert web.accepted.reason == "known, INFRA-1" and not web.accepted.expired
    assert db.accepted.expired
    assert not run.gate.trips(web) and run.gate.trips(db)


def test_selectors_pick_running_containers_and_an_empty_selection_is_bad_input():
    world = _world()
    world.container("old", labels={"tier": "web"}, status="exited")
    with _diagnose(world, selector=Selector(labels=("tier=web",))) as run:
        assert [t.label for t in run.targets] == ["container:web"]
    with _diagnose(world, targets=("web",), selector=Selector(all=True)) as run:
        assert sorted(t.label for t in run.targets) == ["container:db", "container:web"]  # named and selected: once
    with pytest.raises(SelectionError, match="no running container matches --label tier=cache"):
        _diagnose(world, selector=Selector(labels=("tier=cache",)))


@pytest.mark.parametrize("change,said", [("removed", "was removed"), ("stopped", "stopped (exited)"),
                                         ("restarted", "restarted")])
def test_a_container_that_changes_during_the_run_is_reported(change, said):
    world = _world()
    web = world.docker.containers_by_name["web"]
    actions = {
        "removed": lambda: world.docker.containers_by_name.pop("web"),
        "stopped": lambda: world.docker.containers_by_name.update(web=replace(web, status="exited")),
        # a new process runs it: the namespace of the one diagnosed is gone
        "restarted": lambda: world.namespaces.pop(f"/proc/{web.pid}/ns/net"),
    }
    world.stop_during_run["web"] = actions[change]
    with _diagnose(world, targets=("web", "db"), checks=("t_stops_it",)) as run:
        findings = list(run)
    vanished = [f for f in findings if f.key == "vanished"]
    assert [(f.target, f.title) for f in vanished] == [("container:web", f"container web {said} during the diagnosis")]
    assert vanished[0].status is Status.ERROR


def test_containers_that_stay_put_are_not_reported_as_vanished():
    with _diagnose(_world(), targets=("web", "db"), checks=("t_stops_it",)) as run:
        assert [f.key for f in run] == ["looked", "looked"]
