"""Command line: `netdoctor check | tui | list | explain | schema | lab | demo`. Heavy modules are imported inside commands only,
so `netdoctor --help` and `netdoctor list` stay fast (no scapy, textual or docker)."""

from __future__ import annotations

import json
import os
import sys
import time

import click

from netdoctor import __version__
from netdoctor.gate import FAIL_ON
from netdoctor.model import ExitCode, Status
from netdoctor.report import FORMATS


class Abort(click.ClickException):
    """One clear sentence to stderr and a netdoctor exit code; never a traceback."""

    def __init__(self, message: str, code: ExitCode):
        super().__init__(message)
        self.exit_code = int(code)

    def show(self, file=None) -> None:
        click.echo(f"netdoctor: {self.message}", err=True)


def _ids(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def select_checks(catalogue, only: str | None, skip: str | None):
    wanted, unwanted = _ids(only), _ids(skip)
    unknown = [i for i in wanted + unwanted if catalogue.get(i) is None]
    if unknown:
        raise Abort(f"unknown check id(s): {', '.join(unknown)} (see `netdoctor list`)", ExitCode.BAD_INPUT)
    chosen = [catalogue.get(i) for i in wanted] if wanted else list(catalogue.checks)
    return [c for c in chosen if c.id not in unwanted]


def parse_reports(specs: tuple[str, ...]) -> list[tuple[str, str]]:
    """--report FORMAT=PATH, repeatable: (format, path) pairs."""
    outputs = []
    for spec in specs:
        fmt, sep, path = spec.partition("=")
        if not sep or not path or fmt not in FORMATS:
            raise Abort(f"--report {spec!r} is not FORMAT=PATH with FORMAT one of {', '.join(FORMATS)}", ExitCode.BAD_INPUT)
        outputs.append((fmt, path))
    return outputs


def open_reporters(outputs: list[tuple[str, str | None]], gate):
    """One reporter per output (path None = stdout); returns the Tee and the files to close."""
    from netdoctor.report import Tee, reporter_for

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
                raise Abort(f"cannot write the report {path}: {exc.strerror}", ExitCode.BAD_INPUT) from None
            files.append(stream)
        reporters.append(reporter_for(fmt, stream, color=fmt == "text" and use_color(stream), gate=gate))
    return Tee(reporters), files


def could_not_check(message: str, outputs: list[tuple[str, str | None]], gate) -> Abort:
    """Exit 3, and say so in every machine-readable output too, so a CI report never looks like a pass:
    one `error` finding from netdoctor itself (the terminal's text gets the stderr line only)."""
    from netdoctor.gate import Gate
    from netdoctor.model import Finding, Severity

    machine = [(fmt, path) for fmt, path in outputs if path is not None or fmt != "text"]
    if machine:
        # the error must show as a failure even under --fail-on never: the exit code is 3 regardless
        reporter, files = open_reporters(machine, Gate("fail" if gate.fail_on == "never" else gate.fail_on, gate.config_path))
        reporter.start([])
        reporter.add(Finding(check="netdoctor", target="netdoctor", status=Status.ERROR, severity=Severity.CRITICAL,
                             title=f"could not check: {message}"))
        reporter.finish(0.0)
        for f in files:
            f.close()
    return Abort(f"COULD NOT CHECK — {message} (exit 3: nothing was checked; this is not a pass)", ExitCode.CANNOT_RUN)


def use_color(stream) -> bool:
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netdoctor")
def main() -> None:
    """netdoctor: diagnose a Docker container's network, read-only, with evidence and fixes.

    \b
    Exit codes: 0 healthy (nothing at or above --fail-on), 1 findings at or above --fail-on,
                2 bad input (unknown target or flag), 3 could not check (no Docker, no privilege).
    """


@main.command()
@click.argument("targets", nargs=-1)
@click.option("--all", "all_running", is_flag=True, help="Check every running container.")
@click.option("--label", "labels", multiple=True, metavar="KEY[=VALUE]",
              help="Check running containers with this label (repeatable; all must match).")
@click.option("--compose-project", metavar="NAME", help="Check the running containers of this Compose project.")
@click.option("--network", "networks", multiple=True, metavar="NAME",
              help="Check every running container on this Docker network (repeatable).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Report format on stdout (or in --output).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report to this file.")
@click.option("--report", "reports", multiple=True, metavar="FORMAT=PATH",
              help="Also write a report in FORMAT to PATH (repeatable), e.g. junit=netdoctor.xml.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="PATH",
              help="Config file (defaults, accepted findings). Default: .netdoctor.yml or pyproject.toml "
                   "[tool.netdoctor], found from the working directory up.")
@click.option("--checks", "only", metavar="ID,ID", help="Run only these checks.")
@click.option("--skip", metavar="ID,ID", help="Do not run these checks.")
@click.option("--timeout", type=click.FloatRange(0.1, 120),
              help="Seconds allowed for each active probe.  [default: 2, or the config's]")
@click.option("--host-netns", metavar="NAME|PATH", help="Treat this network namespace as the host's.")
@click.option("--node", metavar="NAME", help="A lab node (`netdoctor lab up swarm`): use its Docker engine and its "
              "namespace as the host.")
@click.option("--fail-on", type=click.Choice(FAIL_ON),
              help="Exit 1 when a finding not accepted by the config is at or above this status.  "
                   "[default: fail, or the config's]")
@click.option("--peer", "peers", multiple=True, metavar="CONTAINER[:PORT]",
              help="A container the target should reach, optionally on PORT (repeatable).")
@click.option("--probe", "probes", multiple=True, metavar="HOST:PORT", help="An endpoint to TCP-connect from the target (repeatable).")
@click.option("--resolve", multiple=True, metavar="NAME", help="A name the target should resolve (repeatable).")
def check(targets, all_running, labels, compose_project, networks, fmt, output, reports, config_path, only, skip,
          timeout, host_netns, node, fail_on, peers, probes, resolve):
    """Diagnose TARGETS: container names or ids, pid:PID, netns:NAME|PATH, host, self.

    With no target inside a container, `self` is checked; on a host, name one, or select containers with
    --all, --label, --compose-project or --network. Settings not given here come from the config file.
    """
    from pathlib import Path

    from netdoctor.config import ConfigError, discover as discover_config, load as load_config
    from netdoctor.context import Options, Session, bad_probe, is_root
    from netdoctor.dockerapi import ContainerNotFound, DockerSession, DockerUnavailable
    from netdoctor.gate import Gate
    from netdoctor.registry import discover
    from netdoctor.runner import run
    from netdoctor.selection import SelectionError, select as select_containers
    from netdoctor.targets import TargetError, container_target, resolve as resolve_target, running_in_container

    try:
        config = load_config(Path(config_path) if config_path else discover_config(Path.cwd()))
    except ConfigError as exc:
        raise Abort(str(exc), ExitCode.BAD_INPUT) from None
    defaults = config.defaults  # a flag given on the command line replaces the config's value
    only = only if only is not None else ",".join(defaults.get("checks", ())) or None
    skip = skip if skip is not None else ",".join(defaults.get("skip", ())) or None
    timeout = timeout if timeout is not None else defaults.get("timeout", 2.0)
    gate = Gate(fail_on or defaults.get("fail-on", "fail"), config.path)
    peers, probes, resolve = (given or tuple(defaults.get(key, ())) for given, key in
                              ((peers, "peers"), (probes, "probes"), (resolve, "resolve")))
    catalogue = discover()
    checks = select_checks(catalogue, only, skip)
    unknown = sorted({a.check for a in config.accept if catalogue.get(a.check) is None})
    if unknown:
        raise Abort(f"{config.path}: accept names unknown check id(s) {', '.join(unknown)} (see `netdoctor list`)",
                    ExitCode.BAD_INPUT)
    for probe in probes:
        if bad_probe(probe):
            raise Abort(f"--probe {probe!r} is not HOST:PORT", ExitCode.BAD_INPUT)
    outputs = [(fmt, output)] + parse_reports(reports)
    selecting = bool(all_running or labels or compose_project or networks)
    if not targets and not selecting:
        if not running_in_container():
            raise Abort("name a target (a container, pid:PID, netns:NAME, host, self) or select containers with "
                        "--all, --label, --compose-project or --network", ExitCode.BAD_INPUT)
        targets = ("self",)
    if not is_root():
        raise could_not_check("netdoctor needs root to enter network namespaces and read the firewall: run it with sudo",
                              outputs, gate)

    docker_host = None
    if node:
        from netdoctor.lab.nodes import UnknownNode, node as lab_node

        try:
            entry = lab_node(node)
        except UnknownNode as exc:
            raise Abort(str(exc), ExitCode.BAD_INPUT) from None
        docker_host, host_netns = entry["docker_host"], host_netns or entry["netns"]
    options = Options(timeout=timeout, peers=tuple(peers), probes=tuple(probes), resolve=tuple(resolve), host_netns=host_netns)
    try:
        session = Session(options, DockerSession(docker_host))
        resolved = [resolve_target(spec, session.docker, host_netns) for spec in targets]
        if selecting:
            resolved += [container_target(c) for c in select_containers(session.docker, labels, compose_project, networks)]
    except (TargetError, ContainerNotFound, SelectionError) as exc:
        raise Abort(str(exc), ExitCode.BAD_INPUT) from None
    except DockerUnavailable as exc:
        raise could_not_check(f"cannot check containers: {exc}", outputs, gate) from None
    resolved = list({t.label: t for t in resolved}.values())  # named and selected too: checked once

    reporter, files = open_reporters(outputs, gate)
    try:
        reporter.start(resolved)
        started = time.monotonic()
        for finding in run(catalogue, checks, resolved, session, explicit=bool(only)):
            reporter.add(config.apply(finding))
        duration_ms = (time.monotonic() - started) * 1000
        reporter.finish(duration_ms)
    finally:
        session.close()
        for f in files:
            f.close()
    if fmt != "text" or output:  # the text report on stdout ends with the verdict already
        click.echo(gate.verdict(reporter.findings, len(resolved), duration_ms), err=True)
    sys.exit(int(gate.exit_code(reporter.findings)))


@main.command()
@click.argument("targets", nargs=-1)
@click.option("--checks", "only", metavar="ID,ID", help="Run only these checks.")
@click.option("--skip", metavar="ID,ID", help="Do not run these checks.")
@click.option("--timeout", type=click.FloatRange(0.1, 120), default=2.0, show_default=True,
              help="Seconds allowed for each active probe.")
@click.option("--host-netns", metavar="NAME|PATH", help="Treat this network namespace as the host's.")
@click.option("--peer", "peers", multiple=True, metavar="CONTAINER[:PORT]",
              help="A container the target should reach, optionally on PORT (repeatable).")
@click.option("--probe", "probes", multiple=True, metavar="HOST:PORT", help="An endpoint to TCP-connect from the target (repeatable).")
@click.option("--resolve", multiple=True, metavar="NAME", help="A name the target should resolve (repeatable).")
def tui(targets, only, skip, timeout, host_netns, peers, probes, resolve):
    """Explore interactively: pick a target (or name TARGETS to start at once), watch findings arrive,
    open one for its evidence and fix. Keys are in the footer; ? shows them all."""
    from netdoctor.context import Options, bad_probe, is_root
    from netdoctor.registry import discover
    from netdoctor.targets import running_in_container

    checks = select_checks(discover(), only, skip)
    if not checks:
        raise Abort("--skip leaves no check to run", ExitCode.BAD_INPUT)
    if not targets and running_in_container():
        targets = ("self",)  # as `check` does: in a container, the namespace it runs in (or joined)
    wrong = [p for p in probes if bad_probe(p)]
    if wrong:
        raise Abort(f"--probe {wrong[0]!r} is not HOST:PORT", ExitCode.BAD_INPUT)
    if host_netns:
        from netdoctor.targets import TargetError, netns_path

        try:
            netns_path(host_netns)
        except TargetError as exc:
            raise Abort(str(exc), ExitCode.BAD_INPUT) from None
    if not is_root():
        raise Abort("netdoctor needs root to enter network namespaces and read the firewall: run it with sudo",
                    ExitCode.CANNOT_RUN)
    from netdoctor.tui.app import NetdoctorApp  # Textual only here: the rest of the CLI starts fast

    options = Options(timeout=timeout, peers=tuple(peers), probes=tuple(probes), resolve=tuple(resolve), host_netns=host_netns)
    app = NetdoctorApp(targets, options, [c.id for c in checks], explicit=bool(only))
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
        raise Abort(f"unknown check id {check_id!r} (see `netdoctor list`)", ExitCode.BAD_INPUT)
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
