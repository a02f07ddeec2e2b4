"""Which process holds a socket: socket inodes (from sock_diag) matched against /proc/PID/fd links.

psutil.net_connections() would do the matching too, but it reads /proc/net/* of netdoctor's own
namespace; matching inodes works for sockets of any namespace, including a container's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable


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


def socket_owners(inodes: Iterable[int]) -> dict[int, list[Process]]:
    """The processes holding each socket inode (several after a fork); inodes nobody holds are absent."""
    import psutil

    wanted = {f"socket:[{inode}]": inode for inode in inodes if inode}
    found: dict[int, list[Process]] = {}
    if not wanted:
        return found
    for pid in psutil.pids():
        held = {wanted[link] for link in _fd_links(pid) if link in wanted}
        if not held:
            continue
        try:
            proc = psutil.Process(pid)
            owner = Process(pid, proc.name(), tuple(proc.cmdline()))
        except psutil.Error:
            continue
        for inode in held:
            found.setdefault(inode, []).append(owner)
    return found


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
