"""What a check receives: its target, the shared facts of the run, and helpers to phrase findings."""

from __future__ import annotations

import os
import shutil
import threading
from typing import Any, Callable, Iterable, TypeVar

from netdoctor.dockerapi import ContainerNotFound, DockerSession
from netdoctor.facts import NamespaceView
from netdoctor.facts.docker import Attachment, NetworkInfo
from netdoctor.model import CheckInfo, Finding, Fix, Status
from netdoctor.netns import NamespaceError, NamespaceWorker, namespace_inode
from netdoctor.request import Options
from netdoctor.targets import Target, host_target

T = TypeVar("T")


class Session:
    """State shared by every check of one run: one namespace thread and fact cache per namespace,
    one Docker connection."""

    def __init__(self, options: Options, docker: DockerSession | None = None):
        self.options = options
        self.docker = docker or DockerSession()
        self.host_target = host_target(options.host_netns)
        self._views: dict[int, NamespaceView] = {}
        self._views_by_path: dict[str, NamespaceView] = {}  # checks ask for their view often: no stat each time
        self._inodes: dict[str, int] = {}
        self._view_locks: dict[int, threading.Lock] = {}
        self._facts: dict[tuple, tuple[bool, Any]] = {}
        self._fact_locks: dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()

    def view(self, path: str, label: str) -> NamespaceView:
        """The shared view of the namespace at `path` (two targets in one namespace share it)."""
        view = self._views_by_path.get(path)
        if view is not None:
            return view
        key = self._inode(path)
        with self._lock:
            lock = self._view_locks.setdefault(key, threading.Lock())
        with lock:  # one namespace's thread starting does not hold up the others'
            view = self._views.get(key)
            if view is None:
                view = NamespaceView(NamespaceWorker(path), label)
                with self._lock:
                    self._views[key] = view
            self._views_by_path[path] = view
        return view

    @property
    def host(self) -> NamespaceView:
        if self.host_target.netns_path is None:
            raise NamespaceError(0, self.host_target.unavailable)
        return self.view(self.host_target.netns_path, "host")

    def fact(self, reader: Callable[..., T], *args: Any) -> T:
        """A fact read from the host's files rather than from a namespace (a container's resolv.conf, which
        process holds a socket): `reader(*args)` run once per run, its result (or exception) shared."""
        key = (reader, args)
        with self._lock:
            lock = self._fact_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._facts:
                try:
                    self._facts[key] = (True, reader(*args))
                except Exception as exc:
                    self._facts[key] = (False, exc)
            ok, value = self._facts[key]
        if not ok:
            raise value
        return value

    def prefetch(self, read: Callable[[], Any]) -> None:
        """Start reading, in the background, a fact the run is sure to need (`lambda: session.host.firewall`):
        it fills the same per-run cache the checks ask, so they wait only for what is still missing; a
        program it starts runs on the other core meanwhile. Its failure is left for the checks to meet."""

        def run() -> None:
            try:
                read()
            except Exception:  # remembered by the cache (or met again) by the check that asks
                pass

        threading.Thread(target=run, name="prefetch", daemon=True).start()

    # What the runner and contexts ask of the machine; a test's fake session answers from constructed facts.

    @property
    def privileged(self) -> bool:
        """Root: may enter other namespaces and read the firewall."""
        return os.geteuid() == 0

    def has_tool(self, name: str) -> bool:
        """A program of the host's that netdoctor runs (iptables-save, nft) is installed."""
        return shutil.which(name) is not None

    def namespace_exists(self, path: str) -> bool:
        """The namespace file is still there (a process that exited takes its /proc/PID/ns/net along);
        one we may not open still exists, and entering it says why not."""
        try:
            os.stat(path)
            return True
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            return False
        except OSError:
            return True

    def same_namespace(self, path: str, other: str) -> bool:
        return self._inode(path) == self._inode(other)

    def _inode(self, path: str) -> int:
        """A namespace file's inode, looked up once per run: checks compare namespaces often."""
        inode = self._inodes.get(path)
        if inode is None:
            inode = self._inodes[path] = namespace_inode(path)
        return inode

    def close(self) -> None:
        with self._lock:
            for view in self._views.values():
                view.worker.close()
            self._views.clear()
            self._views_by_path.clear()
        self.docker.close()


class CheckContext:
    def __init__(self, check: CheckInfo, target: Target, session: Session):
        self.check = check
        self.target = target
        self.session = session
        self.options = session.options
        self._unkeyed = 0
        self._numbering = threading.Lock()  # probes run concurrently and phrase findings from their own threads

    @property
    def host(self) -> NamespaceView:
        return self.session.host

    @property
    def netns(self) -> NamespaceView:
        """The target's namespace (the runner has verified it exists when the check needs it). A paused
        container's can be read, but its probes raise TargetPaused: nothing in it would take part."""
        view = self.session.view(self.target.netns_path, self.target.label)
        return FrozenView(view, self.container.name) if self.container and self.container.paused else view

    @property
    def is_host_namespace(self) -> bool:
        """The target shares the host's namespace (host networking, or the host itself)."""
        return self.session.same_namespace(self.target.netns_path, self.host.path)

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
                fix: Fix | str | None = None, commands: Iterable[str] = (), key: str = "") -> Finding:
        """`key` names what the finding is about, stably across runs ("forwarding-off", "nameserver-10.0.0.2"):
        root-cause rules and baselines refer to it. Without one, the finding is numbered in the check's order."""
        if isinstance(fix, str):
            fix = Fix(fix, tuple(commands))
        if not key:
            with self._numbering:
                self._unkeyed += 1
                key = f"finding-{self._unkeyed}"
        return Finding(check=self.check.id, target=self.target.label, status=status, severity=self.check.severity,
                       title=title, detail=detail, evidence=evidence or {}, fix=fix, key=key)

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


class TargetPaused(Exception):
    """A check wanted to send traffic from or to a paused container (the runner turns it into a skip)."""


class FrozenView:
    """A paused container's namespace: its facts read as usual; probes refuse, since the container's frozen
    processes would neither send nor answer, and a probe's outcome would describe the pause, not the network."""

    PROBES = ("connect", "query", "echo", "socket")

    def __init__(self, view: NamespaceView, name: str):
        self._view = view
        self._name = name

    def __getattr__(self, attribute: str):
        if attribute in self.PROBES:
            raise TargetPaused(f"container {self._name} is paused, so no traffic was sent from or to it "
                               f"(`docker unpause {self._name}`, then check again)")
        return getattr(self._view, attribute)
