"""Bad input, odd environments and targets in odd states: never a traceback, always the right exit code and
one sentence naming what is wrong; every JSON report produced validates against `netdoctor schema`.

- MATRIX: what a user types (targets, flags, config files, environment), run in-process with CliRunner
  three ways: as root with Docker up, as root with Docker "down" (DOCKER_HOST at a socket that is not
  there; the shared dockerd is never stopped), and as an unprivileged user (one subprocess as nobody runs
  the whole table, since the venv's interpreter may live where nobody can start it).
- Process-level behaviour (signals, a closed or full stdout, a reader that stops reading, a deleted
  working directory, terminals and colours) runs netdoctor as a subprocess.
- Target states use real containers: created, running, paused, restarting, exited, removed mid-run,
  --network none, host networking, --network container:X.

Exit codes: 0 healthy, 1 findings, 2 bad input, 3 could not check, 130 interrupted, 141 stdout's reader gone.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import pytest

from netdoctor.registry import discover
from tests.conftest import ROOT, RUN_ID, TEST_LABEL, run_cli, sh, unique

NETDOCTOR = [sys.executable, "-m", "netdoctor"]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
MISSING_SOCKET = "unix:///nonexistent/netdoctor-test/docker.sock"
TRACEBACK_MARKS = ("Traceback (most recent call last)", "internal error")
LONG_LABEL = "a" * 64
LONG_NAME = ".".join(["a" * 60] * 5)  # 304 characters


@pytest.fixture(scope="module")
def schema() -> dict:
    code, out, _ = run_cli("schema")
    assert code == 0
    return json.loads(out)


def assert_clean(code: int, out: str, err: str, expected: int, words=(), schema: dict | None = None) -> None:
    """The exit code, no traceback, the key words of the message, and any JSON on stdout valid."""
    assert code == expected, f"exit {code}, expected {expected}\nstderr: {err}\nstdout: {out[:2000]}"
    for mark in TRACEBACK_MARKS:
        assert mark not in err and mark not in out, err
    for word in words:
        assert word.lower() in err.lower(), f"{word!r} not in: {err}"
    if schema is not None and out.lstrip().startswith("{"):
        jsonschema.validate(json.loads(out), schema)


# --- the matrix ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    code: int                              # as root, Docker up
    words: tuple[str, ...] = ()            # in stderr
    files: dict = field(default_factory=dict)  # written into the working directory first (str or bytes)
    env: tuple[tuple[str, str], ...] = ()
    docker: bool = False                   # needs the engine to decide: with Docker down it is exit 3
    root: bool = True                      # needs root to decide: unprivileged it is exit 3 "needs root"
    nobody: tuple[int, tuple[str, ...]] | None = None  # what an unprivileged user gets, when it differs

    def expected(self, variant: str) -> tuple[int, tuple[str, ...]]:
        if variant == "down" and self.docker:
            return 3, ("not reachable",)
        if variant == "nobody" and self.nobody:
            return self.nobody
        if variant == "nobody" and self.root and self.code != 2 or variant == "nobody" and self.docker:
            return 3, ("needs root",)
        return self.code, self.words


def C(id: str, *argv: str, code: int = 2, words=(), **kw) -> Case:
    return Case(id, argv, code, tuple(words), **kw)


CHEAP = ("--checks", "ip_forward")  # reads one sysctl: valid runs stay fast and deterministic (0)
CONFIG_OK = "timeout: 3\n"
ACCEPT = "accept:\n  - check: mtu\n    reason: known\n    expires: {}\n"

MATRIX = [
    # targets
    C("target-empty", "check", "", words=["empty target"]),
    C("target-blank", "check", "  ", words=["empty target"]),
    C("target-container-empty", "check", "container:", words=["names no container"]),
    C("target-pid-empty", "check", "pid:", words=["not a process id"]),
    C("target-pid-word", "check", "pid:abc", words=["pid:abc is not a process id"]),
    C("target-pid-zero", "check", "pid:0", words=["not a process id"]),
    C("target-pid-negative", "check", "pid:-1", words=["not a process id"]),
    C("target-pid-dead", "check", "pid:4194304", words=["no process with pid 4194304"]),
    C("target-netns-empty", "check", "netns:", words=["empty network namespace"]),
    C("target-netns-missing", "check", "netns:ndt-no-such-ns", words=["does not exist"]),
    C("target-netns-devnull", "check", "netns:/dev/null", words=["/dev/null", "not a network namespace"]),
    C("target-netns-directory", "check", "netns:/tmp", words=["directory", "not a network namespace"]),
    C("target-netns-regular-file", "check", "netns:/etc/hostname", words=["ordinary file", "not a network namespace"]),
    C("target-netns-mount-ns", "check", "netns:/proc/self/ns/mnt", words=["another kind of namespace"]),
    C("target-netns-relative-file", "check", "netns:./plain", words=["not a network namespace"], files={"plain": "x"}),
    C("target-unknown-kind", "check", "vm:web", words=["unknown kind of target 'vm:'"]),
    C("target-space", "check", "a b", words=["not a container name"]),
    C("target-slash-path", "check", "../../info", words=["not a container name"]),
    C("target-query", "check", "web?all=1", words=["not a container name"]),
    C("target-unicode", "check", "wéb", words=["not a container name"]),
    C("target-dash-first", "check", "--", "-web", words=["not a container name"]),
    C("target-unknown-container", "check", "ndt-no-such-container", words=["no container named"], docker=True),
    C("target-container-prefix-unknown", "check", "container:ndt-no-such", words=["no container named"], docker=True),
    # in a container (/.dockerenv) whose host namespace it may not see, netdoctor checks `self` by default
    C("target-none-on-host", "check", words=["name a target"],
      nobody=(3, ("needs root",)) if os.path.exists("/.dockerenv") else None),
    C("target-host", "check", "host", *CHEAP, code=0),
    C("target-self", "check", "self", *CHEAP, code=0),
    # --timeout
    C("timeout-nan", "check", "host", "--timeout", "nan", words=["--timeout", "nan"]),
    C("timeout-inf", "check", "host", "--timeout", "inf", words=["--timeout", "inf"]),
    C("timeout-huge", "check", "host", "--timeout", "1e400", words=["--timeout"]),
    C("timeout-negative", "check", "host", "--timeout", "-1", words=["--timeout", "-1"]),
    C("timeout-zero", "check", "host", "--timeout", "0", words=["--timeout"]),
    C("timeout-too-small", "check", "host", "--timeout", "0.05", words=["0.1 to 120"]),
    C("timeout-too-big", "check", "host", "--timeout", "121", words=["0.1 to 120"]),
    C("timeout-word", "check", "host", "--timeout", "soon", words=["--timeout"]),
    C("timeout-ok", "check", "host", "--timeout", "0.5", *CHEAP, code=0),
    # --probe
    C("probe-no-port", "check", "host", "--probe", "10.0.0.1", words=["HOST:PORT", "port is missing"]),
    C("probe-empty-port", "check", "host", "--probe", "10.0.0.1:", words=["1 to 65535"]),
    C("probe-no-host", "check", "host", "--probe", ":80", words=["host is missing"]),
    C("probe-port-zero", "check", "host", "--probe", "10.0.0.1:0", words=["1 to 65535", "'0'"]),
    C("probe-port-70000", "check", "host", "--probe", "10.0.0.1:70000", words=["1 to 65535", "70000"]),
    C("probe-port-word", "check", "host", "--probe", "10.0.0.1:http", words=["1 to 65535", "http"]),
    C("probe-port-negative", "check", "host", "--probe", "10.0.0.1:-5", words=["1 to 65535"]),
    C("probe-v6-unbracketed", "check", "host", "--probe", "::1:80", words=["brackets"]),
    C("probe-v6-unclosed", "check", "host", "--probe", "[::1:80", words=["brackets"]),
    C("probe-v6-no-port", "check", "host", "--probe", "[::1]", words=["port is missing"]),
    C("probe-v6-bad-port", "check", "host", "--probe", "[::1]:x", words=["1 to 65535"]),
    C("probe-host-space", "check", "host", "--probe", "a b:80", words=["not an IP address or a container name"]),
    C("probe-host-url", "check", "host", "--probe", "http://x:80", words=["brackets"]),
    # --peer
    C("peer-port-99999", "check", "host", "--peer", "db:99999", words=["1 to 65535", "99999"]),
    C("peer-port-word", "check", "host", "--peer", "db:abc", words=["--peer", "the port must be a number", "'abc'"]),
    C("peer-port-zero", "check", "host", "--peer", "db:0", words=["1 to 65535"]),
    C("peer-ip", "check", "host", "--peer", "10.0.0.5", words=["a peer is a container name"]),
    C("peer-no-name", "check", "host", "--peer", ":80", words=["host is missing"]),
    C("peer-space", "check", "host", "--peer", "my db", words=["not a container name"]),
    # --resolve
    C("resolve-empty", "check", "host", "--resolve", "", words=["not a DNS name", "empty"]),
    C("resolve-dot", "check", "host", "--resolve", ".", words=["not a DNS name", "empty"]),
    C("resolve-double-dot", "check", "host", "--resolve", "a..example", words=["empty label"]),
    C("resolve-leading-dot", "check", "host", "--resolve", ".example", words=["empty label"]),
    C("resolve-long-label", "check", "host", "--resolve", f"{LONG_LABEL}.example", words=["64 characters", "at most 63"]),
    C("resolve-long-name", "check", "host", "--resolve", LONG_NAME, words=["at most 253"]),
    C("resolve-space", "check", "host", "--resolve", "db server", words=["not a DNS name"]),
    C("resolve-ipv4", "check", "host", "--resolve", "10.0.0.1", words=["IP address"]),
    C("resolve-ipv6", "check", "host", "--resolve", "::1", words=["IP address"]),
    C("resolve-slash", "check", "host", "--resolve", "db/x.example", words=["not a DNS name", "characters other than"]),
    C("resolve-ok", "check", "host", "--resolve", "db.example.", "--resolve", "bücher.example", *CHEAP, code=0),
    # --checks / --skip / selection of checks
    C("checks-empty", "check", "host", "--checks", "", words=["names no check id"]),
    C("checks-commas", "check", "host", "--checks", ",,", words=["names no check id"]),
    C("checks-unknown", "check", "host", "--checks", "mtu,bogus", words=["unknown check id", "bogus"]),
    C("skip-unknown", "check", "host", "--skip", "bogus", words=["unknown check id", "bogus"]),
    C("checks-all-skipped", "check", "host", "--checks", "mtu", "--skip", "mtu", words=["no check left"]),
    C("skip-every-check", "check", "host", "--skip", ",".join(discover().ids), words=["no check left"]),
    C("explain-unknown", "explain", "bogus", words=["unknown check id"]),
    # formats, outputs, gate
    C("format-unknown", "check", "host", "--format", "yaml", words=["yaml"]),
    C("fail-on-unknown", "check", "host", "--fail-on", "sometimes", words=["sometimes"]),
    C("report-no-equals", "check", "host", "--report", "junit", words=["FORMAT=PATH"]),
    C("report-no-path", "check", "host", "--report", "junit=", words=["FORMAT=PATH"]),
    C("report-no-format", "check", "host", "--report", "=x.xml", words=["FORMAT=PATH"]),
    C("report-unknown-format", "check", "host", "--report", "yaml=x.yaml", words=["FORMAT=PATH"]),
    C("report-directory", "check", "host", *CHEAP, "--report", "junit=.", words=["is a directory"]),
    C("output-directory", "check", "host", "-o", ".", words=["directory"]),
    C("same-path-twice", "check", "host", *CHEAP, "-o", "r.txt", "--report", "junit=r.txt", words=["same place"]),
    C("same-path-relative-absolute", "check", "host", *CHEAP, "-o", "r.txt", "--report", "json=./sub/../r.txt",
      words=["same place"], files={"sub/.keep": ""}),
    C("same-path-twice-reports", "check", "host", *CHEAP, "--report", "json=r", "--report", "sarif=r", words=["same place"]),
    C("devnull-twice", "check", "host", *CHEAP, "-o", "/dev/null", "--report", "junit=/dev/null", code=0),
    # --host-netns, --node, selectors
    C("host-netns-devnull", "check", "host", "--host-netns", "/dev/null", words=["--host-netns", "not a network namespace"]),
    C("host-netns-directory", "check", "host", "--host-netns", "/tmp", words=["--host-netns", "directory"]),
    C("host-netns-missing", "check", "host", "--host-netns", "ndt-no-such-ns", words=["--host-netns", "does not exist"]),
    C("host-netns-file", "check", "host", "--host-netns", "/etc/hostname", words=["not a network namespace"]),
    C("host-netns-blank", "check", "host", "--host-netns", " ", words=["empty network namespace"]),
    C("node-unknown", "check", "host", "--node", "ndt-no-such-node", words=["no lab node named"]),
    C("label-empty", "check", "--label", "=x", words=["KEY or KEY=VALUE"]),
    C("network-unknown", "check", "--network", "ndt-no-such-net", words=["no Docker network"], docker=True),
    C("compose-project-nothing", "check", "--compose-project", "ndt-no-such-project", words=["no running container"],
      docker=True),
    # config files
    C("config-not-utf8", "check", "host", files={".netdoctor.yml": b"timeout: 3\n\xff\xfe\n"}, words=["not UTF-8"]),
    C("config-bad-date", "check", "host", files={".netdoctor.yml": ACCEPT.format("2099-02-30")},
      words=["cannot read", "day is out of range"]),
    C("config-bad-month", "check", "host", files={".netdoctor.yml": ACCEPT.format("2099-13-01")}, words=["cannot read"]),
    C("config-date-word", "check", "host", files={".netdoctor.yml": ACCEPT.format("tomorrow")}, words=["YYYY-MM-DD"]),
    C("config-date-quoted-bad", "check", "host", files={".netdoctor.yml": ACCEPT.format('"2099-02-30"')},
      words=["YYYY-MM-DD"]),
    C("config-reason-null", "check", "host", files={".netdoctor.yml": "accept:\n  - check: mtu\n    reason:\n"
                                                                       "    expires: 2099-01-01\n"}, words=["reason"]),
    C("config-accept-missing-keys", "check", "host", files={".netdoctor.yml": "accept:\n  - check: mtu\n"},
      words=["missing expires, reason"]),
    C("config-accept-not-list", "check", "host", files={".netdoctor.yml": "accept: yes\n"}, words=["accept must be a list"]),
    C("config-accept-unknown-check", "check", "host", *CHEAP, files={".netdoctor.yml": ACCEPT.replace("mtu", "bogus")
      .format("2099-01-01")}, words=["unknown check id", "bogus"]),
    C("config-top-level-list", "check", "host", files={".netdoctor.yml": "- mtu\n"}, words=["mapping"]),
    C("config-yaml-syntax", "check", "host", files={".netdoctor.yml": "checks: [mtu\n"}, words=["cannot read", "YAML"]),
    C("config-unknown-key", "check", "host", files={".netdoctor.yml": "timout: 3\n"}, words=["unknown setting", "timout"]),
    C("config-timeout-nan", "check", "host", files={".netdoctor.yml": "timeout: .nan\n"}, words=["timeout"]),
    C("config-timeout-inf", "check", "host", files={".netdoctor.yml": "timeout: .inf\n"}, words=["timeout"]),
    C("config-timeout-bool", "check", "host", files={".netdoctor.yml": "timeout: yes\n"}, words=["timeout"]),
    C("config-timeout-string", "check", "host", files={".netdoctor.yml": "timeout: '3'\n"}, words=["timeout"]),
    C("config-fail-on-bad", "check", "host", files={".netdoctor.yml": "fail-on: maybe\n"}, words=["fail-on", "maybe"]),
    C("config-checks-mapping", "check", "host", files={".netdoctor.yml": "checks: {mtu: 1}\n"}, words=["list of strings"]),
    C("config-checks-unknown", "check", "host", files={".netdoctor.yml": "checks: [bogus]\n"}, words=["bogus"]),
    C("config-probe-port", "check", "host", files={".netdoctor.yml": "probes: ['10.0.0.1:70000']\n"},
      words=[".netdoctor.yml: probes", "70000"]),
    C("config-peer-port", "check", "host", files={".netdoctor.yml": "peers: ['db:abc']\n"}, words=[".netdoctor.yml: peers", "abc"]),
    C("config-resolve-long", "check", "host", files={".netdoctor.yml": f"resolve: ['{LONG_LABEL}.x']\n"},
      words=[".netdoctor.yml: resolve", "at most 63"]),
    C("config-flag-wins", "check", "host", "--timeout", "1", *CHEAP, files={".netdoctor.yml": "timeout: 3\n"}, code=0),
    C("config-devnull", "check", "host", "--config", "/dev/null", *CHEAP, code=0),
    C("config-missing", "check", "host", "--config", "nope.yml", words=["does not exist"]),
    C("config-directory", "check", "host", "--config", ".", words=["directory"]),
    C("config-empty-file", "check", "host", *CHEAP, files={".netdoctor.yml": ""}, code=0),
    C("config-only-comments", "check", "host", *CHEAP, files={".netdoctor.yml": "# nothing\n"}, code=0),
    C("pyproject-no-table", "check", "host", "--config", "pyproject.toml", files={"pyproject.toml": "[project]\nname='x'\n"},
      words=["no [tool.netdoctor] table"]),
    C("pyproject-bad-toml", "check", "host", "--config", "pyproject.toml", files={"pyproject.toml": "[tool.netdoctor\n"},
      words=["not valid TOML"]),
    C("pyproject-bad-date", "check", "host", "--config", "pyproject.toml",
      files={"pyproject.toml": "[tool.netdoctor]\n[[tool.netdoctor.accept]]\ncheck='mtu'\nreason='x'\nexpires=2099-02-30\n"},
      words=["cannot read"]),
    C("pyproject-not-utf8", "check", "host", "--config", "pyproject.toml", files={"pyproject.toml": b"[tool.netdoctor]\n\xff"},
      words=["not UTF-8"]),
    # environment
    C("docker-host-garbage", "check", "host", env=(("DOCKER_HOST", "garbage"),), words=["DOCKER_HOST", "garbage"]),
    C("docker-host-no-port", "check", "host", env=(("DOCKER_HOST", "tcp://127.0.0.1"),), words=["tcp://HOST:PORT"]),
    C("docker-host-ssh", "check", "host", env=(("DOCKER_HOST", "ssh://user@box"),), words=["-H ssh://user@box", "--context"]),
    C("docker-cert-path-missing", "check", "host", env=(("DOCKER_HOST", "tcp://127.0.0.1:2376"), ("DOCKER_TLS_VERIFY", "1"),
                                                        ("DOCKER_CERT_PATH", "/nonexistent/certs")), words=["DOCKER_CERT_PATH"]),
    C("docker-host-empty-is-default", "check", "host", *CHEAP, env=(("DOCKER_HOST", ""),), code=0),
    C("no-color-and-dumb", "check", "host", *CHEAP, env=(("NO_COLOR", "1"), ("TERM", "dumb")), code=0),
    # the TUI refuses where it cannot draw (CliRunner's stdin and stdout are not terminals)
    C("tui-not-a-terminal", "tui", "host", words=["needs a terminal"]),
    C("tui-bad-check", "tui", "--checks", "bogus", words=["unknown check id"]),
    C("tui-bad-target", "tui", "netns:/dev/null", words=["not a network namespace"]),
    # commands that need no privilege
    C("list", "list", code=0, root=False),
    C("schema", "schema", code=0, root=False),
    C("explain", "explain", "mtu", code=0, root=False),
]
IDS = [case.id for case in MATRIX]
assert len(set(IDS)) == len(IDS)


def report_schema(case: Case, schema: dict) -> dict | None:
    """What `check` prints is a report; `schema` prints the schema itself."""
    return schema if case.argv[0] == "check" else None


def _argv(case: Case) -> list[str]:
    """Check runs report JSON, so that what they produce is validated against the schema."""
    argv = list(case.argv)
    if argv[0] == "check" and "--format" not in argv and "-o" not in argv:
        argv[1:1] = ["--format", "json"]
    return argv


def _workdir(root: Path, case: Case) -> Path:
    directory = root / case.id
    directory.mkdir(parents=True)
    for name, content in case.files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return directory


def _run_in(directory: Path, case: Case, monkeypatch, extra_env: dict | None = None) -> tuple[int, str, str]:
    monkeypatch.chdir(directory)
    for key, value in {**dict(case.env), **(extra_env or {})}.items():
        monkeypatch.setenv(key, value)
    return run_cli(*_argv(case))


@pytest.mark.parametrize("case", MATRIX, ids=IDS)
def test_as_root(case, tmp_path, monkeypatch, schema, docker_client):
    code, out, err = _run_in(_workdir(tmp_path, case), case, monkeypatch)
    assert_clean(code, out, err, *case.expected("root"), report_schema(case, schema))
    if code == 2:
        assert out == "", "bad input writes no report"
        assert len(err.strip().splitlines()) == 1 or err.startswith("Usage:"), f"one sentence, not: {err}"


@pytest.mark.parametrize("case", MATRIX, ids=IDS)
def test_with_docker_down(case, tmp_path, monkeypatch, schema):
    env = {} if any(k == "DOCKER_HOST" for k, _ in case.env) else {"DOCKER_HOST": MISSING_SOCKET}
    code, out, err = _run_in(_workdir(tmp_path, case), case, monkeypatch, env)
    assert_clean(code, out, err, *case.expected("down"), report_schema(case, schema))


# One unprivileged process runs the whole matrix in-process and hands back (code, stdout, stderr) per case.
NOBODY_RUNNER = r"""
import json, os, sys
from click.testing import CliRunner
from netdoctor.cli import main
results = {}
for case in json.loads(sys.stdin.read()):
    os.chdir(case["cwd"])
    saved = dict(os.environ)
    os.environ.update(case["env"])
    result = CliRunner().invoke(main, case["argv"], catch_exceptions=True)
    os.environ.clear(); os.environ.update(saved)
    err = result.stderr + ("".join(__import__("traceback").format_exception(result.exc_info[1]))
                           if result.exception and not isinstance(result.exception, SystemExit) else "")
    results[case["id"]] = [result.exit_code, result.stdout, err]
print(json.dumps(results))
"""


def unprivileged_python() -> list[str]:
    """This venv's Python started as nobody: its own interpreter when nobody may run it (a venv made from
    the system's python3), else the system's python3 of the same version with the venv's packages added."""
    probe = subprocess.run([*NOBODY, sys.executable, "-c", "import netdoctor.cli"], capture_output=True)
    if probe.returncode == 0:
        return [*NOBODY, sys.executable, "-c"]
    system = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}")
    assert system, "no system Python of this version for the unprivileged run"
    site_dir = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    return [*NOBODY, system, "-c", f"import site; site.addsitedir({site_dir!r});"]


@pytest.fixture(scope="module")
def nobody_results():
    root = Path(tempfile.mkdtemp(prefix="ndt-nobody-"))
    try:
        root.chmod(0o755)
        cases = []
        for case in MATRIX:
            directory = _workdir(root, case)
            for path in [directory, *directory.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
            cases.append({"id": case.id, "cwd": str(directory), "argv": _argv(case), "env": dict(case.env)})
        *command, code = unprivileged_python()
        done = subprocess.run([*command, code + NOBODY_RUNNER], input=json.dumps(cases), capture_output=True,
                              text=True, timeout=300, cwd=root)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("case", MATRIX, ids=IDS)
def test_as_nobody(case, nobody_results, schema):
    code, out, err = nobody_results[case.id]
    assert_clean(code, out, err, *case.expected("nobody"), report_schema(case, schema))


def test_unprivileged_run_really_is_unprivileged(nobody_results):
    """The baseline that makes the nobody column mean something: a valid request is refused for want of root."""
    code, _, err = nobody_results["target-host"]
    assert code == 3 and "needs root" in err


# --- process-level behaviour ----------------------------------------------------------------------------

def netdoctor_process(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    return subprocess.run([*NETDOCTOR, *argv], text=True, timeout=120, cwd=kwargs.pop("cwd", ROOT), **kwargs)


def test_stdout_closed_is_could_not_check():
    done = subprocess.run(" ".join([*NETDOCTOR, "check", "host", *CHEAP]) + " >&-", shell=True, capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert_clean(done.returncode, "", done.stderr, 3, ["standard output is closed", "-o FILE"])


def test_stdout_closed_with_output_file_still_reports(tmp_path):
    report = tmp_path / "report.json"
    done = subprocess.run(" ".join([*NETDOCTOR, "check", "host", *CHEAP, "--format", "json", "-o", str(report)]) + " >&-",
                          shell=True, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert_clean(done.returncode, "", done.stderr, 0, ["PASSED"])
    assert json.loads(report.read_text())["schema_version"] == 1


@pytest.mark.parametrize("stream", ["stdin", "stderr"])
def test_other_standard_streams_closed(stream):
    closed = {"stdin": "<&-", "stderr": "2>&-"}[stream]
    done = subprocess.run(" ".join([*NETDOCTOR, "check", "host", *CHEAP, "--format", "json"]) + f" {closed}", shell=True,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0 and json.loads(done.stdout)["schema_version"] == 1


def _in_deleted_directory(*argv: str) -> subprocess.CompletedProcess:
    gone = Path(tempfile.mkdtemp(prefix="ndt-gone-"))
    script = f"cd {gone} && rmdir {gone} && exec {' '.join(NETDOCTOR)} " + " ".join(argv)
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)


def test_deleted_working_directory_runs_without_a_config(schema):
    done = _in_deleted_directory("check", "host", *CHEAP, "--format", "json")
    assert_clean(done.returncode, done.stdout, done.stderr, 0, (), schema)


def test_deleted_working_directory_and_a_relative_report_path():
    done = _in_deleted_directory("check", "host", *CHEAP, "-o", "report.txt")
    assert_clean(done.returncode, done.stdout, done.stderr, 3, ["working directory no longer exists", "absolute path"])


@pytest.mark.parametrize("argv", [["-o", "/dev/full"], ["--report", "junit=/dev/full"], ["--report", "ndjson=/dev/full"]],
                         ids=["output", "report-junit", "report-ndjson"])
def test_full_disk_while_writing_a_report(argv):
    done = netdoctor_process("check", "host", *CHEAP, *argv)
    assert_clean(done.returncode, done.stdout, done.stderr, 3, ["cannot write the report", "No space left on device"])


@pytest.mark.parametrize("command", [["check", "host", *CHEAP], ["check", "host", *CHEAP, "--format", "ndjson"],
                                     ["list"], ["--help"]], ids=["check-text", "check-ndjson", "list", "help"])
def test_full_standard_output(command):
    done = subprocess.run(" ".join([*NETDOCTOR, *command]) + " >/dev/full", shell=True, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert_clean(done.returncode, "", done.stderr, 3, ["standard output", "No space left on device"])


@pytest.mark.parametrize("command", [["check", "host", *CHEAP], ["check", "host", *CHEAP, "--format", "ndjson"],
                                     ["list"], ["schema"]], ids=["check-text", "check-ndjson", "list", "schema"])
def test_reader_gone_is_141_and_quiet(command):
    """`netdoctor ... | true`: the reader is gone before anything is written. 141 (128 + SIGPIPE) is what a shell
    reports for any program a closed pipe ends: a pager or `head` that stops early is normal use, so the run
    is quiet, and `set -o pipefail` still sees that the report was not read whole (never a gate's 0 or 1)."""
    process = subprocess.Popen([*NETDOCTOR, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err and "Broken pipe" not in err


def test_reader_gone_still_writes_report_files(tmp_path, schema):
    report = tmp_path / "r.json"
    process = subprocess.Popen([*NETDOCTOR, "check", "host", *CHEAP, "--report", f"json={report}"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=60) == 141, err
    jsonschema.validate(json.loads(report.read_text()), schema)


@pytest.fixture
def slow_target(make_netns):
    """A namespace of ours where a probe to its own loopback hangs (a DROP rule): a run that takes --timeout."""
    name = make_netns("slow")
    sh("ip", "netns", "exec", name, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "DROP")
    return [f"netns:{name}", "--checks", "reachability", "--probe", "127.0.0.1:9", "--timeout", "20"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_exits_130_and_keeps_the_previous_reports(signum, slow_target, tmp_path):
    previous = {"r.json": '{"previous": true}\n', "r.xml": "<previous/>\n"}
    for name, text in previous.items():
        (tmp_path / name).write_text(text)
    process = subprocess.Popen([*NETDOCTOR, "check", *slow_target, "--format", "json", "-o", "r.json", "--report",
                                "junit=r.xml", "--report", "sarif=new.sarif"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    started = time.monotonic()
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert time.monotonic() - started < 5, "an interrupt ends the run at once, not after the probe's timeout"
    assert_clean(process.returncode, out, err, 130, ["interrupted"])
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == previous  # nothing new, nothing half-written


def test_reports_are_written_whole_through_symlinks_keeping_permissions(tmp_path, schema):
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    done = netdoctor_process("check", "host", *CHEAP, "--format", "json", "-o", str(link), "--report",
                             f"junit={tmp_path}/new/dir/r.xml")
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and (real.stat().st_mode & 0o777) == 0o640
    jsonschema.validate(json.loads(real.read_text()), schema)
    assert (tmp_path / "new/dir/r.xml").read_text().startswith("<?xml")
    assert not [p for p in tmp_path.rglob("*.tmp")]


@pytest.mark.parametrize("spelling", ["hardlink", "symlink", "stdout"])
def test_one_file_under_two_names_is_bad_input(spelling, tmp_path):
    (tmp_path / "a.txt").write_text("old")
    if spelling == "hardlink":
        os.link(tmp_path / "a.txt", tmp_path / "b.txt")
        argv = ["-o", "a.txt", "--report", "junit=b.txt"]
    elif spelling == "symlink":
        (tmp_path / "b.txt").symlink_to("a.txt")
        argv = ["--report", "json=a.txt", "--report", "junit=b.txt"]
    else:
        argv = ["--report", "junit=/dev/stdout"]
    done = netdoctor_process("check", "host", *CHEAP, *argv, cwd=tmp_path)
    assert_clean(done.returncode, done.stdout, done.stderr, 2, ["same place"])
    assert (tmp_path / "a.txt").read_text() == "old"


def test_report_on_a_read_only_place_is_could_not_check(tmp_path):
    done = netdoctor_process("check", "host", *CHEAP, "--report", "junit=/proc/netdoctor-report.xml")
    assert_clean(done.returncode, done.stdout, done.stderr, 3, ["cannot write the report"])


def _on_a_terminal(argv: list[str], env: dict, seconds: float = 30) -> tuple[int, str]:
    """Run netdoctor with stdin, stdout and stderr on a pseudo-terminal, with our environment less NO_COLOR
    plus `env`; (exit code, what it printed)."""
    environment = {**{k: v for k, v in os.environ.items() if k != "NO_COLOR"}, **env}
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(ROOT)
        os.execve(sys.executable, [*NETDOCTOR, *argv], environment)
    output, deadline = b"", time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal (it exited)
                    chunk = b""
                if not chunk:
                    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), output.decode(errors="replace")
                output += chunk
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"still running after {seconds}s: {output[-2000:]!r}")
    finally:
        os.close(fd)


@pytest.mark.parametrize("env, coloured", [({"TERM": "xterm-256color"}, True), ({"TERM": "dumb"}, False),
                                           ({"TERM": "xterm-256color", "NO_COLOR": "1"}, False)],
                         ids=["xterm", "dumb", "no-color"])
def test_colour_only_where_a_terminal_can_show_it(env, coloured):
    code, output = _on_a_terminal(["check", "host", *CHEAP], env)
    assert code == 0 and "PASSED" in output
    assert ("\x1b[" in output) is coloured


def test_tui_refuses_a_dumb_terminal():
    code, output = _on_a_terminal(["tui", "host"], {"TERM": "dumb"})
    assert code == 2 and "TERM=dumb" in output and "Traceback" not in output


@pytest.mark.parametrize("redirect", ["</dev/null", ">/dev/null"], ids=["stdin-not-a-tty", "stdout-not-a-tty"])
def test_tui_refuses_without_a_terminal_instead_of_hanging(redirect):
    done = subprocess.run(" ".join([*NETDOCTOR, "tui", "host"]) + f" {redirect}", shell=True, capture_output=True,
                          text=True, timeout=30, cwd=ROOT)
    assert_clean(done.returncode, "", done.stderr, 2, ["needs a terminal", "netdoctor check"])


def test_pid_whose_namespace_cannot_be_opened_is_permission_denied(monkeypatch, schema):
    """This machine's PID 1 may be shielded; elsewhere the kernel's refusal is simulated for pid:1 only."""
    real_stat = os.stat
    try:
        real_stat("/proc/1/ns/net")
    except PermissionError:
        pass
    else:
        def shielded(path, *args, **kwargs):
            if str(path) == "/proc/1/ns/net":
                raise PermissionError(13, "Permission denied", path)
            return real_stat(path, *args, **kwargs)
        monkeypatch.setattr(os, "stat", shielded)
    code, out, err = run_cli("check", "--format", "json", "pid:1", "--checks", "ip_forward,mtu")
    assert_clean(code, out, err, 3, ["nothing judged about pid:1"], schema)
    details = [f["detail"] for f in json.loads(out)["findings"] if f["target"] == "pid:1"]
    assert details and all("permission denied" in d for d in details)
    assert "vanished" not in out


# --- Docker "down": missing and stale sockets ------------------------------------------------------------

@pytest.fixture
def stale_socket(tmp_path):
    """A socket file nobody listens on any more, as a crashed dockerd leaves behind."""
    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()
    return f"unix://{path}"


@pytest.mark.parametrize("address", ["missing", "stale"])
@pytest.mark.parametrize("argv", [["ndt-some-container"], ["--all"], ["--label", "x=y"], ["self", "ndt-x"]],
                         ids=["container", "all", "label", "self-and-container"])
def test_docker_down_is_could_not_check_in_every_report(address, argv, stale_socket, tmp_path, monkeypatch, schema):
    monkeypatch.setenv("DOCKER_HOST", MISSING_SOCKET if address == "missing" else stale_socket)
    code, out, err = run_cli("check", *argv, "--format", "json", "--report", f"junit={tmp_path}/r.xml")
    reason = "no socket there" if address == "missing" else "connection refused"
    assert_clean(code, out, err, 3, ["COULD NOT CHECK", reason], schema)
    [finding] = json.loads(out)["findings"]
    assert finding["status"] == "error" and reason in finding["title"]
    assert "<failure" in (tmp_path / "r.xml").read_text() or "<error" in (tmp_path / "r.xml").read_text()


# --- targets in every state ------------------------------------------------------------------------------

def _wait(predicate, what: str, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def states(docker_client, test_image, resolver):
    """One container in each state, made once for the module (removed afterwards)."""
    made = {}

    def create(role: str, command: str, start: bool = True, **kwargs):
        kwargs.setdefault("dns", [resolver.address])
        container = docker_client.containers.create(test_image, command, name=unique(role),
                                                    labels={TEST_LABEL: RUN_ID}, **kwargs)
        made[role] = container
        if start:
            container.start()
        return container

    try:
        # restarting first: Docker's back-off doubles per restart, so by the time the tests run it stays
        # in "restarting" for seconds at a time
        create("restarting", "false", restart_policy={"Name": "always"})
        create("running", "httpd -f -p 80")
        create("paused", "httpd -f -p 80").pause()
        create("created", "httpd -f -p 80", start=False)
        create("exited0", "true")
        create("exited3", "sh -c 'exit 3'")
        create("none", "httpd -f -p 80", network_mode="none")
        create("host", "sleep 100000", network_mode="host", dns=[])
        create("joined", "sleep 100000", network_mode=f"container:{made['running'].id}", dns=[])
        for role in ("exited0", "exited3"):
            made[role].wait(timeout=30)
        yield {role: c.name for role, c in made.items()}
    finally:
        for container in made.values():
            try:
                container.remove(force=True)
            except Exception:
                pass


def _status(docker_client, name: str) -> dict:
    return docker_client.api.inspect_container(name)["State"]


def check_json(*argv: str) -> tuple[int, dict | None, str]:
    code, out, err = run_cli("check", "--format", "json", *argv)
    return code, json.loads(out) if out.strip() else None, err


def of(doc: dict, check: str) -> list[dict]:
    return [f for f in doc["findings"] if f["check"] == check]


STATE_ROLES = ["running", "paused", "created", "exited0", "exited3", "restarting", "none", "host", "joined"]


@pytest.mark.parametrize("role", STATE_ROLES)
def test_every_state_gives_a_clean_report(role, states, docker_client, schema):
    if role == "restarting":
        _wait(lambda: _status(docker_client, states[role])["Restarting"]
              and docker_client.api.inspect_container(states[role])["RestartCount"] >= 5,
              "a back-off of seconds between restarts", 60)
    code, doc, err = check_json(states[role], "--fail-on", "warn")
    # a state that is a fault fails the gate; every other state leaves something judged (never 3)
    assert_clean(code, json.dumps(doc), err, 1 if role in ("paused", "exited3", "restarting") else code, (), schema)
    assert code in (0, 1), err
    crashed = [f for f in doc["findings"] if f["status"] == "error"]
    assert not crashed, crashed
    label = f"container:{states[role]}"
    mine = [f for f in doc["findings"] if f["target"] == label]
    state = [f for f in mine if f["check"] == "netdoctor"]
    if role in ("paused", "exited3", "restarting"):
        [finding] = state
        assert finding["status"] == "fail" and code == 1
        assert {"paused": "docker unpause", "exited3": "docker logs", "restarting": "docker logs"}[role] in \
            " ".join(finding["fix"]["commands"])
        assert {"paused": "is paused", "exited3": "exited with code 3", "restarting": "keeps stopping"}[role] \
            in finding["title"]
    else:
        assert not state
    if role in ("created", "exited0"):
        skips = [f for f in mine if f["status"] == "skip"]
        why = "never started" if role == "created" else "exited with code 0"
        assert skips and all(why in f["detail"] for f in skips if f["check"] in ("mtu", "ip_forward", "reachability"))


def test_paused_container_is_read_but_not_probed(states, schema):
    name = states["paused"]
    code, doc, err = check_json(name, "--checks", "mtu,subnet_overlap,dns,reachability", "--resolve", "known.test")
    assert code == 1, err
    by_check = {c: of(doc, c) for c in ("mtu", "subnet_overlap", "dns", "reachability")}
    # facts are read: the namespace exists
    assert all(f["status"] != "skip" for f in by_check["mtu"] + by_check["subnet_overlap"])
    # traffic is not sent, and the checks say why
    for check in ("dns", "reachability"):
        paused = [f for f in by_check[check] if f["status"] == "skip"]
        assert paused and "paused" in paused[0]["title"] and f"docker unpause {name}" in paused[0]["detail"]
    assert "no network namespace" not in json.dumps(doc)


def test_only_namespace_checks_on_a_stopped_container_is_not_a_pass(states, schema):
    code, doc, err = check_json(states["exited0"], "--checks", "mtu,ip_forward,conntrack", "--fail-on", "never")
    assert_clean(code, json.dumps(doc), err, 3, ["COULD NOT CHECK", f"nothing judged about container:{states['exited0']}"],
                 schema)


def test_unprivileged_user_on_every_state(states):
    names = [states[role] for role in STATE_ROLES]
    *command, code = unprivileged_python()
    script = ("import sys\nfrom click.testing import CliRunner\nfrom netdoctor.cli import main\n"
              "r = CliRunner().invoke(main, sys.argv[1:])\nprint(r.exit_code)\nprint(r.stderr)\n")
    done = subprocess.run([*command, code + script, "check", *names], capture_output=True, text=True, timeout=60, cwd="/")
    exit_code, *err = done.stdout.splitlines()
    assert int(exit_code) == 3 and "needs root" in "\n".join(err), done


@pytest.mark.parametrize("role", ["none", "host", "joined"])
def test_peer_that_docker_cannot_connect_gets_no_network_connect_fix(role, states):
    code, doc, err = check_json(states["running"], "--checks", "icc", "--peer", f"{states[role]}:80")
    commands = [c for f in of(doc, "icc") for c in f["fix"]["commands"]]
    assert "docker network connect" not in " ".join(commands), commands
    if role != "joined":  # joined shares running's namespace: they reach each other on loopback
        [finding] = of(doc, "icc")
        assert finding["status"] == "fail" and "share no network" in finding["title"]
        assert {"none": "--network none", "host": "host's network"}[role] in finding["title"]


def test_peer_that_is_paused_is_unpaused(states):
    code, doc, err = check_json(states["running"], "--checks", "icc", "--peer", f"{states['paused']}:80")
    [finding] = of(doc, "icc")
    assert finding["fix"]["commands"] == [f"docker unpause {states['paused']}"]


def test_id_prefix_of_two_containers_is_bad_input_naming_both(make_container, docker_client):
    by_first: dict[str, list] = {}
    for _ in range(17):  # 16 hex digits: two of 17 containers share a first character
        container = make_container("ambiguous", command="sleep 100000", start=False)
        by_first.setdefault(container.id[0], []).append(container)
        if len(by_first[container.id[0]]) == 2:
            break
    prefix, pair = next((p, c) for p, c in by_first.items() if len(c) == 2)
    code, out, err = run_cli("check", prefix)
    assert_clean(code, out, err, 2, ["start of the id of", "give more of the id"])
    matching = [c for c in docker_client.api.containers(all=True) if c["Id"].startswith(prefix)]
    if len(matching) <= 20:
        assert all(c.name in err for c in pair), err


def test_container_removed_mid_run_is_vanished_not_crashed(make_container, make_network, docker_client, schema):
    network = make_network("vanish")
    subnet = docker_client.api.inspect_network(network.id)["IPAM"]["Config"][0]["Subnet"]
    nobody_there = str(list(__import__("ipaddress").ip_network(subnet).hosts())[-1])  # ARP on our own bridge only
    target = make_container("vanish", network=network.name)
    process = subprocess.Popen([*NETDOCTOR, "check", target.name, "--format", "json", "--probe", f"{nobody_there}:80",
                                "--timeout", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    time.sleep(1.5)
    target.remove(force=True)
    out, err = process.communicate(timeout=60)
    assert_clean(process.returncode, out, err, 1, (), schema)
    doc = json.loads(out)
    assert not [f for f in doc["findings"] if "crashed" in f["title"]], out
    gone = [f for f in doc["findings"] if "vanished" in f["title"] or "removed during the diagnosis" in f["title"]]
    assert gone, out
