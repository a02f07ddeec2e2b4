"""Shared fixtures: a real Docker engine, the busybox test image, a resolver we own, and factories for
containers, networks and network namespaces that always clean up after themselves.

Traffic rule: every container made here gets `--dns` pointing at `resolver` (ours), so no check ever
queries the machine's own resolver.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from netdoctor.cli import main

ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGE = os.environ.get("NETDOCTOR_TEST_IMAGE", "netdoctor-test/busybox:latest")
NETDOCTOR_IMAGE = os.environ.get("NETDOCTOR_IMAGE", "netdoctor-test/netdoctor:latest")
TEST_LABEL = "netdoctor.test"
RUN_ID = uuid.uuid4().hex[:6]


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check)


def unique(prefix: str) -> str:
    return f"ndt{RUN_ID}-{prefix}-{uuid.uuid4().hex[:4]}"


def _remove_leftovers(client, run_id: str | None = None, older_than_s: int = 3600) -> None:
    """Remove this run's objects, or any test run's objects older than an hour (a crashed run's);
    never a concurrent run's fresh ones."""
    import docker.errors

    now = time.time()

    def ours(labels: dict, created: str) -> bool:
        if run_id is not None:
            return labels.get(TEST_LABEL) == run_id
        stamp = datetime.fromisoformat(created[:19]).replace(tzinfo=timezone.utc).timestamp()
        return now - stamp > older_than_s

    # ignore_removed: a container another run (or a test's own target-vanishes scenario) removes between
    # the list and its inspect is gone already, which is what we want
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}, ignore_removed=True):
        if ours(container.labels, container.attrs["Created"]):
            container.remove(force=True)
    for network in client.networks.list(filters={"label": TEST_LABEL}):
        if ours(network.attrs.get("Labels") or {}, network.attrs["Created"]):
            try:
                network.remove()
            except docker.errors.APIError:  # an endpoint Docker 20.10 leaked under load: not ours to fix
                pass


@pytest.fixture(scope="session")
def docker_client():
    import docker

    client = docker.from_env(version="auto", timeout=30)
    client.ping()  # no engine is a failure of the test setup, not a skip
    _remove_leftovers(client)
    yield client
    _remove_leftovers(client, RUN_ID)
    client.close()


@pytest.fixture(scope="session")
def test_image(docker_client) -> str:
    sh("bash", str(ROOT / "scripts/build-test-image.sh"), TEST_IMAGE)
    return TEST_IMAGE


@pytest.fixture(scope="session")
def netdoctor_image(docker_client) -> str:
    """netdoctor's own image, built from this checkout once per session (reruns reuse Docker's layer cache)."""
    done = subprocess.run(["bash", str(ROOT / "scripts/build-image.sh"), NETDOCTOR_IMAGE], capture_output=True, text=True)
    assert done.returncode == 0, f"build-image.sh failed:\n{done.stderr[-3000:]}"
    return NETDOCTOR_IMAGE


@pytest.fixture(scope="session")
def resolver(docker_client):
    """Our own DNS server on the default bridge's gateway: reachable from every test container."""
    from netdoctor.lab.resolver import Resolver

    config = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    gateway = config.get("Gateway") or str(ipaddress.ip_network(config["Subnet"])[1])
    # known.test points at an address nothing uses (not the uplink's subnet): no test connects to it
    server = Resolver(gateway, 53, records={"known.test": "10.123.45.10"}).start()
    yield server
    server.stop()


@pytest.fixture
def make_network(docker_client):
    created = []

    def make(prefix: str = "net", **kwargs):
        kwargs.setdefault("driver", "bridge")
        labels = {TEST_LABEL: RUN_ID, **kwargs.pop("labels", {})}
        network = docker_client.networks.create(unique(prefix), labels=labels, **kwargs)
        created.append(network)
        return network

    yield make
    for network in reversed(created):
        try:
            network.reload()
            for container in network.containers:
                network.disconnect(container, force=True)
            network.remove()
        except Exception:
            pass


@pytest.fixture
def make_container(docker_client, test_image, resolver):
    """Start a busybox container (default: an httpd on port 80) that is removed afterwards."""
    created = []

    def make(prefix: str = "ctr", command: str = "httpd -f -p 80", start: bool = True, **kwargs):
        kwargs.setdefault("dns", [resolver.address])
        labels = {TEST_LABEL: RUN_ID, **kwargs.pop("labels", {})}
        name = kwargs.pop("name", None) or unique(prefix)
        container = docker_client.containers.create(test_image, command, name=name, labels=labels, **kwargs)
        created.append(container)
        if start:
            container.start()
            container.reload()
        return container

    yield make
    for container in reversed(created):
        try:
            container.remove(force=True)
        except Exception:
            pass


@pytest.fixture
def make_netns():
    """Named network namespaces (`ip netns add`), deleted afterwards with everything inside them."""
    created = []

    def make(prefix: str = "ns", forwarding: bool | None = None, up_loopback: bool = True) -> str:
        name = unique(prefix)
        sh("ip", "netns", "add", name)
        created.append(name)
        if up_loopback:
            sh("ip", "-n", name, "link", "set", "lo", "up")
        if forwarding is not None:
            sh("ip", "netns", "exec", name, "sysctl", "-qw", f"net.ipv4.ip_forward={int(forwarding)}")
        return name

    yield make
    for name in created:
        # a process left inside (a listener a failed test never stopped) would keep the namespace alive
        for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
            sh("kill", "-9", pid, check=False)
        sh("ip", "netns", "delete", name, check=False)


@pytest.fixture
def lab_netns(make_netns, tmp_path):
    """The lab's topology builder (netdoctor/lab/fakehost.py) on this test's own namespaces (tests/fakehost.py)."""
    from tests.fakehost import LabNamespaces

    return LabNamespaces(make_netns, tmp_path)


class Report:
    """A finished `netdoctor check --format json` run."""

    def __init__(self, exit_code: int, output: str, stderr: str):
        self.exit_code = exit_code
        self.stderr = stderr
        self.doc = json.loads(output) if output.strip().startswith("{") else None

    @property
    def findings(self) -> list[dict]:
        return self.doc["findings"] if self.doc else []

    def of(self, check: str, target: str | None = None) -> list[dict]:
        return [f for f in self.findings if f["check"] == check and (target is None or f["target"] == target)]

    def statuses(self, check: str, target: str | None = None) -> set[str]:
        return {f["status"] for f in self.of(check, target)}


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def netdoctor():
    """Run `netdoctor check ... --format json` in-process and return the parsed Report."""

    def check(*args: str) -> Report:
        return Report(*run_cli("check", "--format", "json", *args))

    return check
