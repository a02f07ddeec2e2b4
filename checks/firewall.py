from __future__ import annotations

import ipaddress
from typing import Iterator

from netdoctor.checks import _firewall as fw_
from netdoctor.checks import _published as published
from netdoctor.checks._firewall import Endpoint
from netdoctor.checks._layers import nat_rule
from netdoctor.context import CheckContext
from netdoctor.dockerapi import DockerUnavailable
from netdoctor.facts.docker import NetworkInfo
from netdoctor.facts.engine import NFTABLES as NFT_BACKEND, EngineFacts
from netdoctor.firewall import LEGACY, Firewall, docker
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.registry import check


@check(id="firewall", title="The host's firewall holds Docker's rules, in one backend", scope=Scope.HOST,
       severity=Severity.HIGH, needs={Need.ROOT, Need.HOST_NETNS, Need.IPTABLES})
def firewall(ctx: CheckContext) -> Iterator[Finding]:
    """The whole firewall of the host, once per run: is it readable, consistent, and does it still hold Docker's rules?

    netdoctor reads every backend in the host namespace: native nftables tables (`nft -j list ruleset`:
    firewalld's `inet firewalld`, Docker 29's `ip docker-bridges`, your own), iptables-nft and
    iptables-legacy, IPv4 and IPv6 (`iptables-save -c` per backend and family that holds tables). A table
    that iptables-nft cannot show (written with nft, such as a hand-made `table ip filter`) is taken from
    nft's JSON instead. It reports:
    - a mixed host: iptables-legacy and iptables-nft both hold rules. The kernel runs a packet through
      both, so a rule that looks absent in one tool's listing still drops; Docker writes into only one (the
      backend of the `iptables` it runs).
    - Docker's rules wiped: for each bridge network of the engine whose bridge is in this namespace, its
      forward ACCEPT, its MASQUERADE and the DNAT of each published port of its running containers, in the
      engine's own layout (20.10-27, 28, 29; iptables or nftables backend, from Info.FirewallBackend). A
      firewalld reload, `iptables -F`/`-t nat -F`, ufw reset or an iptables-restore wipe them while every
      container still looks fine in `docker inspect`; the finding says what probably did it (firewalld,
      ufw visible here) and how to get them back (restart Docker; firewalld's docker zone). A lost DNAT
      that docker-proxy still relays only warns (the port works; client addresses are lost), as in ports.
    - dockerd running with --iptables=false (its command line or daemon.json, read from the host's /proc;
      or the signs of it: no Docker chain at all and a default bridge that does not masquerade): info, not
      a fault. Docker writes no rules then; the host's own rules are judged by forward_policy and ports.
    - an iptables FORWARD policy DROP left behind while the engine writes its rules into nftables, for the
      networks whose traffic it really drops (each network's flows are walked, so accepts you added count).
    Per-target consequences (a container's traffic, a published port) are in forward_policy and ports.

    Fix: `systemctl restart docker` recreates Docker's rules; keep one iptables backend (move the other's
    rules, then flush them); accept Docker's bridges in iptables FORWARD (or set its policy to ACCEPT)
    under the nftables backend.
    """
    fw = ctx.host.firewall
    if fw.error:
        yield ctx.skip("The host's firewall could not be read", detail=fw.error, key="firewall-unread")
        return
    evidence = fw.to_evidence()
    engine = fw_.engine_of(ctx)
    if engine is not None:
        evidence.update(engine.to_evidence())
    managers = docker.firewall_managers(fw, engine is not None and engine.with_firewalld)
    evidence["firewall_managers"] = managers
    networks = _networks(ctx)
    bad = False
    for finding in (*_mixed(ctx, fw, evidence), *_left_policy(ctx, fw, engine, networks, evidence),
                    *_docker_rules(ctx, fw, engine, networks, evidence)):
        bad = bad or finding.status.rank >= 3
        yield finding
    if fw.problems:
        yield ctx.info(f"{len(fw.problems)} line(s) of the firewall could not be understood and were left out",
                       detail="; ".join(fw.problems[:5]), evidence=evidence, key="firewall-unparsed")
    if not bad:
        tables = ", ".join(evidence["tables"]) or "no table with rules"
        yield ctx.ok(f"Firewall read ({', '.join(fw.sources)}): {tables}", evidence=evidence, key="firewall-read")


def _mixed(ctx: CheckContext, fw: Firewall, evidence: dict) -> Iterator[Finding]:
    if not fw.mixed:
        return
    families = [f"IPv{f}" for f in fw.mixed]
    docker_in = sorted({c.backend for c in fw.chains() if c.name.startswith("DOCKER")})
    legacy = [f"{t.family} {t.name}" for t in fw.tables if t.backend == LEGACY and t.holds_rules]
    yield ctx.warn(f"Mixed host: iptables-legacy and iptables-nft both hold rules ({', '.join(families)})",
                   detail="The kernel runs every packet through both backends' tables, so a rule listed by neither "
                          "`iptables -S` (one backend) nor what you expect still drops traffic, and each tool shows only "
                          "half of the firewall. This happens when two programs use different iptables binaries (an "
                          "old image or script with iptables-legacy beside a host on iptables-nft)"
                          + (f"; Docker's chains are in {', '.join(docker_in)}" if docker_in else "") + ".",
                   evidence={**evidence, "legacy_tables": legacy, "docker_chains_in": docker_in},
                   fix=Fix("Keep one backend: look at both listings, move the rules you need to the backend the rest of "
                           "the host uses (update-alternatives shows it), then flush the other.",
                           (ctx.on_host("iptables-legacy-save"), ctx.on_host("iptables-nft-save"),
                            "update-alternatives --display iptables")), key="mixed-backends")


def _left_policy(ctx: CheckContext, fw: Firewall, engine: EngineFacts | None, networks: list[NetworkInfo],
                 evidence: dict) -> Iterator[Finding]:
    """An iptables FORWARD policy DROP under the nftables backend, judged by what it drops of each network's
    traffic (the walk forward_policy makes), not by its mere presence."""
    if engine is None or engine.backend != NFT_BACKEND:
        return
    for family in (4, 6):
        chain = fw.iptables_chain(family, "filter", "FORWARD")
        if chain is None or chain.policy != "drop":
            continue
        uplink, far = fw_.uplink_of(ctx, family), fw_.far_outside(ctx, family)
        flows, dropped = [], []
        for network in networks:
            ep = _representative(network, family)
            if ep is None:
                continue
            found = list(fw_.forward_flows(fw, ep, uplink, far).values())
            if any(f.path.dropped and f.path.drop.rule is None and f.path.drop.chain.key == chain.key for f in found):
                dropped.append(ep.device)
                flows += found
        if not dropped:
            continue
        step = next(f.path.drop for f in flows if f.path.dropped and f.path.drop.chain.key == chain.key)
        yield ctx.fail(f"{chain.place} policy DROP is left while Docker writes its rules into nftables: it drops the "
                       f"traffic of {', '.join(dropped)}",
                       detail=f"{engine.label()} keeps its rules in table {docker.NFT_TABLE}, but iptables' FORWARD chain "
                              "still drops by default (left from when Docker used iptables, or set by another tool) and "
                              "no rule in it accepts these bridges' traffic: a packet meets every base chain of the "
                              "forward hook, and this drop is final, so their containers reach nothing beyond the host.",
                       evidence={**evidence, "chain": chain.place, "rules_in_chain": [r.text for r in chain.rules],
                                 "bridges_dropped": dropped},
                       fix=fw_.unblock_fix(ctx, step, flows, set(dropped), engine),
                       key=f"firewall-drop:iptables-policy{'6' if family == 6 else ''}")


def _networks(ctx: CheckContext) -> list[NetworkInfo]:
    """The engine's bridge networks whose bridge lives in this host namespace (where their rules belong)."""
    try:
        networks = ctx.docker.all_networks()
    except (DockerUnavailable, OSError):
        return []
    return [n for n in networks if n.driver == "bridge" and not n.internal and n.subnets
            and fw_.bridge_here(ctx, n.bridge_name)]


def _representative(network: NetworkInfo, family: int) -> Endpoint | None:
    """A made-up endpoint of the network (its first host address after the gateway) to ask the rules about."""
    for subnet in network.subnets:
        net = ipaddress.ip_network(subnet, strict=False)
        if net.version == family and net.num_addresses > 4:
            return Endpoint(network.bridge_name, family, str(net[2]), subnet, network)
    return None


def _missing(ctx: CheckContext, fw: Firewall, engine: EngineFacts | None, networks: list[NetworkInfo],
             families: list[int]) -> tuple[dict[str, list[str]], set[str]]:
    """Per network, which of Docker's rules are not in `fw`; and which of those only cost client addresses (a
    DNAT that docker-proxy still relays), as ports judges them."""
    missing: dict[str, list[str]] = {}
    for network in networks:
        for family in families:
            ep = _representative(network, family)
            if ep is None or not fw_.expects_docker_rules(fw, engine, family):
                continue
            outgoing = fw_.outgoing(ep, fw_.uplink_of(ctx, family), fw_.far_outside(ctx, family))
            what = []
            if not fw_.docker_accepts(fw, outgoing, {ep.device}):
                what.append(f"forward ACCEPT for {ep.device} (IPv{family})")
            if docker.masquerades(network.options, family) and family == 4 and nat_rule(fw, outgoing) is None:
                what.append(f"MASQUERADE for {ep.subnet}")
            if what:
                missing.setdefault(network.name, []).extend(what)
    relayed: set[str] = set()
    if 4 not in families:
        return missing, relayed
    uplink = fw_.uplink_of(ctx, 4)
    subnets = {n.name: list(n.subnets) for n in networks}
    for container, addresses, ports in _publishing(ctx):
        on = [n for n in addresses if n in subnets]
        if not on:
            continue
        outside = published.outside_of(ctx, 4, [s for n in on for s in subnets[n]])
        for port in ports:
            if not port.host_port or port.host_ip in ("127.0.0.1", "::1") or ":" in port.host_ip:
                continue
            verdict = published.judge_dnat(ctx, fw, port, 4, {addresses[n] for n in on}, uplink, outside)
            if verdict.lost:
                part = f"DNAT {port.host_port}/{port.proto} -> {container}:{port.container_port}"
                missing.setdefault(on[0], []).append(part)
                if verdict.lost == "relayed":
                    relayed.add(part)
    return missing, relayed


def _publishing(ctx: CheckContext):
    try:
        return ctx.docker.published_ports()
    except (DockerUnavailable, OSError):
        return []


def _docker_rules(ctx: CheckContext, fw: Firewall, engine: EngineFacts | None, networks: list[NetworkInfo],
                  evidence: dict) -> Iterator[Finding]:
    if not networks:
        return
    off = {family: why for family in (4, 6) if (why := fw_.docker_rules_off(ctx, fw, family))}
    for family, why in off.items():
        yield ctx.info(f"Docker writes no IPv{family} firewall rules on this host: they are yours to write",
                       detail=f"{why.capitalize()}. Docker then adds no forward ACCEPT, MASQUERADE or DNAT for its "
                              "networks, and restarting it changes nothing: the host's own rules must forward and NAT the "
                              "containers' traffic (forward_policy, reachability and ports judge them as they are).",
                       evidence={**evidence, "docker_rules": why}, key=f"docker-rules-off{'6' if family == 6 else ''}")
    families = [f for f in (4, 6) if f not in off]
    missing, relayed = _missing(ctx, fw, engine, networks, families)
    if missing:
        # the run's firewall snapshot may predate a network created meanwhile: confirm on a fresh read
        fresh = ctx.host.fresh_firewall()
        if not fresh.error:
            fw = fresh
            missing, relayed = _missing(ctx, fw, engine, networks, families)
    if not missing:
        return
    why, fix = fw_.rules_gone_fix(fw, engine, [n.bridge_name for n in networks if n.name in missing])
    parts = sorted({p for family in families for p in fw_.missing_docker_parts(fw, engine, family)
                    if family == 4 or fw_.expects_docker_rules(fw, engine, 6)})
    lost = [p for ps in missing.values() for p in ps]
    only_relayed = all(p in relayed for p in lost)
    status = ctx.warn if only_relayed else ctx.fail
    yield status(f"Docker's rules are gone for {len(missing)} network(s): {', '.join(sorted(missing))}; restart docker",
                 detail=f"The host's firewall lacks rules Docker writes for its networks: {why}. Containers on these "
                        "networks lose their way out (forward ACCEPT, MASQUERADE) and their published ports (DNAT) "
                        "while `docker inspect` still shows them fine."
                        + (" docker-proxy still relays the published ports whose DNAT is gone (" + ", ".join(sorted(relayed))
                           + "): they answer, but every client appears as the host." if relayed else ""),
                 evidence={**evidence, "missing": missing, "relayed_by_docker_proxy": sorted(relayed),
                           "missing_structure": parts, "probable_cause": why,
                           "backend": engine.backend if engine else "iptables (engine not known)"},
                 fix=fix, key="docker-rules-missing")
