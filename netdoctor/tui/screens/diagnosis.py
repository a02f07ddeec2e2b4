"""A diagnosis as it happens: checks run in a worker thread, findings stream into a table worst first."""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import replace
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import get_current_worker

from netdoctor import causes
from netdoctor.model import ABOUT_RUN, Finding, Status, about_run
from netdoctor.swarm.matrix import is_matrix
from netdoctor.request import Options, Request
from netdoctor.tui.messages import FindingArrived, Job, RunFinished, RunStarted
from netdoctor.tui.screens.dialogs import PeersDialog
from netdoctor.tui.screens.finding import FindingScreen
from netdoctor.tui.widgets.findings import FindingsTable
from netdoctor.tui.widgets.matrix import NodeMatrix
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

    def __init__(self, request: Request) -> None:
        super().__init__()
        self.request = request        # what this screen diagnoses; options follow the app's (the peers dialog)
        self.run_number = 0           # number of the current run; older runs' messages are ignored
        self.running = False
        self.started = 0.0
        self.duration_ms = 0.0
        self.targets = []
        self.jobs: dict[Job, Status | None] = {}   # None while the check runs, then its worst status
        self.findings: list[Finding] = []          # in arrival order, as `check --format json` reports them
        self.tick = 0
        self.last_export: Path | None = None

    @property
    def what(self) -> str:
        """The targets as the user named or selected them."""
        from netdoctor.selection import describe

        request = self.request
        engines = "--swarm " if request.swarm else f"-H {request.remote.name} " if request.remote else ""
        return engines + (" ".join(request.targets) or describe(request.selector))

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="where")
        yield CheckProgress(id="progress")
        yield StatusCounts(id="counts")
        yield NodeMatrix(id="matrix")  # shown by `tui --swarm` once the node matrix arrives
        yield Input(placeholder="/ filter: fail warn … a check id … words", id="filter", compact=True)
        yield FindingsTable([c.id for c in self.app.checks] + self.app.catalogue.ids, id="findings")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.what
        self.set_interval(0.2, self.spin)
        self.start(self.request, partial=False)
        self.query_one(FindingsTable).focus()

    # --- running -------------------------------------------------------------------------------

    def start(self, request: Request, partial: bool) -> None:
        self.run_number += 1
        self.running = True
        self.started = time.monotonic()
        self.describe_options()
        self.diagnose(self.run_number, replace(request, options=self.app.options), partial)

    @work(thread=True, exclusive=True, group="diagnosis")
    def diagnose(self, run: int, request: Request, partial: bool) -> None:
        """Off the UI thread: plan and run through the core; everything reaches the UI as a message."""
        from netdoctor.core import diagnose
        from netdoctor.errors import NetdoctorError

        worker = get_current_worker()
        started = time.monotonic()
        try:
            diagnosis = diagnose(request, tolerant=True, catalogue=self.app.catalogue)
        except NetdoctorError as exc:  # e.g. the --host-netns namespace is gone, Docker down for a selector
            self.post_message(RunStarted(run, [], [], partial))
            self.post_message(FindingArrived(run, about_run("nothing can be diagnosed", str(exc), key="cannot-run")))
            self.post_message(RunFinished(run, 0.0))
            return
        jobs = [(info.id, target.label) for info, target in diagnosis.jobs]
        self.post_message(RunStarted(run, diagnosis.targets, jobs, partial))

        # The runner blocks while probes wait; it feeds a queue from its own thread so that this worker
        # can notice a cancellation (rerun, quit) at once instead of after the slowest check.
        arrived: queue.SimpleQueue = queue.SimpleQueue()

        def pump() -> None:
            try:
                for finding in diagnosis:
                    arrived.put(finding)
            except Exception as exc:  # the runner reports check failures itself; this is its own failure
                arrived.put(about_run("the diagnosis stopped", f"{type(exc).__name__}: {exc}", key="stopped"))
            finally:
                diagnosis.close()
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
            self.query_one(NodeMatrix).clear()
        self.jobs.update(dict.fromkeys(message.jobs))
        self.redraw()

    def on_finding_arrived(self, message: FindingArrived) -> None:
        if message.run != self.run_number:
            return
        finding = message.finding
        if is_matrix(finding):
            self.query_one(NodeMatrix).show(finding.evidence)
        if finding.check == ABOUT_RUN:  # the same trouble seen again replaces the old report of it
            self.findings = [f for f in self.findings if (f.check, f.target, f.title) != (finding.check, finding.target, finding.title)]
        # linked as the core links a run; again here because a rerun of one check meets the others' findings
        self.findings = causes.apply([*self.findings, finding])
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
        self.query_one("#where", Static).update(Text(f"{self.what}  ·  {', '.join(parts)}"))

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
        self.start(self.request, partial=False)

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
        # a target's label names it again ("container:web"); host-wide checks run on the host whatever the targets
        spec = finding.target if any(t.label == finding.target for t in self.targets) else "host"
        one = replace(self.request.with_targets(spec), checks=(info.id,), skip=(), explicit=self.request.checks_named)
        self.start(one, partial=True)

    def action_switch_target(self) -> None:
        self.workers.cancel_group(self, "diagnosis")
        self.app.pop_screen()

    def action_peers(self) -> None:
        def after(options: Options | None) -> None:
            if options is not None and options != self.app.options:
                self.app.set_options(options)
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
