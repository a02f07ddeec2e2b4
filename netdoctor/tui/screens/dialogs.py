"""Small dialogs: the peers and probes to test (they go into Options), and the keys."""

from __future__ import annotations

import re
from dataclasses import replace

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from netdoctor.errors import BadInput
from netdoctor.request import Options, parse_endpoint

HELP = """\
netdoctor reads the target's network namespace and the host, read-only, and
lists what it found, worst first. It changes nothing: fixes are only shown.

  Enter      open the selected finding (evidence, why, fix)
  r          run every check again        R   run the selected check again
  /          filter: status words (fail warn …), check ids, other words
  o          set --peer / --probe          t   diagnose another target
  e          export the report as JSON (same as `check --format json`)
  c          (in a finding) copy the fix commands, also saved to a file
  Esc        back                          ?   this help    q   quit
"""


def _words(value: str) -> tuple[str, ...]:
    return tuple(w for w in re.split(r"[\s,]+", value) if w)


class HelpScreen(ModalScreen):
    DEFAULT_CSS = "HelpScreen { align: center middle; } HelpScreen Static { width: auto; max-width: 100%; border: round $accent; padding: 0 1; background: $surface; }"
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        yield Static(HELP, markup=False)


class PeersDialog(ModalScreen[Options | None]):
    """Peers (containers the target should reach) and probes (HOST:PORT to connect to), for the pair and
    reachability checks. Enter applies and reruns, Esc cancels."""

    DEFAULT_CSS = """
    PeersDialog { align: center middle; }
    PeersDialog Vertical { width: 70; max-width: 100%; height: auto; border: round $accent; padding: 0 1; background: $surface; }
    PeersDialog #problem { color: $error; height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, options: Options) -> None:
        super().__init__()
        self.options = options

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Peers: containers the target should reach (space separated)")
            yield Input(" ".join(self.options.peers), id="peers", placeholder="db cache")
            yield Label("Probes: endpoints to TCP-connect from the target")
            yield Input(" ".join(self.options.probes), id="probes", placeholder="10.0.0.5:443 api.internal:8080")
            yield Static("", id="problem")
            yield Static("Enter: apply and rerun   Esc: cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        peers = _words(self.query_one("#peers", Input).value)
        probes = _words(self.query_one("#probes", Input).value)
        try:
            for probe in probes:
                parse_endpoint(probe, "--probe", port_required=True)
            for peer in peers:
                parse_endpoint(peer, "--peer", port_required=False)
        except BadInput as exc:
            self.query_one("#problem", Static).update(Text(str(exc)))
            return
        self.dismiss(replace(self.options, peers=peers, probes=probes))

    def action_cancel(self) -> None:
        self.dismiss(None)
