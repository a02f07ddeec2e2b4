"""What a check receives: its target, the shared facts of the run, and helpers to phrase findings."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Iterable

from netdoctor.dockerapi import ContainerNotFound, DockerSession
from netdoctor.facts import NamespaceView
from netdoctor.facts.docker import Attachment, NetworkInfo
from netdoctor.model import CheckInfo, Finding, Fix, Status
from netdoctor.netns import NamespaceError, NamespaceWorker, namespace_inode
from netdoctor.targets import Target, host_target


@dataclass(frozen=True)
class Options:
    timeout: float = 2.0                 # seconds, for each active probe
    peers: tuple[str, ...] = ()          # --peer: containers the target should reach
    probes: tuple[str, ...] = ()         # --probe HOST:PORT: endpoints to TCP-connect from the target
    resolve: tuple[str, ...] = ()        # --resolve NAME: names the target should resolve
    host_netns: str | None = None        # --host-netns: treat this namespace as the host

    @property
    def peer_names(self) -> tuple[str, ...]:
        """--peer values without their optional :PORT."""
        return tuple(split_peer(spec)[0] for spec in self.peers)

    @property
    def check_deadline(self) -> float:
        """How long one check may take in all before it is reported as hung."""
        return 3 * self.timeout + 10


class Session:
    """State shared by every check of one run: one namespace thread and fact cache per namespace,
    one Docker connection."""

    def __init__(self, options: Options, docker: DockerSession | None = None):
        self.options = options
        self.docker = docker or DockerSession()
        self.host_target = host_target(options.host_netns)
        self._views: dict[int, NamespaceView] = {}
        self._lock = threading.Lock()

    def view(self, path: str, label: str) -> NamespaceView:
        """The shared view of the namespace at `path` (two targets in one namespace share it)."""
        key = namespace_inode(path)
        with self._lock:
            if key not in self._views:
                self._views[key] = NamespaceView(NamespaceWorker(path), label)
            return self._views[key]

    @property
    def host(self) -> NamespaceView:
        if self.host_target.netns_path is None:
            raise NamespaceError(0, self.host_target.unavailable)
        return self.view(self.host_target.netns_path, "host")

    def close(self) -> None:
        with self._lock:
            for view in self._views.values():
                view.worker.close()
            self._views.clear()


class CheckContext:
    def __init__(self, check: CheckInfo, target: Target, session: Session):
        self.check = check
        self.target = target
        self.session = session
        self.options = session.options

    @property
    def host(self) -> NamespaceView:
        return self.session.host

    @property
    def netns(self) -> NamespaceView:
        """The target's namespace (the runner has verified it exists when the check needs it)."""
        return self.session.view(self.target.netns_path, self.target.label)

    @property
    def is_host_namespace(self) -> bool:
        """The target shares the host's namespace (host networking, or the host itself)."""
        return namespace_inode(self.target.netns_path) == namespace_inode(self.host.path)

    @property
    def container(self):
        return self.target.container

    @property
    def docker(self) -> DockerSession:
        return self.session.docker

    def networks(self) -> list[tuple[Attachment, NetworkInfo]]:
        """The Docker networks of a container target, with its endpoint on each; empty for other targets.
        With --network container:X they are X's, whose namespace the target shares."""
        if not self.container:
            return []
        owner = self.container
        if owner.network_mode.startswith("container:"):
            try:
                owner = self.docker.container(owner.network_mode.partition(":")[2])
            except ContainerNotFound:
                return []
        return self.docker.networks_of(owner)

    @property
    def target_name(self) -> str:
        """How fix commands should name the target."""
        return self.container.name if self.container else self.target.name

    def on_host(self, command: str) -> str:
        """A fix command to run on the host; prefixed to enter --host-netns when one was given."""
        where = self.options.host_netns
        if not where:
            return command
        return f"ip netns exec {where} {command}" if "/" not in where else f"nsenter --net={where} {command}"

    def in_target(self, command: str) -> str:
        """A command to run in the target's namespace from the host (never inside the container)."""
        # the engine's pid is the host's; target.pid may be netdoctor's own when it runs inside the container
        pid = self.container.pid if self.container and self.container.running else self.target.pid
        if pid:
            return f"nsenter --net=/proc/{pid}/ns/net {command}"
        if self.target.kind == "netns" and "/" not in self.target.name:
            return f"ip netns exec {self.target.name} {command}"
        return f"nsenter --net={self.target.netns_path} {command}"

    def finding(self, status: Status, title: str, detail: str = "", evidence: dict[str, Any] | None = None,
                fix: Fix | str | None = None, commands: Iterable[str] = ()) -> Finding:
        if isinstance(fix, str):
            fix = Fix(fix, tuple(commands))
        return Finding(check=self.check.id, target=self.target.label, status=status, severity=self.check.severity,
                       title=title, detail=detail, evidence=evidence or {}, fix=fix)

    def ok(self, title: str, **kw) -> Finding:
        return self.finding(Status.PASS, title, **kw)

    def info(self, title: str, **kw) -> Finding:
        return self.finding(Status.INFO, title, **kw)

    def warn(self, title: str, **kw) -> Finding:
        return self.finding(Status.WARN, title, **kw)

    def fail(self, title: str, **kw) -> Finding:
        return self.finding(Status.FAIL, title, **kw)

    def skip(self, title: str, **kw) -> Finding:
        return self.finding(Status.SKIP, title, **kw)


def split_peer(spec: str) -> tuple[str, int | None]:
    """--peer NAME or NAME:PORT."""
    name, sep, port = spec.rpartition(":")
    return (name, int(port)) if sep and port.isdigit() else (spec, None)


def bad_probe(spec: str) -> bool:
    """A --probe value that is not HOST:PORT."""
    host, sep, port = spec.rpartition(":")
    return not (sep and host and port.isdigit())


def is_root() -> bool:
    return os.geteuid() == 0
