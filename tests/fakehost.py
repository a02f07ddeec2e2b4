"""The tests' side of netdoctor/lab/fakehost.py, the one builder of a fake host with a "container" behind its
bridge and an "internet" (also the lab's): namespaces from the make_netns fixture, the lab's services as
processes inside them, and a ground truth for "does the container reach the remote" without netdoctor.

    fake = fakehost.build(lab_netns)                          # the whole host (the lab_netns fixture)
    fakehost.uplink(lab_netns, make_netns("host"), mtu=1400)  # or some of its pieces
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from netdoctor.lab.fakehost import REMOTE, REMOTE_PORT, FakeHost
from netdoctor.lab.topology import Plumbing, start_service
from tests.conftest import sh


class LabNamespaces(Plumbing):
    """Namespaces from a test's make_netns fixture: unique names, deleted after the test together with every
    process in them (the services started here too), even when it fails. Nothing goes into the lab's state,
    so `netdoctor lab down --all` never touches a test's objects."""

    def __init__(self, make_netns, workdir: Path):
        self.make_netns = make_netns
        self.workdir = workdir

    def netns(self, role: str, forwarding: bool | None = None) -> str:
        return self.make_netns(role, forwarding=forwarding)

    def spawn(self, role: str, module: str, *args: str, netns: str | None = None) -> int:
        pidfile = self.workdir / f"{role}.pid"
        argv = [sys.executable, "-m", module, *args, "--pidfile", str(pidfile)]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        return start_service(argv, pidfile, self.workdir / f"{role}.log", f"{module} ({role})").pid


def in_ns(netns: str, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", netns, *command, check=check)


def connects(fake: FakeHost, port: int = REMOTE_PORT) -> bool:
    """Ground truth without netdoctor: can the container open a TCP connection to the remote?"""
    code = ("import socket,sys\ns=socket.socket();s.settimeout(1)\n"
            f"sys.exit(s.connect_ex(('{REMOTE}',{port})))")
    return in_ns(fake.container, sys.executable, "-c", code, check=False).returncode == 0
