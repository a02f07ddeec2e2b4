"""The netdoctor TUI: a target picker, then a live diagnosis. Screens and widgets live in their own
modules; the app only holds what every screen shares (catalogue, checks, options, output folder)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from textual.app import App
from textual.binding import Binding

from netdoctor.context import Options
from netdoctor.model import CheckInfo
from netdoctor.registry import discover
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

    def __init__(self, targets: Iterable[str] = (), options: Options | None = None,
                 checks: Iterable[str | CheckInfo] | None = None, explicit: bool | None = None,
                 output_dir: str | Path | None = None) -> None:
        """`checks`: ids (or definitions) of the checks to run, all when None; `explicit`: they were named,
        so they run even where they only say why they do not apply (default: when `checks` is given);
        `output_dir`: where exports and fix scripts are written (default: the working directory)."""
        super().__init__()
        self.specs = list(targets)
        self.options = options or Options()
        self.catalogue = discover()
        wanted = [c if isinstance(c, CheckInfo) else self.catalogue.get(c) or c for c in checks or ()]
        unknown = [c for c in wanted if not isinstance(c, CheckInfo)]
        if unknown:
            raise ValueError(f"unknown check id(s): {', '.join(unknown)}")
        self.checks = wanted or list(self.catalogue.checks)
        self.explicit = bool(wanted) if explicit is None else explicit
        self.output_dir = Path(output_dir or os.getcwd())

    def on_mount(self) -> None:
        self.push_screen(PickerScreen())
        if self.specs:
            self.diagnose(self.specs)

    def check_info(self, check_id: str) -> CheckInfo | None:
        return next((c for c in self.checks if c.id == check_id), None) or self.catalogue.get(check_id)

    def diagnose(self, specs: list[str]) -> None:
        self.push_screen(DiagnosisScreen(specs))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())
