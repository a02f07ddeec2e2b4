"""Which process holds a socket: socket inodes (from sock_diag) matched against /proc/PID/fd links.

psutil.net_connections() would do the matching too, but it reads /proc/net/* of netdoctor's own
namespace; matching inodes works for sockets of any namespace, including a container's.

A process's name and command line are read from /proc/PID/stat and /proc/PID/cmdline as psutil's
Process.name() and .cmdline() read them on Linux (the name the kernel truncates to 15 characters completed
from the command line; arguments split on NUL, or on spaces for a process that rewrote its title):
importing psutil cost 10 to 20 ms of a diagnosis for two small files. tests/fast/test_processes.py checks
the result against psutil's for every process of the machine it runs on.
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
    found: dict[int, list[int]] = {}
    for pid in (int(entry) for entry in os.listdir("/proc") if entry.isdigit()):
        for link in _fd_links(pid):
            if link.startswith("socket:["):
                pids = found.setdefault(int(link[8:-1]), [])
                if pid not in pids:
                    pids.append(pid)
    return {inode: tuple(pids) for inode, pids in found.items()}


COMM_LENGTH = 15  # the kernel keeps the first 15 bytes of a program's name (TASK_COMM_LEN - 1)


def process(pid: int) -> Process | None:
    """What runs as `pid` (None: it exited meanwhile, is a zombie, or cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    end = stat.rfind(b")")  # the name may hold spaces and parentheses itself
    if stat[end + 2:end + 3] == b"Z":
        return None
    name = os.fsdecode(stat[stat.find(b"(") + 1:end])
    cmdline = _arguments(os.fsdecode(raw).replace("\r\n", "\n").replace("\r", "\n"))
    if len(name) >= COMM_LENGTH and cmdline and os.path.basename(cmdline[0]).startswith(name):
        name = os.path.basename(cmdline[0])
    return Process(pid, name, tuple(cmdline))


def _arguments(data: str) -> list[str]:
    """/proc/PID/cmdline's arguments: NUL-separated, or space-separated when the process rewrote them."""
    if not data:
        return []  # a kernel thread
    separator = "\x00" if data.endswith("\x00") else " "
    if data.endswith(separator):
        data = data[:-1]
    arguments = data.split(separator)
    if separator == "\x00" and len(arguments) == 1 and " " in data:
        arguments = data.split(" ")
    return arguments


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
