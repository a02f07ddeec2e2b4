"""The netdoctor TUI: a target picker, then a live diagnosis. Screens and widgets live in their own
modules; the app only holds what every screen shares: the Request (options, checks, config, engine),
the check catalogue and the output folder."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from netdoctor.core import select_checks
from netdoctor.model import CheckInfo
from netdoctor.registry import Catalogue, discover
from netdoctor.request import Request
from netdoctor.tui.screens.diagnosis import DiagnosisScreen
from netdoctor.tui.screens.dialogs import HelpScreen
from netdoctor.tui.screens.picker import PickerScreen


class NetdoctorApp(App):
    TITLE = "netdoctor"
    ENABLE_COMMAND_PALETTE = False  # its footer hint would push our keys off an 80-column screen
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark,f1", "help", "Help"),
    ]

    def __init__(self, request: Request | None = None, output_dir: str | Path | None = None,
                 catalogue: Catalogue | None = None) -> None:
        """`request`: what `netdoctor tui` was given (targets start a diagnosis at once, the rest applies to
        every run); `output_dir`: where exports and fix scripts are written (default: the working directory);
        `catalogue`: the checks to choose from (default: discovered). Raises BadInput for unknown check ids."""
        super().__init__()
        self.request = request or Request()
        self.catalogue = catalogue or discover()
        self.checks = select_checks(self.catalogue, self.request)
        self.output_dir = Path(output_dir or os.getcwd())

    @property
    def options(self):
        return self.request.options

    def set_options(self, options) -> None:
        self.request = replace(self.request, options=options)

    def on_mount(self) -> None:
        self.push_screen(PickerScreen())
        request = self.request
        if request.targets or request.selector.active or request.swarm or request.remote:  # a whole swarm or engine too
            self.push_screen(DiagnosisScreen(request))

    def check_info(self, check_id: str) -> CheckInfo | None:
        return next((c for c in self.checks if c.id == check_id), None) or self.catalogue.get(check_id)

    def diagnose(self, specs: list[str]) -> None:
        self.push_screen(DiagnosisScreen(self.request.with_targets(*specs)))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())
