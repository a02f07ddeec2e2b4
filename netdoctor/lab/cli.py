"""`netdoctor lab list | up | down` and `netdoctor demo`. Only click is imported here: the scenarios,
Docker and the checks load when a lab command runs, so `netdoctor --help` stays fast."""

from __future__ import annotations

import os
import time

import click

from netdoctor.errors import BadInput, CannotCheck


def _require_root() -> None:
    if os.geteuid() != 0:
        raise CannotCheck("the lab creates network namespaces, links and containers: run it with sudo")


def _pick(names: tuple[str, ...]):
    from netdoctor.lab.catalog import scenarios

    known = scenarios()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BadInput(f"unknown scenario(s): {', '.join(unknown)} (see `netdoctor lab list`)")
    return known, [known[n] for n in names]


def _waiting() -> None:
    click.echo("another lab run (a test run, the demo, or `lab up`) is busy; waiting for it to finish", err=True)


@click.group()
def lab() -> None:
    """Build real broken topologies on this host (one per fault, plus a healthy one) to try netdoctor on.

    \b
    Everything the lab makes is named ndlab-<scenario>-* and labelled netdoctor.lab=<scenario>;
    `down` removes exactly that. Host-level faults are built in namespaces of their own, never on this host.
    """


@lab.command(name="list")
def list_scenarios() -> None:
    """List the scenarios, what each breaks, and which are up."""
    from netdoctor.lab.catalog import scenarios
    from netdoctor.lab.topology import is_up

    for scenario in scenarios().values():
        state = "up" if is_up(scenario.name) else "-"
        finds = scenario.expect.check if scenario.expect else "(nothing)"
        click.echo(f"{scenario.name:<16} {state:<3} finds: {finds:<16} {scenario.summary}")


@lab.command()
@click.argument("names", nargs=-1, required=True, metavar="SCENARIO...")
@click.option("--nodes", type=int, metavar="N", help="Multi-node scenarios (swarm...): how many nodes (default 3).")
def up(names: tuple[str, ...], nodes: int | None) -> None:
    """Build SCENARIO(s) (rebuilding any leftover first) and print how to diagnose each target."""
    from netdoctor.lab.scenario import as_root
    from netdoctor.lab.topology import LabError, docker_client, exclusive

    _require_root()
    _, chosen = _pick(names)
    if nodes is not None:
        single = [s.name for s in chosen if not s.multi_node]
        if single:
            raise BadInput(f"--nodes applies to multi-node scenarios only, not {', '.join(single)}")
        try:
            for scenario in chosen:
                scenario.set_size(nodes)
        except LabError as exc:
            raise BadInput(f"--nodes {nodes}: {exc}") from None
    if any(s.needs_docker for s in chosen) and docker_client() is None:
        needing = ", ".join(s.name for s in chosen if s.needs_docker)
        raise CannotCheck(f"{needing} need(s) a running Docker engine, and none answers")
    with exclusive(_waiting):
        for scenario in chosen:
            started = time.monotonic()
            try:
                targets = scenario.up()
            except LabError as exc:
                raise CannotCheck(f"could not build {scenario.name} (partial objects removed): {exc}") from None
            click.echo(f"{scenario.name} is up ({time.monotonic() - started:.1f}s): {scenario.summary}")
            for target in targets:
                click.echo(f"  {as_root(target.command)}")
    click.echo(f"remove with: {as_root('netdoctor lab down ' + ' '.join(names))}")


@lab.command()
@click.argument("names", nargs=-1, metavar="[SCENARIO...]")
@click.option("--all", "everything", is_flag=True, help="Remove every scenario, and anything any lab run left behind.")
def down(names: tuple[str, ...], everything: bool) -> None:
    """Remove SCENARIO(s), from any partial state (also after a crash)."""
    from netdoctor.lab.topology import exclusive, leftovers, teardown

    _require_root()
    if bool(names) == everything:
        raise BadInput("name the scenario(s) to remove, or use --all")
    known, chosen = _pick(names)
    with exclusive(_waiting):
        for scenario in known.values() if everything else chosen:
            started = time.monotonic()
            scenario.down()
            click.echo(f"{scenario.name} is down ({time.monotonic() - started:.1f}s)")
        if everything:
            for name in leftovers():
                teardown(name)  # left by a scenario no module lists (renamed, or another netdoctor version)
            remaining = [what for objects in leftovers().values() for what in objects]
            if remaining:
                raise CannotCheck(f"could not remove: {', '.join(remaining)}")


@click.command()
@click.option("--scenario", "names", multiple=True, metavar="NAME",
              help="Run these scenarios instead of the default selection (repeatable).")
def demo(names: tuple[str, ...]) -> None:
    """Build a few real faults, diagnose each with netdoctor, show the findings, and remove them again."""
    from netdoctor.lab.demo import DEMO_SCENARIOS, run_demo

    _require_root()
    _, chosen = _pick(names or DEMO_SCENARIOS)
    raise SystemExit(run_demo(chosen))
