"""The CI gate: which findings make `netdoctor check` exit 1, and the one-line verdict a log reader sees."""

from __future__ import annotations

from dataclasses import dataclass

from netdoctor.model import ExitCode, Finding, Status

FAIL_ON = ("warn", "fail", "never")
_THRESHOLD = {"warn": Status.WARN.rank, "fail": Status.FAIL.rank, "never": None}
# worst first, as a reader scans the verdict
_VERDICT_ORDER = (Status.ERROR, Status.FAIL, Status.WARN, Status.INFO, Status.SKIP, Status.PASS)


def nothing_judged(findings: list[Finding]) -> bool:
    """Every check skipped or errored (e.g. a diagnostic container started without the flags it needs):
    nothing was checked, which a pipeline must not read as healthy."""
    return bool(findings) and all(f.status in (Status.SKIP, Status.ERROR) for f in findings)


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

    def exit_code(self, findings: list[Finding]) -> ExitCode:
        if nothing_judged(findings):
            return ExitCode.CANNOT_RUN
        return ExitCode.FINDINGS if any(self.trips(f) for f in findings) else ExitCode.OK

    def verdict(self, findings: list[Finding], target_count: int, duration_ms: float) -> str:
        """e.g. `netdoctor: FAILED — 2 fail (1 accepted), 1 warn, 9 pass on 3 targets in 1.2s (gate: --fail-on fail)`"""
        word = {ExitCode.FINDINGS: "FAILED", ExitCode.CANNOT_RUN: "COULD NOT CHECK"}.get(self.exit_code(findings), "PASSED")
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
        plural = "" if target_count == 1 else "s"
        config = f"; config: {self.config_path}" if self.config_path else ""
        return (f"netdoctor: {word} — {counts} on {target_count} target{plural} in {duration_ms / 1000:.1f}s "
                f"(gate: --fail-on {self.fail_on}{config})")
