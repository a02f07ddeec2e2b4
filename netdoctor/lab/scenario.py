"""What a lab scenario is: a real topology with (at most) one known fault, built and torn down by name.

Every object a scenario creates carries its name: Docker objects the label `netdoctor.lab=<scenario>`,
namespaces, links and iptables comments the prefix `ndlab-<scenario>` or the comment `netdoctor-lab:<scenario>`,
so `down` removes exactly those and nothing else, even after a crash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

LAB_LABEL = "netdoctor.lab"


def as_root(command: str) -> str:
    """A command to show the user: with `sudo ` in front unless they already are root."""
    return command if os.geteuid() == 0 else f"sudo {command}"


@dataclass(frozen=True)
class LabTarget:
    """One thing to diagnose in a scenario, and how: `netdoctor check <spec> <args...>`."""

    spec: str
    args: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        return " ".join(("netdoctor check", *self.argv))

    @property
    def argv(self) -> list[str]:
        """The arguments after `netdoctor check`."""
        return [self.spec, *self.args]


@dataclass(frozen=True)
class Expectation:
    """The check that must find the fault, and the statuses that count as found."""

    check: str
    statuses: frozenset[str] = frozenset({"fail"})


class Scenario:
    name: str = ""
    summary: str = ""
    expect: Expectation | None = None   # None: a healthy scenario, which must give no warn/fail
    multi_node: bool = False            # several engines; `lab up --nodes N` sizes it (set_size)
    needs_docker: bool = True

    @property
    def prefix(self) -> str:
        return f"ndlab-{self.name}"

    def up(self) -> list[LabTarget]:
        """Build the topology (idempotent: an existing leftover is removed first) and say what to check."""
        raise NotImplementedError

    def down(self) -> None:
        """Remove everything this scenario created; must succeed when nothing, or only part, exists."""
        raise NotImplementedError
