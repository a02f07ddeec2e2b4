"""The TUI driven by Textual's pilot against real containers: the runner, facts and checks are real.

Host-level faults live in a fake host namespace we own (--host-netns); only two cheap checks run
(ip_forward, mtu) so each test takes about a second. Assertions are on the messages the worker posts
and on the rows and texts shown, not on pictures. run_test's default size is 80x24.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from netdoctor.request import Options, Request
from netdoctor.model import Need, Scope, Status
from netdoctor.registry import check
from tests.conftest import run_cli, sh

CHEAP = ["ip_forward", "mtu"]


def drive(app, scenario, timeout: float = 60):
    """Run `scenario(pilot, messages)` against `app` headless; messages: everything our workers posted."""
    from netdoctor.tui import messages as ours

    posted = []

    def keep(message):  # the hook sees a message at each step of its dispatch: keep it once
        if type(message).__module__ == ours.__name__ and not any(m is message for m in posted):
            posted.append(message)

    async def main():
        async with app.run_test(message_hook=keep) as pilot:
            await asyncio.wait_for(scenario(pilot, posted), timeout)

    asyncio.run(main())


async def until(pilot, condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def of(messages, kind: str, run: int | None = None):
    return [m for m in messages if type(m).__name__ == kind and (run is None or m.run == run)]


def finished(messages, run: int):
    return lambda: bool(of(messages, "RunFinished", run))


def rows(app):
    from netdoctor.tui.widgets.findings import FindingsTable

    return [(f.status.value, f.check, f.target) for f in app.screen.query_one(FindingsTable).shown]


def select_row(app, check_id: str):
    from netdoctor.tui.widgets.findings import FindingsTable

    table = app.screen.query_one(FindingsTable)
    table.move_cursor(row=next(i for i, f in enumerate(table.shown) if f.check == check_id))
    return table.selected


@pytest.fixture
def broken_host(make_netns):
    """A fake host namespace that does not forward: ip_forward fails for any bridge-network container."""
    return make_netns("host", forwarding=False)


def make_app(*targets, host, tmp_path, checks=CHEAP, **options):
    """The TUI on `targets` with `checks`: ids, or definitions of a test's own checks (added to the catalogue)."""
    from netdoctor.registry import Catalogue, discover
    from netdoctor.tui.app import NetdoctorApp

    own = tuple(c for c in checks if not isinstance(c, str))
    catalogue = discover()
    request = Request(targets=targets, options=Options(timeout=1, host_netns=host, **options),
                      checks=tuple(c if isinstance(c, str) else c.id for c in checks))
    return NetdoctorApp(request, output_dir=tmp_path, catalogue=Catalogue(catalogue.checks + own, catalogue.errors))


@pytest.mark.docker
def test_picking_a_target_diagnoses_it(make_container, broken_host, tmp_path):
    web = make_container("web", ports={"80/tcp": ("127.0.0.1", None)})
    other = make_container("other")
    label = f"container:{web.name}"

    async def scenario(pilot, messages):
        await until(pilot, lambda: of(messages, "ContainersListed"), what="the container list")
        listed = {c.name for c in of(messages, "ContainersListed")[-1].containers}
        assert {web.name, other.name} <= listed
        picker = pilot.app.screen
        await pilot.press(*web.name)  # filter as you type
        ip = web.attrs["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        port = web.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
        assert picker.rows == [(web.name, "bridge", ip, f"127.0.0.1:{port}->80/tcp", web.attrs["Config"]["Image"])]
        await pilot.press("enter")
        await until(pilot, finished(messages, 1), what="the diagnosis")
        assert type(pilot.app.screen).__name__ == "DiagnosisScreen"
        [started] = of(messages, "RunStarted", 1)
        assert sorted(started.jobs) == [("ip_forward", label), ("mtu", label)]
        arrived = [m.finding for m in of(messages, "FindingArrived", 1)]
        assert {f.check for f in arrived} == set(CHEAP) and {f.target for f in arrived} == {label}
        assert sorted(rows(pilot.app)) == sorted((f.status.value, f.check, f.target) for f in arrived)
        assert rows(pilot.app)[0] == ("fail", "ip_forward", label)  # worst first
        ranks = [Status(status).rank for status, _, _ in rows(pilot.app)]
        assert ranks == sorted(ranks, reverse=True)
        screen = pilot.app.screen
        assert all(status is not None for status in screen.jobs.values())
        counts = str(screen.query_one("#counts").render())
        assert "done 2/2" in counts and "fail 1" in counts

    drive(make_app(host=broken_host, tmp_path=tmp_path), scenario)


@pytest.mark.docker
def test_target_given_starts_at_once_and_stays_readable_without_color(make_container, broken_host, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    web = make_container("web")

    async def scenario(pilot, messages):
        app = pilot.app
        assert app.no_color
        await until(pilot, finished(messages, 1), what="the diagnosis")  # no key pressed: it started at once
        assert [type(s).__name__ for s in app.screen_stack[1:]] == ["PickerScreen", "DiagnosisScreen"]
        from netdoctor.tui.widgets.findings import FindingsTable

        table = app.screen.query_one(FindingsTable)
        assert table.region.height >= 10 and table.region.width == 80  # room for findings at 80x24
        # the status reads as a word and a symbol, not only a colour
        assert str(table.get_row_at(0)[0]) == "✗ FAIL"
        progress = str(app.screen.query_one("#progress").render())
        assert "✗ ip_forward" in progress

    drive(make_app(web.name, host=broken_host, tmp_path=tmp_path), scenario)


@pytest.mark.docker
def test_finding_detail_shows_evidence_why_and_a_fix_to_copy(make_container, broken_host, tmp_path):
    web = make_container("web")

    async def scenario(pilot, messages):
        app = pilot.app
        await until(pilot, finished(messages, 1), what="the diagnosis")
        finding = select_row(app, "ip_forward")
        assert finding.status is Status.FAIL
        await pilot.press("enter")
        screen = app.screen
        assert type(screen).__name__ == "FindingScreen"
        assert "net.ipv4.ip_forward: 0" in str(screen.query_one("#evidence").render())
        assert "must forward packets" in str(screen.query_one("#why").render())
        commands = screen.query_one("#commands").text
        assert f"ip netns exec {broken_host} sysctl -w net.ipv4.ip_forward=1" in commands
        await pilot.press("c")
        assert commands.splitlines()[0] in app.clipboard
        assert screen.saved_to.parent == tmp_path and screen.saved_to.read_text() == app.clipboard
        await pilot.press("escape")
        assert type(app.screen).__name__ == "DiagnosisScreen"

    drive(make_app(web.name, host=broken_host, tmp_path=tmp_path), scenario)


@pytest.mark.docker
def test_rerun_one_check_and_all_checks_read_the_state_again(make_container, broken_host, tmp_path):
    web = make_container("web")
    label = f"container:{web.name}"

    async def scenario(pilot, messages):
        app = pilot.app
        await until(pilot, finished(messages, 1), what="the first diagnosis")
        mtu_before = [f for f in app.screen.findings if f.check == "mtu"]

        sh("ip", "netns", "exec", broken_host, "sysctl", "-qw", "net.ipv4.ip_forward=1")  # the user fixes it
        select_row(app, "ip_forward")
        await pilot.press("R")
        await until(pilot, finished(messages, 2), what="the rerun of ip_forward")
        [started] = of(messages, "RunStarted", 2)
        assert started.partial and started.jobs == [("ip_forward", label)]
        assert ("pass", "ip_forward", label) in rows(app)
        assert ("fail", "ip_forward", label) not in rows(app)
        assert [f for f in app.screen.findings if f.check == "mtu"] == mtu_before  # untouched

        sh("ip", "netns", "exec", broken_host, "sysctl", "-qw", "net.ipv4.ip_forward=0")
        await pilot.press("r")
        await until(pilot, finished(messages, 3), what="the full rerun")
        [started] = of(messages, "RunStarted", 3)
        assert not started.partial and len(started.jobs) == 2
        assert rows(app)[0] == ("fail", "ip_forward", label)

    drive(make_app(web.name, host=broken_host, tmp_path=tmp_path), scenario)


@pytest.mark.docker
def test_export_writes_the_same_json_as_check(make_container, broken_host, tmp_path, netdoctor):
    web = make_container("web")

    async def scenario(pilot, messages):
        await until(pilot, finished(messages, 1), what="the diagnosis")
        await pilot.press("e")

    app = make_app(web.name, host=broken_host, tmp_path=tmp_path)
    drive(app, scenario)
    [path] = tmp_path.glob("netdoctor-report-*.json")
    exported = json.loads(path.read_text())
    expected = netdoctor(web.name, "--checks", ",".join(CHEAP), "--host-netns", broken_host).doc

    def essence(doc):
        return sorted((f["check"], f["target"], f["status"], f["title"]) for f in doc["findings"])

    assert set(exported) == set(expected)
    assert exported["targets"] == expected["targets"]
    assert essence(exported) == essence(expected) and exported["summary"] == expected["summary"]


@pytest.mark.docker
def test_peer_and_probe_from_the_dialog_go_into_options(make_container, broken_host, tmp_path):
    web, db = make_container("web"), make_container("db")

    async def scenario(pilot, messages):
        app = pilot.app
        await until(pilot, finished(messages, 1), what="the diagnosis")
        await pilot.press("o")
        await pilot.press(*db.name, "tab", *"nope", "enter")
        assert "'nope' is not HOST:PORT" in str(app.screen.query_one("#problem").render())
        await pilot.press(*["backspace"] * 4, *"127.0.0.1:80", "enter")
        assert app.options.peers == (db.name,) and app.options.probes == ("127.0.0.1:80",)
        await until(pilot, finished(messages, 2), what="the rerun with the new options")
        assert f"peer {db.name}" in str(app.screen.query_one("#where").render())

    drive(make_app(web.name, host=broken_host, tmp_path=tmp_path), scenario)


removal_done = threading.Event()


@check(id="t_tui_outlives_target", title="Still reading when the target goes", scope=Scope.NAMESPACE, needs={Need.NETNS})
def outlives_target(ctx):
    removal_done.wait(20)
    yield ctx.ok(f"{len(ctx.netns.facts.links)} links")


@pytest.mark.docker
def test_a_target_that_vanishes_mid_run_is_an_error_finding(make_container, tmp_path, make_netns):
    """The container is removed while one of its checks still runs: the run ends with an error finding
    naming what happened, the app keeps going, and a rerun says the target no longer exists."""
    web = make_container("web")
    label = f"container:{web.name}"
    removal_done.clear()

    async def scenario(pilot, messages):
        app = pilot.app
        await until(pilot, lambda: any(m.finding.check == "mtu" for m in of(messages, "FindingArrived", 1)),
                    what="the mtu finding")
        assert not of(messages, "RunFinished")
        await asyncio.to_thread(web.remove, force=True)
        removal_done.set()
        await until(pilot, finished(messages, 1), what="the end of the run")
        gone = [f for f in app.screen.findings if f.check == "netdoctor"]
        assert [(f.status, f.target) for f in gone] == [(Status.ERROR, label)]
        assert gone[0].title == f"container {web.name} was removed during the diagnosis"
        assert rows(app)[0] == ("error", "netdoctor", label)

        await pilot.press("r")
        await until(pilot, finished(messages, 2), what="the rerun")
        assert of(messages, "RunStarted", 2)[0].jobs == []
        [error] = [m.finding for m in of(messages, "FindingArrived", 2)]
        assert error.status is Status.ERROR and "does not exist" in error.title and web.name in error.detail
        assert app.is_running and type(app.screen).__name__ == "DiagnosisScreen"

    fakehost = make_netns("host", forwarding=True)
    drive(make_app(web.name, host=fakehost, tmp_path=tmp_path, checks=["mtu", outlives_target.__netdoctor_check__]),
          scenario)


@pytest.mark.docker
def test_switching_target_and_clicking(make_container, broken_host, tmp_path):
    first, second = make_container("first"), make_container("second")

    async def scenario(pilot, messages):
        app = pilot.app
        await until(pilot, finished(messages, 1), what="the first diagnosis")
        await pilot.press("t")
        assert type(app.screen).__name__ == "PickerScreen"
        await pilot.press(*second.name)
        await until(pilot, lambda: app.screen.rows and app.screen.rows[0][0] == second.name, what="the filtered list")
        await pilot.click("#targets", offset=(2, 1))  # a click on the highlighted row picks it
        await until(pilot, lambda: of(messages, "RunFinished") and type(app.screen).__name__ == "DiagnosisScreen"
                    and app.screen.request.targets == (second.name,) and not app.screen.running, what="the second diagnosis")
        assert {target for _, _, target in rows(app)} == {f"container:{second.name}"}
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape", "q")
        await until(pilot, lambda: not app.is_running, what="quit")

    drive(make_app(first.name, host=broken_host, tmp_path=tmp_path), scenario)


def test_picker_without_docker_offers_the_host(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    from netdoctor.tui.app import NetdoctorApp

    async def scenario(pilot, messages):
        await until(pilot, lambda: of(messages, "ContainersUnavailable"), what="Docker's absence")
        assert [row[0] for row in pilot.app.screen.rows] == ["host"]
        assert "not reachable" in str(pilot.app.screen.query_one("#hint").render())

    drive(NetdoctorApp(Request(checks=tuple(CHEAP)), output_dir=tmp_path), scenario)


def test_tui_command_rejects_bad_input_before_starting():
    assert run_cli("tui", "--checks", "bogus")[0] == 2
    code, _, err = run_cli("tui", "--probe", "no-port", "host")
    assert code == 2 and "HOST:PORT" in err
    code, _, err = run_cli("tui", "--host-netns", "ndt-does-not-exist", "host")
    assert code == 2 and "does not exist" in err
