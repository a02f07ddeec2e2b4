"""What the host's iptables filter FORWARD chain does to one kind of forwarded traffic.

A flow is described only by what netdoctor knows for sure (in/out interface, the target's address,
conntrack state); a rule that also matches on something unknown (protocol, port, the far end's
address) may catch part of the flow, so it never decides the verdict: a DROP of that kind is reported
as a partial drop, an ACCEPT of that kind as a partial exception. The walk follows jumps into user
chains and RETURNs out of them, the way the kernel does. Read-only: it interprets iptables-save output.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field

from netdoctor.facts.firewall import Rule, Ruleset

TABLE = "filter"
DROPPING = ("DROP", "REJECT")
MAX_DEPTH = 32  # iptables itself refuses loops; this only guards against a malformed dump
# Options that only name a match module or annotate: they never narrow what a rule matches.
NEUTRAL_OPTIONS = {"-m", "--match", "--comment"}


@dataclass(frozen=True)
class Flow:
    in_iface: str
    out_iface: str
    src: str | None      # None: any address (the far end is not known)
    dst: str | None
    state: str           # conntrack state: NEW or ESTABLISHED
    # The target's own subnet. The far end of forwarded traffic lies beyond the host, so a rule about the
    # target's network (one naming its subnet or a network around it) is taken as not matching the far end.
    local_subnet: str | None = None
    proto: str | None = None  # tcp/udp when known (INPUT/OUTPUT flows to a service port), else any
    dport: int | None = None


@dataclass(frozen=True)
class Verdict:
    action: str                       # ACCEPT, DROP or REJECT
    rule: Rule | None                 # the rule that decided; None when the chain's policy did
    policy: str                       # FORWARD's policy ("ACCEPT" when the ruleset has no FORWARD chain)
    partial_drops: tuple[Rule, ...] = field(default=())    # drop part of the flow before the verdict
    partial_accepts: tuple[Rule, ...] = field(default=())  # accept part of the flow before a drop verdict

    @property
    def dropped(self) -> bool:
        return self.action in DROPPING


def rule_line(rule: Rule) -> str:
    """The rule as `iptables-save` prints it, which is also what `iptables -D` takes."""
    return f"-A {rule.chain} {rule.text}"


def _iface_matches(pattern: str, name: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("+") else name == pattern


def _address_matches(value: str, address: str | None, local_subnet: str | None) -> bool | None:
    try:
        network = ipaddress.ip_network(value, strict=False)
        if address is not None:
            return ipaddress.ip_address(address) in network
        if local_subnet is not None and network.overlaps(ipaddress.ip_network(local_subnet, strict=False)):
            return False
    except (ValueError, TypeError):
        pass
    return None


def _port_matches(value: str, port: int) -> bool | None:
    """`4789`, `7946:7950` or a multiport list `2377,7946`."""
    try:
        for part in value.split(","):
            low, is_range, high = part.partition(":")
            first = int(low) if low else 0
            last = (int(high) if high else 65535) if is_range else first
            if first <= port <= last:
                return True
    except ValueError:
        return None  # a service name: not known here
    return False


def _match_options(rule: Rule) -> list[str]:
    """The option names before the target (-j/-g): what the rule matches on, not how it acts."""
    words = shlex.split(rule.text)
    end = next((i for i, w in enumerate(words) if w in ("-j", "-g", "--jump", "--goto")), len(words))
    return [w for w in words[:end] if w.startswith("-")]


def matches(rule: Rule, flow: Flow) -> bool | None:
    """True: the rule matches all of the flow; False: none of it; None: perhaps part of it."""
    result: bool | None = True
    for option in _match_options(rule):
        value = rule.options.get(option, "")
        if option in NEUTRAL_OPTIONS:
            continue
        if option in ("-i", "--in-interface"):
            hit: bool | None = _iface_matches(value, flow.in_iface)
        elif option in ("-o", "--out-interface"):
            hit = _iface_matches(value, flow.out_iface)
        elif option in ("-s", "--source"):
            hit = _address_matches(value, flow.src, flow.local_subnet)
        elif option in ("-d", "--destination"):
            hit = _address_matches(value, flow.dst, flow.local_subnet)
        elif option in ("--ctstate", "--state"):
            hit = flow.state in value.split(",")
        elif option in ("-p", "--protocol") and value in ("all", "0"):
            hit = True
        elif option in ("-p", "--protocol") and flow.proto is not None:
            hit = value == flow.proto
        elif option in ("--dport", "--destination-port", "--dports", "--destination-ports") and flow.dport is not None:
            hit = _port_matches(value, flow.dport)
        else:
            hit = None  # protocol, ports, marks, addrtype ...: not known for the flow
        if hit is not None and option in rule.negated:
            hit = not hit
        if hit is False:
            return False
        if hit is None:
            result = None
    return result


def walk(ruleset: Ruleset, flow: Flow, chain: str = "FORWARD") -> Verdict:
    """Follow `flow` through the filter table from `chain` to the rule or policy that decides it."""
    policy = ruleset.policy(TABLE, chain) or "ACCEPT"  # no chain: iptables does not filter this hook
    partial_drops: list[Rule] = []
    partial_accepts: list[Rule] = []

    def visit(name: str, certain: bool, depth: int) -> tuple[str, Rule] | None:
        """A (action, rule) verdict, or None when the flow falls off the end of (or RETURNs from) `name`."""
        if depth > MAX_DEPTH:
            return None
        for rule in ruleset.chain(TABLE, name):
            hit = matches(rule, flow)
            if hit is False:
                continue
            definite = certain and hit is True
            target = rule.target or rule.options.get("-g", "")
            if target in DROPPING:
                if definite:
                    return target, rule
                partial_drops.append(rule)
            elif target == "ACCEPT":
                if definite:
                    return target, rule
                partial_accepts.append(rule)
            elif target == "RETURN":
                if definite:
                    return None
            elif ruleset.policy(TABLE, target) == "-":  # a user chain: jump into it
                outcome = visit(target, definite, depth + 1)
                if outcome is not None and definite:
                    return outcome
            # LOG, MARK, TCPMSS, ...: non-terminating, the walk goes on
        return None

    outcome = visit(chain, True, 0)
    action, rule = outcome if outcome else (policy, None)
    return Verdict(action, rule, policy, tuple(partial_drops),
                   tuple(partial_accepts) if action in DROPPING else ())
