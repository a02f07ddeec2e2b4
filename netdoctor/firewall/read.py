"""Reading one namespace's whole packet filter, as cheaply as it can be read.

What must happen inside the namespace (starting the programs, which inherit the starting thread's network
namespace, and reading /proc/thread-self) goes through `in_namespace`; NamespaceView.firewall hands in its
namespace thread's `call`, and only those steps occupy that thread: waiting for the programs and parsing
what they print happen in the thread that asked, so a sysctl read queued behind them is not held up.

The programs are the host's own (never a container's): one `nft -j list ruleset` (native tables, and which
iptables-nft tables exist), then one `iptables-nft-save -c` / `ip6tables-nft-save -c` per family that has
iptables-nft tables, and one `iptables-legacy-save -c` / `ip6tables-legacy-save -c` per family whose legacy
tables the kernel lists in /proc/thread-self/net/ip{,6}_tables_names. What is not installed or holds
nothing is skipped, and said so.
Without nft, the default `iptables-save -c` / `ip6tables-save -c` are read (their header names the backend).
Programs that do not depend on each other run at once. Counters are read (-c, nft's counter statements)
but never zeroed.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Callable

from netdoctor.firewall import iptables, nft
from netdoctor.firewall.model import IPTABLES_NFT, LEGACY, Firewall, Table

TIMEOUT = 10
FAMILIES = (("ip", "iptables", "ip_tables_names"), ("ip6", "ip6tables", "ip6_tables_names"))


def _start_all(argvs: list[list[str]]) -> list[subprocess.Popen | OSError]:
    """Start programs at once (in the calling thread's namespace)."""
    started: list[subprocess.Popen | OSError] = []
    for argv in argvs:
        try:
            started.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        except OSError as exc:
            started.append(exc)
    return started


def _run_all(argvs: list[list[str]], in_namespace: Callable) -> list[tuple[str | None, str]]:
    """Run programs at once; (stdout, "") for each that succeeded, (None, why) for the others."""
    started = in_namespace(_start_all, argvs) if argvs else []
    results = []
    for argv, proc in zip(argvs, started):
        command = " ".join(argv)
        if isinstance(proc, OSError):
            results.append((None, f"{command} failed: {proc}"))
            continue
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            results.append((None, f"{command} failed: no answer within {TIMEOUT} s"))
            continue
        results.append((out, "") if proc.returncode == 0 else
                       (None, f"{command} failed: {err.strip()[:200] or proc.returncode}"))
    return results


def _legacy_tables(names_file: str) -> list[str]:
    """Legacy tables the kernel holds in this namespace (the file follows the reading thread's namespace)."""
    try:
        with open(f"/proc/thread-self/net/{names_file}") as f:
            return f.read().split()
    except OSError:
        return []


def _call_here(func: Callable, *args):
    return func(*args)


class _Reader:
    def __init__(self, in_namespace: Callable):
        self.in_namespace = in_namespace
        self.tables: list[Table] = []
        self.sources: list[str] = []
        self.skipped: list[str] = []
        self.problems: list[str] = []
        self.failures: list[str] = []
        self.nft_json = ""
        self.compat: set[str] = set()    # families holding iptables-nft tables, as nft's listing says
        self.incompatible: dict[str, list[str]] = {}  # family -> tables iptables-nft-save could not show

    def runnable(self, tool: str) -> list[str] | None:
        path = shutil.which(tool)
        if path is None:
            self.skipped.append(f"{tool}: not installed")
        return [path, "-j", "list", "ruleset"] if path and tool == "nft" else [path, "-c"] if path else None

    def run(self, jobs: list[tuple[list[str], str, str | None, str]]) -> dict[str, str | None]:
        """jobs: (argv, family, backend, label); keeps each dump's tables; returns each label's header backend."""
        backends = {}
        for (argv, family, backend, label), (out, error) in zip(jobs, _run_all([j[0] for j in jobs], self.in_namespace)):
            if out is None:
                self.failures.append(error)
                continue
            self.sources.append(f"{label} -c" if family else label)
            if not family:  # nft's JSON
                self.nft_json = out
                parsed = nft.parse_json(out)
                self.compat = set(parsed.notes.get("iptables_nft", ()))
            else:
                parsed = iptables.parse_save(out, backend, family)
                backends[label] = backend or iptables.backend_of(out)
                if backends[label] == IPTABLES_NFT and parsed.notes.get("incompatible"):
                    self.incompatible[family] = parsed.notes["incompatible"]
            self.tables += parsed.tables
            self.problems += parsed.problems
        return backends

    def read(self) -> Firewall:
        legacy = {family: bool(self.in_namespace(_legacy_tables, names)) for family, _, names in FAMILIES}
        nft_argv = self.runnable("nft")
        first: list[tuple[list[str], str, str | None, str]] = []
        if nft_argv:
            first.append((nft_argv, "", None, "nft -j list ruleset"))
            first += [(argv, family, LEGACY, f"{tool}-legacy-save") for family, tool, _ in FAMILIES
                      if legacy[family] and (argv := self.runnable(f"{tool}-legacy-save"))]
        else:  # no nft to tell which iptables-nft tables exist: the default iptables-save, whatever its backend
            first += [(argv, family, None, f"{tool}-save") for family, tool, _ in FAMILIES
                      if (argv := self.runnable(f"{tool}-save"))]
        backends = self.run(first)
        second = []
        if nft_argv and self.nft_json:
            for family, tool, _ in FAMILIES:
                if family not in self.compat:
                    continue
                argv = self.runnable(f"{tool}-nft-save")
                if argv:
                    second.append((argv, family, IPTABLES_NFT, f"{tool}-nft-save"))
                else:
                    self.compat_from_json(family)
        elif not nft_argv:
            second += [(argv, family, LEGACY, f"{tool}-legacy-save") for family, tool, _ in FAMILIES
                       if legacy[family] and backends.get(f"{tool}-save") != LEGACY
                       and (argv := self.runnable(f"{tool}-legacy-save"))]
        self.run(second)
        for family, names in self.incompatible.items():
            self.tables, problems = nft.adopt_incompatible(self.tables, family, names, self.nft_json)
            self.problems += problems
        if not self.sources:
            reasons = self.failures or self.skipped or ["no firewall tool is installed (iptables, nft)"]
            return Firewall(skipped=tuple(self.skipped), error="; ".join(reasons))
        return Firewall(tuple(self.tables), tuple(self.sources), tuple(self.skipped + self.failures), tuple(self.problems))

    def compat_from_json(self, family: str) -> None:
        """iptables-nft tables without iptables-nft-save: read from nft's JSON, where compat matches are opaque."""
        parsed = nft.parse_json(self.nft_json, skip_iptables_tables=False)
        self.tables += [t for t in parsed.tables if t.family == family and nft.is_iptables_table(t.family, t.name)]
        self.skipped.append(f"{family} iptables-nft tables read from nft's JSON ({family}tables-nft-save is not "
                            "installed): their xt matches are not evaluated")


def read(in_namespace: Callable = _call_here) -> Firewall:
    """The namespace's firewall. `in_namespace(func, *args)` runs func on a thread inside the namespace
    (default: the calling thread is inside it). Never raises for a missing or failing tool."""
    return _Reader(in_namespace).read()
