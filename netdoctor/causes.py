"""Root causes: which findings of a report follow from which other finding.

A small, declared set of rules, each read as "a finding of this kind (the cause) explains findings of
that kind (its consequences)": ip_forward's `forwarding-off` explains a probe, a nameserver query or a
peer connection that broke at the `forwarding` layer on the same target. Rules match finding keys
(model.Finding.key, stable slugs such as `forwarding-off`, `gateway-silent`, `firewall-drop...`) and
evidence (the `layer` a path finding broke at, the rule a firewall finding names), never titles.

`link(findings)` gives each consequence its root cause (following chains: a probe lost at the gateway
follows from `gateway-silent`, which follows from `host-link-down:br0`). `Linker` does the same for a
stream: a finding that could still turn out to be a consequence is held back until every check that
could explain it has finished, so each finding is emitted once, with its final `caused_by`.
Only warn and fail findings take part: a pass explains nothing and follows from nothing.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Callable, Iterable

from netdoctor.model import Finding, Status

# Checks whose findings test a path and carry the `layer` it broke at (checks/_layers.py): TCP probes,
# nameserver queries, peer connections.
PATH_CHECKS = ("reachability", "dns", "icc")
LINKED_STATUSES = (Status.WARN, Status.FAIL)


def key_matches(key: str, pattern: str) -> bool:
    """`forwarding-off` matches itself only; `firewall-drop*` every key starting so."""
    return key.startswith(pattern[:-1]) if pattern.endswith("*") else key == pattern


def _suffix(key: str) -> str:
    """`gateway-silent:net1` -> `net1`: what a keyed finding is about."""
    return key.partition(":")[2]


Related = Callable[[Finding, Finding], bool]  # (consequence, cause) -> does it follow from that one
Prefer = Callable[[Finding, Finding], tuple]   # (consequence, cause) -> larger for a cause that names it more closely


@dataclass(frozen=True)
class Rule:
    name: str
    cause_checks: tuple[str, ...]    # checks that report the cause; () = any check (firewall checks of plugins too)
    cause_key: str                   # its key (a pattern, see key_matches)
    effect_checks: tuple[str, ...]   # checks whose findings can follow from it
    effect_keys: tuple[str, ...] = ("*",)  # their keys (patterns)
    layers: tuple[str, ...] = ()     # when given: the consequence broke at one of these layers (evidence `layer`)
    related: Related | None = None   # a further test on both findings' evidence
    because: str = ""                # the mechanism, for `netdoctor explain`
    across_targets: bool = False     # the cause is the host's (a HOST-scope check) and affects every target
    prefer: Prefer | None = None     # among several causes it finds for one finding: how closely each names it

    def could_explain(self, finding: Finding) -> bool:
        """Whether `finding` is of the kind this rule explains, whatever the cause turns out to be."""
        return (finding.check in self.effect_checks and any(key_matches(finding.key, k) for k in self.effect_keys)
                and (not self.layers or finding.evidence.get("layer") in self.layers))

    def is_cause(self, finding: Finding) -> bool:
        return (not self.cause_checks or finding.check in self.cause_checks) and key_matches(finding.key, self.cause_key)

    def explains(self, consequence: Finding, cause: Finding) -> bool:
        return (consequence is not cause and self.is_cause(cause) and self.could_explain(consequence)
                and (self.across_targets or cause.target == consequence.target)
                and (self.related is None or self.related(consequence, cause)))


def _verdicts(finding: Finding) -> list[str]:
    """The firewall verdicts a path finding names (`host_forward_verdict`, `host_input_verdict`)."""
    return [str(v) for k, v in finding.evidence.items() if k.endswith("_verdict") and isinstance(v, str)]


def _strings(value) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


# Firewall findings about traffic coming to the target from outside (a published port's requests, peers
# reaching its address directly): whatever drops them, they cannot explain a connection the target opens.
INBOUND = ("firewall-drop:published*", "firewall-drop-partial:published*", "firewall-drop:direct*")
FLOWS = ("outgoing", "replies", "published")  # a target's flows, its own connections first


def _outbound(finding: Finding) -> bool:
    return not any(key_matches(finding.key, pattern) for pattern in INBOUND)


def _names_the_same_rule(consequence: Finding, cause: Finding) -> bool:
    """The firewall finding names what stopped the path finding: the same rule (its text), or the policy of
    the same chain. Path verdicts read "PLACE: RULE-OR-POLICY" (netdoctor/firewall/path.py). Path findings
    are connections the target opens: a finding about traffic toward it (INBOUND) names no such thing."""
    if not _outbound(cause):
        return False
    named = list(_strings(cause.evidence))
    for verdict in _verdicts(consequence):
        place, _, decided = verdict.partition(": ")
        if decided and any(decided in text for text in named):
            return True
        if " policy " in decided and "policy" in cause.evidence and place in named:
            return True
    return False


def _closest_firewall_finding(consequence: Finding, cause: Finding) -> tuple:
    """Several firewall findings can name the rule (or policy) that stopped a connection of the target (one
    rule dropping its traffic both ways, a host-wide policy and the target's own view of it). Closest first:
    the one whose own decision is exactly the verdict's, then the target's own finding, then the one about the
    same flow (the target's outgoing traffic, which is what a connection it opens is)."""
    decisions = {verdict.partition(": ")[2] for verdict in _verdicts(consequence)}
    exact = any(str(cause.evidence.get(field)) in decisions for field in ("decided_by", "rule"))
    return exact, cause.target == consequence.target, cause.evidence.get("direction", "outgoing") == "outgoing"


def _flow(finding: Finding) -> tuple[str, str] | None:
    """`firewall-drop:replies6:br0` -> ("replies", "6"): which of the target's flows a drop finding is about."""
    kind, _, rest = finding.key.partition(":")
    part = rest.partition(":")[0]
    name = part.rstrip("6")
    return (name, part[len(name):]) if kind == "firewall-drop" and name in FLOWS else None


def _same_decision_on_an_earlier_flow(consequence: Finding, cause: Finding) -> bool:
    """One rule or policy (the same place, the same decision) drops several flows of the target, in the same
    IP family: the first of them (FLOWS' order) stands for the rest."""
    mine, theirs = _flow(consequence), _flow(cause)
    return (mine is not None and theirs is not None and theirs[1] == mine[1]
            and FLOWS.index(theirs[0]) < FLOWS.index(mine[0])
            and bool(cause.evidence.get("decided_by")) and cause.evidence.get("where") == consequence.evidence.get("where")
            and cause.evidence.get("decided_by") == consequence.evidence.get("decided_by"))


def _missing_parts(cause: Finding) -> list[str]:
    missing = cause.evidence.get("missing")
    return [str(p) for parts in missing.values() for p in (parts or ())] if isinstance(missing, dict) else []


def _decided_by_forward_policy(finding: Finding) -> bool:
    """Dropped by iptables' FORWARD policy, no rule: where Docker's forward ACCEPT rules were."""
    evidence = finding.evidence
    return ("policy" in evidence and "rule" not in evidence and evidence.get("chain") == "FORWARD"
            and str(evidence.get("backend", "")).startswith("iptables"))


def _part_of_the_wipe(consequence: Finding, cause: Finding) -> bool:
    """The host's firewall check lists what of Docker's rules is gone, per network: a target's view of the same
    loss (its network's forward ACCEPT, its port's DNAT, its subnet's MASQUERADE), or a drop by the FORWARD
    policy that Docker's ACCEPT rules used to come before."""
    parts = _missing_parts(cause)
    if not parts:
        return False
    if key_matches(consequence.key, "docker-rules-missing:forward*"):
        return consequence.evidence.get("network") in cause.evidence["missing"]
    if key_matches(consequence.key, "docker-rules-missing:dnat*"):
        port = consequence.key.rpartition(":")[2]  # 8080/tcp
        return any(p.startswith(f"DNAT {port} ") for p in parts)
    if consequence.key == "masquerade-missing":
        return f"MASQUERADE for {consequence.evidence.get('subnet')}" in parts
    return _decided_by_forward_policy(consequence)


def _left_policy_decides(consequence: Finding, cause: Finding) -> bool:
    """The iptables FORWARD policy the host's firewall check found left under Docker's nftables backend."""
    evidence = consequence.evidence
    return "policy" in evidence and "rule" not in evidence and evidence.get("where") == cause.evidence.get("chain")


def _same_peer_unshared(consequence: Finding, cause: Finding) -> bool:
    """dns's "peer does not resolve" about the peer icc found on no network of the target's: the embedded DNS
    answers only for containers on a network the target is on (on the default bridge, which has no embedded
    DNS, the name would not resolve even on a shared network: a fault of its own)."""
    evidence = consequence.evidence
    return (_suffix(consequence.key) == _suffix(cause.key).partition("@")[0] and bool(evidence.get("embedded_dns"))
            and not set(evidence.get("networks") or ()) & set(evidence.get("peer_networks") or ()))


def _same_peer(consequence: Finding, cause: Finding) -> bool:
    return _suffix(consequence.key) == _suffix(cause.key)


def _decided_by_a_policy(consequence: Finding, cause: Finding) -> bool:
    """No rule stopped the path: a chain's policy did (Docker's ACCEPT rules are gone)."""
    return any(" policy " in verdict.partition(": ")[2] for verdict in _verdicts(consequence))


def _lost_at_the_gateway(consequence: Finding, cause: Finding) -> bool:
    """The silent gateway itself, or a path that broke at it."""
    return consequence.key == "gateway-silent" or consequence.evidence.get("layer") == "gateway"


def _same_network(consequence: Finding, cause: Finding) -> bool:
    return _suffix(consequence.key).rpartition("@")[2] == _suffix(cause.key)


def _same_gateway(consequence: Finding, cause: Finding) -> bool:
    return bool(cause.evidence.get("gateway")) and consequence.evidence.get("gateway") == cause.evidence.get("gateway")


def _measured_at_the_limit(consequence: Finding, cause: Finding) -> bool:
    """The path MTU measured is the one the static comparison predicted: the same fault, seen twice."""
    measured = consequence.evidence.get("path_mtu")
    return measured is not None and measured == cause.evidence.get("limit")


def _data_port_rule(consequence: Finding, cause: Finding) -> bool:
    return cause.evidence.get("rule") in (consequence.evidence.get("local_rules_dropping_vxlan") or ())


def _over_ipv4(consequence: Finding, cause: Finding) -> bool:
    """reachability's `no-default-route` is about IPv4: an IPv6 path without a route has another cause."""
    return consequence.evidence.get("family", "ipv4") == "ipv4"


def _timed_out(consequence: Finding, cause: Finding) -> bool:
    return consequence.evidence.get("outcome") == "timeout"


def _inside_colliding_route(consequence: Finding, cause: Finding) -> bool:
    """The target's own address lies in the host route that takes its replies elsewhere."""
    source, route = consequence.evidence.get("source"), str(cause.evidence.get("route", "")).split(" ")[0]
    try:
        return bool(source) and ipaddress.ip_address(source) in ipaddress.ip_network(route, strict=False)
    except ValueError:
        return False


# Order matters where two rules could claim one finding: the first that matches wins.
RULES: tuple[Rule, ...] = (
    Rule("target has no default route", ("reachability",), "no-default-route", PATH_CHECKS,
         layers=("no_route",), related=_over_ipv4,
         because="the target has no route out: connections beyond its own subnets fail at once"),
    Rule("host side of the link is down", ("reachability",), "host-link-down:*", PATH_CHECKS,
         effect_keys=("gateway-silent", "probe:*", "nameserver-silent:*", "peer:*"), related=_lost_at_the_gateway,
         because="the host's bridge (or veth) on the target's link is down, so nothing answers for the gateway"),
    Rule("macvlan parent unusable", ("macvlan",), "parent-*", ("macvlan",), effect_keys=("gateway-silent:*",),
         related=_same_network, because="the parent interface carries the network; without it the gateway is out of reach"),
    Rule("gateway silent", ("reachability",), "gateway-silent", PATH_CHECKS, layers=("gateway",),
         because="nothing answers ARP for the target's gateway: packets never leave its link"),
    Rule("macvlan gateway silent", ("macvlan",), "gateway-silent:*", ("reachability",), effect_keys=("gateway-silent",),
         related=_same_gateway, because="the macvlan network's gateway does not answer"),
    Rule("forwarding off", ("ip_forward",), "forwarding-off", PATH_CHECKS, layers=("forwarding",),
         because="the host does not forward IPv4 (net.ipv4.ip_forward=0): routed packets stop at the host"),
    Rule("firewall rule drops the path", (), "firewall-drop*", PATH_CHECKS, layers=("firewall",),
         related=_names_the_same_rule, prefer=_closest_firewall_finding,
         because="a firewall rule on the host drops the target's packets"),
    Rule("Docker's firewall rules missing", (), "docker-rules-missing*", PATH_CHECKS, layers=("firewall",),
         related=_decided_by_a_policy,
         because="Docker's chains and ACCEPT rules are gone, so the chain's DROP policy decides"),
    Rule("MASQUERADE missing", ("reachability",), "masquerade-missing", PATH_CHECKS, layers=("nat",),
         because="the host does not NAT the target's private address: replies cannot find their way back"),
    Rule("one firewall decision drops several flows", ("forward_policy",), "firewall-drop:*", ("forward_policy", "ports"),
         effect_keys=("firewall-drop:replies*", "firewall-drop:published*"), related=_same_decision_on_an_earlier_flow,
         because="the rule (or policy) that drops the target's own traffic also drops its replies and its published "
                 "ports' connections"),
    Rule("Docker's firewall rules wiped on the host", ("firewall",), "docker-rules-missing",
         ("forward_policy", "ports", "reachability"),
         effect_keys=("docker-rules-missing:*", "firewall-drop:*", "masquerade-missing"), related=_part_of_the_wipe,
         across_targets=True,
         because="the host lost Docker's rules (a firewall reload, `iptables -F`): each target's forward ACCEPT, "
                 "MASQUERADE and DNAT are part of that loss, and the FORWARD policy now decides its traffic"),
    Rule("iptables FORWARD policy left under Docker's nftables backend", ("firewall",), "firewall-drop:iptables-policy*",
         ("forward_policy", "ports"), effect_keys=("firewall-drop:*",), related=_left_policy_decides, across_targets=True,
         because="iptables' FORWARD policy drops what Docker's nftables rules accept, for every container"),
    Rule("peer on no network of the target's", ("icc",), "no-shared-network:*", ("dns",), effect_keys=("peer-name:*",),
         related=_same_peer_unshared,
         because="the embedded DNS answers only for containers on a network the target is on"),
    Rule("peer does not exist", ("icc",), "peer-missing:*", ("dns",), effect_keys=("peer-name:*",), related=_same_peer,
         because="there is no container by that name, so no name to resolve either"),
    Rule("host route collides with the target's subnet", ("subnet_overlap",), "route-inside:*", PATH_CHECKS,
         layers=("beyond_host", "far_end"), related=_inside_colliding_route,
         because="a host route inside the target's subnet takes the replies to its address elsewhere"),
    Rule("conntrack table full", ("conntrack",), "table-full", PATH_CHECKS, layers=("beyond_host", "far_end"),
         related=_timed_out, across_targets=True,
         because="the host's connection-tracking table is full: the first packet of new connections is dropped"),
    Rule("icc=false not enforced", ("bridge_nf",), "icc-unenforced:*", ("icc",), effect_keys=("peer-unisolated:*",),
         related=_same_network, because="bridged traffic bypasses iptables, so Docker's icc=false rule never applies"),
    Rule("interface MTU above the egress path", ("mtu",), "mtu-mismatch:*", ("mtu",),
         effect_keys=("pmtu-blackhole:*", "pmtu-smaller:*"), related=_measured_at_the_limit,
         because="the target's interface is bigger than the host's egress path: the measured path MTU is that limit"),
    Rule("swarm data port dropped here", ("vxlan",), "firewall-drop*", ("vxlan",), effect_keys=("data-path-broken:*",),
         related=_data_port_rule, because="this node's firewall drops the VXLAN packets (UDP 4789)"),
)


def _linked(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.status in LINKED_STATUSES]


def _explains_everywhere(finding: Finding, rules: tuple[Rule, ...]) -> bool:
    """A cause that explains findings on every target (the host's conntrack table), not only its own."""
    return any(rule.across_targets and rule.is_cause(finding) for rule in rules)


def direct_cause(finding: Finding, candidates: list[Finding], rules: tuple[Rule, ...] = RULES) -> Finding | None:
    """The finding `finding` follows from directly: the first rule that explains it, its worst cause."""
    if finding.status not in LINKED_STATUSES:
        return None
    for rule in rules:
        if not rule.could_explain(finding):
            continue
        found = [c for c in candidates if c.status in LINKED_STATUSES and rule.explains(finding, c)]
        if found:
            # the cause that names it most closely, then the worst; the key only breaks a tie between equals
            return max(found, key=lambda c: (*(rule.prefer(finding, c) if rule.prefer else ()), c.status.rank, c.key))
    return None


def _roots(findings: list[Finding], candidates: list[Finding], rules: tuple[Rule, ...]) -> dict[str, Finding]:
    """Each of `findings` that is a consequence -> its root cause among `candidates` (the end of the chain)."""
    direct = {f.id: c for f in candidates if (c := direct_cause(f, candidates, rules)) is not None}
    roots = {}
    for finding in findings:
        cause = direct.get(finding.id)
        seen = {finding.id}
        while cause is not None and cause.id in direct and cause.id not in seen:  # a cycle: two rules contradict
            seen.add(cause.id)
            cause = direct[cause.id]
        if cause is not None and cause.id != finding.id:
            roots[finding.id] = cause
    return roots


def link(findings: Iterable[Finding], rules: tuple[Rule, ...] = RULES) -> dict[str, Finding]:
    """Each consequence's id -> its root cause. Causes explain findings of their own target (and the few
    host-wide ones every target's), so findings are linked target by target: linear in the report's size."""
    by_target: dict[str, list[Finding]] = defaultdict(list)
    for finding in _linked(findings):
        by_target[finding.target].append(finding)
    everywhere = [f for group in by_target.values() for f in group if _explains_everywhere(f, rules)]
    roots: dict[str, Finding] = {}
    for target, group in by_target.items():
        candidates = group + [f for f in everywhere if f.target != target]
        roots.update(_roots(group, candidates, rules))
    return roots


def as_consequence(finding: Finding, root: Finding) -> Finding:
    """`finding` marked as following from `root`: its id in `caused_by`, a short "because" opening its detail."""
    because = f"Because of {root.check}: {root.title}" + ("" if root.title.endswith(".") else ".")
    return replace(finding, caused_by=root.id, detail=because + (f"\n{finding.detail}" if finding.detail else ""))


def apply(findings: list[Finding], rules: tuple[Rule, ...] = RULES) -> list[Finding]:
    """The findings, with every consequence marked (see as_consequence)."""
    roots = link(findings, rules)
    return [as_consequence(f, roots[f.id]) if f.id in roots and f.caused_by is None else f for f in findings]


def tally(findings: Iterable[Finding]) -> tuple[int, int]:
    """(root causes, consequences) of a report: warn/fail findings that follow from none, and those that do."""
    linked = _linked(findings)
    consequences = sum(1 for f in linked if f.caused_by)
    return len(linked) - consequences, consequences


class Linker:
    """Links a stream of findings that arrives one check job at a time (runner.run_jobs).

    A finding is passed on at once unless some rule could still explain it by a finding of a job that has
    not finished (a dns timeout waits for ip_forward, reachability and the firewall checks on its target);
    then it is held and passed on, marked, once they have. Every finding comes out exactly once. The work
    per finished job is bounded by its target's findings, whatever the number of targets.
    """

    def __init__(self, jobs: Iterable[tuple[str, str]], rules: tuple[Rule, ...] = RULES):
        self.rules = rules
        self.pending: dict[str, set[str]] = defaultdict(set)   # target -> checks still running on it
        self.running: Counter[str] = Counter()                 # check -> jobs still running, on any target
        for check, target in jobs:
            self.pending[target].add(check)
            self.running[check] += 1
        self.pool: dict[str, list[Finding]] = defaultdict(list)  # target -> its warn/fail findings so far
        self.everywhere: list[Finding] = []                      # causes that explain every target's findings
        self.held: dict[str, list[Finding]] = defaultdict(list)  # target -> findings not passed on yet
        self.host_wide_checks = {c for rule in rules if rule.across_targets for c in rule.cause_checks}

    def add(self, check: str, target: str, findings: Iterable[Finding]) -> list[Finding]:
        """One job's findings, now that it has finished; returns those that can be passed on."""
        self.pending[target].discard(check)
        self.running[check] -= 1
        touched = {target}
        for finding in findings:
            if finding.status in LINKED_STATUSES:
                self.pool[finding.target].append(finding)
                if _explains_everywhere(finding, self.rules):
                    self.everywhere.append(finding)
            self.held[finding.target].append(finding)
            touched.add(finding.target)
        if check in self.host_wide_checks:  # its verdict matters to every target's held findings
            touched = set(self.held)
        return [f for t in touched for f in self._release(t)]

    def finish(self) -> list[Finding]:
        """Everything still held: no job is left that could explain it."""
        self.pending.clear()
        self.running.clear()
        return [f for t in list(self.held) for f in self._release(t)]

    def _may_be_explained_later(self, finding: Finding) -> bool:
        if finding.status not in LINKED_STATUSES:
            return False
        pending = self.pending.get(finding.target, set())
        for rule in self.rules:
            if not rule.could_explain(finding):
                continue
            if rule.across_targets and any(self.running[c] > 0 for c in rule.cause_checks):
                return True
            if pending and (not rule.cause_checks or pending & set(rule.cause_checks)):
                return True
        return False

    def _release(self, target: str) -> list[Finding]:
        held = self.held.get(target)
        if not held:
            return []
        candidates = self.pool[target] + [f for f in self.everywhere if f.target != target]
        waiting = {f.id for f in held if self._may_be_explained_later(f)}
        changed = True
        while changed:  # a finding whose cause still waits may still change root with it
            changed = False
            for finding in held:
                cause = direct_cause(finding, candidates, self.rules)
                if finding.id not in waiting and cause is not None and cause.id in waiting:
                    waiting.add(finding.id)
                    changed = True
        ready = [f for f in held if f.id not in waiting]
        self.held[target] = [f for f in held if f.id in waiting]
        roots = _roots(ready, candidates, self.rules)
        # causes before their consequences: a stream reader meets the root cause first
        return [f for f in ready if f.id not in roots] + [as_consequence(f, roots[f.id]) for f in ready if f.id in roots]


def explain(check_id: str, rules: tuple[Rule, ...] = RULES) -> str:
    """For `netdoctor explain CHECK`: the root causes its findings can follow from, and what they can explain."""
    lines = []
    follows = [r for r in rules if check_id in r.effect_checks]
    if follows:
        lines.append("Its warn/fail findings can be consequences of these root causes (then they carry caused_by and "
                     "show under the cause):")
        for rule in follows:
            who = "/".join(rule.cause_checks) if rule.cause_checks else "a firewall check"
            lines.append(f"  - {who} `{rule.cause_key}` ({rule.name}): {rule.because}")
    explains = [r for r in rules if check_id in r.cause_checks]
    if explains:
        lines.append("Its findings can be the root cause of:")
        for rule in explains:
            lines.append(f"  - {', '.join(rule.effect_checks)} findings, through `{rule.cause_key}` ({rule.name})")
    return "\n".join(lines)
