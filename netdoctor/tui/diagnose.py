"""What a diagnosis worker does off the UI thread, kept free of Textual: turn what the user named into
targets (an unresolvable one becomes an error finding) and notice a container that went away while its
checks ran. Both read Docker; neither may touch a widget."""

from __future__ import annotations

from typing import Iterable, Iterator

from netdoctor.context import Session
from netdoctor.dockerapi import ContainerNotFound, DockerUnavailable
from netdoctor.model import Finding, Severity, Status
from netdoctor.targets import Target, TargetError, resolve

ABOUT_TOOL = "netdoctor"  # the `check` of findings about the run itself, as the runner's load errors use


def _trouble(target: str, title: str, detail: str) -> Finding:
    return Finding(check=ABOUT_TOOL, target=target, status=Status.ERROR, severity=Severity.HIGH, title=title, detail=detail)


def resolve_targets(specs: Iterable[str], session: Session) -> tuple[list[Target], dict[str, str], list[Finding]]:
    """Targets for `specs`, which spec each target label came from, and one error finding per spec that
    cannot be diagnosed (a container that is gone, Docker not answering)."""
    targets, specs_by_label, errors = [], {}, []
    for spec in specs:
        try:
            target = resolve(spec, session.docker, session.options.host_netns)
        except (TargetError, ContainerNotFound) as exc:
            errors.append(_trouble(spec, f"{spec} cannot be diagnosed: it does not exist (any more)", str(exc)))
            continue
        except DockerUnavailable as exc:
            errors.append(_trouble(spec, f"{spec} cannot be diagnosed: Docker is not reachable", str(exc)))
            continue
        targets.append(target)
        specs_by_label[target.label] = spec
    return targets, specs_by_label, errors


def vanished(targets: Iterable[Target], session: Session) -> Iterator[Finding]:
    """An error finding for each container that was removed, stopped or restarted while its checks ran:
    what the checks saw is then a snapshot of something that no longer exists."""
    for target in targets:
        before = target.container
        if before is None or not before.running:
            continue
        try:
            now = session.docker.container(before.id)
        except ContainerNotFound:
            change = "was removed"
        except DockerUnavailable:
            continue  # cannot tell; the checks that needed Docker already said so
        else:
            if now.running and now.pid == before.pid:
                continue
            change = "restarted" if now.running else f"stopped ({now.status})"
        yield _trouble(target.label, f"container {before.name} {change} during the diagnosis",
                       "The other findings describe it as it was when the checks ran. Press r to diagnose again.")
