"""The CI gate: which findings make `netdoctor check` exit 1, and the one-line verdict a log reader sees."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from netdoctor.causes import tally
from netdoctor.errors import ExitCode
from netdoctor.model import Finding, Status

_THRESHOLD = {"warn": Status.WARN.rank, "fail": Status.FAIL.rank, "never": None}
# worst first, as a reader scans the verdict
_VERDICT_ORDER = (Status.ERROR, Status.FAIL, Status.WARN, Status.INFO, Status.SKIP, Status.PASS)


NOT_JUDGED = (Status.SKIP, Status.ERROR)  # the check could not apply, or could not finish


def nothing_judged(findings: list[Finding]) -> bool:
    """Every check skipped or errored (e.g. a diagnostic container started without the flags it needs):
    nothing was checked, which a pipeline must not read as healthy."""
    return bool(findings) and all(f.status in NOT_JUDGED for f in findings)


def unjudged(findings: list[Finding], targets: Iterable[str]) -> list[str]:
    """The targets that findings speak of but none judges (every one skip or error): e.g. a process whose
    namespace netdoctor may not open, a container that is not running. The host's checks passing says
    nothing about them, so the run must not pass."""
    spoken_of = {f.target for f in findings}
    judged = {f.target for f in findings if f.status not in NOT_JUDGED}
    return [t for t in targets if t in spoken_of and t not in judged]


@dataclass(frozen=True)
class Gate:
    fail_on: str = "fail"
    config_path: str = ""  # the baseline that was applied, named in the verdict

    def trips(self, finding: Finding) -> bool:
        """At or above --fail-on and not covered by a live acceptance (an expired one trips again)."""
        threshold = _THRESHOLD[self.fail_on]
        if threshold is None or finding.status.rank < threshold:
            return False
        return finding.accepted is None or finding.accepted.expired

    def exit_code(self, findings: list[Finding], targets: Iterable[str] = ()) -> ExitCode:
        """3 when nothing at all was judged; 1 when a finding trips the gate; 3 when a target named was not
        judged (a real finding elsewhere still says 1 first); else 0."""
        if nothing_judged(findings):
            return ExitCode.CANNOT_RUN
        if any(self.trips(f) for f in findings):
            return ExitCode.FINDINGS
        return ExitCode.CANNOT_RUN if unjudged(findings, targets) else ExitCode.OK

    def verdict(self, findings: list[Finding], targets: Sequence[str], duration_ms: float) -> str:
        """e.g. `netdoctor: FAILED — 2 fail (1 accepted), 1 warn, 9 pass on 3 targets in 1.2s; 1 root cause,
        2 consequences (gate: --fail-on fail)`"""
        word = {ExitCode.FINDINGS: "FAILED", ExitCode.CANNOT_RUN: "COULD NOT CHECK"}.get(self.exit_code(findings, targets), "PASSED")
        parts = []
        for status in _VERDICT_ORDER:
            of_status = [f for f in findings if f.status is status]
            if not of_status:
                continue
            accepted = sum(1 for f in of_status if f.accepted and not f.accepted.expired)
            expired = sum(1 for f in of_status if f.accepted and f.accepted.expired)
            notes = ([f"{accepted} accepted"] if accepted else []) + ([f"{expired} acceptance expired"] if expired else [])
            parts.append(f"{len(of_status)} {status.value}" + (f" ({', '.join(notes)})" if notes else ""))
        counts = ", ".join(parts) or "no findings"
        plural = "" if len(targets) == 1 else "s"
        config = f"; config: {self.config_path}" if self.config_path else ""
        blind = unjudged(findings, targets)
        blind_note = f"; nothing judged about {', '.join(blind)}" if blind else ""
        return (f"netdoctor: {word} — {counts} on {len(targets)} target{plural} in {duration_ms / 1000:.1f}s"
                f"{_causes_note(findings)} (gate: --fail-on {self.fail_on}{config}{blind_note})")


def _causes_note(findings: list[Finding]) -> str:
    """`; 1 root cause, 2 consequences` when some findings follow from others (netdoctor/causes.py)."""
    roots, consequences = tally(findings)
    if not consequences:
        return ""
    return (f"; {roots} root cause{'' if roots == 1 else 's'}, "
            f"{consequences} consequence{'' if consequences == 1 else 's'}")
