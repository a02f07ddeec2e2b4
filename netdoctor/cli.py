"""Command line: `netdoctor check | tui | list | explain | schema | lab | demo`. Heavy modules are imported inside commands only,
so `netdoctor --help` and `netdoctor list` stay fast (no scapy, textual or docker)."""

from __future__ import annotations

import errno
import os
import sys

import click

from netdoctor import __version__
from netdoctor.errors import FAIL_ON, BadInput, CannotCheck, NetdoctorError
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


def reporters_for(outputs, gate):
    """One reporter per opened output, fed together through a Tee."""
    from netdoctor.report import Tee, reporter_for, use_color

    return Tee([reporter_for(fmt, sink, color=fmt == "text" and use_color(sink), gate=gate)
                for (fmt, _), sink in zip(outputs.destinations, outputs.sinks)])


def could_not_check(exc: CannotCheck, destinations: list[tuple[str, str | None]], gate) -> CannotCheck:
    """Exit 3, and say so in every machine-readable output too, so a CI report never looks like a pass:
    one `error` finding from netdoctor itself (the terminal's text gets the stderr line only)."""
    from dataclasses import replace

    from netdoctor.gate import Gate
    from netdoctor.model import Severity, about_run
    from netdoctor.report.output import OutputFailed, Outputs

    machine = [(fmt, path) for fmt, path in destinations if path is not None or fmt != "text"]
    unwritable = ""
    if machine:
        # the error must show as a failure even under --fail-on never: the exit code is 3 regardless
        try:
            reports = Outputs(machine)
            reporter = reporters_for(reports, Gate("fail" if gate.fail_on == "never" else gate.fail_on, gate.config_path))
            reporter.start([])
            reporter.add(replace(about_run(f"could not check: {exc}", key="could-not-check"), severity=Severity.CRITICAL))
            reporter.finish(0.0)
            reports.commit()
        except OutputFailed as failed:
            unwritable = f"; and {failed}"
    return CannotCheck(f"COULD NOT CHECK — {exc} (exit 3: nothing was checked; this is not a pass){unwritable}")


# 128 + the signal's number, as a shell reports a process the signal ended: Ctrl-C (or SIGTERM, which
# netdoctor treats alike) 130, a reader that stopped reading (SIGPIPE) 141.
INTERRUPTED = 130
READER_GONE = 141


def _reopen_closed_standard_streams() -> None:
    """A standard stream closed by the caller (`>&-`) gets /dev/null on its descriptor, so that no file
    netdoctor opens later takes descriptor 0, 1 or 2 by accident (Python sets sys.stdout to None then,
    which the report's output notices)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class NetdoctorGroup(click.Group):
    """Turns netdoctor's own errors into one sentence on stderr and their exit code, never a traceback:
    bad input 2, could not check 3, interrupted (Ctrl-C, SIGTERM) 130, stdout's reader gone 141."""

    def invoke(self, ctx: click.Context):
        import signal
        import threading

        _reopen_closed_standard_streams()
        if sys.stdout is not None and hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(errors="replace")  # an ASCII-only locale gets "?" for "—", not a crash
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
        try:
            return super().invoke(ctx)
        except NetdoctorError as exc:
            click.echo(f"netdoctor: {exc}", err=True)
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            click.echo("netdoctor: interrupted: no report file was written (any already there is unchanged)", err=True)
            ctx.exit(INTERRUPTED)
        except BrokenPipeError:
            from netdoctor.report.output import silence_stdout

            silence_stdout()  # like any command whose reader left (`| head -1`): quiet, exit 128+SIGPIPE
            ctx.exit(READER_GONE)
        except (click.exceptions.Exit, click.exceptions.ClickException, click.exceptions.Abort):
            raise
        except Exception as exc:
            if _stdout_failed(exc):
                ctx.exit(int(CannotCheck.exit_code))
            # a bug of netdoctor's: one line that says where, and never a pass
            import traceback

            where = traceback.extract_tb(exc.__traceback__)[-1]
            click.echo(f"netdoctor: internal error, nothing was judged: {type(exc).__name__}: {exc} "
                       f"(at {where.filename}:{where.lineno}); please report it", err=True)
            ctx.exit(int(CannotCheck.exit_code))
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous)

    def main(self, *args, **kwargs):
        try:
            return super().main(*args, **kwargs)
        except OSError as exc:  # while click itself writes, e.g. `netdoctor --help > /dev/full`
            if not _stdout_failed(exc):
                raise
            sys.exit(int(CannotCheck.exit_code))


def _stdout_failed(exc: Exception) -> bool:
    """A write to standard output failed (`> /dev/full`, a dead device): say so, quiet the stream, True."""
    if not (isinstance(exc, OSError) and exc.filename is None and exc.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT)):
        return False
    from netdoctor.report.output import silence_stdout

    silence_stdout()  # what is still buffered must not fail again when the interpreter exits
    click.echo(f"netdoctor: cannot write to standard output: {exc.strerror}", err=True)
    return True


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
                     help="A container, service task or service the target should reach (on any Swarm node), "
                          "optionally on PORT (repeatable)."),
        click.option("--probe", "probes", multiple=True, metavar="HOST:PORT",
                     help="An endpoint to TCP-connect from the target (repeatable; IPv6 as [ADDR]:PORT)."),
        click.option("--resolve", multiple=True, metavar="NAME", help="A name the target should resolve (repeatable)."),
        click.option("--swarm", is_flag=True, help="On a Swarm manager: diagnose every node, each by netdoctor's image "
                                                   "run there through Swarm; one report, targets labelled NODE/..."),
        click.option("-H", "--host", "engine_host", metavar="URL",
                     help="Run netdoctor's image on this engine (unix://, tcp://, ssh://) and report its findings."),
        click.option("--context", metavar="NAME", help="Like -H, for the engine of this Docker context."),
        click.option("--image", metavar="IMAGE", help="netdoctor's image for --swarm and -H/--context "
                                                     "[default: $NETDOCTOR_IMAGE, else netdoctor:latest]"),
        click.option("--deadline", type=float, help="With --swarm and -H/--context: seconds a node has to report "
                                                    "before it is an error finding (5 to 3600).  [default: 60]"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def build_request(targets, all_running, labels, compose_project, networks, config_path, only, skip, timeout,
                  host_netns, node, peers, probes, resolve, swarm, engine_host, context, image, deadline, fail_on=None):
    from netdoctor.request import build

    return build(targets=targets, all=all_running, labels=labels, compose_project=compose_project,
                 networks=networks, config_path=config_path, checks=only, skip=skip, timeout=timeout,
                 host_netns=host_netns, node=node, fail_on=fail_on, peers=peers, probes=probes, resolve=resolve,
                 swarm=swarm, host=engine_host, context=context, image=image, deadline=deadline)


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
    from netdoctor.report.output import Outputs, validate_destinations

    request = build_request(fail_on=fail_on, **selection)
    destinations = [(fmt, output)] + parse_reports(reports)
    validate_destinations(destinations)
    try:
        diagnosis = diagnose(request)
    except CannotCheck as exc:
        raise could_not_check(exc, destinations, Gate(request.fail_on, request.config.path)) from None
    with diagnosis:
        outputs = Outputs(destinations)  # before any check runs: a path that cannot be written costs nothing
        try:
            reporter = reporters_for(outputs, diagnosis.gate)
            reporter.start(diagnosis.targets)
            for finding in diagnosis:
                reporter.add(finding)
            reporter.finish(diagnosis.duration_ms)
            outputs.commit()
        except BaseException:
            outputs.discard()  # interrupted or failed: every report already there stays as it was
            raise
    gate, labels = diagnosis.gate, [t.label for t in diagnosis.targets]
    if fmt != "text" or output or outputs.reader_gone:  # the text report on stdout ends with the verdict already
        click.echo(gate.verdict(reporter.findings, labels, diagnosis.duration_ms), err=True)
    if outputs.reader_gone:
        sys.exit(READER_GONE)  # the diagnosis is complete, but whoever read stdout did not get all of it
    sys.exit(int(gate.exit_code(reporter.findings, labels)))


@main.command()
@diagnosis_options
def tui(**selection):
    """Explore interactively: pick a target (or name TARGETS to start at once), watch findings arrive,
    open one for its evidence and fix. Keys are in the footer; ? shows them all."""
    from netdoctor.core import select_checks
    from netdoctor.registry import discover

    request = build_request(**selection)
    select_checks(discover(), request)  # bad ids are bad input before the screen opens
    not_a_terminal = [name for name, stream in (("standard input", sys.stdin), ("standard output", sys.stdout))
                      if stream is None or not stream.isatty()]
    if not_a_terminal:  # a full-screen interface drawn into a pipe or file would wait for keys that never come
        raise BadInput(f"netdoctor tui needs a terminal, and {' and '.join(not_a_terminal)} "
                       f"{'is' if len(not_a_terminal) == 1 else 'are'} not one: use `netdoctor check` in scripts and pipes")
    if os.environ.get("TERM") == "dumb":
        raise BadInput("netdoctor tui needs a terminal that can move the cursor, and TERM=dumb says this one cannot: "
                       "use `netdoctor check`, or set TERM (e.g. TERM=xterm-256color)")
    if os.geteuid() != 0:
        raise CannotCheck("netdoctor needs root to enter network namespaces and read the firewall: run it with sudo")
    from netdoctor.tui.app import NetdoctorApp  # Textual only here: the rest of the CLI starts fast

    app = NetdoctorApp(request)
    try:
        app.run()
    finally:
        if request.swarm or request.remote:  # what --swarm / -H started on other engines goes, also mid-run
            from netdoctor.swarm.cluster import close_all

            close_all()
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
        import json

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
    from netdoctor.causes import explain as causal_rules

    rules = causal_rules(info.id)
    if rules:
        click.echo("\n" + rules)


@main.command()
def schema():
    """Print the JSON Schema of `check --format json` (NDJSON lines under $defs)."""
    import json

    from netdoctor.report import schema as report_schema

    click.echo(json.dumps(report_schema(), indent=2))


from netdoctor.lab.cli import demo, lab  # noqa: E402  (click only: scenarios and Docker load when a lab command runs)
from netdoctor.swarm.cli import agent  # noqa: E402  (click only)

main.add_command(lab)
main.add_command(demo)
main.add_command(agent)
