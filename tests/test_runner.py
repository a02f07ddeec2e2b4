"""The runner keeps going when a check raises, hangs or fails to load; plugins come in by entry point."""

import sys
import textwrap
import time

from netdoctor.context import Session
from netdoctor.model import Need, Scope, Status
from netdoctor.registry import check, discover
from netdoctor.request import Options
from netdoctor.runner import run
from netdoctor.targets import resolve
from tests.conftest import run_cli


@check(id="t_boom", title="Raises", scope=Scope.NAMESPACE)
def boom(ctx):
    raise RuntimeError("kaboom")


@check(id="t_hang", title="Hangs", scope=Scope.NAMESPACE)
def hang(ctx):
    time.sleep(60)
    yield ctx.ok("never")


@check(id="t_ok", title="Reads facts", scope=Scope.NAMESPACE, needs={Need.NETNS})
def fine(ctx):
    yield ctx.ok(f"{len(ctx.netns.facts.links)} links")


@check(id="t_docker_only", title="Needs a container", scope=Scope.CONTAINER, needs={Need.DOCKER})
def docker_only(ctx):
    yield ctx.ok("unreachable")


def _run(*checks, timeout=0.1):
    session = Session(Options(timeout=timeout))
    try:
        target = resolve("self", session.docker, session.host_target)
        return list(run([c.__netdoctor_check__ for c in checks], [target], session, explicit=True))
    finally:
        session.close()


def test_raising_and_hanging_checks_become_errors_and_others_still_run():
    started = time.monotonic()
    findings = {f.check: f for f in _run(boom, hang, fine)}
    assert time.monotonic() - started < 15  # the hung check is abandoned at its deadline
    assert findings["t_boom"].status is Status.ERROR and "kaboom" in findings["t_boom"].detail
    assert findings["t_hang"].status is Status.ERROR and "did not finish" in findings["t_hang"].title
    assert findings["t_ok"].status is Status.PASS


def test_unmet_need_is_a_skip_with_the_reason():
    [finding] = _run(docker_only)
    assert finding.status is Status.SKIP and "only applies to Docker containers" in finding.detail


@check(id="t_ok_too", title="Reads the same facts and more", scope=Scope.NAMESPACE, needs={Need.NETNS})
def fine_too(ctx):
    yield ctx.ok(f"{len(ctx.netns.facts.links)} links, {len(ctx.netns.facts.routes)} routes")


def test_facts_are_read_once_per_namespace_and_only_when_asked_for(monkeypatch):
    from netdoctor.facts import namespace

    calls = []
    for kind in ("links", "routes", "listeners"):
        real = getattr(namespace, f"read_{kind}")
        monkeypatch.setattr(namespace, f"read_{kind}", lambda *args, kind=kind, real=real: calls.append(kind) or real(*args))
    findings = _run(fine, fine_too)
    assert [f.status for f in findings] == [Status.PASS, Status.PASS]
    assert sorted(calls) == ["links", "routes"]  # links shared by both checks; no check asked for listeners


def test_entry_point_plugins_load_and_broken_ones_become_errors(tmp_path, monkeypatch):
    (tmp_path / "nd_good_plugin.py").write_text(textwrap.dedent('''
        from netdoctor.model import Scope
        from netdoctor.registry import check

        @check(id="plugin_hello", title="A third-party check", scope=Scope.HOST)
        def hello(ctx):
            """Says hello from outside the package."""
            yield ctx.info("hello from a plugin")
    '''))
    (tmp_path / "nd_bad_plugin.py").write_text("raise ImportError('missing dependency foo')\n")
    dist = tmp_path / "nd_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nd-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[netdoctor.checks]\nhello = nd_good_plugin:hello\nbad = nd_bad_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    catalogue = discover()
    assert catalogue.get("plugin_hello") is not None
    assert any("missing dependency foo" in e.message for e in catalogue.errors)
    code, out, _ = run_cli("check", "--format", "json", "--checks", "plugin_hello", "self")
    import json
    findings = json.loads(out)["findings"]
    assert any(f["check"] == "plugin_hello" and f["status"] == "info" for f in findings)
    assert any(f["status"] == "error" and "nd_bad_plugin" not in sys.modules and "bad" in f["title"] for f in findings)


def test_a_target_that_vanishes_gives_an_error_finding_not_a_crash():
    sleeper = __import__("subprocess").Popen(["sleep", "30"])
    session = Session(Options())
    try:
        target = resolve(f"pid:{sleeper.pid}", session.docker, session.host_target)
        sleeper.kill()
        sleeper.wait()
        [finding] = list(run([fine.__netdoctor_check__], [target], session))
    finally:
        session.close()
    assert finding.status is Status.ERROR and "disappeared" in finding.detail


def test_more_hung_checks_than_parallel_slots_do_not_starve_the_rest(monkeypatch):
    import netdoctor.runner as runner

    monkeypatch.setattr(runner, "MAX_PARALLEL", 1)  # one slot: the hung check holds it until abandoned
    started = time.monotonic()
    findings = {f.check: f for f in _run(hang, fine)}
    assert findings["t_hang"].status is Status.ERROR
    assert findings["t_ok"].status is Status.PASS
    assert time.monotonic() - started < 25
