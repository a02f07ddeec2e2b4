"""Widgets of the netdoctor TUI; how each status looks is decided once, in `status_text`."""

from __future__ import annotations

from rich.text import Text

from netdoctor.model import Status

# A symbol and a word as well as a colour, so that NO_COLOR (monochrome) loses nothing
STATUS_LOOK = {
    Status.PASS: ("✓", "green"),
    Status.INFO: ("i", "cyan"),
    Status.SKIP: ("-", "bright_black"),
    Status.WARN: ("!", "yellow"),
    Status.FAIL: ("✗", "bold red"),
    Status.ERROR: ("E", "bold magenta"),
}

WORST_FIRST = sorted(Status, key=lambda s: -s.rank)


def status_text(status: Status, word: bool = True) -> Text:
    symbol, style = STATUS_LOOK[status]
    return Text(f"{symbol} {status.value.upper()}" if word else symbol, style=style)
