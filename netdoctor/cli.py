"""Command line: `netdoctor check | tui | list | explain | schema | lab | demo`. Heavy modules are imported inside commands only,
so `netdoctor --help` and `netdoctor list` stay fast (no scapy, textual or docker)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace

import click

from netdoctor import __version__
from netdoctor.errors import BadInput, CannotCheck, NetdoctorError
from netdoctor.gate import FAIL_ON
from netdoctor.report import FORMATS


def parse_reports(specs: tuple[str, ...]) -> list[tuple[str, str]]:
    """--report FORMAT=PATH, repeatable: (format, path) pairs."""
    outputs = []
    for spec in specs:
        fmt, sep, path = spec.partition("=")
        if not sep or not path or fmt not in FORMATS:
            raise BadInput(f"--report {spec!r} is not FORMAT=PATH with FORMAT one of {', '.join(FORMATS)}")
        outputs.append((fmt, path))
    return outputs


def open_reporters(outputs: list[tuple[str, str | None]], gate):
    """One reporter per output (path None = stdout); returns the Tee and the files to close."""
    from netdoctor.report import Tee, reporter_for, use_color

    reporters, files = [], []
    for fmt, path in outputs:
        if path is None:
            stream = sys.stdout
        else:
            try:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                stream = open(path, "w")
            except OSError as exc:
                for f in files:
                    f.close()
                raise BadInput(f"cannot write the report {path}: {exc.strerror}") from None
            files.append(stream)
        reporters.append(reporter_for(fmt, stream, color=fmt == "text" and use_color(stream), gate=gate))
    return Tee(reporters), files


def could_not_check(exc: CannotCheck, outputs: list[tuple[str, str | None]], gate) -> CannotCheck:
    """Exit 3, and say so in every machine-readable output too, so a CI report never looks like a pass:
    one `error` finding from netdoctor itself (the terminal's text gets the stderr line only)."""
    from netdoctor.gate import Gate
    from netdoctor.model import Severity, about_run

    machine = [(fmt, path) for fmt, path in outputs if path is not None or fmt != "text"]
    if machine:
        # the error must show as a failure even under --fail-on never: the exit code is 3 regardless
        reporter, files = open_reporters(machine, Gate("fail" if gate.fail_on == "never" else gate.fail_on, gate.config_path))
        reporter.start([])
        reporter.add(replace(about_run(f"could not check: {exc}", key="could-not-check"), severity=Severity.CRITICAL))
        reporter.finish(0.0)
        for f in files:
            f.close()
    return CannotCheck(f"COULD NOT CHECK — {exc} (exit 3: nothing was checked; this is not a pass)")


class NetdoctorGroup(click.Group):
    """Turns netdoctor's own errors into one sentence on stderr and their exit code, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NetdoctorError as exc:
            click.echo(f"netdoctor: {exc}", err=True)
            ctx.exit(int(exc.exit_code))


@click.group(cls=NetdoctorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netdoctor")
def main() -> None:
    """netdoctor: diagnose a Docker container's network, read-only, with evidence and fixes.

    \b
    Exit codes: 0 healthy (nothing at or above --fail-on), 1 findings at or above --fail-on,
                2 bad input (unknown target or flag), 3 could not check (no Docker, no privilege).
    """


def diagnosis_options(command):
    """What to diagnose and how: the options `check` and `tui` share, turned into a Request by
    netdoctor.request.build (which also fills in the config file's defaults)."""
    options = [
        click.argument("targets", nargs=-1),
        click.option("--all", "all_running", is_flag=True, help="Check every running container."),
        click.option("--label", "labels", multiple=True, metavar="KEY[=VALUE]",
                     help="Check running containers with this label (repeatable; all must match)."),
        click.option("--compose-project", metavar="NAME", help="Check the running containers of this Compose project."),
        click.option("--network", "networks", multiple=True, metavar="NAME",
                     help="Check every running container on this Docker network (repeatable)."),
        click.option("--config", "config_path", metavar="PATH",
                     help="Config file (defaults, accepted findings). Default: .netdoctor.yml or pyproject.toml "
                          "[tool.netdoctor], found from the working directory up."),
        click.option("--checks", "only", metavar="ID,ID", help="Run only these checks."),
        click.option("--skip", metavar="ID,ID", help="Do not run these checks."),
        click.option("--timeout", type=float, help="Seconds allowed for each active probe (0.1 to 120).  "
                                                   "[default: 2, or the config's]"),
        click.option("--host-netns", metavar="NAME|PATH", help="Treat this network namespace as the host's."),
        click.option("--node", metavar="NAME", help="A lab node (`netdoctor lab up swarm`): use its Docker engine and "
                                                   "its namespace as the host."),
        click.option("--peer", "peers", multiple=True, metavar="CONTAINER[:PORT]",
                     help="A container the target should reach, optionally on PORT (repeatable)."),
        click.option("--probe", "probes", multiple=True, metavar="HOST:PORT",
                     help="An endpoint to TCP-connect from the target (repeatable; IPv6 as [ADDR]:PORT)."),
        click.option("--resolve", multiple=True, metavar="NAME", help="A name the target should resolve (repeatable)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def build_request(targets, all_running, labels, compose_project, networks, config_path, only, skip, timeout,
                  host_netns, node, peers, probes, resolve, fail_on=None):
    from netdoctor.request import build

    return build(targets=targets, all=all_running, labels=labels, compose_project=compose_project,
                 networks=networks, config_path=config_path, checks=only, skip=skip, timeout=timeout,
                 host_netns=host_netns, node=node, fail_on=fail_on, peers=peers, probes=probes, resolve=resolve)


@main.command()
@diagnosis_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Report format on stdout (or in --output).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report to this file.")
@click.option("--report", "reports", multiple=True, metavar="FORMAT=PATH",
              help="Also write a report in FORMAT to PATH (repeatable), e.g. junit=netdoctor.xml.")
@click.option("--fail-on", type=click.Choice(FAIL_ON),
              help="Exit 1 when a finding not accepted by the config is at or above this status.  "
                   "[default: fail, or the config's]")
def check(fmt, output, reports, fail_on, **selection):
    """Diagnose TARGETS: container names or ids, pid:PID, netns:NAME|PATH, host, self.

    With no target inside a container, `self` is checked; on a host, name one, or select containers with
    --all, --label, --compose-project or --network. Settings not given here come from the config file.
    """
    from netdoctor.core import diagnose
    from netdoctor.gate import Gate

    request = build_request(fail_on=fail_on, **selection)
    outputs = [(fmt, output)] + parse_reports(reports)
    try:
        diagnosis = diagnose(request)
    except CannotCheck as exc:
        raise could_not_check(exc, outputs, Gate(request.fail_on, request.config.path)) from None
    with diagnosis:
        reporter, files = open_reporters(outputs, diagnosis.gate)
        try:
            reporter.start(diagnosis.targets)
            for finding in diagnosis:
                reporter.add(finding)
            reporter.finish(diagnosis.duration_ms)
        finally:
            for f in files:
                f.close()
    gate = diagnosis.gate
    if fmt != "text" or output:  # the text report on stdout ends with the verdict already
        click.echo(gate.verdict(reporter.findings, len(diagnosis.targets), diagnosis.duration_ms), err=True)
    sys.exit(int(gate.exit_code(reporter.findings)))


@main.command()
@diagnosis_options
def tui(**selection):
    """Explore interactively: pick a target (or name TARGETS to start at once), watch findings arrive,
    open one for its evidence and fix. Keys are in the footer; ? shows them all."""
    from netdoctor.core import select_checks
    from netdoctor.registry import discover

    request = build_request(**selection)
    select_checks(discover(), request)  # bad ids are bad input before the screen opens
    if os.geteuid() != 0:
        raise CannotCheck("netdoctor needs root to enter network namespaces and read the firewall: run it with sudo")
    from netdoctor.tui.app import NetdoctorApp  # Textual only here: the rest of the CLI starts fast

    app = NetdoctorApp(request)
    app.run()
    # Quitting mid-run abandons probes that may wait up to --timeout, and Python joins pool threads at exit.
    # netdoctor changed nothing, so nothing is left to finish: leave at once.
    sys.stdout.flush()
    os._exit(app.return_code or 0)


@main.command(name="list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_checks(fmt):
    """List the available checks."""
    from netdoctor.registry import discover

    catalogue = discover()
    if fmt == "json":
        click.echo(json.dumps([c.to_dict() for c in catalogue.checks], indent=2))
        return
    for info in catalogue.checks:
        click.echo(f"{info.id:<16} {info.scope.value:<10} {info.severity.value:<8} {info.title}")
    for error in catalogue.errors:
        click.echo(f"{'(broken)':<16} {error.source}: {error.message}", err=True)


@main.command()
@click.argument("check_id")
def explain(check_id):
    """Explain what a check looks at, why it matters and how to fix what it finds."""
    from netdoctor.registry import discover

    info = discover().get(check_id)
    if info is None:
        raise BadInput(f"unknown check id {check_id!r} (see `netdoctor list`)")
    needs = ", ".join(sorted(n.value for n in info.needs)) or "nothing"
    click.echo(f"{info.id}: {info.title}\n  scope: {info.scope.value}   severity: {info.severity.value}   needs: {needs}\n")
    click.echo(info.explanation)


@main.command()
def schema():
    """Print the JSON Schema of `check --format json` (NDJSON lines under $defs)."""
    from netdoctor.report import schema as report_schema

    click.echo(json.dumps(report_schema(), indent=2))


from netdoctor.lab.cli import demo, lab  # noqa: E402  (click only: scenarios and Docker load when a lab command runs)

main.add_command(lab)
main.add_command(demo)
