"""The rule that dropped a probe: counters of the rules on its path, read right before it and after it failed.

A check takes a watch right before an active probe (`DropWatch(view)` reads the namespace's firewall then,
counters included) and, when the probe fails, asks it to `blame(paths, packets)`: the firewall is read
again and only what the static walk says the probe's packets reach is compared, on the way out and on the
way back: the rule or policy that decided a drop, and rules that match in part (a policy only where it
decides, or takes what partial accepts left). A chain whose policy is DROP is no suspect when a rule
accepted the packet, and a definite static ACCEPT is never overruled. A counter must move by at least the
probe's own packets to be blamed; other traffic of the same kind may add to the count, which the evidence
says.

Counters are never zeroed. Rules without a counter (nftables rules without a `counter` statement, nftables
base-chain policies) cannot be blamed this way; neither is `nft monitor trace` used (it needs a rule
that sets nftrace: a change to the firewall) nor the skb:kfree_skb tracepoint's drop reason (it needs
tracing enabled in the kernel): netdoctor stays read-only, and the evidence says so.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from typing import Iterable

from netdoctor.firewall.model import Chain, Firewall, Rule
from netdoctor.firewall.path import Path

METHOD = ("rule counters read right before the probe and after it (iptables-save -c, nftables counter statements; "
          "never zeroed), of what the probe's packets reach on their way out and back. Not used, to stay read-only: "
          "nft monitor trace (needs a rule that sets nftrace) and the skb:kfree_skb tracepoint's drop reason (needs "
          "kernel tracing turned on)")
# Linux retransmits an unanswered SYN after 1 s, then 2, 4, 8... (TCP_TIMEOUT_INIT, doubling): sent at these times
SYN_RETRIES_AT = (1.0, 3.0, 7.0, 15.0, 31.0, 63.0)
MARGIN = 0.1  # a retransmission due at the very end of the wait may not have left yet
# A read this recent is still "right before" a probe: probes that start together (every target's gateway echo)
# share one read of the firewall instead of queueing one each on the namespace's thread.
SHARED_FOR = 1.0
_recent: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_recent_lock = threading.Lock()


def syns_sent(elapsed_s: float) -> int:
    """How many SYNs a connect that waited `elapsed_s` without an answer surely sent."""
    return 1 + sum(1 for at in SYN_RETRIES_AT if at + MARGIN < elapsed_s)


@dataclass(frozen=True)
class Blame:
    moved: tuple[tuple[Rule | Chain, int], ...] = ()   # (rule, or chain for its policy; packets counted meanwhile)
    uncounted: tuple[Rule | Chain, ...] = ()             # reached, but without a counter to read
    packets: int = 1                                     # the probe's own packets: the least a culprit's counter moves
    error: str = ""

    @property
    def culprit(self) -> Rule | Chain | None:
        return self.moved[0][0] if self.moved else None

    def to_evidence(self) -> dict:
        evidence: dict = {"counter_method": METHOD}
        if self.error:
            evidence["counters"] = f"not compared: {self.error}"
            return evidence
        evidence["probe_packets"] = self.packets
        evidence["counters_moved"] = [f"{item.place}: {item.text} (+{delta} packets during the probe)"
                                      for item, delta in self.moved]
        if self.uncounted:
            evidence["uncounted"] = [f"{item.place}: {item.text}" for item in self.uncounted]
        return evidence


def suspects(path: Path) -> list[Rule | Chain]:
    """What the walk says the packet reaches and may be dropped by: the rule or policy that decided each drop,
    and what drops only part of such traffic. Nothing when rules accepted it for certain."""
    found: list[Rule | Chain] = []
    for item in (*(s.rule or s.chain for s in path.steps if s.dropped), *path.partial_drops):
        if all(item.key != f.key for f in found):
            found.append(item)
    return found


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


def _snapshot(view) -> Firewall:
    with _recent_lock:
        taken = _recent.get(view)
        if taken is not None and time.monotonic() - taken[0] < SHARED_FOR:
            return taken[1]
        started = time.monotonic()
        firewall = view.fresh_firewall()
        _recent[view] = (started, firewall)
        return firewall


class DropWatch:
    """Taken right before a probe (the firewall's counters now); `blame(paths)` after it failed."""

    def __init__(self, view):
        self.view = view
        self.before: Firewall = _snapshot(view)

    def blame(self, paths: Iterable[Path], packets: int = 1) -> Blame:
        """Of what `paths` (the probe's way out and back) reach, what counted at least `packets` packets meanwhile."""
        packets = max(1, packets)
        if self.before.error:
            return Blame(packets=packets, error=self.before.error)
        candidates: list[Rule | Chain] = []
        for path in paths:
            candidates += [item for item in suspects(path) if all(item.key != c.key for c in candidates)]
        if not candidates:
            return Blame(packets=packets)
        after = self.view.fresh_firewall()
        if after.error:
            return Blame(packets=packets, error=after.error)
        old, new = _index(self.before), _index(after)
        moved, uncounted = [], []
        for item in candidates:
            first, last = old.get(item.key), new.get(item.key)
            before, now = (_count(first) if first else None), (_count(last) if last else None)
            if before is None or now is None:
                uncounted.append(item)
            elif now - before >= packets:
                moved.append((item, now - before))
        return Blame(tuple(moved), tuple(uncounted), packets)
