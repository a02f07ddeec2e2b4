"""Turn what the user typed ("web", "pid:123", "netns:NAME", "host", "self") into Targets."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import Any

from netdoctor.errors import BadInput
from netdoctor.facts.docker import ContainerInfo

HOST_NETNS = "/proc/1/ns/net"  # PID 1's namespace is the host's, also from a container run with --pid host
KERNEL_THREAD_NETNS = "/proc/2/ns/net"  # kthreadd: kernel threads always live in the initial namespace
NAMED_NETNS_DIR = "/run/netns"
CONTAINER_MARKERS = ("/.dockerenv", "/run/.containerenv")
DOCKER_SOCKET_FLAG = "-v /var/run/docker.sock:/var/run/docker.sock"


class TargetError(BadInput):
    """The user named something that does not exist or cannot be a target (exit 2)."""


@dataclass(frozen=True)
class Target:
    kind: str                      # container, pid, netns, host, self
    name: str
    netns_path: str | None         # None when there is no namespace to enter (stopped container)
    container: ContainerInfo | None = None
    pid: int | None = None
    unavailable: str = ""          # why netns_path is None
    unidentified: str = ""         # a container's namespace, but which container is unknown: why (checks needing it skip)

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}" if self.kind not in ("host", "self") else self.kind

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"target": self.label, "kind": self.kind, "name": self.name, "netns": self.netns_path}
        if self.container:
            c = self.container
            data["container"] = {
                "id": c.short_id, "name": c.name, "image": c.image, "status": c.status, "pid": c.pid,
                "network_mode": c.network_mode,
                "networks": {a.network: a.ip for a in c.attachments},
                "published": [p.label for p in c.published],
            }
        if self.unavailable:
            data["unavailable"] = self.unavailable
        return data


def netns_path(spec: str) -> str:
    """`NAME` means /run/netns/NAME (as `ip netns add` makes); anything with a slash is a path."""
    path = spec if "/" in spec else os.path.join(NAMED_NETNS_DIR, spec)
    if not os.path.exists(path):
        raise TargetError(f"network namespace {spec!r} does not exist ({path} not found)")
    return path


def _sees_host_pids() -> bool:
    """PID 2 is kthreadd only in the initial PID namespace: a container without --pid host never sees it."""
    try:
        with open("/proc/2/status") as f:
            return f.readline().split()[-1] == "kthreadd"
    except (OSError, IndexError):
        return False


def _in_container() -> bool:
    return any(os.path.exists(marker) for marker in CONTAINER_MARKERS)


def default_host_netns() -> tuple[str | None, str]:
    """The host's namespace: PID 1's, or kthreadd's (some VMs shield their init), when we see and may open
    them; else unknown, with the reason and the flag that fixes it.

    Opening another process's namespace file is a ptrace-read check: a container's root whose
    capabilities are not a superset of the process's (host PID 1 and kthreadd hold them all) needs
    CAP_SYS_PTRACE, whatever --pid host says."""
    if not _sees_host_pids():
        return None, ("netdoctor does not see the host's processes: run its container with --pid host "
                      "--cap-add SYS_PTRACE, or pass --host-netns")
    for path in (HOST_NETNS, KERNEL_THREAD_NETNS):
        try:
            os.stat(path)
            return path, ""
        except OSError:
            continue
    hint = "add --cap-add SYS_PTRACE to netdoctor's container" if _in_container() else "run netdoctor as root"
    return None, (f"permission denied opening the host's network namespace ({HOST_NETNS}, {KERNEL_THREAD_NETNS}): "
                  f"{hint}, or pass --host-netns")


def host_target(host_netns: str | None) -> Target:
    if host_netns:
        return Target("host", "host", netns_path(host_netns))
    path, why = default_host_netns()
    return Target("host", "host", path, unavailable=why)


def running_in_container() -> bool:
    """In a container whose network is not the host's (then `self` is the natural target)."""
    if not _in_container():
        return False
    host_path, _ = default_host_netns()
    own = f"/proc/{os.getpid()}/ns/net"
    return host_path is None or os.stat(host_path).st_ino != os.stat(own).st_ino


@functools.cache  # fixed for the life of the process
def network_owner_id() -> str | None:
    """In a container: the id of the container whose network namespace we are in. Docker bind-mounts that
    container's resolv.conf over /etc/resolv.conf: ours, or the one joined with --network container:NAME."""
    if not _in_container():
        return None
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[4] == "/etc/resolv.conf":
                    found = re.search(r"/containers/([0-9a-f]{64})/resolv\.conf$", fields[3])
                    return found.group(1) if found else None
    except OSError:
        pass
    return None


def self_target(docker_session) -> Target:
    """Our own namespace. Inside a container it is a container's (ours, or the one joined with --network
    container:NAME): with the Docker socket, check it as that container, so container checks run too."""
    own = Target("self", "self", f"/proc/{os.getpid()}/ns/net", pid=os.getpid())
    if not _in_container():
        return own
    owner = network_owner_id()
    if owner is None:
        return own
    from netdoctor.dockerapi import ContainerNotFound, DockerUnavailable, engine_address

    try:
        container = docker_session.container(owner)
    except (DockerUnavailable, ContainerNotFound) as exc:
        address = engine_address()
        if address.startswith("unix://") and not os.path.exists(address[len("unix://"):]):
            why = f"no Docker socket at {address[len('unix://'):]}, so netdoctor cannot tell which container this is: add {DOCKER_SOCKET_FLAG}"
        else:
            why = f"Docker cannot tell which container this is ({exc})"
        return Target("self", "self", own.netns_path, pid=own.pid, unidentified=why)
    return container_target(container)


def container_target(container: ContainerInfo) -> Target:
    if container.running and container.id == network_owner_id():
        # netdoctor's own container, or the one it joined with --network container:NAME: read it through
        # ourselves (always permitted, and the only way without --pid host); fixes still use the engine's pid
        return Target("container", container.name, f"/proc/{os.getpid()}/ns/net", container, os.getpid())
    if container.running and not _sees_host_pids():
        # in a container with its own PID namespace, the engine's pids mean nothing
        return Target("container", container.name, None, container, unavailable=(
            f"netdoctor cannot see {container.name}'s processes from its own container: run it with --pid host "
            f"--cap-add SYS_PTRACE, or with --network container:{container.name}"))
    if container.running:
        return Target("container", container.name, f"/proc/{container.pid}/ns/net", container, container.pid)
    why = f"container {container.name} is {container.status}"
    if container.error:
        why += f" (last error: {container.error})"
    return Target("container", container.name, None, container, unavailable=why + ": it has no network namespace")


def resolve(spec: str, docker_session, host: Target) -> Target:
    """The target `spec` names; `host` is the run's host target (the machine's, or --host-netns)."""
    kind, sep, rest = spec.partition(":")
    if spec == "host":
        return host
    if spec == "self":
        return self_target(docker_session)
    if sep and kind == "pid":
        if not rest.isdigit():
            raise TargetError(f"pid:{rest} is not a process id")
        path = f"/proc/{rest}/ns/net"
        if not os.path.exists(f"/proc/{rest}"):
            raise TargetError(f"no process with pid {rest}")
        return Target("pid", rest, path, pid=int(rest))
    if sep and kind == "netns":
        return Target("netns", rest, netns_path(rest))
    if sep and kind == "container":
        spec = rest
    if docker_session is None:
        raise TargetError(f"{spec!r} looks like a container name, but Docker is not available")
    return container_target(docker_session.container(spec))
