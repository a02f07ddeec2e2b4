"""Which running containers `check --all / --label / --compose-project / --network` means.

The selectors combine like `docker ps --filter`: every --label (and --compose-project, which is Compose's
project label) must match; a container on any of the --network names matches.
"""

from __future__ import annotations

from netdoctor.facts.docker import ContainerInfo

COMPOSE_PROJECT_LABEL = "com.docker.compose.project"


class SelectionError(ValueError):
    """A selector names nothing that exists, or nothing matches it (exit 2)."""


def docker_filters(labels: tuple[str, ...], compose_project: str | None, networks: tuple[str, ...]) -> dict:
    for label in labels:
        if not label.partition("=")[0].strip():
            raise SelectionError(f"--label {label!r} is not KEY or KEY=VALUE")
    filters: dict[str, list[str]] = {}
    wanted_labels = list(labels) + ([f"{COMPOSE_PROJECT_LABEL}={compose_project}"] if compose_project else [])
    if wanted_labels:
        filters["label"] = wanted_labels
    if networks:
        filters["network"] = list(networks)
    return filters


def describe(labels: tuple[str, ...], compose_project: str | None, networks: tuple[str, ...]) -> str:
    parts = [f"--label {label}" for label in labels]
    parts += [f"--compose-project {compose_project}"] if compose_project else []
    parts += [f"--network {network}" for network in networks]
    return " ".join(parts) or "--all"


def select(engine, labels: tuple[str, ...], compose_project: str | None, networks: tuple[str, ...]) -> list[ContainerInfo]:
    """Running containers matching the selectors (every running one when there are none)."""
    import docker.errors  # heavy: only when selecting

    filters = docker_filters(labels, compose_project, networks)
    for network in networks:
        try:
            engine.network(network)
        except docker.errors.NotFound:
            raise SelectionError(f"--network {network}: no Docker network by that name or id") from None
    found = engine.containers(filters=filters)
    if not found:
        hint = f" (is it up? `docker compose -p {compose_project} ps`)" if compose_project else ""
        raise SelectionError(f"no running container matches {describe(labels, compose_project, networks)}{hint}")
    return found
