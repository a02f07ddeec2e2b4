from __future__ import annotations

import ipaddress
from typing import Iterator

from netdoctor.checks import _firewall as fw_
from netdoctor.checks._firewall import Endpoint
from netdoctor.checks._layers import nat_rule
from netdoctor.context import CheckContext
from netdoctor.dockerapi import DockerUnavailable
from netdoctor.facts.docker import NetworkInfo
from netdoctor.facts.engine import NFTABLES as NFT_BACKEND, EngineFacts
from netdoctor.firewall import LEGACY, Firewall, Packet, commands, docker, follow
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.registry import check

MASQUERADE_OPTION = "com.docker.network.bridge.enable_ip_masquerade"
GATEWAY_MODE = "com.docker.network.bridge.gateway_mode_ipv"


@check(id="firewall", title="The host's firewall holds Docker's rules, in one backend", scope=Scope.HOST,
       severity=Severity.HIGH, needs={Need.ROOT, Need.HOST_NETNS, Need.IPTABLES})
def firewall(ctx: CheckContext) -> Iterator[Finding]:
    """The whole firewall of the host, once per run: is it readable, consistent, and does it still hold Docker's rules?

    netdoctor reads every backend in the host namespace: native nftables tables (`nft -j list ruleset`:
    firewalld's `inet firewalld`, Docker 29's `ip docker-bridges`, your own), iptables-nft and
    iptables-legacy, IPv4 and IPv6 (`iptables-save -c` per backend and family that holds tables). It reports:
    - a mixed host: iptables-legacy and iptables-nft both hold rules. The kernel runs a packet through
      both, so a rule that looks absent in one tool's listing still drops; Docker writes into only one (the
      backend of the `iptables` it runs).
    - Docker's rules wiped: for each bridge network of the engine whose bridge is in this namespace, its
      forward ACCEPT, its MASQUERADE and the DNAT of each published port of its running containers, in the
      engine's own layout (20.10-27, 28, 29; iptables or nftables backend, from Info.FirewallBackend). A
      firewalld reload, `iptables -F`/`-t nat -F`, ufw reset or an iptables-restore wipe them while every
      container still looks fine in `docker inspect`; the finding says what probably did it (firewalld,
      ufw visible here) and how to get them back (restart Docker; firewalld's docker zone).
    - an iptables FORWARD policy DROP left behind while the engine writes its rules into nftables: it drops
      what Docker's nftables rules accept.
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
    engine = _engine(ctx)
    if engine is not None:
        evidence.update(engine.to_evidence())
    managers = docker.firewall_managers(fw, engine is not None and engine.with_firewalld)
    evidence["firewall_managers"] = managers
    bad = False
    for finding in (*_mixed(ctx, fw, evidence), *_left_policy(ctx, fw, engine, evidence), *_docker_rules(ctx, fw, engine, evidence)):
        bad = bad or finding.status.rank >= 3
        yield finding
    if fw.problems:
        yield ctx.info(f"{len(fw.problems)} line(s) of the firewall could not be understood and were left out",
                       detail="; ".join(fw.problems[:5]), evidence=evidence, key="firewall-unparsed")
    if not bad:
        tables = ", ".join(evidence["tables"]) or "no table with rules"
        yield ctx.ok(f"Firewall read ({', '.join(fw.sources)}): {tables}", evidence=evidence, key="firewall-read")


def _engine(ctx: CheckContext) -> EngineFacts | None:
    try:
        return ctx.docker.engine_facts()
    except (DockerUnavailable, OSError, LookupError):
        return None


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


def _left_policy(ctx: CheckContext, fw: Firewall, engine: EngineFacts | None, evidence: dict) -> Iterator[Finding]:
    if engine is None or engine.backend != NFT_BACKEND:
        return
    for family in (4, 6):
        chain = fw.iptables_chain(family, "filter", "FORWARD")
        if chain is None or chain.policy != "drop":
            continue
        tool = commands.tool(chain.backend, chain.family)
        suffix = "6" if family == 6 else ""
        yield ctx.fail(f"{chain.place} policy DROP is left while Docker writes its rules into nftables",
                       detail=f"{engine.label()} keeps its rules in table {docker.NFT_TABLE}, but iptables' FORWARD chain "
                              "still drops by default (left from when Docker used iptables, or set by another tool): a "
                              "packet meets every base chain of the forward hook, and this drop is final, so containers "
                              "reach nothing beyond the host unless a rule in FORWARD accepts their traffic.",
                       evidence={**evidence, "chain": chain.place, "rules_in_chain": [r.text for r in chain.rules]},
                       fix=Fix("Set the policy back to ACCEPT if nothing else relies on it (or accept Docker's bridges "
                               "in FORWARD, see forward_policy's fix for each network).",
                               (ctx.on_host(f"{tool} -P FORWARD ACCEPT"),)),
                       key=f"firewall-drop:iptables-policy{suffix}")


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


def _missing(ctx: CheckContext, fw: Firewall, engine: EngineFacts | None, networks: list[NetworkInfo]) -> dict[str, list[str]]:
    """Per network, which of Docker's rules are not in `fw`."""
    missing: dict[str, list[str]] = {}
    for network in networks:
        for family in (4, 6):
            ep = _representative(network, family)
            if ep is None or not fw_.expects_docker_rules(fw, engine, family):
                continue
            uplink = fw_.uplink_of(ctx, family)
            outgoing = fw_.outgoing(ep, uplink)
            what = []
            if not fw_.docker_accepts(fw, outgoing, {ep.device}):
                what.append(f"forward ACCEPT for {ep.device} (IPv{family})")
            nat_wanted = network.options.get(MASQUERADE_OPTION) != "false" and \
                network.options.get(f"{GATEWAY_MODE}{family}", "nat") in ("nat", "nat-unprotected")
            if nat_wanted and family == 4 and nat_rule(fw, outgoing) is None:
                what.append(f"MASQUERADE for {ep.subnet}")
            if what:
                missing.setdefault(network.name, []).extend(what)
    names = {n.name for n in networks}
    for container, addresses, ports in _publishing(ctx):
        for network, address in addresses.items():
            if network not in names:
                continue
            for port in ports:
                if not port.host_port or port.host_ip in ("127.0.0.1", "::1") or ":" in port.host_ip:
                    continue
                request = Packet(4, dst=port.host_ip or None, proto=port.proto, dport=port.host_port,
                                 iif=fw_.uplink_of(ctx, 4).name, state="new", src_local=False, dst_local=True,
                                 far_outside=("127.0.0.0/8",))
                if follow(fw, request, ("prerouting",)).packet.dst not in addresses.values():
                    missing.setdefault(network, []).append(
                        f"DNAT {port.host_port}/{port.proto} -> {container}:{port.container_port}")
    return missing


def _publishing(ctx: CheckContext):
    try:
        return ctx.docker.published_ports()
    except (DockerUnavailable, OSError):
        return []


def _docker_rules(ctx: CheckContext, fw: Firewall, engine: EngineFacts | None, evidence: dict) -> Iterator[Finding]:
    networks = _networks(ctx)
    if not networks:
        return
    missing = _missing(ctx, fw, engine, networks)
    if missing:
        # the run's firewall snapshot may predate a network created meanwhile: confirm on a fresh read
        fw = ctx.host.fresh_firewall()
        missing = _missing(ctx, fw, engine, networks) if not fw.error else missing
    if not missing:
        return
    why, fix = fw_.rules_gone_fix(fw, engine, [n.bridge_name for n in networks if n.name in missing])
    parts = sorted({p for family in (4, 6) for p in fw_.missing_docker_parts(fw, engine, family)
                    if family == 4 or fw_.expects_docker_rules(fw, engine, 6)})
    yield ctx.fail(f"Docker's rules are gone for {len(missing)} network(s): {', '.join(sorted(missing))}; restart docker",
                   detail=f"The host's firewall lacks rules Docker writes for its networks: {why}. Containers on these "
                          "networks lose their way out (forward ACCEPT, MASQUERADE) and their published ports (DNAT) "
                          "while `docker inspect` still shows them fine (unless dockerd runs with --iptables=false, in "
                          "which case these rules are yours to write).",
                   evidence={**evidence, "missing": missing, "missing_structure": parts, "probable_cause": why,
                             "backend": engine.backend if engine else "iptables (engine not known)"},
                   fix=fix, key="docker-rules-missing")
