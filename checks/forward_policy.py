from __future__ import annotations

from typing import Iterator

from netdoctor.checks._bridges import HostPort, host_ports
from netdoctor.context import CheckContext
from netdoctor.facts.firewall import Rule, Ruleset
from netdoctor.filterpath import Flow, Verdict, rule_line, walk
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.registry import check

DOCKER_CHAINS = ("DOCKER", "DOCKER-USER", "DOCKER-ISOLATION-STAGE-1")
UNKNOWN_UPLINK = "(uplink)"  # no default route: an interface that is none of the host's bridges


def _flows(port: HostPort, uplink: str) -> dict[str, Flow]:
    """The two directions every NATed connection needs: out through the uplink, and the replies back."""
    return {"outgoing": Flow(port.device, uplink, port.address, None, "NEW", port.subnet),
            "replies": Flow(uplink, port.device, None, port.address, "ESTABLISHED", port.subnet)}


def _exempt_rule(direction: str, device: str) -> str:
    return f"-i {device}" if direction == "outgoing" else f"-o {device} -m conntrack --ctstate RELATED,ESTABLISHED"


def _rule_fix(ctx: CheckContext, rule: Rule, direction: str, port: HostPort, rules: Ruleset) -> Fix:
    commands = [ctx.on_host(f"iptables -D {rule.chain} {rule.text}")]
    exempt = _exempt_rule(direction, port.device)
    jump = "ACCEPT" if rules.policy("filter", rule.chain) not in (None, "-") else "RETURN"
    commands.append(ctx.on_host(f"iptables -I {rule.chain} {exempt} -j {jump}"))
    return Fix(f"Delete the rule (first command); or, to keep it for other traffic, run only the second command, "
               f"which exempts {port.label}'s {direction} traffic above it. Persist the change wherever the rule "
               f"comes from (your firewall script, ufw/firewalld configuration).", tuple(commands))


def _policy_fix(ctx: CheckContext, port: HostPort, rules: Ruleset) -> Fix:
    if port.network is not None:
        return Fix(f"Docker writes an ACCEPT rule per bridge network when it starts; {port.device}'s are missing. "
                   "Restarting the daemon recreates them (containers with a restart policy come back).",
                   ("sudo systemctl restart docker",))
    chain = "DOCKER-USER" if rules.has_chain("filter", "DOCKER-USER") else "FORWARD"
    return Fix(f"Accept {port.device}'s traffic explicitly ({chain} is where Docker hosts keep such rules).",
               (ctx.on_host(f"iptables -I {chain} -i {port.device} -j ACCEPT"),
                ctx.on_host(f"iptables -I {chain} -o {port.device} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")))


def _uplink(ctx: CheckContext) -> str:
    host = ctx.host.facts
    defaults = host.default_routes()
    link = host.link(index=defaults[0].oif) if defaults and defaults[0].oif else None
    return link.name if link else UNKNOWN_UPLINK


def _describe(verdict: Verdict) -> str:
    return rule_line(verdict.rule) if verdict.rule else f"FORWARD policy {verdict.policy}"


@check(id="forward_policy", title="Host firewall forwards the target's traffic", scope=Scope.NAMESPACE,
       severity=Severity.HIGH, needs={Need.ROOT, Need.NETNS, Need.HOST_NETNS, Need.IPTABLES})
def forward_policy(ctx: CheckContext) -> Iterator[Finding]:
    """The host's iptables FORWARD chain must let the target's bridge traffic out and its replies back in.

    Docker sets the FORWARD policy to DROP and inserts, for every bridge network, ACCEPT rules for
    traffic leaving the bridge (-i br-...) and for replies coming back (-o br-... RELATED,ESTABLISHED),
    behind its chains DOCKER-USER, DOCKER-ISOLATION-STAGE-1/2 and DOCKER. Three things break this:
    a firewall manager (firewalld reload, an iptables service restart, ferm, `nft flush ruleset`)
    deletes Docker's chains and rules while keeping policy DROP (moby#35043, moby#12294); a DOCKER-USER
    rule drops or rejects the bridge's traffic (often a blanket `-j DROP` meant for the uplink); or a
    non-Docker bridge (libvirt, LXD) on a Docker host has no ACCEPT rule at all (moby#39439).
    Containers then reach each other and the host, but every connection beyond the host times out.

    netdoctor reads `iptables-save` in the host namespace and walks the filter FORWARD chain the way the
    kernel does (jumps, RETURN, policy) for the target's two flows: new connections from its address in
    on its bridge and out through the uplink (the default route's device), and replies back. Rules that
    also match on protocol or ports drop only part of the traffic and are reported as warnings.
    nftables-native tables (`nft list ruleset`) and ip6tables are not read.

    Fix: delete the dropping rule (`iptables -D CHAIN ...`) or exempt the bridge above it
    (`iptables -I DOCKER-USER -i br-... -j RETURN`); when Docker's chains are gone, `systemctl restart docker`
    recreates them; for a non-Docker bridge, `iptables -I DOCKER-USER -i br0 -j ACCEPT` plus the
    RELATED,ESTABLISHED rule for replies.
    """
    ports, skipped = host_ports(ctx)
    if not ports:
        yield ctx.info("Not applicable: no traffic of this target is forwarded by the host",
                       detail="; ".join(skipped))
        return
    rules = ctx.host.firewall
    if rules.error:
        yield ctx.skip("Host firewall could not be read", detail=rules.error)
        return
    uplink = _uplink(ctx)
    policy = rules.policy("filter", "FORWARD") or "ACCEPT"
    # keyed by position: HostPort holds Docker's dicts and is not hashable
    verdicts = {(i, direction): walk(rules, flow) for i, port in enumerate(ports) if not (port.network and port.network.internal)
                for direction, flow in _flows(port, uplink).items()}
    missing = [c for c in DOCKER_CHAINS if not rules.has_chain("filter", c)]
    docker_ports = [p for p in ports if p.network]
    if docker_ports and missing:
        dropped = [f"{ports[i].device} {d}" for (i, d), v in verdicts.items() if v.dropped]
        evidence = {"missing_chains": missing, "forward_policy": policy, "networks": [p.network.name for p in docker_ports],
                    "dropped": dropped, "host_netns": ctx.host.path}
        detail = (f"The host's filter table has no {', '.join(missing)} chain(s) although {ctx.target.label} is on "
                  f"Docker bridge network(s) {', '.join(p.network.name for p in docker_ports)}: something rewrote the "
                  "firewall after dockerd started (firewalld reload, ufw, nft flush ruleset, an iptables-restore). "
                  "Published ports and network isolation are gone with them (unless dockerd runs with --iptables=false, "
                  "in which case these rules are yours to write).")
        fix = Fix("Restart Docker so it rebuilds its chains, and make the firewall manager keep them (firewalld: put "
                  "the bridges in the 'docker' zone; start docker after the firewall).", ("sudo systemctl restart docker",))
        if dropped:
            yield ctx.fail(f"Docker's chains are gone and FORWARD policy {policy} drops the target's traffic; restart docker",
                           detail=detail, evidence=evidence, fix=fix)
        else:
            yield ctx.warn("Docker's chains are gone; restart docker", detail=detail, evidence=evidence, fix=fix)
        return
    for i, port in enumerate(ports):
        if port.network and port.network.internal:
            yield ctx.info(f"{port.label} is internal: Docker blocks its forwarding by design")
            continue
        yield from _judge(ctx, port, {d: verdicts[(i, d)] for d in ("outgoing", "replies")}, rules, uplink)


def _judge(ctx: CheckContext, port: HostPort, verdicts: dict[str, Verdict], rules: Ruleset, uplink: str) -> Iterator[Finding]:
    base = {"device": port.device, "address": port.address, "subnet": port.subnet, "uplink": uplink,
            "network": port.network.name if port.network else None,
            "forward_policy": rules.policy("filter", "FORWARD") or "ACCEPT", "host_netns": ctx.host.path}
    bad = False
    for direction, verdict in verdicts.items():
        if not verdict.dropped:
            continue
        bad = True
        evidence = {**base, "direction": direction, "decided_by": _describe(verdict),
                    "accepted_in_part_by": [rule_line(r) for r in verdict.partial_accepts]}
        what = (f"{direction} traffic of {port.address} on {port.label}" if direction == "outgoing"
                else f"replies to {port.address} on {port.label}")
        if verdict.rule is not None:
            yield ctx.fail(f"{verdict.rule.chain} rule {verdict.action}s {what}: {rule_line(verdict.rule)}",
                           detail=f"The {direction} flow ({_flow_text(direction, port, uplink)}) reaches this rule before any "
                                  "ACCEPT: connections from the target to anything beyond the host time out"
                                  + (" or are refused." if verdict.action == "REJECT" else "."),
                           evidence=evidence, fix=_rule_fix(ctx, verdict.rule, direction, port, rules))
        else:
            yield ctx.fail(f"FORWARD policy {verdict.policy} drops {what}: no rule accepts it",
                           detail=f"No rule in FORWARD or the chains it jumps to accepts the {direction} flow "
                                  f"({_flow_text(direction, port, uplink)}), so the policy decides.",
                           evidence=evidence, fix=_policy_fix(ctx, port, rules))
    # a rule already reported as dropping one direction outright is not repeated as a partial drop
    deciding = {rule_line(v.rule) for v in verdicts.values() if v.dropped and v.rule}
    partial = {rule_line(r): (d, r) for d, v in verdicts.items() for r in v.partial_drops if rule_line(r) not in deciding}
    for line, (direction, rule) in partial.items():
        bad = True
        yield ctx.warn(f"{rule.chain} rule drops part of {port.label}'s {direction} traffic: {line}",
                       detail="The rule also matches on protocol, ports or far-end address, so some connections of the "
                              "target are dropped while others work. Keep it if that is intended.",
                       evidence={**base, "direction": direction, "rule": line},
                       fix=_rule_fix(ctx, rule, direction, port, rules))
    if not bad:
        yield ctx.ok(f"FORWARD accepts {port.label}'s traffic both ways",
                     evidence={**base, **{f"{d}_accepted_by": _describe(v) for d, v in verdicts.items()}})


def _flow_text(direction: str, port: HostPort, uplink: str) -> str:
    if direction == "outgoing":
        return f"-i {port.device} -o {uplink} -s {port.address}, NEW"
    return f"-i {uplink} -o {port.device} -d {port.address}, ESTABLISHED"
