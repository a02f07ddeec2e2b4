"""JSON (one document at the end) and NDJSON (one finding per line as it arrives, then a summary line)."""

from __future__ import annotations

import json

from netdoctor.model import Finding, summarize
from netdoctor.report import Reporter, document


class JsonReporter(Reporter):
    def finish(self, duration_ms: float) -> None:
        json.dump(document(self.targets, self.findings, duration_ms), self.stream, indent=2)
        self.stream.write("\n")


class NdjsonReporter(Reporter):
    def add(self, finding: Finding) -> None:
        super().add(finding)
        self.stream.write(json.dumps({"type": "finding", **finding.to_dict()}) + "\n")
        self.stream.flush()

    def finish(self, duration_ms: float) -> None:
        line = {"type": "summary", "targets": [t.label for t in self.targets],
                "summary": summarize(self.findings), "duration_ms": round(duration_ms, 1)}
        self.stream.write(json.dumps(line) + "\n")
