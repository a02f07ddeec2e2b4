"""Which running containers `check --all / --label / --compose-project / --network` mean.

The selectors combine like `docker ps --filter`: every --label (and --compose-project, which is Compose's
project label) must match; a container on any of the --network names matches.
"""

from __future__ import annotations

from netdoctor.errors import BadInput
from netdoctor.facts.docker import ContainerInfo
from netdoctor.request import Selector

COMPOSE_PROJECT_LABEL = "com.docker.compose.project"


class SelectionError(BadInput):
    """A selector names nothing that exists, or nothing matches it (exit 2)."""


def docker_filters(selector: Selector) -> dict:
    filters: dict[str, list[str]] = {}
    wanted_labels = list(selector.labels) + ([f"{COMPOSE_PROJECT_LABEL}={selector.compose_project}"]
                                             if selector.compose_project else [])
    if wanted_labels:
        filters["label"] = wanted_labels
    if selector.networks:
        filters["network"] = list(selector.networks)
    return filters


def describe(selector: Selector) -> str:
    parts = [f"--label {label}" for label in selector.labels]
    parts += [f"--compose-project {selector.compose_project}"] if selector.compose_project else []
    parts += [f"--network {network}" for network in selector.networks]
    return " ".join(parts) or "--all"


def select(engine, selector: Selector) -> list[ContainerInfo]:
    """Running containers matching the selector (every running one for --all)."""
    for network in selector.networks:
        if not engine.has_network(network):
            raise SelectionError(f"--network {network}: no Docker network by that name or id")
    found = engine.containers(filters=docker_filters(selector))
    if not found:
        project = selector.compose_project
        hint = f" (is it up? `docker compose -p {project} ps`)" if project else ""
        raise SelectionError(f"no running container matches {describe(selector)}{hint}")
    return found
