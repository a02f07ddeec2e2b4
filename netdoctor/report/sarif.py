"""SARIF 2.1.0, the format code-scanning tools read (GitHub code scanning, Azure DevOps, SonarQube...).

Code-scanning style: one rule per check (its docstring as help), one result per warn or fail finding,
i.e. per open alert (pass, info and skip are not alerts; a fixed fault's alert closes because its result
is gone). A live acceptance becomes an `external` suppression with status `accepted`; an expired one is
not a suppression, and says so in the message and in properties.accepted. An `error` finding means the
check could not judge: it is a tool execution notification, not a result.

Locations: the target label as a logical location, and a physical one because GitHub code scanning
rejects results without an artifact location: a Compose container's compose file at its service's line,
otherwise a repository-relative pseudo-path naming the target (`container/web`, `host`) that opens no file.
"""

from __future__ import annotations

import hashlib
import json

from netdoctor import __version__
from netdoctor.model import Finding, Status
from netdoctor.report import Reporter, compose_location, finding_text

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
RESULT_LEVEL = {Status.FAIL: "error", Status.WARN: "warning"}
SEVERITY_LEVEL = {"low": "note", "medium": "warning", "high": "error", "critical": "error"}


class SarifReporter(Reporter):
    def finish(self, duration_ms: float) -> None:
        from netdoctor.registry import discover

        catalogue = discover()
        rule_ids = sorted({f.check for f in self.findings})
        rules = [self._rule(check_id, catalogue.get(check_id)) for check_id in rule_ids]
        index = {check_id: i for i, check_id in enumerate(rule_ids)}
        errors = [f for f in self.findings if f.status is Status.ERROR]
        run = {
            "tool": {"driver": {"name": "netdoctor", "version": __version__, "semanticVersion": __version__,
                                "rules": rules}},
            "invocations": [{
                "executionSuccessful": not errors,
                "toolExecutionNotifications": [
                    {"level": "error", "message": {"text": finding_text(f)},
                     "associatedRule": {"id": f.check, "index": index[f.check]},
                     "locations": [self._location(f)]} for f in errors],
                "properties": {"durationMs": round(duration_ms, 1), "gate": f"--fail-on {self.gate.fail_on}"},
            }],
            "results": [self._result(f, index[f.check]) for f in self.findings if f.status in RESULT_LEVEL],
        }
        json.dump({"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}, self.stream, indent=2)
        self.stream.write("\n")

    @staticmethod
    def _rule(check_id: str, info) -> dict:
        if info is None:  # netdoctor's own findings (a plugin that failed to load)
            return {"id": check_id, "name": check_id, "shortDescription": {"text": "netdoctor itself"}}
        return {
            "id": info.id, "name": info.title,
            "shortDescription": {"text": info.summary},
            "fullDescription": {"text": info.explanation},
            "help": {"text": info.explanation},
            "defaultConfiguration": {"level": SEVERITY_LEVEL[info.severity.value]},
            "properties": {"scope": info.scope.value, "severity": info.severity.value, "tags": ["network", "docker"]},
        }

    def _location(self, f: Finding) -> dict:
        location: dict = {"logicalLocations": [{"name": f.target, "fullyQualifiedName": f.target, "kind": "resource"}]}
        target = next((t for t in self.targets if t.label == f.target), None)
        where = compose_location(target)
        if where:
            path, line = where
            location["physicalLocation"] = {"artifactLocation": {"uri": path, "uriBaseId": "%SRCROOT%"},
                                            "region": {"startLine": line}}
        else:
            location["physicalLocation"] = {"artifactLocation": {"uri": f.target.replace(":", "/")}}
        return location

    def _result(self, f: Finding, rule_index: int) -> dict:
        result = {
            "ruleId": f.check, "ruleIndex": rule_index, "kind": "fail", "level": RESULT_LEVEL[f.status],
            "message": {"text": finding_text(f)},
            "locations": [self._location(f)],
            # stable across runs while the same check finds the same thing on the same target
            "partialFingerprints": {"netdoctorFinding/v1": hashlib.sha256(
                f"{f.check}\0{f.target}\0{f.title}".encode()).hexdigest()[:32]},
            "properties": {"target": f.target, "status": f.status.value, "severity": f.severity.value,
                           "evidence": f.evidence, "fix": f.fix.to_dict() if f.fix else None,
                           "accepted": f.to_dict()["accepted"], "id": f.id, "caused_by": f.caused_by},
        }
        if f.accepted and not f.accepted.expired:
            result["suppressions"] = [{"kind": "external", "status": "accepted",
                                       "justification": f.accepted.describe()}]
        return result
