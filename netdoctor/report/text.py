"""Human-readable report: per target, findings grouped by check, worst first, with evidence and fixes."""

from __future__ import annotations

from itertools import groupby

import click

from netdoctor.model import Finding, Status
from netdoctor.report import Reporter

STYLE = {
    Status.PASS: dict(fg="green"), Status.INFO: dict(fg="cyan"), Status.SKIP: dict(fg="bright_black"),
    Status.WARN: dict(fg="yellow", bold=True), Status.FAIL: dict(fg="red", bold=True),
    Status.ERROR: dict(fg="magenta", bold=True),
}


def _plain(value) -> str:
    """Evidence for a reader: lists as `a; b`, records as `k=v k=v`, no Python reprs."""
    if isinstance(value, dict):
        return " ".join(f"{k}={_plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "; ".join(_plain(v) for v in value) or "(none)"
    return str(value)


class TextReporter(Reporter):
    def _style(self, text: str, status: Status) -> str:
        return click.style(text, **STYLE[status]) if self.color else text

    def _write(self, line: str = "") -> None:
        self.stream.write(line + "\n")

    def _describe(self, label: str) -> str:
        target = next((t for t in self.targets if t.label == label), None)
        if target is None or target.container is None:
            return label
        c = target.container
        nets = ", ".join(f"{a.network} {a.ip}".strip() for a in c.attachments) or c.network_mode
        return f"{label} ({c.status}, image {c.image}, networks: {nets or 'none'})"

    def finish(self, duration_ms: float) -> None:
        order = {t.label: i for i, t in enumerate(self.targets)}
        by_target = sorted(self.findings, key=lambda f: (order.get(f.target, -1), f.target))
        consequences: dict[str, list[Finding]] = {}
        for finding in self.findings:
            if finding.caused_by:
                consequences.setdefault(finding.caused_by, []).append(finding)
        for label, group in groupby(by_target, key=lambda f: f.target):
            group = list(group)
            # a consequence is shown under its root cause; one whose root is elsewhere (the host's) stands alone
            under_root = {f.id for f in group} & {f.caused_by for f in group}
            standing = [f for f in group if f.caused_by not in under_root]
            self._write(click.style(self._describe(label), bold=True) if self.color else self._describe(label))
            by_check: dict[str, list[Finding]] = {}
            for finding in standing:
                by_check.setdefault(finding.check, []).append(finding)
            worst_first = sorted(by_check.items(), key=lambda item: (-max(f.status.rank for f in item[1]), item[0]))
            for _, findings in worst_first:
                for finding in sorted(findings, key=lambda f: -f.status.rank):
                    self._finding(finding)
                    self._consequences(finding, consequences.get(finding.id, []))
            self._write()
        self._write(self.gate.verdict(self.findings, [t.label for t in self.targets], duration_ms))

    def _consequences(self, root: Finding, found: list[Finding]) -> None:
        """What follows from `root`, one line each under it: its fix fixes them too."""
        here = [f for f in found if f.target == root.target]
        if not here:
            return
        self._write(f"    ↳ because of {root.check}:")
        for f in sorted(here, key=lambda f: (-f.status.rank, f.check)):
            self._write(f"      {self._style(f'{f.status.value.upper():5}', f.status)} {f.check:<14} {f.title}")

    def _finding(self, f: Finding) -> None:
        badge = self._style(f"{f.status.value.upper():5}", f.status)
        self._write(f"  {badge} {f.check:<14} {f.title}")
        indent = " " * 23
        if f.check == "swarm":  # `check --swarm`'s node matrix reads as a table (also when it passes)
            from netdoctor.swarm.matrix import MATRIX_KEY, table_lines

            if f.key == MATRIX_KEY:
                for line in table_lines(f.evidence):
                    self._write(indent + line)
                return
        if f.status is Status.PASS:
            return
        if f.accepted:
            # e.g. "FAIL (accepted until 2027-01-31: reason)": shown, never hidden; expired ones gate again
            note = f"{f.status.value.upper()} ({f.accepted.describe()})"
            self._write(indent + (self._style(note, f.status) if f.accepted.expired else note))
        if f.detail:
            for line in f.detail.splitlines():
                self._write(indent + line)
        if f.evidence:
            self._write(f"{indent}seen:")
            for key, value in f.evidence.items():
                self._write(f"{indent}  {key}: {_plain(value)}")
        if f.fix and (f.fix.summary or f.fix.commands):
            self._write(f"{indent}fix: {f.fix.summary}")
            for command in f.fix.commands:
                self._write(f"{indent}  $ {command}")
