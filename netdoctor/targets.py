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


NS_GET_NSTYPE = 0xB703  # ioctl(2) on a namespace file: which kind of namespace it is (Linux >= 4.11)
CLONE_NEWNET = 0x40000000


def netns_path(spec: str) -> str:
    """`NAME` means /run/netns/NAME (as `ip netns add` makes); anything with a slash is a path. It must be a
    network namespace: a regular file, /dev/null or a directory would make every check skip and prove nothing."""
    if not spec.strip():
        raise TargetError("an empty network namespace name: give NAME (as in /run/netns/NAME) or a path such as /proc/PID/ns/net")
    path = spec if "/" in spec else os.path.join(NAMED_NETNS_DIR, spec)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TargetError(f"network namespace {spec!r} does not exist ({path} not found)") from None
    except PermissionError:
        return path  # there, but not ours to open: entering it will say so
    except OSError as exc:
        raise TargetError(f"network namespace {spec!r}: cannot look at {path}: {exc.strerror}") from None
    what = _namespace_kind(path, st)
    if what:
        raise TargetError(f"{path} is {what}, not a network namespace: give NAME (as in /run/netns/NAME) or a "
                          "namespace file such as /proc/PID/ns/net")
    return path


def _namespace_kind(path: str, st: os.stat_result) -> str:
    """"" for a network namespace file (or one we may not open, which entering will explain), else what it is."""
    import stat

    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    if not stat.S_ISREG(st.st_mode):
        return "a device, FIFO or socket" if not stat.S_ISLNK(st.st_mode) else "a dangling link"
    try:
        if st.st_dev != os.stat("/proc/self/ns/net").st_dev:  # every namespace file lives on the nsfs filesystem
            return "an ordinary file"
    except OSError:
        return ""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        return ""  # an older kernel cannot tell: entering it will
    finally:
        os.close(fd)
    return "" if kind == CLONE_NEWNET else "another kind of namespace (mount, PID, user...)"


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


class ForeignEngine(BadInput):
    """The engine's pids are not this machine's: it runs on another host (DOCKER_HOST=tcp://..., a forwarded
    socket) or in a PID namespace of its own. Entering /proc/<State.Pid>/ns/net would diagnose whatever
    unrelated process has that pid here (exit 2: the user pointed at an engine netdoctor cannot look into)."""


def _runs_here(container: ContainerInfo) -> bool | None:
    """Whether process State.Pid on this machine is the container's own. Its cgroup path names the container
    id (cgroup v1 and v2, cgroupfs and systemd drivers, Docker 20.10 to 28, engines in a network and mount
    namespace of their own, also as read from a container with a cgroup namespace: "0::/../ID"); where no
    cgroup does (an engine without cgroups, as rootless Docker on cgroup v1), the mounts Docker gives every
    container do (.../containers/ID/resolv.conf, hostname, hosts). None: cannot tell (the process is gone,
    or not ours to read)."""
    read_any = False
    for name in ("cgroup", "mountinfo"):
        try:
            with open(f"/proc/{container.pid}/{name}") as f:
                if container.id in f.read():
                    return True
            read_any = True
        except OSError:
            continue
    return False if read_any else None


def _foreign(container: ContainerInfo, docker_session) -> bool:
    """The engine's pid for `container` is not its process on this machine: another process has it, or none
    does while the engine, asked again, still runs the container with that pid (not a container that has just
    stopped)."""
    here = _runs_here(container)
    if here is not None or docker_session is None or os.path.exists(f"/proc/{container.pid}"):
        return here is False
    from netdoctor.dockerapi import ContainerNotFound

    try:
        again = docker_session.container(container.id, fresh=True)
    except ContainerNotFound:
        return False  # removed meanwhile: the run reports it vanished
    return again.has_namespace and again.pid == container.pid


def container_target(container: ContainerInfo, docker_session=None) -> Target:
    """`docker_session`: the engine it comes from, asked again when its pid is no process here, and named in
    the message when its pids turn out not to be this machine's."""
    if container.has_namespace and container.id == network_owner_id():
        # netdoctor's own container, or the one it joined with --network container:NAME: read it through
        # ourselves (always permitted, and the only way without --pid host); fixes still use the engine's pid
        return Target("container", container.name, f"/proc/{os.getpid()}/ns/net", container, os.getpid())
    if container.has_namespace and not _sees_host_pids() and _runs_here(container) is not True:
        # in a container with its own PID namespace, the engine's pids mean nothing (unless it shares the
        # engine's: an agent run with --pid host next to an engine in a PID namespace of its own, as dind's)
        return Target("container", container.name, None, container, unavailable=(
            f"netdoctor cannot see {container.name}'s processes from its own container: run it with --pid host "
            f"--cap-add SYS_PTRACE, or with --network container:{container.name}"))
    if container.has_namespace:  # running, or paused (frozen processes, but the namespace is there to read)
        if _foreign(container, docker_session):
            engine = docker_session.address if docker_session is not None else "DOCKER_HOST"
            raise ForeignEngine(
                f"the Docker engine at {engine} does not run {container.name} on this machine (its pid "
                f"{container.pid} is {'another process' if os.path.exists(f'/proc/{container.pid}') else 'no process'} "
                f"here: the engine is on another host or in a PID namespace of its own): run `netdoctor check -H "
                f"{engine} {container.name}`, which diagnoses it with netdoctor's image on that engine")
        return Target("container", container.name, f"/proc/{container.pid}/ns/net", container, container.pid)
    return Target("container", container.name, None, container, unavailable=f"{container.state_text}: it has no network namespace")


TARGET_KINDS = "a container name or id, container:NAME, pid:PID, netns:NAME|PATH, host or self"
# what Docker accepts as a container name (a leading / as inspect prints it), and any id or id prefix
CONTAINER_NAME = re.compile(r"/?[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_spec(spec: str) -> None:
    """TargetError unless `spec` can name a target, judged without privilege or Docker: its form, and
    whether a pid: process or a netns: namespace is there (`resolve` then finds what it names)."""
    kind, sep, rest = spec.partition(":")
    if not spec.strip():
        raise TargetError(f"an empty target: name {TARGET_KINDS}")
    if spec in ("host", "self"):
        return
    if sep and kind == "pid":
        _pid_path(rest)
        return
    if sep and kind == "netns":
        netns_path(rest)
        return
    if sep and kind == "container":
        if not rest.strip():
            raise TargetError(f"{spec!r} names no container: write container:NAME")
    elif sep:
        raise TargetError(f"{spec!r}: unknown kind of target {kind + ':'!r} (targets are {TARGET_KINDS})")
    name = rest if sep else spec
    if not CONTAINER_NAME.fullmatch(name):
        raise TargetError(f"{name!r} is not a container name or id (letters, digits, _ . -); targets are {TARGET_KINDS}")


def resolve(spec: str, docker_session, host: Target) -> Target:
    """The target `spec` names; `host` is the run's host target (the machine's, or --host-netns)."""
    check_spec(spec)
    kind, sep, rest = spec.partition(":")
    if spec == "host":
        return host
    if spec == "self":
        return self_target(docker_session)
    if sep and kind == "pid":
        return pid_target(rest)
    if sep and kind == "netns":
        return Target("netns", rest, netns_path(rest))
    name = (rest if sep else spec).lstrip("/")  # "/web" as `docker inspect` prints names
    if docker_session is None:
        raise TargetError(f"{name!r} looks like a container name, but Docker is not available")
    return container_target(docker_session.container(name), docker_session)


def _pid_path(pid: str) -> str:
    if not pid.isdigit() or int(pid) == 0:
        raise TargetError(f"pid:{pid} is not a process id (a number such as pid:1234)")
    if not os.path.exists(f"/proc/{pid}"):
        raise TargetError(f"no process with pid {pid}")
    return f"/proc/{pid}/ns/net"


def pid_target(pid: str) -> Target:
    """A process's namespace. One netdoctor may not open (a hardened PID 1, another user namespace) is a
    target that cannot be looked into, with the reason, rather than a target that vanished."""
    path = _pid_path(pid)
    try:
        os.stat(path)
    except PermissionError:
        return Target("pid", pid, None, pid=int(pid), unavailable=(
            f"permission denied opening {path}: the kernel's ptrace check refuses netdoctor access to process {pid} "
            "(it needs root with CAP_SYS_PTRACE; a hardened or non-dumpable process, or one in another user "
            "namespace, may refuse even root)"))
    except FileNotFoundError:
        raise TargetError(f"no process with pid {pid} (it exited)") from None
    return Target("pid", pid, path, pid=int(pid))
