"""`netdoctor agent ...`: what netdoctor's image runs on a node for `check --swarm` and `check -H` (hidden from
--help: people run `check`, netdoctor runs these). Only click is imported here."""

from __future__ import annotations

import sys

import click


@click.group(hidden=True)
def agent() -> None:
    """netdoctor's own agents, run in its image on the engines it diagnoses."""


@agent.command(name="swarm-task")
@click.option("--plan", "plan_text", required=True, help="What to diagnose (JSON, from the manager).")
def swarm_task(plan_text: str) -> None:
    """The Swarm task on each node: starts the node agent through the node's engine and relays its report."""
    from netdoctor.swarm.task import main

    sys.exit(main(plan_text))


@agent.command(name="node")
@click.option("--plan", "plan_text", required=True, help="What to diagnose (JSON, from the manager).")
@click.option("--task", help="The Swarm task's container, whose namespace is on netdoctor's overlay.")
def node(plan_text: str, task: str | None) -> None:
    """The node agent: diagnoses this engine's host and containers, reports on stdout."""
    from netdoctor.swarm.node import main

    sys.exit(main(plan_text, task))
