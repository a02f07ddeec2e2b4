"""GitHub Actions workflow commands: one annotation per finding worth a look, streamed as found.

`::error` for findings that trip the gate, `::warning` for the rest at warn and above, `::notice` for
accepted ones (with the acceptance). Pass, info and skip findings are not annotated. A Compose container's
annotations point at its service in the compose file.
"""

from __future__ import annotations

from netdoctor.model import Finding, Status
from netdoctor.report import Reporter, compose_location, finding_text


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


class GithubReporter(Reporter):
    def add(self, finding: Finding) -> None:
        super().add(finding)
        level = self._level(finding)
        if level is None:
            return
        properties = {"title": f"netdoctor {finding.check} on {finding.target}: {finding.status.value}"}
        target = next((t for t in self.targets if t.label == finding.target), None)
        where = compose_location(target)
        if where:
            properties = {"file": where[0], "line": str(where[1]), **properties}
        props = ",".join(f"{k}={_escape_property(v)}" for k, v in properties.items())
        self.stream.write(f"::{level} {props}::{_escape_data(finding_text(finding))}\n")
        self.stream.flush()

    def _level(self, f: Finding) -> str | None:
        if self.gate.trips(f):
            return "error"
        if f.status.rank < Status.WARN.rank:
            return None
        return "notice" if f.accepted and not f.accepted.expired else "warning"

    def finish(self, duration_ms: float) -> None:
        pass  # annotations were written as findings arrived; the verdict goes to stderr
