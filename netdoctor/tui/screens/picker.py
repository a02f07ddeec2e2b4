"""Pick what to diagnose: the host or a running container, filtered as you type."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from netdoctor.facts.docker import ContainerInfo
from netdoctor.tui.messages import ContainersListed, ContainersUnavailable

HOST_ROW = ("host", "(its own namespace)", "", "", "")


def container_row(c: ContainerInfo) -> tuple[str, str, str, str, str]:
    networks = ", ".join(a.network for a in c.attachments) or c.network_mode
    ips = ", ".join(a.ip for a in c.attachments if a.ip)
    ports = ", ".join(p.label for p in c.published)
    return c.name, networks, ips, ports, c.image


class PickerScreen(Screen):
    DEFAULT_CSS = """
    PickerScreen #hint { height: auto; padding: 0 1; color: $text-muted; }
    PickerScreen #targets { height: 1fr; }
    """
    BINDINGS = [
        Binding("down", "move(1)", "Down", show=False),
        Binding("up", "move(-1)", "Up", show=False),
        Binding("enter", "pick", "Diagnose"),
        Binding("f5", "refresh", "Refresh"),
        Binding("ctrl+q", "app.quit", "Quit"),  # q types into the filter here
    ]

    def __init__(self) -> None:
        super().__init__()
        self.containers: list[ContainerInfo] = []
        self.rows: list[tuple[str, ...]] = [HOST_ROW]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Type to filter, Enter to diagnose. Listing containers…", id="hint")
        yield Input(placeholder="filter: name, image, network, IP, port", id="filter", compact=True)
        yield DataTable(id="targets", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "pick a target"
        table = self.query_one("#targets", DataTable)
        for column in ("Name", "Networks", "IPs", "Published", "Image"):
            table.add_column(column, key=column.lower())
        self.show()
        self.query_one("#filter", Input).focus()

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        self.list_containers()

    @work(thread=True, exclusive=True, group="containers")
    def list_containers(self) -> None:
        from netdoctor.dockerapi import DockerSession, DockerUnavailable

        try:
            self.post_message(ContainersListed(DockerSession(self.app.request.docker_host).containers()))
        except DockerUnavailable as exc:
            self.post_message(ContainersUnavailable(str(exc)))

    def on_containers_listed(self, message: ContainersListed) -> None:
        self.containers = sorted(message.containers, key=lambda c: c.name)
        self.query_one("#hint", Static).update(
            f"{len(self.containers)} running container(s) and the host. Type to filter, Enter to diagnose.")
        self.show()

    def on_containers_unavailable(self, message: ContainersUnavailable) -> None:
        self.containers = []
        self.query_one("#hint", Static).update(Text(f"Only the host can be diagnosed: {message.reason}"))
        self.show()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.show()

    def show(self) -> None:
        words = self.query_one("#filter", Input).value.lower().split()
        table = self.query_one("#targets", DataTable)
        table.clear()
        self.rows = [row for row in [HOST_ROW, *map(container_row, self.containers)]
                     if all(w in " ".join(row).lower() for w in words)]
        for row in self.rows:
            table.add_row(*row, key=row[0])

    def action_move(self, step: int) -> None:
        table = self.query_one("#targets", DataTable)
        table.move_cursor(row=max(0, table.cursor_row + step))

    def action_pick(self) -> None:
        table = self.query_one("#targets", DataTable)
        if 0 <= table.cursor_row < len(self.rows):
            self.app.diagnose([self.rows[table.cursor_row][0]])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_pick()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.diagnose([event.row_key.value])
