"""The fast tier's promise, checked where scripts/test-fast.sh runs it: no root and no Docker."""

import os
import socket

import pytest

from netdoctor.dockerapi import DockerSession, DockerUnavailable

if os.environ.get("NETDOCTOR_FAST_TIER") != "unprivileged":
    pytest.skip("only meaningful when run by scripts/test-fast.sh", allow_module_level=True)


def test_runs_without_root_and_without_capabilities():
    assert os.geteuid() != 0 and os.getegid() != 0 and not os.getgroups()
    with open("/proc/self/status") as status:
        effective = next(line.split()[1] for line in status if line.startswith("CapEff:"))
    assert int(effective, 16) == 0


def test_no_docker_engine_answers():
    with pytest.raises(DockerUnavailable, match="not reachable"):
        DockerSession().info()
    with socket.socket(socket.AF_UNIX) as sock, pytest.raises(OSError):  # not even the machine's own socket
        sock.connect("/var/run/docker.sock")
