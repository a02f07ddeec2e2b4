"""The node matrix of `tui --swarm`: a row per sending node, a column per receiving node, one mark per
plane (TCP 2377, TCP 7946, UDP 7946, VXLAN), red where a path fails. Hidden until the matrix arrives."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from netdoctor.swarm.matrix import MARK, plane_label

LOOK = {"ok": "green", "fail": "bold red", "unknown": "yellow", "n/a": "bright_black"}


class NodeMatrix(Static):
    DEFAULT_CSS = "NodeMatrix { height: auto; max-height: 16; padding: 0 1; display: none; }"
    table: Table | None = None

    def show(self, matrix: dict) -> None:
        """`matrix`: the node-matrix finding's evidence (netdoctor/swarm/matrix.py, Matrix.as_dict)."""
        names = [n["name"] for n in matrix["nodes"]]
        pairs = {(p["from"], p["to"]): p for p in matrix["pairs"]}
        legend = ", ".join(plane_label(plane, matrix["data_port"]) for plane in matrix["planes"])
        table = Table(box=None, padding=(0, 1))
        table.add_column("")
        for name in names:
            table.add_column(name)
        for sender in names:
            cells = [Text("-", style="bright_black") if sender == receiver else
                     Text(" ").join(Text(MARK[pairs[(sender, receiver)][plane]["state"]],
                                         style=LOOK[pairs[(sender, receiver)][plane]["state"]])
                                    for plane in matrix["planes"]) for receiver in names]
            table.add_row(Text(sender, style="bold"), *cells)
        self.table = table  # what is shown, for whoever reads the screen
        self.update(Group(Text(f"node matrix: rows send, columns receive; in each cell {legend}", style="bold"), table))
        self.display = True

    def clear(self) -> None:
        self.display = False
