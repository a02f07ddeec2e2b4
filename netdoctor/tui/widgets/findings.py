"""The findings table: root causes worst first with their consequences under them, filtered by status, check
and words of the title."""

from __future__ import annotations

from typing import Iterable

from textual.widgets import DataTable

from netdoctor.model import Finding, Severity, Status
from netdoctor.tui.widgets import status_text

_SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}
_STATUS_WORDS = {s.value for s in Status}


def worst_first(finding: Finding) -> tuple:
    return (-finding.status.rank, -_SEVERITY_RANK[finding.severity], finding.check, finding.target, finding.title)


def matches(finding: Finding, query: str, check_ids: set[str]) -> bool:
    """`fail warn mtu forward`: status words keep those statuses (any of them), check ids keep those checks
    (any of them), and every other word must appear in the check, target or title."""
    words = query.lower().split()
    statuses = {w for w in words if w in _STATUS_WORDS}
    checks = {w for w in words if w in check_ids and w not in statuses}
    others = [w for w in words if w not in statuses and w not in checks]
    haystack = f"{finding.check} {finding.target} {finding.title}".lower()
    return ((not statuses or finding.status.value in statuses)
            and (not checks or finding.check.lower() in checks)
            and all(w in haystack for w in others))


class FindingsTable(DataTable):
    DEFAULT_CSS = "FindingsTable { height: 1fr; }"

    def __init__(self, check_ids: Iterable[str] = (), **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.check_ids = {c.lower() for c in check_ids} | {"netdoctor"}
        self.shown: list[Finding] = []

    def on_mount(self) -> None:
        self.add_column("Status", key="status", width=7)
        self.add_column("Check", key="check")
        self.add_column("Finding", key="title")
        self.add_column("Target", key="target")

    def show(self, findings: list[Finding], query: str = "") -> None:
        """Redraw from the full list (tens of rows, not thousands), keeping the cursor on the same finding
        while it is still shown. Root causes worst first, each followed by what follows from it (↳)."""
        selected = self.selected
        self.clear()
        matching = [f for f in findings if matches(f, query, self.check_ids)]
        present = {f.id for f in matching}
        under: dict[str, list[Finding]] = {}
        for finding in matching:
            if finding.caused_by in present:
                under.setdefault(finding.caused_by, []).append(finding)
        self.shown = []
        for root in sorted((f for f in matching if f.caused_by not in present), key=worst_first):
            self.shown += [root, *sorted(under.get(root.id, []), key=worst_first)]
        for row, finding in enumerate(self.shown):
            title = f"↳ {finding.title}" if finding.caused_by in present else finding.title
            self.add_row(status_text(finding.status), finding.check, title, finding.target, key=str(row))
            if finding is selected:
                self.move_cursor(row=row)

    @property
    def selected(self) -> Finding | None:
        return self.shown[self.cursor_row] if 0 <= self.cursor_row < len(self.shown) else None

    def finding_at(self, row_key: str) -> Finding:
        return self.shown[int(row_key)]
