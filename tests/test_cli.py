"""The command line contract: exit codes, report shapes, bad input, and fast start-up."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import run_cli

EXPECTED_IDS = {"ip_forward", "mtu", "icc", "ports", "dns", "vxlan", "macvlan", "reachability",
                "forward_policy", "bridge_nf", "subnet_overlap", "conntrack", "firewall"}
STATUSES = {"pass", "info", "warn", "fail", "skip", "error"}


def test_list_shows_every_check_as_json():
    code, out, _ = run_cli("list", "--format", "json")
    assert code == 0
    checks = {c["id"]: c for c in json.loads(out)}
    assert set(checks) == EXPECTED_IDS
    assert all(c["summary"] and c["scope"] and c["severity"] for c in checks.values())
    from netdoctor.registry import discover

    assert discover().errors == ()  # every built-in check module imports


def test_explain_prints_the_docstring_and_rejects_unknown_ids():
    code, out, _ = run_cli("explain", "mtu")
    assert code == 0 and "daemon.json" in out and "scope:" in out
    code, _, err = run_cli("explain", "nope")
    assert code == 2 and "unknown check id" in err


def _imports_after(*argv: str) -> list[str]:
    probe = ("import sys\nfrom netdoctor.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
             "print([m for m in ('scapy', 'textual', 'docker') if m in sys.modules])") % (list(argv),)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1].replace("'", '"'))


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["check", "--help"], ["tui", "--help"]])
def test_startup_does_not_import_heavy_modules(argv):
    assert _imports_after(*argv) == []


def test_bad_flags_and_unknown_checks_exit_2():
    assert run_cli("check", "--format", "yaml", "host")[0] == 2
    code, _, err = run_cli("check", "--checks", "mtu,bogus", "host")
    assert code == 2 and "bogus" in err
    code, _, err = run_cli("check", "--probe", "no-port", "host")
    assert code == 2 and "HOST:PORT" in err


def test_no_target_on_a_host_is_bad_input():
    code, _, err = run_cli("check")
    assert code == 2 and "name a target" in err


def test_dead_pid_and_missing_netns_are_bad_input():
    dead = subprocess.Popen(["true"])
    dead.wait()
    code, _, err = run_cli("check", f"pid:{dead.pid}")
    assert code == 2 and f"no process with pid {dead.pid}" in err
    code, _, err = run_cli("check", "netns:ndt-does-not-exist")
    assert code == 2 and "does not exist" in err


def test_docker_socket_absent_exits_3(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code, _, err = run_cli("check", "web")
    assert code == 3
    assert "not reachable" in err and "Traceback" not in err


def test_not_root_exits_3(monkeypatch):
    # the venv's interpreter lives under /root, so a real unprivileged process cannot start it here;
    # the euid seen by netdoctor is what decides
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, _, err = run_cli("check", "host")
    assert code == 3 and "needs root" in err


def test_self_and_host_targets_run_without_docker(monkeypatch, netdoctor):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    report = netdoctor("host", "self")
    assert report.exit_code in (0, 1)
    assert {t["target"] for t in report.doc["targets"]} == {"host", "self"}
    # both are the host's own stack here: the checks say so instead of judging
    assert report.statuses("ip_forward") == {"info"}


@pytest.mark.docker
def test_unknown_container_exits_2(docker_client, netdoctor):
    report = netdoctor("ndt-no-such-container")
    assert report.exit_code == 2 and "no container named" in report.stderr


@pytest.mark.docker
def test_json_report_shape(make_container, netdoctor):
    web = make_container("web")
    report = netdoctor(web.name)
    doc = report.doc
    assert doc["schema_version"] == 1
    assert set(doc) >= {"tool", "targets", "findings", "summary", "duration_ms"}
    assert doc["targets"][0]["target"] == f"container:{web.name}"
    assert set(doc["summary"]) == STATUSES
    assert sum(doc["summary"].values()) == len(doc["findings"])
    for finding in doc["findings"]:
        assert set(finding) >= {"check", "target", "status", "severity", "title", "detail", "evidence", "fix", "duration_ms"}
        assert finding["status"] in STATUSES
        assert isinstance(finding["evidence"], dict)
        assert set(finding["fix"]) == {"summary", "commands"}
    assert {f["check"] for f in doc["findings"]} >= EXPECTED_IDS


@pytest.mark.docker
def test_ndjson_streams_findings_then_summary(make_container):
    web = make_container("web")
    code, out, _ = run_cli("check", "--format", "ndjson", "--fail-on", "never", web.name)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert all(line["type"] == "finding" for line in lines[:-1]) and len(lines) > 1
    assert lines[-1]["type"] == "summary" and sum(lines[-1]["summary"].values()) == len(lines) - 1


@pytest.mark.docker
def test_text_report_and_output_file(make_container, tmp_path):
    web = make_container("web")
    out_file = tmp_path / "report.json"
    code, out, _ = run_cli("check", web.name, "--format", "json", "-o", str(out_file), "--fail-on", "never")
    assert code == 0 and out == "" and json.loads(out_file.read_text())["schema_version"] == 1
    code, out, _ = run_cli("check", web.name, "--fail-on", "never")
    assert f"container:{web.name}" in out and "netdoctor:" in out.splitlines()[-1]


@pytest.mark.docker
def test_stopped_container_gets_clear_skips(make_container, netdoctor):
    stopped = make_container("stopped", command="true")
    stopped.wait(timeout=10)
    report = netdoctor(stopped.name)
    assert report.exit_code == 0
    for finding in report.of("mtu") + report.of("ip_forward"):
        assert finding["status"] == "skip"
        assert "exited" in finding["detail"] and "no network namespace" in finding["detail"]


@pytest.mark.docker
def test_fail_on_gate(make_container, make_netns, netdoctor):
    web = make_container("web")
    fakehost = make_netns("host", forwarding=False)
    args = (web.name, "--checks", "ip_forward", "--host-netns", fakehost)
    assert netdoctor(*args).exit_code == 1
    assert netdoctor(*args, "--fail-on", "never").exit_code == 0


@pytest.mark.docker
def test_all_checks_every_running_container(make_container, netdoctor):
    first, second = make_container("a"), make_container("b")
    # a check that only reads a host sysctl: --all also selects other runs' containers, which we do not probe
    labels = {t["target"] for t in netdoctor("--all", "--checks", "ip_forward", "--fail-on", "never").doc["targets"]}
    assert {f"container:{first.name}", f"container:{second.name}"} <= labels


@pytest.mark.docker
def test_nothing_checked_is_exit_3_not_a_pass(make_container, netdoctor):
    """Every selected check skipped (here: a stopped container, namespace checks only): a gate must not pass."""
    stopped = make_container("stopped", command="true")
    stopped.wait(timeout=10)
    report = netdoctor(stopped.name, "--checks", "mtu,ip_forward", "--fail-on", "never")
    assert report.statuses("mtu") == {"skip"}
    assert report.exit_code == 3 and "COULD NOT CHECK" in report.stderr
