"""`netdoctor demo`: build a few real faults, diagnose each in-process (runner + text reporter), and
always remove them again, also on Ctrl-C, SIGTERM or an error."""

from __future__ import annotations

import signal
import sys
import time
from contextlib import contextmanager

import click

from netdoctor.model import Finding, Status
from netdoctor.lab.scenario import LabTarget, Scenario, as_root
from netdoctor.lab.topology import LabError, exclusive

DEMO_SCENARIOS = ("ip_forward", "dns", "ports", "icc")


def diagnose(target: LabTarget) -> list[Finding]:
    """Diagnose `target` in this process exactly as `netdoctor check <spec> <args...>` would (its text report
    goes to stdout) and return the findings, for the demo to judge."""
    from netdoctor.cli import build_request, check as check_command
    from netdoctor.core import diagnose as run_diagnosis
    from netdoctor.report import use_color
    from netdoctor.report.text import TextReporter

    # the scenario's printed command line, parsed by the command's own options into a Request
    with check_command.make_context("netdoctor check", [target.spec, *target.args]) as context:
        params = {k: v for k, v in context.params.items() if k not in ("fmt", "output", "reports")}
    with run_diagnosis(build_request(**params)) as diagnosis:
        reporter = TextReporter(sys.stdout, use_color(sys.stdout), diagnosis.gate)
        reporter.start(diagnosis.targets)
        for finding in diagnosis:
            reporter.add(finding)
        reporter.finish(diagnosis.duration_ms)
    return reporter.findings


@contextmanager
def _sigterm_interrupts():
    """SIGTERM (a closed terminal, `kill`) unwinds like Ctrl-C, so the teardown in `finally` runs."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _teardown(scenarios: list[Scenario], echo) -> None:
    """Remove every demo scenario; a second Ctrl-C must not leave half a lab behind."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        started = time.monotonic()
        for scenario in scenarios:
            scenario.down()
        echo(f"Removed everything the demo built ({time.monotonic() - started:.1f}s).")
    finally:
        signal.signal(signal.SIGINT, previous)


def _verdict(scenario: Scenario, findings: list[Finding], echo) -> bool:
    """Say whether the planted fault was found, and which other findings are not the demo's doing."""
    check = scenario.expect.check
    found = any(f.check == check and f.status.value in scenario.expect.statuses for f in findings)
    if found:
        echo(f"-> the planted fault was found by the {check} check.", fg="green", bold=True)
    else:
        echo(f"-> the {check} check did NOT find the planted fault.", fg="red", bold=True)
    planted = {f.id for f in findings if f.check == check}
    others = [f for f in findings if f.check != check and f.status in (Status.WARN, Status.FAIL)]
    # the root-cause links (netdoctor/causes.py) tell which of the others the planted fault explains
    following = sorted({f.check for f in others if f.caused_by in planted})
    independent = sorted({f.check for f in others if f.caused_by not in planted})
    if following:
        echo(f"   Also reported: {', '.join(following)}, because of the planted fault (shown under it as consequences).")
    if independent:
        echo(f"   Also reported: {', '.join(independent)}. The demo did not plant these: they are true of this machine "
             "itself.")
    return found


def _show(number: int, total: int, scenario: Scenario, echo) -> bool:
    """Build one scenario and diagnose each of its targets; True when the planted fault was found on all."""
    echo()
    echo(f"== {number}/{total} {scenario.name} ==", bold=True)
    echo(f"Broken on purpose: {scenario.summary}")
    built = time.monotonic()
    targets = scenario.up()
    echo(f"(built in {time.monotonic() - built:.1f}s)")
    hits = []
    for target in targets:
        echo()
        echo(f"$ {as_root(target.command)}", bold=True)
        findings = diagnose(target)
        if scenario.expect:
            hits.append(_verdict(scenario, findings, echo))
    return all(hits)


def run_demo(scenarios: list[Scenario]) -> int:
    """Returns the exit code: 0 when netdoctor found every planted fault, 1 when it missed one, 130 on Ctrl-C."""
    from netdoctor.report import use_color

    color = use_color(sys.stdout)

    def echo(text: str = "", **style) -> None:
        click.echo(click.style(text, **style) if color and style else text)

    started = time.monotonic()
    found: dict[str, bool] = {}
    echo("netdoctor demo: builds real network faults on this machine (in namespaces and containers of its own),")
    echo("lets netdoctor diagnose each one as a user would, and removes everything again.")
    try:
        with _sigterm_interrupts(), exclusive(lambda: echo("Waiting for another lab run (tests, `lab up`) to finish...")):
            try:
                for number, scenario in enumerate(scenarios, 1):
                    found[scenario.name] = _show(number, len(scenarios), scenario, echo)
            finally:
                echo()
                _teardown(scenarios, echo)
    except KeyboardInterrupt:
        echo("Interrupted.")
        return 130
    except LabError as exc:  # teardown has run; say why in one sentence instead of a traceback
        echo(f"The demo could not build its lab: {exc}", bold=True)
        return 3
    caught = [name for name, ok in found.items() if ok]
    missed = [name for name, ok in found.items() if not ok]
    echo(f"Demo done in {time.monotonic() - started:.1f}s: netdoctor found the planted fault in "
         f"{len(caught)} of {len(found)} scenarios" + (f" (missed: {', '.join(missed)})." if missed else "."),
         bold=True)
    echo("Try one yourself: " + "; ".join(as_root(f"netdoctor lab {verb}") for verb in ("list", "up SCENARIO", "down SCENARIO")))
    return 0 if not missed else 1
