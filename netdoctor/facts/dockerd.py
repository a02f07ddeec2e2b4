"""dockerd's own firewall settings, read from the process: its command line, then its configuration file.

With `--iptables=false` (daemon.json "iptables": false, the usual advice on ufw hosts) Docker writes no IPv4
rules at all, and with `--ip6tables=false` none for IPv6: the rules are the user's to write. The Engine API
says neither (Info.FirewallBackend still reads "iptables"), so netdoctor asks the dockerd whose network
namespace is the host namespace being judged (the engine that would write its rules there). Its
daemon.json is read through /proc/PID/root, i.e. in dockerd's own mount namespace. Read-only; a dockerd
that cannot be found (netdoctor in a container without the host's PID namespace) leaves the settings unknown.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from netdoctor.facts.processes import process

DEFAULT_CONFIG = "/etc/docker/daemon.json"
MAX_CONFIG_BYTES = 1024 * 1024
GO_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}  # strconv.ParseBool


@dataclass(frozen=True)
class FirewallSettings:
    iptables: bool | None = None     # None: not set (Docker's default: on)
    ip6tables: bool | None = None    # None: not set (default: on from Docker 27, off before)
    source: str = ""                 # where it was read, for evidence

    def writes_rules(self, family: int) -> bool | None:
        """Whether dockerd writes rules of this family, as far as its settings say (None: its default)."""
        return self.iptables if family == 4 else self.ip6tables


def _flag(cmdline: tuple[str, ...], name: str) -> bool | None:
    """--NAME, --NAME=BOOL (pflag's booleans take no separate value)."""
    for arg in cmdline:
        if arg == f"--{name}":
            return True
        if arg.startswith(f"--{name}="):
            return GO_BOOLS.get(arg.split("=", 1)[1].lower())
    return None


def _config_path(cmdline: tuple[str, ...]) -> str:
    for i, arg in enumerate(cmdline):
        if arg.startswith("--config-file="):
            return arg.split("=", 1)[1]
        if arg == "--config-file" and i + 1 < len(cmdline):
            return cmdline[i + 1]
    return DEFAULT_CONFIG


def _config(pid: int, path: str) -> dict:
    try:
        with open(f"/proc/{pid}/root{path}", "rb") as f:
            loaded = json.loads(f.read(MAX_CONFIG_BYTES))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _dockerd_pids(netns_path: str) -> list[int]:
    """dockerd processes whose network namespace is the one at `netns_path`."""
    try:
        wanted = os.stat(netns_path)
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != "dockerd":
                    continue
            namespace = os.stat(f"/proc/{entry}/ns/net")
        except OSError:  # exited meanwhile, or not ours to read
            continue
        if (namespace.st_dev, namespace.st_ino) == (wanted.st_dev, wanted.st_ino):
            found.append(int(entry))
    return sorted(found)


def settings(netns_path: str) -> FirewallSettings:
    """The iptables/ip6tables settings of the dockerd running in the namespace at `netns_path`."""
    for pid in _dockerd_pids(netns_path):
        proc = process(pid)
        if proc is None:
            continue
        iptables, ip6tables = _flag(proc.cmdline, "iptables"), _flag(proc.cmdline, "ip6tables")
        if iptables is not None or ip6tables is not None:
            return FirewallSettings(iptables, ip6tables, f"dockerd's command line (pid {pid})")
        path = _config_path(proc.cmdline)
        config = _config(pid, path)
        values = [config.get(k) if isinstance(config.get(k), bool) else None for k in ("iptables", "ip6tables")]
        return FirewallSettings(*values, f"{path} of dockerd (pid {pid})" if any(v is not None for v in values) else
                                f"dockerd (pid {pid}) sets neither: Docker's defaults")
    return FirewallSettings()
