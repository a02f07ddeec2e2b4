"""Small messages the worker threads post to the UI. Widgets are never touched from a thread: a worker
only builds one of these and calls post_message (which is thread-safe); the handlers run on the UI loop.

Every diagnosis message carries the run's number so that a screen ignores what a cancelled run still
sends after a rerun started."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from netdoctor.facts.docker import ContainerInfo
from netdoctor.model import Finding
from netdoctor.targets import Target

Job = tuple[str, str]  # (check id, target label): one check on one target, as the runner plans it


class WorkerMessage(Message, bubble=False):
    """Handled by the screen whose worker posted it; going further up would only repeat it."""


@dataclass
class ContainersListed(WorkerMessage):
    containers: list[ContainerInfo]


@dataclass
class ContainersUnavailable(WorkerMessage):
    reason: str


@dataclass
class RunStarted(WorkerMessage):
    run: int
    targets: list[Target]
    jobs: list[Job]
    partial: bool           # a rerun of one check: keep the other findings


@dataclass
class FindingArrived(WorkerMessage):
    run: int
    finding: Finding


@dataclass
class RunFinished(WorkerMessage):
    run: int
    duration_ms: float
