"""A target's resolv.conf: read from the host side (never via docker exec) and parsed with dnspython.

A running container's file is read through /proc/PID/root, i.e. from the container's own mount namespace;
a stopped one's from the ResolvConfPath Docker reports (the file Docker bind-mounts at start).
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass

from netdoctor.targets import Target

MAX_BYTES = 64 * 1024
LIBC_MAXNS = 3          # glibc and musl use only the first three nameservers
DEFAULT_NDOTS = 1


class ResolvConfUnavailable(Exception):
    """The file cannot be read (stopped container never started, or not safely readable)."""


@dataclass(frozen=True)
class ResolvConf:
    path: str
    nameservers: tuple[str, ...]
    search: tuple[str, ...]
    ndots: int
    invalid: str = ""    # why dnspython rejected the nameserver lines, if it did

    def to_evidence(self) -> dict:
        return {"resolv_conf": self.path, "nameservers": list(self.nameservers), "search": list(self.search),
                "ndots": self.ndots}


def parse(text: str, path: str) -> ResolvConf:
    import dns.name
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.domain = dns.name.root  # reset() took our own hostname's domain; only the file's may count
    invalid = ""
    try:
        resolver.read_resolv_conf(io.StringIO(text))
    except dns.resolver.NoResolverConfiguration:
        pass  # no nameserver line: search/ndots were read all the same, and libc falls back to 127.0.0.1
    except ValueError as exc:  # a nameserver line that is not an address
        invalid = str(exc)
    search = [name.to_text(omit_final_dot=True) for name in resolver.search]
    if not search and resolver.domain != dns.name.root:  # "domain X" acts as a one-entry search list
        search = [resolver.domain.to_text(omit_final_dot=True)]
    nameservers = tuple(getattr(ns, "address", str(ns)) for ns in resolver.nameservers) if not invalid else ()
    return ResolvConf(path, nameservers, tuple(search), resolver.ndots if resolver.ndots is not None else DEFAULT_NDOTS,
                      invalid)


def read(path: str) -> ResolvConf:
    """Read a resolv.conf that a container controls without following its symlinks or blocking on a FIFO."""
    parent = os.path.dirname(path)
    try:
        parent_is_link = stat.S_ISLNK(os.lstat(parent).st_mode)
        fd = -1 if parent_is_link else os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ResolvConfUnavailable(f"cannot read {path}: {exc.strerror}") from None
    if parent_is_link:
        raise ResolvConfUnavailable(f"{parent} is a symlink; not followed")
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ResolvConfUnavailable(f"{path} is not a regular file")
        text = f.read(MAX_BYTES).decode("utf-8", "replace")
    return parse(text, path)


def path_of(target: Target) -> str | None:
    """Where the target's resolv.conf is, seen from the host: inside its mount namespace while it runs."""
    if target.pid:
        return f"/proc/{target.pid}/root/etc/resolv.conf"
    if target.container and target.container.resolv_conf_path:
        return target.container.resolv_conf_path
    return None


HOST_RESOLV_CONFS = ("/run/systemd/resolve/resolv.conf", "/etc/resolv.conf")


def host_upstream() -> str | None:
    """The host's first non-loopback nameserver (systemd-resolved's upstream list first), to print in fixes.
    Read through PID 1's root (the host's files even when netdoctor runs in a container), else kthreadd's
    (PID 2, also the host's root, when PID 1 is shielded), else our own; never queried."""
    import ipaddress

    for path in (root + conf for root in ("/proc/1/root", "/proc/2/root", "") for conf in HOST_RESOLV_CONFS):
        try:
            servers = read(path).nameservers
        except ResolvConfUnavailable:
            continue
        usable = [s for s in servers if not ipaddress.ip_address(s.split("%")[0]).is_loopback]
        if usable:
            return usable[0]
    return None
