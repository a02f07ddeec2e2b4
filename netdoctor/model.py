"""The vocabulary every layer shares: what a check is (CheckInfo) and what it found (Finding)."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Callable


class Status(str, enum.Enum):
    """Outcome of one check on one target; `rank` orders them worst-last for gates and sorting."""

    PASS = "pass"
    INFO = "info"
    SKIP = "skip"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _STATUS_RANK[self]


_STATUS_RANK = {Status.PASS: 0, Status.INFO: 1, Status.SKIP: 2, Status.WARN: 3, Status.FAIL: 4, Status.ERROR: 5}


class Severity(str, enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Scope(str, enum.Enum):
    """What a check looks at. CONTAINER checks need a Docker container; NAMESPACE checks any netns target;
    HOST checks look only at the host and run once per run, not once per target."""

    CONTAINER = "container"
    NAMESPACE = "namespace"
    HOST = "host"


class Need(str, enum.Enum):
    """Preconditions the runner verifies once, turning a missing one into a `skip` with the reason."""

    ROOT = "root"            # reading other namespaces and firewall rules
    NETNS = "netns"          # the target has a live network namespace
    DOCKER = "docker"        # the Engine API answers and the target is a container
    HOST_NETNS = "host_netns"  # the host's namespace can be entered
    IPTABLES = "iptables"    # a firewall reader is installed on the host (iptables-save or nft)


@dataclass(frozen=True)
class Fix:
    summary: str
    commands: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "commands": list(self.commands)}


@dataclass(frozen=True)
class CheckInfo:
    id: str
    title: str
    scope: Scope
    severity: Severity
    needs: frozenset[Need]
    explanation: str
    func: Callable[..., Any] = field(compare=False, repr=False)

    @property
    def summary(self) -> str:
        return self.explanation.strip().splitlines()[0] if self.explanation.strip() else self.title

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "scope": self.scope.value,
            "severity": self.severity.value,
            "needs": sorted(n.value for n in self.needs),
            "summary": self.summary,
        }


@dataclass(frozen=True)
class Acceptance:
    """The user's baseline accepts this finding until `expires` (inclusive, YYYY-MM-DD): it stays in every
    report with its real status but does not trip the gate, unless the acceptance has expired."""

    reason: str
    expires: str
    expired: bool = False

    def describe(self) -> str:
        return (f"acceptance expired {self.expires}: {self.reason}" if self.expired
                else f"accepted until {self.expires}: {self.reason}")


ABOUT_RUN = "netdoctor"  # the `check` (and target) of findings about the run itself


@dataclass(frozen=True)
class Finding:
    check: str
    target: str
    status: Status
    severity: Severity
    title: str
    detail: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: Fix | None = None
    duration_ms: float = 0.0
    accepted: Acceptance | None = None  # set from the baseline (netdoctor/config.py), never by a check
    key: str = ""                       # what the finding is about, stable across runs (e.g. "forwarding-off")
    caused_by: str | None = None        # the id of the root-cause finding this one follows from

    @property
    def id(self) -> str:
        """Stable within and across runs: which check, on which target, about what."""
        return f"{self.check}/{self.key or 'result'}@{self.target}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["severity"] = self.severity.value
        data["fix"] = self.fix.to_dict() if self.fix else {"summary": "", "commands": []}
        data["duration_ms"] = round(self.duration_ms, 1)
        data["id"] = self.id
        return data


def about_run(title: str, detail: str = "", target: str = ABOUT_RUN, status: Status = Status.ERROR,
              key: str = "", fix: Fix | None = None) -> Finding:
    """A finding about the run itself rather than about the network: a check plugin that failed to load, a
    target that cannot be diagnosed, vanished or is not running, netdoctor's own failure. Always shown,
    never accepted."""
    return Finding(check=ABOUT_RUN, target=target, status=status, severity=Severity.HIGH, title=title, detail=detail,
                   key=key, fix=fix)


def summarize(findings: list[Finding]) -> dict[str, int]:
    counts = {s.value: 0 for s in (Status.PASS, Status.INFO, Status.WARN, Status.FAIL, Status.SKIP, Status.ERROR)}
    for finding in findings:
        counts[finding.status.value] += 1
    return counts
