"""A target's resolv.conf: read from the host side (never via docker exec).

A running container's file is read through /proc/PID/root, i.e. from the container's own mount namespace;
a stopped one's from the ResolvConfPath Docker reports (the file Docker bind-mounts at start).

The lines are read as dnspython's `Resolver.read_resolv_conf` reads them (names through dns.name, addresses
through dns.inet), by the ~20 lines of `parse` rather than by dnspython's resolver itself: importing
dns.resolver brings its whole query machinery (dns.query, dns.asyncquery, dns.nameserver, DoH/DoQ/DDR
support...), about 25 ms of a diagnosis that takes 300, to split a few lines. tests/fast/test_resolvconf.py
checks on any file that the result is dnspython's.
"""

from __future__ import annotations

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
    ignored: tuple[str, ...] = ()  # search/domain entries that are not DNS names (libc cannot use them either)

    def to_evidence(self) -> dict:
        return {"resolv_conf": self.path, "nameservers": list(self.nameservers), "search": list(self.search),
                "ndots": self.ndots, **({"ignored_search_entries": list(self.ignored)} if self.ignored else {})}


MAX_NDOTS = 15  # glibc's RES_MAXNDOTS (musl caps it the same way): a larger ndots acts as 15


def _usable_names(text: str) -> tuple[str, tuple[str, ...]]:
    """The file without search/domain entries dnspython cannot parse (a label over 63 octets, an empty
    label): one bad entry would otherwise make it reject the whole file, nameservers included."""
    import dns.exception
    import dns.name

    lines, ignored = [], []
    for line in text.splitlines():
        words = line.split()
        if words and words[0] in ("search", "domain"):
            kept = []
            for word in words[1:]:
                try:
                    dns.name.from_text(word)
                    kept.append(word)
                except (dns.exception.DNSException, ValueError):
                    ignored.append(word)
            line = " ".join([words[0], *kept]) if kept else ""
        lines.append(line)
    return "\n".join(lines), tuple(ignored)


def parse(text: str, path: str) -> ResolvConf:
    import dns.inet
    import dns.name

    text, ignored = _usable_names(text)
    nameservers: list[str] = []
    search: list[dns.name.Name] = []
    domain = dns.name.root  # only the file's own domain counts, never this host's
    ndots = None
    for line in text.split("\n"):
        words = line.split()
        if len(words) < 2 or line[0] in "#;":
            continue
        keyword, values = words[0], words[1:]
        if keyword == "nameserver":
            nameservers.append(values[0])
        elif keyword == "domain":
            domain, search = dns.name.from_text(values[0]), []
        elif keyword == "search":  # the last one wins
            search = [dns.name.from_text(value) for value in values]
        elif keyword == "options":
            for option in values:  # dnspython reads "ndots" anywhere in an option not about the timeout
                if "ndots" in option and "timeout" not in option:
                    try:
                        ndots = int(option.split(":")[1])
                    except (ValueError, IndexError):
                        pass
    invalid = next((f"nameserver {server} is not an IP address" for server in nameservers
                    if not dns.inet.is_address(server)), "")
    names = [name.to_text(omit_final_dot=True) for name in search]
    if not names and domain != dns.name.root:  # "domain X" acts as a one-entry search list
        names = [domain.to_text(omit_final_dot=True)]
    ndots = ndots if ndots is not None else DEFAULT_NDOTS
    return ResolvConf(path, () if invalid else tuple(nameservers), tuple(names), max(0, min(ndots, MAX_NDOTS)),
                      invalid, ignored)


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


NETNS_ETC = "/etc/netns"  # `ip netns exec NAME` bind-mounts /etc/netns/NAME/* over /etc/* for what it runs
NO_OWN_RESOLV_CONF = (f"Programs started with `ip netns exec NAME` read {NETNS_ETC}/NAME/resolv.conf when it exists, "
                      "else the host's own resolver configuration, which netdoctor does not query.")


def path_of(target: Target) -> str | None:
    """Where the target's resolv.conf is, seen from the host: a running container's inside its mount
    namespace, a stopped one's where Docker keeps it; a named namespace's in /etc/netns/NAME (it may not
    exist). Other targets (the host, processes) use the host's own configuration: None."""
    if target.container is not None:
        if target.pid:
            return f"/proc/{target.pid}/root/etc/resolv.conf"
        return target.container.resolv_conf_path or None
    if target.kind == "netns" and "/" not in target.name:
        return f"{NETNS_ETC}/{target.name}/resolv.conf"
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
