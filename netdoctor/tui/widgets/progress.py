"""Progress of a diagnosis: one mark per planned check (running, done with its worst status, skipped,
error) and the counts of findings by status."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from netdoctor.causes import tally
from netdoctor.model import Finding, Status, summarize
from netdoctor.tui.messages import Job
from netdoctor.tui.widgets import STATUS_LOOK, WORST_FIRST

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class CheckProgress(Static):
    """`⠋ mtu  ✓ ip_forward  - icc`: the check id, with the target's name when several are diagnosed."""

    DEFAULT_CSS = "CheckProgress { height: auto; max-height: 4; padding: 0 1; }"

    def render_jobs(self, jobs: dict[Job, Status | None], tick: int) -> None:
        # host-wide checks run on "host" whatever the targets: name the target only when there are several
        several_targets = len({target for _, target in jobs if target != "host"}) > 1
        text = Text()
        for (check, target), status in sorted(jobs.items()):
            name = f"{check}@{target.partition(':')[2] or target}" if several_targets and target != "host" else check
            if status is None:
                text.append(f"{SPINNER[tick % len(SPINNER)]} {name}", style="bold")
            else:
                text.append(f"{STATUS_LOOK[status][0]} {name}", style=STATUS_LOOK[status][1])
            text.append("  ")
        self.update(text)


class StatusCounts(Static):
    DEFAULT_CSS = "StatusCounts { height: 1; padding: 0 1; background: $boost; }"

    def render_counts(self, findings: list[Finding], jobs: dict[Job, Status | None], running: bool, seconds: float) -> None:
        done = sum(1 for status in jobs.values() if status is not None)
        counts = summarize(findings)
        state = ("starting" if not jobs else f"running {done}/{len(jobs)}") if running else f"done {done}/{len(jobs)}"
        text = Text(f"{state} │", style="bold")
        for status in WORST_FIRST:
            text.append(f" {status.value} {counts[status.value]} ", style=STATUS_LOOK[status][1] if counts[status.value] else "")
        text.append(f"│ {seconds:.1f}s")
        roots, consequences = tally(findings)
        if consequences:  # e.g. "│ 1 cause ↳2": the table shows which
            text.append(f" │ {roots} cause{'' if roots == 1 else 's'} ↳{consequences}")
        self.update(text)
