"""Reporters consume the stream of findings: start(targets), add(finding) as each arrives, finish()."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from netdoctor import __version__

if TYPE_CHECKING:  # annotations only: `netdoctor --help` imports this module for FORMATS
    from netdoctor.gate import Gate
    from netdoctor.model import Finding
    from netdoctor.targets import Target

FORMATS = ("text", "json", "ndjson", "junit", "sarif", "github")
SCHEMA_VERSION = 1


class Reporter:
    def __init__(self, stream: IO[str], color: bool = False, gate: Gate | None = None):
        self.stream = stream
        self.color = color
        if gate is None:
            from netdoctor.gate import Gate

            gate = Gate()
        self.gate = gate  # formats that mark pass/fail per test (junit, text's verdict) follow it
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
    from netdoctor.model import summarize

    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "netdoctor", "version": __version__},
        "targets": [t.to_dict() for t in targets],
        "findings": [f.to_dict() for f in findings],
        "summary": summarize(findings),
        "duration_ms": round(duration_ms, 1),
    }


def use_color(stream) -> bool:
    """Colour for a terminal that can show it: not when piped, not under NO_COLOR, not on TERM=dumb."""
    import os

    return ("NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
            and hasattr(stream, "isatty") and stream.isatty())


def reporter_for(fmt: str, stream: IO[str], color: bool = False, gate: Gate | None = None) -> Reporter:
    if fmt == "text":
        from netdoctor.report.text import TextReporter

        return TextReporter(stream, color, gate)
    if fmt == "junit":
        from netdoctor.report.junit import JunitReporter

        return JunitReporter(stream, gate=gate)
    if fmt == "sarif":
        from netdoctor.report.sarif import SarifReporter

        return SarifReporter(stream, gate=gate)
    if fmt == "github":
        from netdoctor.report.github import GithubReporter

        return GithubReporter(stream, gate=gate)
    from netdoctor.report.json import JsonReporter, NdjsonReporter

    return {"json": JsonReporter, "ndjson": NdjsonReporter}[fmt](stream, gate=gate)


def schema() -> dict[str, Any]:
    """The JSON Schema of the json report (and, under $defs, of NDJSON's lines), shipped as package data."""
    import json
    from importlib.resources import files

    return json.loads(files(__name__).joinpath("schema.json").read_text())


COMPOSE_FILES_LABEL = "com.docker.compose.project.config_files"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"


def compose_location(target: Target | None) -> tuple[str, int] | None:
    """Where a Compose container is defined, as (path relative to the working directory, line of its
    service), so CI annotations point at the compose file; None outside Compose or outside the checkout."""
    labels = target.container.labels if target and target.container else {}
    files = [p for p in labels.get(COMPOSE_FILES_LABEL, "").split(",") if p]
    service = labels.get(COMPOSE_SERVICE_LABEL)
    if not files or not service:
        return None
    import os
    import re

    path = files[0]
    try:
        relative = os.path.relpath(path)
    except OSError:  # no working directory (it was deleted): nothing is inside the checkout
        return None
    if relative.startswith(".."):
        return None
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    service_line = re.compile(rf"^\s+['\"]?{re.escape(service)}['\"]?\s*:\s*(#.*)?$")
    line = next((n for n, text in enumerate(lines, 1) if service_line.match(text)), 1)
    return relative, line


def finding_text(f: Finding) -> str:
    """A finding as plain lines for CI systems' message fields: what, acceptance, detail, evidence, fix."""
    lines = [f"{f.status.value.upper()} {f.check} on {f.target}: {f.title}"]
    if f.accepted:
        lines.append(f"({f.accepted.describe()})")
    if f.detail:
        lines.append(f.detail)
    if f.evidence:
        lines.append("seen: " + ", ".join(f"{k}={v}" for k, v in f.evidence.items()))
    if f.fix and (f.fix.summary or f.fix.commands):
        lines.append(f"fix: {f.fix.summary}")
        lines += [f"  $ {command}" for command in f.fix.commands]
    return "\n".join(lines)


class Tee(Reporter):
    """Feeds several reporters the same stream of findings: stdout's format and every --report file."""

    def __init__(self, reporters: list[Reporter]):
        super().__init__(stream=None)
        self.reporters = reporters

    def start(self, targets: list[Target]) -> None:
        super().start(targets)
        for reporter in self.reporters:
            reporter.start(targets)

    def add(self, finding: Finding) -> None:
        super().add(finding)
        for reporter in self.reporters:
            reporter.add(finding)

    def finish(self, duration_ms: float) -> None:
        for reporter in self.reporters:
            reporter.finish(duration_ms)
