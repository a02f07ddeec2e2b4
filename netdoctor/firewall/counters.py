"""The rule that dropped a probe: counters of the rules on its path, before and after it ran.

A check takes a watch before an active probe (`DropWatch(view)`: the namespace's firewall as first read in
this run, counters included) and, when the probe fails, asks it to `blame(path)`: the firewall is read
again and every dropping rule (and drop policy) the probe's packets may have met is compared. A counter
that moved by at least one packet during the probe names the rule that (probably) dropped it; other
traffic of the same kind may add to the count, which the evidence says.

Counters are never zeroed. Rules without a counter (nftables rules without a `counter` statement, nftables
base-chain policies) cannot be blamed this way; neither is `nft monitor trace` used (it needs a rule
that sets nftrace: a change to the firewall) nor the skb:kfree_skb tracepoint's drop reason (it needs
tracing enabled in the kernel): netdoctor stays read-only, and the evidence says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from netdoctor.firewall.model import Chain, Firewall, Rule
from netdoctor.firewall.path import Path

METHOD = ("rule counters read before and after the probe (iptables-save -c, nftables counter statements; never "
          "zeroed). Not used, to stay read-only: nft monitor trace (needs a rule that sets nftrace) and the "
          "skb:kfree_skb tracepoint's drop reason (needs kernel tracing turned on)")


@dataclass(frozen=True)
class Blame:
    moved: tuple[tuple[Rule | Chain, int], ...] = ()   # (rule, or chain for its policy; packets counted meanwhile)
    uncounted: tuple[Rule | Chain, ...] = ()             # met, but without a counter to read
    error: str = ""

    @property
    def culprit(self) -> Rule | Chain | None:
        return self.moved[0][0] if self.moved else None

    def to_evidence(self) -> dict:
        evidence: dict = {"counter_method": METHOD}
        if self.error:
            evidence["counters"] = f"not compared: {self.error}"
        elif self.moved:
            evidence["counters_moved"] = [f"{item.place}: {item.text} (+{delta} packets during the probe)"
                                          for item, delta in self.moved]
        else:
            evidence["counters_moved"] = []
        if self.uncounted:
            evidence["uncounted"] = [f"{item.place}: {item.text}" for item in self.uncounted]
        return evidence


def _count(item: Rule | Chain) -> int | None:
    counter = item.counter if isinstance(item, Rule) else item.policy_counter
    return counter[0] if counter else None


def _index(firewall: Firewall) -> dict[tuple, Rule | Chain]:
    found: dict[tuple, Rule | Chain] = {}
    for chain in firewall.chains():
        found[chain.key] = chain
        for rule in chain.rules:
            found[rule.key] = rule
    return found


class DropWatch:
    """Taken before a probe; `blame(path)` after it failed."""

    def __init__(self, view):
        self.view = view
        self.before: Firewall = view.firewall   # the run's one cached read (taken now if not yet)

    def blame(self, path: Path) -> Blame:
        if self.before.error:
            return Blame(error=self.before.error)
        after = self.view.fresh_firewall()
        if after.error:
            return Blame(error=after.error)
        candidates: list[Rule | Chain] = []
        for item in (*path.met, *path.partial_drops,
                     *(s.chain for s in path.steps if s.chain.policy == "drop")):
            if item.key not in {c.key for c in candidates}:
                candidates.append(item)
        old, new = _index(self.before), _index(after)
        moved, uncounted = [], []
        for item in candidates:
            first, last = old.get(item.key), new.get(item.key)
            before, now = (_count(first) if first else None), (_count(last) if last else None)
            if before is None or now is None:
                uncounted.append(item)
            elif now > before:
                moved.append((item, now - before))
        return Blame(tuple(moved), tuple(uncounted))
