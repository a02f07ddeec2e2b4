"""What happens to one packet: every base chain of each hook it passes, in priority order, and the rule that decides.

The kernel runs a packet through every base chain registered at a hook (iptables-legacy's and
iptables-nft's tables, native nftables chains), lowest priority first. An accept ends only that base
chain (the next one still sees the packet); a drop or reject anywhere is final. Inside a chain the walk
follows jumps, gotos, returns and verdict maps the way the kernel does, and applies NAT: a DNAT in
prerouting rewrites the destination the later chains see; nat chains see only a connection's first packet.

A rule that matches only in part (None, see model.Match) never decides: a dropping one is reported as a
partial drop, an accepting one as a partial accept, and a jump it makes is walked without deciding
anything (to collect the partial drops inside).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from netdoctor import ipcache
from netdoctor.firewall.model import DROPPING, Action, Chain, Firewall, Packet, Rule, iface_matches

MAX_DEPTH = 64  # the kernel refuses loops; this only guards against a malformed dump
RETURNED = "return"


@dataclass(frozen=True)
class Step:
    """One base chain's verdict on the packet.

    `certain` is False when a rule before the dropping rule (or policy) accepted part of this traffic
    (it also tests something not known): then the drop takes only the rest, a partial drop."""

    chain: Chain
    verdict: str                               # accept, drop or reject (also when the policy decided)
    rule: Rule | None                          # the deciding rule; None when the chain's policy decided
    partial_drops: tuple[Rule, ...] = ()       # rules that may drop part of this traffic before the verdict
    partial_accepts: tuple[Rule, ...] = ()     # rules that may accept part of this traffic before the verdict
    translation: Rule | None = None            # the DNAT/SNAT/MASQUERADE rule that rewrote the packet
    certain: bool = True

    @property
    def dropped(self) -> bool:
        return self.verdict in DROPPING and self.certain

    @property
    def decided_by(self) -> str:
        """The deciding rule as the user reads it, or the chain's policy."""
        return self.rule.text if self.rule else self.chain.policy_text

    def describe(self) -> str:
        """"iptables-nft filter DOCKER-USER: -A DOCKER-USER -j DROP", "... FORWARD: FORWARD policy DROP"."""
        return f"{(self.rule or self.chain).place}: {self.decided_by}"

    def to_evidence(self) -> dict:
        evidence = self.rule.to_evidence() if self.rule else {
            "backend": self.chain.backend, "family": self.chain.family, "table": self.chain.table,
            "chain": self.chain.name, "policy": self.chain.policy}
        return {"verdict": self.verdict, "where": (self.rule or self.chain).place, **evidence}


@dataclass(frozen=True)
class Path:
    """A packet's way through the hooks it was sent through."""

    packet: Packet                             # as it came out (destination rewritten by DNAT...)
    steps: tuple[Step, ...] = ()

    @property
    def drop(self) -> Step | None:
        return next((s for s in self.steps if s.dropped), None)

    @property
    def dropped(self) -> bool:
        return self.drop is not None

    @property
    def verdict(self) -> str:
        return self.drop.verdict if self.drop else "accept"

    @property
    def partial_drops(self) -> list[Rule | Chain]:
        """What may drop part of this traffic: rules, and chains whose policy takes what partial accepts left."""
        seen, found = set(), []
        for step in self.steps:
            uncertain = () if step.certain or step.verdict not in DROPPING else (step.rule or step.chain,)
            for item in (*step.partial_drops, *uncertain):
                if item.key not in seen:
                    seen.add(item.key)
                    found.append(item)
        return found

    @property
    def partial_accepts(self) -> list[Rule]:
        return [r for s in self.steps for r in s.partial_accepts]

    def translations(self, kind: str | None = None) -> list[Rule]:
        return [s.translation for s in self.steps if s.translation and (kind is None or s.translation.action.kind == kind)]

    def accepted_by(self, hook_chain: str | None = None) -> Step | None:
        """The step that accepted the packet where it mattered: the last accepting filter-type base chain."""
        accepting = [s for s in self.steps if not s.dropped and s.chain.kind == "filter"
                     and (hook_chain is None or s.chain.hook == hook_chain)]
        with_rule = [s for s in accepting if s.rule is not None]
        return (with_rule or accepting or [None])[-1]

    def describe(self) -> str:
        """The decision in one line: what dropped the packet, or what accepted it."""
        step = self.drop or self.accepted_by()
        return step.describe() if step else "no rule or policy stops it"


def follow(firewall: Firewall, packet: Packet, hooks: tuple[str, ...],
           ignore: Callable[[Rule], bool] | None = None) -> Path:
    """Send `packet` through `hooks` in order; stops after the hook with the first definite drop.
    `ignore`: rules to pass over, to ask what-if (would Docker's own rules accept it, others' drops aside?)."""
    steps: list[Step] = []
    for hook in hooks:
        packet, found = _hook(firewall, packet, hook, ignore)
        steps += found
        if any(s.dropped for s in found):
            break
    return Path(packet, tuple(steps))


def _hook(firewall: Firewall, packet: Packet, hook: str, ignore: Callable[[Rule], bool] | None) -> tuple[Packet, list[Step]]:
    """Every base chain of the hook, also after a drop: which of two chains of equal priority the kernel runs
    first is not known, and what the others would do is part of the answer (Docker's accept beside the drop)."""
    steps: list[Step] = []
    translated = False
    for chain in firewall.base_chains(packet.family, hook):
        dropped = any(s.dropped for s in steps)
        if packet.denat_dst and hook == "prerouting" and (chain.priority or 0) >= -100:
            # conntrack restores the original destination of a reply at the dstnat priority
            packet = replace(packet, dst=packet.denat_dst, dst_local=False, denat_dst=None)
        if chain.kind == "nat" and (translated or dropped or packet.state not in ("new", None)):
            continue  # only a connection's first packet meets nat chains, and only one translation applies
        step = _Walk(firewall, chain, packet, ignore).run()
        steps.append(step)
        if step.translation is not None and step.translation.action.kind in ("dnat", "redirect"):
            packet = _translated(packet, step.translation)
            translated = True
        elif step.translation is not None:
            translated = True
    if packet.denat_dst and hook == "prerouting":
        packet = replace(packet, dst=packet.denat_dst, dst_local=False, denat_dst=None)
    return packet, steps


def _translated(packet: Packet, rule: Rule) -> Packet:
    if rule.action.kind == "redirect":
        port = rule.action.target.split("-")[0]
        return replace(packet, dst_local=True, dnat=True, dport=int(port) if port.isdigit() else packet.dport)
    address, port = split_endpoint(rule.action.target)
    return replace(packet, dst=address or packet.dst, dport=port or packet.dport, dst_local=False if address else packet.dst_local,
                   dnat=True)


def split_endpoint(text: str) -> tuple[str | None, int | None]:
    """"10.0.0.2:80", "[fd00::2]:80", "10.0.0.2", "10.0.0.2-10.0.0.9:80-90" -> (first address, first port)."""
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        address, _, port = text.partition(":")
    else:
        address, port = text, ""
    address = address.split("-")[0]
    port = port.split("-")[0]
    try:
        ipcache.address(address)
    except ValueError:
        address = ""
    return address or None, int(port) if port.isdigit() else None


@dataclass
class _Walk:
    firewall: Firewall
    base: Chain
    packet: Packet
    ignore: Callable[[Rule], bool] | None = None
    partial_drops: list[Rule] = field(default_factory=list)
    partial_accepts: list[Rule] = field(default_factory=list)
    translation: Rule | None = None

    def run(self) -> Step:
        outcome = self.visit(self.base, True, 0)
        if isinstance(outcome, tuple):
            verdict, rule = outcome
        else:  # fell off the end: the base chain's policy decides
            verdict, rule = self.base.policy or "accept", None
        decided = verdict if verdict in DROPPING else "accept"
        # a drop after a partial accept takes only the traffic that accept left
        return Step(self.base, decided, rule, tuple(self.partial_drops), tuple(self.partial_accepts), self.translation,
                    certain=decided not in DROPPING or not self.partial_accepts)

    def chain(self, name: str) -> Chain | None:
        return self.firewall.chain(self.base.backend, self.base.family, self.base.table, name)

    def visit(self, chain: Chain, certain: bool, depth: int):
        """A (verdict, rule) decision, RETURNED, or None when the walk falls off the end of `chain`."""
        if depth > MAX_DEPTH:
            return None
        for rule in chain.rules:
            if self.ignore is not None and self.ignore(rule):
                continue
            hit = rule.test(self.packet)
            if hit is False:
                continue
            outcome = self.act(rule, rule.action, certain and hit is True, depth)
            if outcome is not None:
                return outcome
        return None

    def act(self, rule: Rule, action: Action, definite: bool, depth: int):
        kind = action.kind
        if kind in DROPPING:
            if definite:
                return kind, rule
            self.partial_drops.append(rule)
        elif kind == "accept":
            if definite:
                return kind, rule
            self.partial_accepts.append(rule)
        elif kind == "return":
            return RETURNED if definite else None
        elif kind in ("jump", "goto"):
            target = self.chain(action.target)
            if target is None:
                return None
            outcome = self.visit(target, definite, depth + 1)
            if isinstance(outcome, tuple):
                return outcome
            if kind == "goto" and definite:
                return RETURNED  # a goto'd chain that ends returns to our caller, not to us
        elif action.translates:
            if definite and self.base.kind == "nat":
                self.translation = rule
                return "accept", rule
        elif kind == "vmap":
            return self.lookup(rule, action, definite, depth)
        return None

    def lookup(self, rule: Rule, action: Action, definite: bool, depth: int):
        value = getattr(self.packet, action.key, None) if action.key else None
        for values, verdict in action.elements:
            if value is None or not values:
                self.act(rule, verdict, False, depth)  # which element applies is not known
            elif _element_matches(action.key, values[0], value):
                return self.act(rule, verdict, definite, depth)
        return None


def _element_matches(field: str, element, value) -> bool:
    if field in ("iif", "oif"):
        return iface_matches(element, value)
    if field in ("sport", "dport"):
        return element[0] <= value <= element[1]
    if field in ("src", "dst"):
        ip = ipcache.address(value)
        return (element[0] <= ip <= element[1]) if isinstance(element, tuple) else ip in element
    return element == value
