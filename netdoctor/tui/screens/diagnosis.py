"""A diagnosis as it happens: checks run in a worker thread, findings stream into a table worst first."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import get_current_worker

from netdoctor.context import Options
from netdoctor.model import CheckInfo, Finding, Severity, Status
from netdoctor.registry import Catalogue
from netdoctor.tui.diagnose import ABOUT_TOOL, resolve_targets, vanished
from netdoctor.tui.messages import FindingArrived, Job, RunFinished, RunStarted
from netdoctor.tui.screens.dialogs import PeersDialog
from netdoctor.tui.screens.finding import FindingScreen
from netdoctor.tui.widgets.findings import FindingsTable
from netdoctor.tui.widgets.progress import CheckProgress, StatusCounts

_DONE = object()  # end of a run's stream of findings


class DiagnosisScreen(Screen):
    DEFAULT_CSS = """
    DiagnosisScreen #where { height: 1; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("r", "rerun", "Rerun"),
        Binding("R", "rerun_check", "Rerun one"),
        Binding("t", "switch_target", "Target"),
        Binding("o", "peers", "Peers"),
        Binding("e", "export", "Export"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "leave_filter", "Table", show=False),
    ]

    def __init__(self, specs: list[str]) -> None:
        super().__init__()
        self.specs = list(specs)
        self.run_number = 0           # number of the current run; older runs' messages are ignored
        self.running = False
        self.started = 0.0
        self.duration_ms = 0.0
        self.targets = []
        self.specs_by_label: dict[str, str] = {}
        self.jobs: dict[Job, Status | None] = {}   # None while the check runs, then its worst status
        self.findings: list[Finding] = []          # in arrival order, as `check --format json` reports them
        self.tick = 0
        self.last_export: Path | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="where")
        yield CheckProgress(id="progress")
        yield StatusCounts(id="counts")
        yield Input(placeholder="/ filter: fail warn … a check id … words", id="filter", compact=True)
        yield FindingsTable([c.id for c in self.app.checks] + self.app.catalogue.ids, id="findings")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = " ".join(self.specs)
        self.set_interval(0.2, self.spin)
        self.start(self.specs, self.app.checks, partial=False)
        self.query_one(FindingsTable).focus()

    # --- running -------------------------------------------------------------------------------

    def start(self, specs: list[str], checks: list[CheckInfo], partial: bool) -> None:
        self.run_number += 1
        self.running = True
        self.started = time.monotonic()
        catalogue = self.app.catalogue
        if partial:  # plugin load errors were reported by the full run already
            catalogue = Catalogue(catalogue.checks, ())
        self.describe_options()
        self.diagnose(self.run_number, specs, checks, catalogue, self.app.options, self.app.explicit, partial)

    @work(thread=True, exclusive=True, group="diagnosis")
    def diagnose(self, run: int, specs: list[str], checks: list[CheckInfo], catalogue: Catalogue, options: Options,
                 explicit: bool, partial: bool) -> None:
        """Off the UI thread: resolve, plan and run; everything reaches the UI as a message."""
        from netdoctor.context import Session
        from netdoctor.runner import plan, run as run_checks
        from netdoctor.targets import TargetError

        worker = get_current_worker()
        started = time.monotonic()
        try:
            session = Session(options)
        except TargetError as exc:  # the --host-netns namespace is gone
            self.post_message(RunStarted(run, [], {}, [], partial))
            self.post_message(FindingArrived(run, Finding(check=ABOUT_TOOL, target="host", status=Status.ERROR,
                                                          severity=Severity.HIGH, title="the host namespace cannot be read",
                                                          detail=str(exc))))
            self.post_message(RunFinished(run, 0.0))
            return
        targets, specs_by_label, unresolved = resolve_targets(specs, session)
        jobs = [(info.id, target.label) for info, target in plan(checks, targets, session.host_target, explicit)] if targets else []
        self.post_message(RunStarted(run, targets, specs_by_label, jobs, partial))
        for finding in unresolved:
            self.post_message(FindingArrived(run, finding))

        # The runner blocks while probes wait; it feeds a queue from its own thread so that this worker
        # can notice a cancellation (rerun, quit) at once instead of after the slowest check.
        arrived: queue.SimpleQueue = queue.SimpleQueue()

        def pump() -> None:
            try:
                if targets:
                    for finding in run_checks(catalogue, checks, targets, session, explicit=explicit):
                        arrived.put(finding)
                    for finding in vanished(targets, session):
                        arrived.put(finding)
            except Exception as exc:  # the runner reports check failures itself; this is its own failure
                arrived.put(Finding(check=ABOUT_TOOL, target="netdoctor", status=Status.ERROR, severity=Severity.HIGH,
                                    title="the diagnosis stopped", detail=f"{type(exc).__name__}: {exc}"))
            finally:
                session.close()
                arrived.put(_DONE)

        threading.Thread(target=pump, name=f"diagnosis {run}", daemon=True).start()
        while not worker.is_cancelled:
            try:
                item = arrived.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _DONE:
                self.post_message(RunFinished(run, (time.monotonic() - started) * 1000))
                return
            self.post_message(FindingArrived(run, item))

    def on_run_started(self, message: RunStarted) -> None:
        if message.run != self.run_number:
            return
        if message.partial:
            rerun = set(message.jobs)
            self.findings = [f for f in self.findings if (f.check, f.target) not in rerun]
        else:
            self.findings, self.jobs, self.targets = [], {}, message.targets
        self.jobs.update(dict.fromkeys(message.jobs))
        self.specs_by_label.update(message.specs)
        self.redraw()

    def on_finding_arrived(self, message: FindingArrived) -> None:
        if message.run != self.run_number:
            return
        finding = message.finding
        if finding.check == ABOUT_TOOL:  # the same trouble seen again replaces the old report of it
            self.findings = [f for f in self.findings if (f.check, f.target, f.title) != (finding.check, finding.target, finding.title)]
        self.findings.append(finding)
        job = (finding.check, finding.target)
        if job in self.jobs:
            seen = self.jobs[job]
            self.jobs[job] = finding.status if seen is None or finding.status.rank > seen.rank else seen
        self.redraw()

    def on_run_finished(self, message: RunFinished) -> None:
        if message.run != self.run_number:
            return
        self.running = False
        self.duration_ms = message.duration_ms
        self.redraw()

    # --- drawing -------------------------------------------------------------------------------

    def spin(self) -> None:
        if self.running:
            self.tick += 1
            self.redraw_progress()

    def redraw_progress(self) -> None:
        seconds = time.monotonic() - self.started if self.running else self.duration_ms / 1000
        self.query_one(CheckProgress).render_jobs(self.jobs, self.tick)
        self.query_one(StatusCounts).render_counts(self.findings, self.jobs, self.running, seconds)

    def redraw(self) -> None:
        self.redraw_progress()
        self.query_one(FindingsTable).show(self.findings, self.query_one("#filter", Input).value)

    def describe_options(self) -> None:
        options = self.app.options
        parts = [f"timeout {options.timeout:g}s"]
        if options.peers:
            parts.append("peer " + " ".join(options.peers))
        if options.probes:
            parts.append("probe " + " ".join(options.probes))
        if options.host_netns:
            parts.append(f"host netns {options.host_netns}")
        self.query_one("#where", Static).update(Text(f"{' '.join(self.specs)}  ·  {', '.join(parts)}"))

    # --- actions -------------------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one(FindingsTable).show(self.findings, event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(FindingsTable).focus()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.query_one(FindingsTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        finding = self.query_one(FindingsTable).finding_at(event.row_key.value)

        def after(rerun: bool | None) -> None:
            if rerun:
                self.rerun_check(finding)

        self.app.push_screen(FindingScreen(finding, self.app.check_info(finding.check)), after)

    def action_rerun(self) -> None:
        self.start(self.specs, self.app.checks, partial=False)

    def action_rerun_check(self) -> None:
        finding = self.query_one(FindingsTable).selected
        if finding is not None:
            self.rerun_check(finding)

    def rerun_check(self, finding: Finding) -> None:
        info = self.app.check_info(finding.check)
        if info is None:  # a finding about the run itself: only a full run can answer it again
            self.action_rerun()
            return
        if self.running:
            self.notify("A diagnosis is still running: wait for it, or press r to start over.", severity="warning")
            return
        # a host-wide check runs on the host whatever the targets; a per-target one on its own target
        spec = self.specs_by_label.get(finding.target, "host")
        self.start([spec], [info], partial=True)

    def action_switch_target(self) -> None:
        self.workers.cancel_group(self, "diagnosis")
        self.app.pop_screen()

    def action_peers(self) -> None:
        def after(options: Options | None) -> None:
            if options is not None and options != self.app.options:
                self.app.options = options
                self.action_rerun()

        self.app.push_screen(PeersDialog(self.app.options), after)

    def action_export(self) -> None:
        from netdoctor.report import document

        duration = (time.monotonic() - self.started) * 1000 if self.running else self.duration_ms
        path = self.app.output_dir / f"netdoctor-report-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(document(self.targets, self.findings, duration), indent=2) + "\n")
        self.last_export = path
        note = " (the diagnosis is still running: partial)" if self.running else ""
        self.notify(f"Report written to {path}{note}", title="Exported")
