"""The host's packet filter as iptables-save prints it, parsed into chains and rules.

Hand-parsed on purpose: python-iptables cannot read the nf_tables backend Docker uses on Debian 12,
and iptables-save's format is a stable, line-oriented contract. `read()` runs the host's own
iptables-save (never a binary from a container) on the namespace thread, so it sees that namespace.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rule:
    table: str
    chain: str
    text: str                      # the rule as iptables-save printed it, after "-A CHAIN"
    options: dict[str, str] = field(default_factory=dict)  # "-s" -> "10.0.0.0/24", "--dport" -> "4789", ...
    negated: frozenset[str] = frozenset()  # options written with "!" in front

    @property
    def target(self) -> str:
        return self.options.get("-j", "")


@dataclass(frozen=True)
class Ruleset:
    policies: dict[tuple[str, str], str]   # (table, chain) -> ACCEPT/DROP/"-" for user chains
    rules: tuple[Rule, ...]
    error: str | None = None               # why the rules could not be read

    def chain(self, table: str, chain: str) -> list[Rule]:
        return [r for r in self.rules if r.table == table and r.chain == chain]

    def has_chain(self, table: str, chain: str) -> bool:
        return (table, chain) in self.policies

    def policy(self, table: str, chain: str) -> str | None:
        return self.policies.get((table, chain))


def parse(text: str) -> Ruleset:
    policies: dict[tuple[str, str], str] = {}
    rules: list[Rule] = []
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":"):
            name, policy, *_ = line[1:].split()
            policies[(table, name)] = policy
        elif line.startswith("-A "):
            words = shlex.split(line)
            chain = words[1]
            options: dict[str, str] = {}
            negated: set[str] = set()
            i, negate = 2, False
            while i < len(words):
                word = words[i]
                if word == "!":
                    negate = True
                elif word.startswith("-"):
                    has_value = i + 1 < len(words) and not words[i + 1].startswith("-") and words[i + 1] != "!"
                    options.setdefault(word, words[i + 1] if has_value else "")
                    if negate:
                        negated.add(word)
                    negate = False
                    i += has_value
                i += 1
            # the raw text keeps iptables-save's quoting, so `iptables -D CHAIN <text>` deletes exactly this rule
            rules.append(Rule(table, chain, line.split(None, 2)[2] if len(words) > 2 else "", options, frozenset(negated)))
    return Ruleset(policies, tuple(rules))


def read(binary: str = "iptables-save") -> Ruleset:
    """Run on a namespace thread: the child process inherits that thread's network namespace."""
    path = shutil.which(binary)
    if not path:
        return Ruleset({}, (), error=f"{binary} is not installed on this host")
    try:
        done = subprocess.run([path], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Ruleset({}, (), error=f"{binary} failed: {exc}")
    if done.returncode != 0:
        return Ruleset({}, (), error=f"{binary} failed: {done.stderr.strip() or done.returncode}")
    return parse(done.stdout)
