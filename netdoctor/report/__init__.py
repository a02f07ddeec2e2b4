"""Reporters consume the stream of findings: start(targets), add(finding) as each arrives, finish()."""

from __future__ import annotations

from typing import IO, Any

from netdoctor import __version__
from netdoctor.model import Finding, summarize
from netdoctor.targets import Target

FORMATS = ("text", "json", "ndjson")
SCHEMA_VERSION = 1


class Reporter:
    def __init__(self, stream: IO[str], color: bool = False):
        self.stream = stream
        self.color = color
        self.targets: list[Target] = []
        self.findings: list[Finding] = []

    def start(self, targets: list[Target]) -> None:
        self.targets = list(targets)

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def finish(self, duration_ms: float) -> None:
        raise NotImplementedError


def document(targets: list[Target], findings: list[Finding], duration_ms: float) -> dict[str, Any]:
    """The JSON report (schema_version 1): the contract CI tools rely on."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "netdoctor", "version": __version__},
        "targets": [t.to_dict() for t in targets],
        "findings": [f.to_dict() for f in findings],
        "summary": summarize(findings),
        "duration_ms": round(duration_ms, 1),
    }


def reporter_for(fmt: str, stream: IO[str], color: bool = False) -> Reporter:
    if fmt == "text":
        from netdoctor.report.text import TextReporter

        return TextReporter(stream, color)
    from netdoctor.report.json import JsonReporter, NdjsonReporter

    return {"json": JsonReporter, "ndjson": NdjsonReporter}[fmt](stream)
