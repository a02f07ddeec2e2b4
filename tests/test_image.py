"""The netdoctor container image (Dockerfile + scripts/build-image.sh), run against real target containers.

The image is built once per session from a local Debian base (no registry here); reruns reuse Docker's
layer cache. Every netdoctor container either joins the target's namespace (--network container:) or has
no network at all (--network none): it never sends a packet from a namespace of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from tests.conftest import RUN_ID, TEST_LABEL, sh, unique

pytestmark = pytest.mark.docker

NETSHOOT_MB = 300  # nicolaka/netshoot is ~300 MB and more
SOCKET = {"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"}}
CAPS = ["NET_ADMIN", "SYS_ADMIN"]
HOST_CAPS = CAPS + ["SYS_PTRACE"]  # with --pid host: opening the host's /proc/1/ns/net is a ptrace check
HOST_NETNS_CHECKS = ("mtu", "ip_forward")  # checks that read the host's namespace (Need.HOST_NETNS)


@pytest.fixture(scope="session")
def image(netdoctor_image) -> str:
    return netdoctor_image  # built once per session for every test file that runs it (tests/conftest.py)


@pytest.fixture
def run_image(docker_client, image):
    """Run the image to completion; return (exit code, parsed JSON report or None, stderr)."""
    started = []

    def run(*args: str, **kwargs):
        container = docker_client.containers.run(image, list(args), detach=True, labels={TEST_LABEL: RUN_ID},
                                                 name=unique("netdoctor"), **kwargs)
        started.append(container)
        code = container.wait(timeout=120)["StatusCode"]
        out = container.logs(stdout=True, stderr=False).decode()
        err = container.logs(stdout=False, stderr=True).decode()
        return code, json.loads(out) if out.strip().startswith("{") else None, err

    yield run
    for container in started:
        try:
            container.remove(force=True)
        except Exception:
            pass


def statuses(report: dict, check: str) -> set[str]:
    return {f["status"] for f in report["findings"] if f["check"] == check}


def only(report: dict, check: str, status: str) -> dict:
    [finding] = [f for f in report["findings"] if f["check"] == check and f["status"] == status]
    return finding


def expected_mtu_status() -> str:
    """The real host's mismatch: docker0's containers get 1500, the uplink here has 1400."""
    route = sh("ip", "-o", "route", "show", "default").stdout.split()
    uplink_mtu = int(open(f"/sys/class/net/{route[route.index('dev') + 1]}/mtu").read())
    bridge_mtu = int(open("/sys/class/net/docker0/mtu").read())
    return "fail" if bridge_mtu > uplink_mtu else "pass"


@pytest.fixture
def broken_web(make_container):
    """Two real faults: resolv.conf names a loopback resolver (as copied from systemd-resolved), and the
    published service listens on 127.0.0.1 only."""
    return make_container("web", command="httpd -f -p 127.0.0.1:80", dns=["127.0.0.53"],
                          ports={"80/tcp": ("127.0.0.1", None)})


def assert_reports_the_faults(report: dict, web) -> None:
    assert [t["target"] for t in report["targets"]] == [f"container:{web.name}"]
    dns = only(report, "dns", "fail")
    assert dns["evidence"]["nameserver"] == "127.0.0.53"
    ports = only(report, "ports", "fail")
    assert "127.0.0.1:80" in json.dumps(ports["evidence"])
    assert statuses(report, "mtu") == {expected_mtu_status()}
    # fixes name the target as the host sees it: its engine pid, not netdoctor's view of it
    assert f"/proc/{web.attrs['State']['Pid']}/ns/net" in " ".join(ports["fix"]["commands"])


def test_image_is_small_and_labelled(docker_client, image):
    attrs = docker_client.images.get(image).attrs
    size_mb = attrs["Size"] / 1e6
    print(f"\n{image}: {size_mb:.0f} MB")
    assert size_mb < NETSHOOT_MB * 0.75
    config = attrs["Config"]
    assert config["Entrypoint"] == ["netdoctor"] and config["StopSignal"] == "SIGINT"
    assert config["Labels"]["org.opencontainers.image.title"] == "netdoctor"
    assert config["Labels"]["org.opencontainers.image.version"]


def test_joined_mode_diagnoses_the_target_by_default(broken_web, run_image):
    """`docker run --network container:web --pid host ... netdoctor check`: no target named, the namespace
    it joined is identified through the socket and checked as that container, host facts included."""
    code, report, err = run_image("check", "--format", "json", network_mode=f"container:{broken_web.id}",
                                  pid_mode="host", cap_add=HOST_CAPS, volumes=SOCKET)
    assert report is not None, err
    assert code == 1
    assert_reports_the_faults(report, broken_web)
    assert statuses(report, "ip_forward") == {"pass"}


def test_alongside_mode_matches_the_host_install(broken_web, run_image, netdoctor):
    """`docker run --network none --pid host ... netdoctor check web` finds what the host install finds."""
    code, report, err = run_image("check", broken_web.name, "--format", "json", network_mode="none",
                                  pid_mode="host", cap_add=HOST_CAPS, volumes=SOCKET)
    assert report is not None, err
    assert code == 1
    assert_reports_the_faults(report, broken_web)
    on_host = netdoctor(broken_web.name)
    assert {(f["check"], f["status"]) for f in report["findings"]} == \
           {(f["check"], f["status"]) for f in on_host.findings}


def test_healthy_target_stays_quiet(make_container, run_image, resolver):
    web = make_container("web", ports={"80/tcp": ("127.0.0.1", None)})  # our resolver, httpd on 0.0.0.0
    code, report, err = run_image("check", "--format", "json", network_mode=f"container:{web.id}",
                                  pid_mode="host", cap_add=HOST_CAPS, volumes=SOCKET)
    assert report is not None, err
    assert statuses(report, "dns") == {"pass"}
    assert "fail" not in statuses(report, "ports") and "pass" in statuses(report, "ports")
    assert code == (1 if expected_mtu_status() == "fail" else 0)


@pytest.mark.parametrize("pid_mode, caps, hint", [
    (None, CAPS, "--pid host"),                 # the host's processes are not visible at all
    ("host", CAPS, "--cap-add SYS_PTRACE"),      # visible, but their namespace files may not be opened
])
def test_without_host_access_host_checks_skip_with_the_flag(broken_web, run_image, pid_mode, caps, hint):
    """What can be seen from inside is still diagnosed; what needs the host says which flag enables it."""
    code, report, err = run_image("check", "--format", "json", network_mode=f"container:{broken_web.id}",
                                  pid_mode=pid_mode, cap_add=caps, volumes=SOCKET)
    assert report is not None, err
    for check in HOST_NETNS_CHECKS:
        finding = only(report, check, "skip")
        assert hint in finding["detail"] and "host's network namespace" in finding["detail"]
    assert only(report, "dns", "fail")["evidence"]["nameserver"] == "127.0.0.53", [(f["status"], f["title"], f["detail"]) for f in report["findings"] if f["check"] == "dns"]
    assert code == 1


def test_without_sys_admin_nothing_is_entered_and_it_says_which_cap(broken_web, run_image):
    code, report, err = run_image("check", "--format", "json", network_mode=f"container:{broken_web.id}",
                                  pid_mode="host", cap_add=["NET_ADMIN", "SYS_PTRACE"], volumes=SOCKET)
    assert report is not None, err
    assert {f["status"] for f in report["findings"]} <= {"skip", "error"}
    assert all("--cap-add SYS_ADMIN" in f["detail"] for f in report["findings"] if f["check"] in HOST_NETNS_CHECKS + ("dns",))
    assert code == 3  # nothing could be judged: not a pass


def test_without_the_socket_container_checks_skip_with_the_flag(broken_web, run_image):
    code, report, err = run_image("check", "--format", "json", network_mode=f"container:{broken_web.id}",
                                  cap_add=CAPS)
    assert report is not None, err
    assert [t["target"] for t in report["targets"]] == ["self"]
    for check in ("dns", "ports"):
        assert "-v /var/run/docker.sock:/var/run/docker.sock" in only(report, check, "skip")["detail"]


def test_alongside_without_pid_host_says_how_to_see_the_target(broken_web, run_image):
    code, report, err = run_image("check", broken_web.name, "--format", "json", network_mode="none",
                                  cap_add=CAPS, volumes=SOCKET)
    assert report is not None, err
    [target] = report["targets"]
    assert f"--network container:{broken_web.name}" in target["unavailable"] and "--pid host" in target["unavailable"]


@pytest.mark.skipif(not shutil.which("tmux"), reason="the TUI is driven through tmux")
def test_tui_runs_in_the_container_and_stops_on_docker_stop(broken_web, image, docker_client):
    """`docker run -it ... netdoctor tui` in a real terminal: diagnoses the joined container by default;
    `docker stop` ends it at once (STOPSIGNAL SIGINT), not after Docker's 10 s kill timeout."""
    name, session = unique("tui"), unique("tmux")
    command = (f"docker run --rm -it --name {name} --label {TEST_LABEL}={RUN_ID} --network container:{broken_web.id} "
               f"--pid host {' '.join('--cap-add ' + c for c in HOST_CAPS)} "
               f"-v /var/run/docker.sock:/var/run/docker.sock {image} tui")
    sh("tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "45", command)
    try:
        screen = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screen = sh("tmux", "capture-pane", "-p", "-t", session, check=False).stdout
            if broken_web.name in screen and "127.0.0.53" in screen:
                break
            time.sleep(0.5)
        assert broken_web.name in screen and "127.0.0.53" in screen, screen
        started = time.monotonic()
        docker_client.containers.get(name).stop(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        sh("tmux", "kill-session", "-t", session, check=False)
        sh("docker", "rm", "-f", name, check=False)


def test_on_this_host_the_host_namespace_is_the_initial_one_and_self_is_not_defaulted():
    """The same detection on the host: this VM shields PID 1's namespace and has a /.dockerenv, yet
    netdoctor must find the initial namespace (kthreadd's) and not mistake the host for a container."""
    from netdoctor.targets import KERNEL_THREAD_NETNS, default_host_netns, running_in_container

    path, why = default_host_netns()
    assert path is not None, why
    assert os.stat(path).st_ino == os.stat(KERNEL_THREAD_NETNS).st_ino == os.stat("/proc/self/ns/net").st_ino
    assert not running_in_container()
