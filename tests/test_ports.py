"""ports against real containers: host ports held by a process or another container (the start fails),
services bound to loopback inside, nothing listening, databases published on every interface."""

from __future__ import annotations

import os
import socket

import pytest

pytestmark = pytest.mark.docker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def not_quiet(report, check="ports"):
    return [f for f in report.of(check) if f["status"] in ("warn", "fail", "error")]


@pytest.fixture
def held_port():
    """A plain TCP server of this test process on 0.0.0.0:PORT, holding the port the way any service would."""
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def start_fails(container) -> str:
    import docker.errors

    with pytest.raises(docker.errors.APIError):
        container.start()
    container.reload()
    assert container.status == "created"
    return container.attrs["State"]["Error"]


def test_healthy_published_httpd_is_quiet(make_container, netdoctor):
    port = free_port()
    web = make_container("web", ports={"80/tcp": port})
    report = netdoctor(web.name, "--checks", "ports")
    assert not_quiet(report) == [], report.of("ports")
    titles = [f["title"] for f in report.of("ports")]
    # docker-proxy holds the host port for web itself: its own binding, not a conflict
    assert f"Host port {port}/tcp is {web.name}'s own binding" in titles
    assert f"{web.name} listens on 80/tcp behind {port}->80/tcp" in titles


def test_host_port_held_by_a_process_stops_the_start(make_container, held_port, netdoctor):
    web = make_container("web", start=False, ports={"80/tcp": held_port})
    error = start_fails(web)
    assert "address already in use" in error
    report = netdoctor(web.name, "--checks", "ports")
    [finding] = not_quiet(report)
    assert finding["status"] == "fail"
    assert finding["title"].startswith(f"{web.name} could not start: host port {held_port}/tcp is held by")
    [holder] = finding["evidence"]["holders"]
    assert holder["pid"] == os.getpid() and holder["socket"] == f"0.0.0.0:{held_port}"
    assert finding["evidence"]["container_error"] == error
    commands = finding["fix"]["commands"]
    assert any(c.startswith(f"kill {os.getpid()}") for c in commands)
    assert f"docker start {web.name}" in commands
    # moving to another port is the alternative: commented out, so pasting the fix runs only the first option
    assert any(c.startswith(f"# or: docker run -d --name {web.name} -p ") for c in commands)
    assert "skip" in report.statuses("ports")  # nothing to look at inside a container that never started
    assert report.exit_code == 1


def test_host_port_held_by_another_container(make_container, netdoctor):
    port = free_port()
    first = make_container("first", ports={"80/tcp": port})
    second = make_container("second", start=False, ports={"80/tcp": port})
    start_fails(second)
    [finding] = not_quiet(netdoctor(second.name, "--checks", "ports"))
    assert finding["status"] == "fail"
    assert f"container {first.name}" in finding["title"]
    assert {h.get("container") for h in finding["evidence"]["holders"]} == {first.name}
    assert f"docker stop {first.name}" in finding["fix"]["commands"]


def test_service_bound_to_loopback_inside_fails(make_container, netdoctor):
    web = make_container("web", command="httpd -f -p 127.0.0.1:80", ports={"80/tcp": free_port()})
    [finding] = not_quiet(netdoctor(web.name, "--checks", "ports"))
    assert finding["status"] == "fail" and "loopback only" in finding["title"]
    [listening] = finding["evidence"]["listening_on_port"]
    assert listening.startswith("tcp 127.0.0.1:80 by httpd (pid ")


def test_nothing_listening_inside_fails(make_container, netdoctor):
    web = make_container("web", command="sleep 3600", ports={"80/tcp": free_port()})
    [finding] = not_quiet(netdoctor(web.name, "--checks", "ports"))
    assert finding["status"] == "fail" and finding["title"].startswith("Nothing listens on 80/tcp")
    assert finding["evidence"]["listening_on_port"] == []
    assert f"docker logs --tail 50 {web.name}" in finding["fix"]["commands"]


def test_database_port_on_all_interfaces_warns(make_container, netdoctor):
    port = free_port()
    db = make_container("db", command="httpd -f -p 5432", ports={"5432/tcp": port})
    [finding] = not_quiet(netdoctor(db.name, "--checks", "ports"))
    assert finding["status"] == "warn" and "PostgreSQL" in finding["title"]
    assert any(f"-p 127.0.0.1:{port}:5432" in c for c in finding["fix"]["commands"])


def test_database_port_on_loopback_is_quiet(make_container, netdoctor):
    db = make_container("db", command="httpd -f -p 5432", ports={"5432/tcp": ("127.0.0.1", free_port())})
    report = netdoctor(db.name, "--checks", "ports")
    assert not_quiet(report) == [], report.of("ports")


def test_explain_ports():
    from tests.conftest import run_cli

    code, out, _ = run_cli("explain", "ports")
    assert code == 0 and "docker-proxy" in out and "127.0.0.1:HOST:CONTAINER" in out
