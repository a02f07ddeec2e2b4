"""Whose namespaces netdoctor enters: only the named engine's own containers', on the machine that engine runs.

Engines of the tests' own, each in a network and mount namespace of its own (tests/engines.py), as the lab's
Swarm nodes run: Debian 12's dockerd 20.10 and Debian unstable's 28.5. Seen from this machine:
- local mode (DOCKER_HOST) enters /proc/<State.Pid>/ns/net: right for these engines, whose pids are this
  machine's; wrong for an engine whose pids are not (another host's, here one in a PID namespace of its
  own), where that pid is some unrelated process: refused, pointing at -H;
- remote mode (-H) runs netdoctor's agent on the engine with a Docker socket mounted from the engine's own
  machine: the engine's own socket when -H names it (the mount namespace's /var/run/docker.sock is the
  shared engine's, the bug seen as "Docker's rules are gone for ... bridge" and "no such container"), and an
  agent whose socket turns out to be another engine's refuses to diagnose (a tcp:// engine, from its client).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests import engines
from tests.conftest import ROOT, Report, sh

pytestmark = pytest.mark.docker

TCP_PORT = 2375


def _engine(version: str, *daemon_args: str, own_pids: bool = False, image: str | None = None):
    """A started engine with container c1 (and netdoctor's image, when given); stopped with its namespaces."""
    with engines.started(version, *daemon_args, own_pids=own_pids) as built:
        built.run("c1")
        if image:
            built.load_image(image)
        yield built


# each also listens on TCP, on its uplink: what a client on another machine (the client namespace) talks to
@pytest.fixture(scope="module")
def engine28(test_image, netdoctor_image):
    yield from _engine("28", "-H", f"tcp://{engines.UPLINK_IP}:{TCP_PORT}", "--tls=false", image=netdoctor_image)


@pytest.fixture(scope="module")
def engine2010(test_image, netdoctor_image):
    yield from _engine("20.10", "-H", f"tcp://{engines.UPLINK_IP}:{TCP_PORT}", image=netdoctor_image)


@pytest.fixture(scope="module")
def foreign(test_image, netdoctor_image):
    """An engine whose pids are not this machine's: in a PID namespace of its own."""
    yield from _engine("20.10", own_pids=True, image=netdoctor_image)


def netdoctor(*args: str, engine: engines.Engine | None = None, netns: str | None = None) -> Report:
    """`netdoctor check --format json ARGS` in a process of its own (DOCKER_HOST at `engine`; run in `netns`)."""
    env = {**os.environ, **({"DOCKER_HOST": engine.docker_host} if engine else {})}
    command = [sys.executable, "-m", "netdoctor", "check", "--format", "json", *args]
    if netns:
        command = ["ip", "netns", "exec", netns, *command]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    return Report(done.returncode, done.stdout, done.stderr)


def _cgroup_names(pid: str, container_id: str) -> bool:
    with open(f"/proc/{pid}/cgroup") as f:
        return container_id in f.read()


@pytest.mark.parametrize("version", ["20.10", "28"])
def test_an_engine_in_namespaces_of_its_own_on_this_machine_is_entered(version, request):
    """Its pids are this machine's (only its network, mount and UTS namespaces are its own): c1's namespace is
    entered and judged, as for the shared engine."""
    engine = request.getfixturevalue("engine2010" if version == "20.10" else "engine28")
    pid = engine.docker("inspect", "-f", "{{.State.Pid}}", "c1").stdout.strip()
    assert _cgroup_names(pid, engine.docker("inspect", "-f", "{{.Id}}", "c1").stdout.strip())  # the ground truth
    report = netdoctor("c1", "--checks", "dns,ip_forward", *engine.netdoctor_args(), engine=engine)
    assert report.exit_code == 0, (report.exit_code, report.stderr)
    [target] = report.doc["targets"]
    assert target["netns"] == f"/proc/{pid}/ns/net" and target["container"]["name"] == "c1"
    assert report.statuses("dns") == {"pass"}  # its nameserver, seen from inside c1's namespace


def test_the_shared_engines_containers_are_entered(make_container):
    c = make_container("ident")
    report = netdoctor(c.name, "--checks", "ip_forward")
    assert report.exit_code == 0 and report.doc["targets"][0]["netns"] == f"/proc/{c.attrs['State']['Pid']}/ns/net"


def test_an_engine_whose_pids_are_another_machines_is_refused_and_pointed_at_h(foreign, netdoctor_image):
    pid = foreign.docker("inspect", "-f", "{{.State.Pid}}", "c1").stdout.strip()
    container_id = foreign.docker("inspect", "-f", "{{.Id}}", "c1").stdout.strip()
    # the ground truth: that pid here is not c1 (some other process, or none)
    assert not os.path.exists(f"/proc/{pid}") or not _cgroup_names(pid, container_id)
    report = netdoctor("c1", "--checks", "dns,ip_forward", *foreign.netdoctor_args(), engine=foreign)
    assert report.exit_code == 2 and report.doc is None, (report.exit_code, report.stderr)
    assert "does not run c1 on this machine" in report.stderr
    assert f"netdoctor check -H {foreign.docker_host} c1" in report.stderr
    assert "Traceback" not in report.stderr and len(report.stderr.strip().splitlines()) == 1
    # and what it points at works: netdoctor's image diagnoses c1 where its engine runs
    remote = netdoctor("-H", foreign.docker_host, "--image", netdoctor_image, "--checks", "dns", "c1")
    assert remote.doc is not None, remote.stderr
    found = [f for f in remote.of("dns") if f["target"].endswith("/container:c1")]
    assert [f["status"] for f in found] == ["pass"], [(f["status"], f["title"], f["detail"]) for f in remote.findings]


def test_h_gives_an_engine_in_its_own_mount_namespace_its_own_socket(engine28, netdoctor_image):
    """The engine's mount namespace has the shared engine's socket at /var/run/docker.sock: the agent must get
    /run/NAME.sock, this engine's own, and judge c1 and this engine's networks (the bug: the shared engine's
    `bridge` network judged against this engine's host, "Docker's rules are gone", "c1: no such container")."""
    report = netdoctor("-H", engine28.docker_host, "--image", netdoctor_image, "--checks", "firewall,forward_policy,dns", "c1")
    assert report.doc is not None, report.stderr
    loud = [(f["target"], f["check"], f["title"]) for f in report.findings if f["status"] in ("warn", "fail", "error")]
    assert loud == [] and report.exit_code == 0, (loud, report.stderr)
    labels = {t["target"] for t in report.doc["targets"]}
    assert any(label.endswith("/container:c1") for label in labels), labels
    [read] = [f for f in report.of("firewall") if f["key"] == "firewall-read"]
    assert read["evidence"]["engine_version"].startswith("28")  # the engine diagnosed is this one


@pytest.mark.parametrize("version", ["20.10", "28"])
def test_an_agent_given_another_engines_socket_refuses_once(version, request, netdoctor_image):
    """From the client namespace, the engine is tcp://UPLINK:2375 (another machine, as far as netdoctor can
    tell): its agent gets that machine's /var/run/docker.sock, which is the shared engine's. One error finding
    names the mismatch; nothing of the shared engine is judged. 28's ID is its own; 20.10's is the shared
    engine's too when the shared engine is 20.10 (both read /etc/docker/key.json): the agent's own container,
    unknown there, tells them apart."""
    engine = request.getfixturevalue("engine2010" if version == "20.10" else "engine28")
    engine_id = json.loads(engine.docker("info", "--format", "{{json .ID}}").stdout)
    shared_id = json.loads(sh("docker", "info", "--format", "{{json .ID}}").stdout)
    shared_version = sh("docker", "version", "--format", "{{.Server.Version}}").stdout.strip()
    assert (engine_id == shared_id) is (version == "20.10" and shared_version.startswith("20.10"))
    report = netdoctor("-H", f"tcp://{engines.UPLINK_IP}:{TCP_PORT}", "--image", netdoctor_image, "--checks", "dns",
                       "c1", netns=engine.client_netns)
    assert report.doc is not None, report.stderr
    errors = [f for f in report.findings if f["status"] == "error"]
    assert len(errors) == 1 and [f for f in report.findings if f not in errors] == [], report.findings
    [error] = errors
    assert engine_id in error["title"] and "/var/run/docker.sock" in error["title"] and "-H unix:///PATH" in error["title"]
    if engine_id != shared_id:  # named by the ID of the engine that answered
        assert shared_id in error["title"]
    else:  # same ID: told apart by the agent's own container, unknown to the engine that answered
        assert "does not know the agent's own container" in error["title"]
    assert report.doc["targets"] == []  # no container, no host of either engine was judged
    assert report.exit_code == 3
