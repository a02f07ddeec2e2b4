"""The TUI shows root causes as the text report does: each root cause, then what follows from it (↳)."""

import asyncio

from textual.app import App

from netdoctor import causes
from netdoctor.model import Status
from netdoctor.tui.widgets.findings import FindingsTable
from netdoctor.tui.widgets.progress import StatusCounts
from tests.fast.test_causes import FORWARDING_OFF, NAMESERVER, PROBE, finding


class Widgets(App):
    def compose(self):
        yield StatusCounts()
        yield FindingsTable(["ip_forward", "reachability", "dns", "mtu"])


def test_consequences_follow_their_root_cause_marked_and_counted():
    unrelated = finding("mtu", "mtu-mismatch:eth0", status=Status.WARN)
    findings = causes.apply([NAMESERVER, unrelated, PROBE, FORWARDING_OFF])

    async def look():
        app = Widgets()
        async with app.run_test():
            table = app.query_one(FindingsTable)
            table.show(findings)
            rows = [(f.check, str(table.get_row_at(i)[2])) for i, f in enumerate(table.shown)]
            table.show(findings, "dns")  # filtered to a consequence alone: no root to hang under
            alone = [str(table.get_row_at(i)[2]) for i in range(len(table.shown))]
            counts = app.query_one(StatusCounts)
            counts.render_counts(findings, {}, False, 1.0)
            return rows, alone, str(counts.render())

    rows, alone, counts = asyncio.run(look())
    assert rows == [("ip_forward", FORWARDING_OFF.title), ("dns", f"↳ {NAMESERVER.title}"),
                    ("reachability", f"↳ {PROBE.title}"), ("mtu", unrelated.title)]
    assert alone == [NAMESERVER.title]
    assert counts.endswith("│ 2 causes ↳2")
