"""Command line: `netdoctor check | list | explain`. Heavy modules are imported inside commands only,
so `netdoctor --help` and `netdoctor list` stay fast (no scapy, textual or docker)."""

from __future__ import annotations

import json
import os
import sys
import time

import click

from netdoctor import __version__
from netdoctor.model import ExitCode, Status


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


def gate(findings, fail_on: str) -> ExitCode:
    threshold = {"warn": Status.WARN.rank, "fail": Status.FAIL.rank, "never": None}[fail_on]
    if threshold is not None and any(f.status.rank >= threshold for f in findings):
        return ExitCode.FINDINGS
    return ExitCode.OK


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
@click.option("--format", "fmt", type=click.Choice(["text", "json", "ndjson"]), default="text", show_default=True,
              help="Report format on stdout (or in --output).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report to this file.")
@click.option("--checks", "only", metavar="ID,ID", help="Run only these checks.")
@click.option("--skip", metavar="ID,ID", help="Do not run these checks.")
@click.option("--timeout", type=click.FloatRange(0.1, 120), default=2.0, show_default=True,
              help="Seconds allowed for each active probe.")
@click.option("--host-netns", metavar="NAME|PATH", help="Treat this network namespace as the host's.")
@click.option("--fail-on", type=click.Choice(["warn", "fail", "never"]), default="fail", show_default=True,
              help="Exit 1 when a finding is at or above this status.")
@click.option("--peer", "peers", multiple=True, metavar="CONTAINER", help="A container the target should reach (repeatable).")
@click.option("--probe", "probes", multiple=True, metavar="HOST:PORT", help="An endpoint to TCP-connect from the target (repeatable).")
@click.option("--resolve", multiple=True, metavar="NAME", help="A name the target should resolve (repeatable).")
def check(targets, all_running, fmt, output, only, skip, timeout, host_netns, fail_on, peers, probes, resolve):
    """Diagnose TARGETS: container names or ids, pid:PID, netns:NAME|PATH, host, self.

    With no target inside a container, `self` is checked; on a host, name one or use --all.
    """
    from netdoctor.context import Options, Session, is_root
    from netdoctor.dockerapi import ContainerNotFound, DockerUnavailable
    from netdoctor.registry import discover
    from netdoctor.report import reporter_for
    from netdoctor.runner import run
    from netdoctor.targets import TargetError, container_target, resolve as resolve_target, running_in_container

    catalogue = discover()
    checks = select_checks(catalogue, only, skip)
    for probe in probes:
        host, sep, port = probe.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise Abort(f"--probe {probe!r} is not HOST:PORT", ExitCode.BAD_INPUT)
    if not targets and not all_running:
        if not running_in_container():
            raise Abort("name a target (a container, pid:PID, netns:NAME, host, self) or use --all", ExitCode.BAD_INPUT)
        targets = ("self",)
    if not is_root():
        raise Abort("netdoctor needs root to enter network namespaces and read the firewall: run it with sudo",
                    ExitCode.CANNOT_RUN)

    options = Options(timeout=timeout, peers=tuple(peers), probes=tuple(probes), resolve=tuple(resolve), host_netns=host_netns)
    try:
        session = Session(options)
        resolved = [resolve_target(spec, session.docker, host_netns) for spec in targets]
        if all_running:
            resolved += [container_target(c) for c in session.docker.containers()]
            if not resolved:
                raise Abort("--all found no running container to check", ExitCode.BAD_INPUT)
    except (TargetError, ContainerNotFound) as exc:
        raise Abort(str(exc), ExitCode.BAD_INPUT) from None
    except DockerUnavailable as exc:
        raise Abort(f"cannot check containers: {exc}", ExitCode.CANNOT_RUN) from None

    stream = open(output, "w") if output else sys.stdout
    try:
        reporter = reporter_for(fmt, stream, color=fmt == "text" and use_color(stream))
        reporter.start(resolved)
        started = time.monotonic()
        for finding in run(catalogue, checks, resolved, session, explicit=bool(only)):
            reporter.add(finding)
        reporter.finish((time.monotonic() - started) * 1000)
    finally:
        session.close()
        if output:
            stream.close()
    sys.exit(int(gate(reporter.findings, fail_on)))


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
