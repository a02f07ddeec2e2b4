"""Which process holds a socket: socket inodes (from sock_diag) matched against /proc/PID/fd links.

psutil.net_connections() would do the matching too, but it reads /proc/net/* of netdoctor's own
namespace; matching inodes works for sockets of any namespace, including a container's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Process:
    pid: int
    name: str
    cmdline: tuple[str, ...]

    def arg(self, flag: str) -> str | None:
        """The value after `flag` on the command line (docker-proxy's -container-ip, -container-port...)."""
        args = list(self.cmdline)
        return args[args.index(flag) + 1] if flag in args[:-1] else None

    @property
    def is_docker_proxy(self) -> bool:
        """Docker's userland proxy, holding a published port on the host for one container."""
        return bool(self.cmdline) and os.path.basename(self.cmdline[0]) == "docker-proxy" and "-container-ip" in self.cmdline

    def to_evidence(self) -> dict:
        return {"pid": self.pid, "name": self.name, "cmdline": " ".join(self.cmdline)}


def socket_holders() -> dict[int, tuple[int, ...]]:
    """Every socket inode any process holds, with the pids holding it (several after a fork): one walk of
    /proc/*/fd for the whole run, shared by every target (a per-target walk costs 50 ms each on a busy host)."""
    import psutil

    found: dict[int, list[int]] = {}
    for pid in psutil.pids():
        for link in _fd_links(pid):
            if link.startswith("socket:["):
                pids = found.setdefault(int(link[8:-1]), [])
                if pid not in pids:
                    pids.append(pid)
    return {inode: tuple(pids) for inode, pids in found.items()}


def process(pid: int) -> Process | None:
    """What runs as `pid` (None: it exited meanwhile)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return Process(pid, proc.name(), tuple(proc.cmdline()))
    except psutil.Error:
        return None


def _fd_links(pid: int) -> list[str]:
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:  # exited meanwhile
        return []
    links = []
    for fd in fds:
        try:
            links.append(os.readlink(f"{fd_dir}/{fd}"))
        except OSError:  # closed meanwhile
            continue
    return links
