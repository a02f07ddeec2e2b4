"""JUnit XML for CI test reporters (GitLab, Jenkins, GitHub actions): one testcase per check × target.

A testcase fails exactly when one of its findings trips the gate (--fail-on, minus live acceptances),
so the test report and the exit code always agree. Findings the baseline accepts show as skipped with
the acceptance as the message; warnings below the gate pass, with their text in system-out.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from netdoctor.model import Finding, Status
from netdoctor.report import Reporter, finding_text


class JunitReporter(Reporter):
    def finish(self, duration_ms: float) -> None:
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        root = ET.Element("testsuites", name="netdoctor", time=f"{duration_ms / 1000:.3f}")
        totals = dict(tests=0, failures=0, errors=0, skipped=0)
        for label, by_check in self._grouped():
            suite = ET.SubElement(root, "testsuite", name=label, timestamp=started, hostname=socket.gethostname())
            counts = dict(tests=0, failures=0, errors=0, skipped=0)
            suite_time = 0.0
            for check, findings in sorted(by_check.items()):
                seconds = max(f.duration_ms for f in findings) / 1000
                suite_time += seconds
                case = ET.SubElement(suite, "testcase", classname=label, name=check, time=f"{seconds:.3f}")
                outcome = self._outcome(case, findings)
                counts["tests"] += 1
                if outcome:
                    counts[outcome] += 1
            suite.attrib.update({k: str(v) for k, v in counts.items()}, time=f"{suite_time:.3f}")
            for key in totals:
                totals[key] += counts[key]
        root.attrib.update({k: str(v) for k, v in totals.items()})
        ET.indent(root)
        self.stream.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        self.stream.write(ET.tostring(root, encoding="unicode") + "\n")

    def _grouped(self) -> list[tuple[str, dict[str, list[Finding]]]]:
        """Findings by target (in the order targets were named, host and netdoctor's own after) and check."""
        groups: dict[str, dict[str, list[Finding]]] = {t.label: {} for t in self.targets}
        for finding in self.findings:
            groups.setdefault(finding.target, {}).setdefault(finding.check, []).append(finding)
        return [(label, checks) for label, checks in groups.items() if checks]

    def _outcome(self, case: ET.Element, findings: list[Finding]) -> str | None:
        """Fill the testcase's result element; return which counter it adds to (None: passed)."""
        worst_first = sorted(findings, key=lambda f: -f.status.rank)
        tripping = [f for f in worst_first if self.gate.trips(f)]
        notable = [f for f in worst_first if f.status is not Status.PASS]
        if tripping:
            first = tripping[0]
            kind = "error" if first.status is Status.ERROR else "failure"
            more = f" (+{len(tripping) - 1} more)" if len(tripping) > 1 else ""
            element = ET.SubElement(case, kind, message=_one_line(first) + more, type=first.status.value)
            element.text = "\n\n".join(finding_text(f) for f in notable)
            return "errors" if kind == "error" else "failures"
        if notable and all(f.status is Status.SKIP for f in findings):
            ET.SubElement(case, "skipped", message=notable[0].detail or notable[0].title)
            return "skipped"
        accepted = [f for f in notable if f.accepted]
        if accepted:
            first = accepted[0]
            ET.SubElement(case, "skipped", message=f"{first.status.value.upper()} ({first.accepted.describe()}): {first.title}")
        if notable:
            ET.SubElement(case, "system-out").text = "\n\n".join(finding_text(f) for f in notable)
        return "skipped" if accepted else None


def _one_line(f: Finding) -> str:
    """The message attribute, which some reporters show alone: title, evidence and fix on one line."""
    parts = [f"{f.status.value.upper()}: {f.title}"]
    if f.caused_by:
        parts.append(f"because of {f.caused_by}")
    if f.accepted:
        parts.append(f.accepted.describe())
    if f.evidence:
        parts.append("seen: " + ", ".join(f"{k}={v}" for k, v in f.evidence.items()))
    if f.fix and f.fix.summary:
        parts.append(f"fix: {f.fix.summary}")
    if f.fix and f.fix.commands:
        parts.append("run: " + " ; ".join(f.fix.commands))
    return " — ".join(parts)
