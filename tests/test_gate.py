"""The CI gate end to end: select a Compose-like project, fail on its real MTU fault with a JUnit report
that names the container and check, pass once the finding is accepted, fail again when the acceptance
expires, and exit 3 (never 0) when Docker cannot be reached."""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path

import pytest
import yaml
from junitparser import Error, Failure, JUnitXml, Skipped

from tests.composeset import compose_set  # noqa: F401  (fixture)
from tests.conftest import run_cli

TODAY = dt.date.today()


def write_config(directory: Path, text: str, name: str = ".netdoctor.yml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def acceptance(target: str, expires: dt.date, check: str = "mtu") -> str:
    return (f"accept:\n  - check: {check}\n    target: \"{target}\"\n"
            f"    reason: uplink MTU is raised in INFRA-123\n    expires: {expires.isoformat()}\n")


def junit_cases(path: Path) -> dict[tuple[str, str], object]:
    return {(case.classname, case.name): case for suite in JUnitXml.fromfile(str(path)) for case in suite}


@pytest.mark.docker
class TestComposeGate:
    def gate(self, cs, *extra: str) -> tuple[int, str, str]:
        return run_cli("check", "--compose-project", cs.project, "--checks", "mtu", "--host-netns", cs.host_netns, *extra)

    def test_fault_fails_the_gate_with_a_junit_naming_container_and_check(self, compose_set):
        cs = compose_set
        code, out, _ = self.gate(cs, "--report", "junit=reports/netdoctor.xml")
        assert code == 1
        verdict = out.splitlines()[-1]
        assert verdict.startswith("netdoctor: FAILED — 1 fail, ") and " on 2 targets in " in verdict
        assert verdict.endswith("(gate: --fail-on fail)")
        cases = junit_cases(cs.workdir / "reports/netdoctor.xml")
        assert {label for label, _ in cases} == {cs.label(cs.web), cs.label(cs.db)}  # the outsider is not selected
        [failure] = cases[(cs.label(cs.web), "mtu")].result
        assert isinstance(failure, Failure)
        assert "MTU 1500" in failure.message and "egress_mtu=1400" in failure.message
        assert f"com.docker.network.driver.mtu=1400 {cs.front}-mtu1400" in failure.text  # the fix, real names
        assert cases[(cs.label(cs.db), "mtu")].is_passed

    def test_accepted_finding_passes_but_still_shows(self, compose_set):
        cs = compose_set
        expires = TODAY + dt.timedelta(days=30)
        write_config(cs.workdir, acceptance(f"container:{cs.project}-web-*", expires))
        code, out, _ = self.gate(cs, "--report", "junit=netdoctor.xml", "--report", "json=netdoctor.json")
        assert code == 0
        assert f"FAIL (accepted until {expires}: uplink MTU is raised in INFRA-123)" in out
        assert out.splitlines()[-1].startswith("netdoctor: PASSED — 1 fail (1 accepted), ")
        [finding] = [f for f in json.loads((cs.workdir / "netdoctor.json").read_text())["findings"] if f["status"] == "fail"]
        assert finding["target"] == cs.label(cs.web)
        assert finding["accepted"] == {"reason": "uplink MTU is raised in INFRA-123", "expires": str(expires), "expired": False}
        [skipped] = junit_cases(cs.workdir / "netdoctor.xml")[(cs.label(cs.web), "mtu")].result
        assert isinstance(skipped, Skipped) and f"accepted until {expires}" in skipped.message

    def test_expired_acceptance_fails_the_gate_again(self, compose_set):
        cs = compose_set
        expired_on = TODAY - dt.timedelta(days=1)
        write_config(cs.workdir, acceptance(f"{cs.project}-web-*", expired_on))  # a bare name pattern
        code, out, err = self.gate(cs, "--format", "json", "--report", "junit=netdoctor.xml")
        assert code == 1
        [finding] = [f for f in json.loads(out)["findings"] if f["status"] == "fail"]
        assert finding["accepted"]["expired"] is True
        assert err.strip().splitlines()[-1].startswith("netdoctor: FAILED — 1 fail (1 acceptance expired)")
        [failure] = junit_cases(cs.workdir / "netdoctor.xml")[(cs.label(cs.web), "mtu")].result
        assert isinstance(failure, Failure) and f"acceptance expired {expired_on}" in failure.message

    def test_a_renewed_acceptance_wins_over_the_expired_one(self, compose_set):
        cs = compose_set
        stale, renewed = TODAY - dt.timedelta(days=1), TODAY
        write_config(cs.workdir, acceptance("*", stale) + acceptance("*", renewed)[len("accept:\n"):])
        assert self.gate(cs)[0] == 0  # expires is inclusive: accepted through today

    def test_acceptance_for_another_target_or_check_does_not_apply(self, compose_set):
        cs = compose_set
        future = TODAY + dt.timedelta(days=30)
        write_config(cs.workdir, acceptance(f"container:{cs.db}", future) + acceptance("*", future, check="ip_forward")[len("accept:\n"):])
        assert self.gate(cs)[0] == 1

    def test_pyproject_config_is_discovered_from_a_subdirectory(self, compose_set, monkeypatch):
        cs = compose_set
        future = TODAY + dt.timedelta(days=30)
        write_config(cs.workdir, "[project]\nname = \"app\"\n\n[tool.netdoctor]\nchecks = [\"mtu\"]\n\n"
                                 "[[tool.netdoctor.accept]]\ncheck = \"mtu\"\n"
                                 f"target = \"container:{cs.web}\"\nreason = \"known\"\nexpires = {future}\n",
                     name="pyproject.toml")
        (cs.workdir / "sub").mkdir()
        monkeypatch.chdir(cs.workdir / "sub")
        code, out, _ = run_cli("check", "--compose-project", cs.project, "--host-netns", cs.host_netns)
        assert code == 0 and f"config: {cs.workdir / 'pyproject.toml'}" in out.splitlines()[-1]
        assert "ip_forward" not in out  # checks: [mtu] from the config

    def test_config_defaults_and_flags_that_override_them(self, compose_set):
        cs = compose_set
        write_config(cs.workdir, "checks: [mtu]\nfail-on: never\ntimeout: 1\n")
        code, out, _ = run_cli("check", "--compose-project", cs.project, "--host-netns", cs.host_netns, "--format", "json")
        assert code == 0 and {f["check"] for f in json.loads(out)["findings"]} == {"mtu"}
        code, _, err = run_cli("check", "--compose-project", cs.project, "--host-netns", cs.host_netns, "--fail-on", "fail")
        assert code == 1
        other = write_config(cs.workdir, "checks: [ip_forward]\n", name="other.yml")
        code, out, _ = run_cli("check", "--config", str(other), "--compose-project", cs.project,
                               "--host-netns", cs.host_netns, "--format", "json")
        assert code == 0 and {f["check"] for f in json.loads(out)["findings"]} == {"ip_forward"}

    def test_selectors(self, compose_set):
        cs = compose_set

        def targets(*selectors: str) -> set[str]:
            # ip_forward only reads a host sysctl: --all also selects other runs' containers, which we do not probe
            code, out, err = run_cli("check", *selectors, "--checks", "ip_forward", "--host-netns", cs.host_netns,
                                     "--format", "json", "--fail-on", "never")
            assert code == 0, err
            return {t["target"] for t in json.loads(out)["targets"]}

        web, db, outsider = cs.label(cs.web), cs.label(cs.db), cs.label(cs.outsider)
        assert targets("--compose-project", cs.project) == {web, db}
        assert targets("--compose-project", cs.project, "--label", "com.docker.compose.service=web") == {web}
        assert targets("--label", f"com.docker.compose.project={cs.project}", "--label", "com.docker.compose.service=db") == {db}
        assert targets("--network", cs.back) == {web, db}
        assert targets("--network", cs.front) == {web, outsider}
        assert targets("--network", cs.front, "--network", cs.back) == {web, db, outsider}
        assert targets(cs.web, "--network", cs.back) == {web, db}  # named and selected: checked once
        assert {web, db, outsider} <= targets("--all")

    def test_selectors_that_match_nothing_are_bad_input(self, compose_set):
        cs = compose_set
        code, _, err = run_cli("check", "--compose-project", cs.project + "-absent")
        assert code == 2 and "no running container matches --compose-project" in err
        code, _, err = run_cli("check", "--network", cs.project + "-nonet")
        assert code == 2 and "no Docker network" in err


class TestCouldNotCheck:
    """Docker stopped must never read as healthy: exit 3, and the CI report says so."""

    @pytest.fixture(params=["no-socket", "stale-socket"])
    def dead_engine(self, request, tmp_path, monkeypatch):
        path = tmp_path / "docker.sock"
        if request.param == "stale-socket":  # what a stopped dockerd leaves: the file, nobody listening
            stale = socket.socket(socket.AF_UNIX)
            stale.bind(str(path))
            request.addfinalizer(stale.close)
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        monkeypatch.chdir(tmp_path)
        return path

    def test_compose_gate_exits_3_with_reports_that_say_why(self, dead_engine, tmp_path):
        code, out, err = run_cli("check", "--compose-project", "shop", "--format", "json",
                                 "--report", "junit=netdoctor.xml", "--report", "github=annotations.txt")
        assert code == 3
        assert "COULD NOT CHECK" in err and "not reachable" in err and "Traceback" not in err
        [finding] = json.loads(out)["findings"]
        assert finding["status"] == "error" and "not reachable" in finding["title"]
        [[case]] = [list(suite) for suite in JUnitXml.fromfile(str(tmp_path / "netdoctor.xml"))]
        assert isinstance(case.result[0], Error) and "not reachable" in case.result[0].message
        assert (tmp_path / "annotations.txt").read_text().startswith("::error ")

    def test_even_with_the_gate_off(self, dead_engine):
        code, out, _ = run_cli("check", "--all", "--fail-on", "never")
        assert code == 3 and out == ""


class TestConfigErrors:
    @pytest.mark.parametrize("text, message", [
        ("colour: red\n", "unknown setting(s) colour"),
        ("fail-on: sometimes\n", "fail-on must be one of"),
        ("timeout: fast\n", "timeout must be a number"),
        ("accept:\n  - check: mtu\n    expires: 2030-01-01\n", "missing reason"),
        ("accept:\n  - check: mtu\n    reason: x\n    expires: soon\n", "expires must be a date"),
        ("accept:\n  - check: mtux\n    reason: x\n    expires: 2030-01-01\n", "unknown check id(s) mtux"),
        ("checks: [mtu, nope]\n", "unknown check id(s): nope"),
        ("accept: [\n", "cannot read"),
    ])
    def test_bad_config_is_bad_input(self, tmp_path, monkeypatch, text, message):
        write_config(tmp_path, text)
        monkeypatch.chdir(tmp_path)
        code, _, err = run_cli("check", "host")
        assert code == 2 and message in err, err

    def test_readme_example_config_is_valid(self):
        from netdoctor.config import _parse

        readme = (Path(__file__).parent.parent / "README.md").read_text()
        example = readme[readme.index("### Config and baseline"):].split("```yaml\n", 1)[1].split("```", 1)[0]
        config = _parse(yaml.safe_load(example), "README")
        assert config.defaults["fail-on"] == "fail" and config.defaults["probes"] == ["db:5432"]
        [accept] = config.accept
        assert accept.expires == dt.date(2027, 1, 31) and accept.target == "container:shop-web-*"

    def test_named_config_must_exist(self, tmp_path):
        code, _, err = run_cli("check", "--config", str(tmp_path / "absent.yml"), "host")
        assert code == 2 and "does not exist" in err

    def test_bad_report_spec_is_bad_input(self):
        code, _, err = run_cli("check", "--report", "xml=out.xml", "host")
        assert code == 2 and "FORMAT=PATH" in err
