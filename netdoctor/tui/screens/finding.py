"""One finding in full: what was seen, why it matters, and the fix commands, ready to copy."""

from __future__ import annotations

import json
import re

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Static, TextArea

from netdoctor.model import CheckInfo, Finding
from netdoctor.tui.widgets import status_text


def fix_script(finding: Finding) -> str:
    """The fix as a shell script to read before running: netdoctor never applies it."""
    lines = ["#!/bin/sh", f"# netdoctor: {finding.check} on {finding.target}: {finding.title}"]
    if finding.fix:
        lines += [f"# {line}" for line in finding.fix.summary.splitlines()]
        lines += list(finding.fix.commands)
    return "\n".join(lines) + "\n"


def reflow(text: str) -> str:
    """Docstrings are wrapped for source files; let the terminal wrap them instead. Paragraphs and list
    items ("- ...") keep their breaks; an indented line continues the item above it."""
    out: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        starts_block = not stripped or stripped.startswith(("- ", "* ")) or not out or not out[-1]
        if starts_block or (not line[:1].isspace() and out[-1].lstrip().startswith(("- ", "* "))):
            out.append(line.rstrip())
        else:
            out[-1] += " " + stripped
    return "\n".join(out)


def _evidence(finding: Finding) -> Text:
    if not finding.evidence:
        return Text("(none recorded)", style="dim")
    return Text("\n".join(f"{key}: {value if isinstance(value, str) else json.dumps(value)}"
                          for key, value in finding.evidence.items()))


class FindingScreen(Screen[bool]):
    """Dismissed with True when the user asks to run this finding's check again."""

    DEFAULT_CSS = """
    FindingScreen VerticalScroll { padding: 0 1; }
    FindingScreen Label { text-style: bold; margin-top: 1; }
    FindingScreen #commands { height: auto; max-height: 12; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("c", "copy_fix", "Copy fix", priority=True),
        Binding("R", "rerun_check", "Rerun check"),
    ]

    def __init__(self, finding: Finding, info: CheckInfo | None) -> None:
        super().__init__()
        self.finding = finding
        self.info = info
        self.saved_to = None

    def compose(self) -> ComposeResult:
        f = self.finding
        yield Header()
        with VerticalScroll():
            headline = status_text(f.status)
            headline.append(f"  {f.title}", style="bold")
            yield Static(headline, id="headline")
            yield Static(Text(f"{f.check} on {f.target} · severity {f.severity.value} · {f.duration_ms:.0f} ms",
                              style="dim"))
            if f.detail:
                yield Static(Text(f.detail), id="detail")
            yield Label("What was seen")
            yield Static(_evidence(f), id="evidence")
            yield Label("Why it matters")
            yield Static(Text(reflow(self.info.explanation) if self.info else "netdoctor's own report about this run."), id="why")
            yield Label("Fix")
            if f.fix and (f.fix.summary or f.fix.commands):
                yield Static(Text(f.fix.summary), id="fix-summary")
                if f.fix.commands:
                    yield TextArea("\n".join(f.fix.commands), id="commands", read_only=True, soft_wrap=True)
            else:
                yield Static(Text("Nothing to fix." if f.status.rank < 3 else "No fix recorded.", style="dim"), id="fix-summary")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.finding.check} · {self.finding.target}"

    def action_back(self) -> None:
        self.dismiss(False)

    def action_rerun_check(self) -> None:
        self.dismiss(True)

    def action_copy_fix(self) -> None:
        """To the clipboard where the terminal supports OSC 52, and always to a file one can open."""
        script = fix_script(self.finding)
        self.app.copy_to_clipboard(script)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"netdoctor-fix-{self.finding.check}-{self.finding.target}") + ".sh"
        self.saved_to = self.app.output_dir / name
        self.saved_to.write_text(script)
        self.notify(f"Copied to the clipboard (if the terminal allows) and saved to {self.saved_to}", title="Fix")
