"""Turn what the user typed ("web", "pid:123", "netns:NAME", "host", "self") into Targets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from netdoctor.facts.docker import ContainerInfo

HOST_NETNS = "/proc/1/ns/net"  # PID 1's namespace is the host's, also from a container run with --pid host
NAMED_NETNS_DIR = "/run/netns"


class TargetError(ValueError):
    """The user named something that does not exist or cannot be a target (exit 2)."""


@dataclass(frozen=True)
class Target:
    kind: str                      # container, pid, netns, host, self
    name: str
    netns_path: str | None         # None when there is no namespace to enter (stopped container)
    container: ContainerInfo | None = None
    pid: int | None = None
    unavailable: str = ""          # why netns_path is None

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


def default_host_netns() -> tuple[str | None, str]:
    """The host's namespace: PID 1's when we can see and open it; else our own, when we are in the host's
    PID namespace but PID 1 is shielded (some VMs' init is); else unknown, with the reason."""
    if not _sees_host_pids():
        return None, "netdoctor does not see the host's processes: run its container with --pid host, or pass --host-netns"
    try:
        os.stat(HOST_NETNS)
        return HOST_NETNS, ""
    except PermissionError:
        return f"/proc/{os.getpid()}/ns/net", ""
    except OSError as exc:
        return None, f"cannot open the host's network namespace {HOST_NETNS}: {exc.strerror}"


def host_target(host_netns: str | None) -> Target:
    if host_netns:
        return Target("host", "host", netns_path(host_netns))
    path, why = default_host_netns()
    return Target("host", "host", path, unavailable=why)


def running_in_container() -> bool:
    """In a container whose network is not the host's (then `self` is the natural target)."""
    if not (os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")):
        return False
    host_path, _ = default_host_netns()
    own = f"/proc/{os.getpid()}/ns/net"
    return host_path is None or os.stat(host_path).st_ino != os.stat(own).st_ino


def container_target(container: ContainerInfo) -> Target:
    if container.running:
        return Target("container", container.name, f"/proc/{container.pid}/ns/net", container, container.pid)
    why = f"container {container.name} is {container.status}"
    if container.error:
        why += f" (last error: {container.error})"
    return Target("container", container.name, None, container, unavailable=why + ": it has no network namespace")


def resolve(spec: str, docker_session, host_netns: str | None) -> Target:
    kind, sep, rest = spec.partition(":")
    if spec == "host":
        return host_target(host_netns)
    if spec == "self":
        return Target("self", "self", f"/proc/{os.getpid()}/ns/net", pid=os.getpid())
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
