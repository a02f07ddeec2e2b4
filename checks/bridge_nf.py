from __future__ import annotations

from typing import Iterator

from netdoctor.checks._bridges import HostPort, host_ports
from netdoctor.context import CheckContext
from netdoctor.firewall import FORWARDED, Packet, Rule, follow
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.registry import check

KEY = "net.bridge.bridge-nf-call-iptables"
PERSIST_FILE = "/etc/sysctl.d/99-netdoctor-bridge-nf.conf"


def _turn_on(ctx: CheckContext, value: str | None) -> tuple[str, ...]:
    load = ("sudo modprobe br_netfilter", "echo br_netfilter | sudo tee /etc/modules-load.d/br_netfilter.conf") if value is None else ()
    return (*load, ctx.on_host(f"sysctl -w {KEY}=1"), f"echo '{KEY} = 1' | sudo tee {PERSIST_FILE}")


def _state(value: str | None) -> str:
    return "br_netfilter is not loaded" if value is None else f"{KEY}={value}"


@check(id="bridge_nf", title="Bridged traffic meets the firewall as intended", scope=Scope.NAMESPACE,
       severity=Severity.HIGH, needs={Need.ROOT, Need.NETNS, Need.HOST_NETNS})
def bridge_nf(ctx: CheckContext) -> Iterator[Finding]:
    """Traffic between neighbours on one bridge must pass through iptables exactly when a rule relies on it.

    A frame from one container to another on the same bridge is switched, not routed: iptables sees it
    only when the br_netfilter module is loaded and net.bridge.bridge-nf-call-iptables=1 in the host
    namespace (per namespace since Linux 5.3). Docker relies on it for icc=false
    (`com.docker.network.bridge.enable_icc=false`, or dockerd --icc=false): its `-i br -o br -j DROP`
    rule is silently not enforced when the module is missing or the sysctl is 0, e.g. after a
    /etc/sysctl.d file or a hardening script reset it. The inverse bites non-Docker bridges (libvirt,
    LXD, a hand-made br0) on a Docker host: with the sysctl at 1, their same-bridge traffic goes through
    FORWARD, whose policy Docker set to DROP, and the VMs or namespaces on it can no longer talk to each
    other (moby#39439, docker/docs#7370).

    The sysctl is host-wide, but whether it matters depends on the bridge, so this check runs per
    target: for each bridge the target sits on, it reads the sysctl in the host namespace, the Docker
    network's icc option, and, for non-Docker bridges, walks the host's FORWARD chain for same-bridge
    traffic (-i br -o br) to see whether a rule or the policy would drop it.

    Fix: `modprobe br_netfilter` and `sysctl -w net.bridge.bridge-nf-call-iptables=1` (persisted) when
    icc=false must hold; for a non-Docker bridge, `iptables -I DOCKER-USER -i br0 -o br0 -j ACCEPT`.
    """
    ports, skipped = host_ports(ctx)
    bridges = [p for p in ports if p.is_bridge]
    if not bridges:
        yield ctx.info("Not applicable: the target is on no host bridge", detail="; ".join(skipped))
        return
    value = ctx.host.sysctl(KEY)
    for port in bridges:
        if port.network is not None:
            yield _docker_bridge(ctx, port, value)
        else:
            yield _plain_bridge(ctx, port, value)


def _docker_bridge(ctx: CheckContext, port: HostPort, value: str | None) -> Finding:
    network = port.network
    evidence = {"network": network.name, "bridge": port.device, "enable_icc": network.icc_enabled, KEY: value,
                "host_netns": ctx.host.path}
    if not network.icc_enabled and value != "1":
        return ctx.fail(f"icc=false on {network.name} is not enforced: {_state(value)}",
                        detail=f"Network {network.name} disables inter-container traffic, but frames between its containers "
                               f"are switched by {port.device} without reaching iptables, so Docker's DROP rule never sees "
                               "them: every container on the network can still reach every other one.",
                        evidence=evidence,
                        fix=Fix("Let bridged traffic reach iptables in the host namespace and keep it so across reboots.",
                                _turn_on(ctx, value)), key=f"icc-unenforced:{network.name}")
    if value == "1":
        return ctx.ok(f"Bridged traffic on {network.name} reaches iptables ({KEY}=1)"
                      + ("; icc=false is enforced" if not network.icc_enabled else ""), evidence=evidence)
    return ctx.info(f"Traffic between containers on {network.name} bypasses iptables ({_state(value)})",
                    detail="Harmless while icc is enabled, but DOCKER-USER rules do not apply to same-network traffic, "
                           "and disabling icc later would not take effect. `docker info` warns about it too.",
                    evidence=evidence)


def _names(rule: Rule, device: str) -> bool:
    """The rule is written for this bridge's traffic (an isolation rule), not a blanket one."""
    return any(m.field in ("iif", "oif") and not m.negate and device in m.values for m in rule.matches)


def _plain_bridge(ctx: CheckContext, port: HostPort, value: str | None) -> Finding:
    rules = ctx.host.firewall
    evidence = {"bridge": port.device, "address": port.address, KEY: value, "host_netns": ctx.host.path}
    if rules.error:
        return ctx.info(f"{port.device}: {_state(value)}; the host firewall could not be read", detail=rules.error,
                        evidence=evidence)
    path = follow(rules, Packet(4, src=port.address, iif=port.device, oif=port.device, state="new", src_local=False,
                                dst_local=False), FORWARDED)
    verdict = path.drop or path.accepted_by("forward")
    evidence.update(decided_by=verdict.decided_by if verdict else "no rule or policy", where=path.describe())
    aimed = path.dropped and verdict.rule is not None and _names(verdict.rule, port.device)
    if value == "1" and path.dropped and aimed:
        return ctx.ok(f"Neighbours on {port.device} are isolated by {evidence['decided_by']}, as that rule intends",
                      evidence=evidence)
    if value == "1" and path.dropped:
        chain = "DOCKER-USER" if rules.iptables_chain(4, "filter", "DOCKER-USER") else "FORWARD"
        return ctx.fail(f"Neighbours on {port.device} cannot talk: bridged traffic goes through iptables and is dropped",
                        detail=f"{KEY}=1 sends frames switched by {port.device} through the FORWARD chain, where "
                               f"{evidence['decided_by']} drops them (Docker sets FORWARD's policy to DROP).",
                        evidence=evidence,
                        fix=Fix(f"Accept traffic that stays on {port.device}. Turning {KEY} off instead would also "
                                "switch off icc=false on Docker networks.",
                                (ctx.on_host(f"iptables -I {chain} -i {port.device} -o {port.device} -j ACCEPT"),)))
    if value != "1" and path.dropped and aimed:
        return ctx.warn(f"Rule for traffic on {port.device} is never applied: {_state(value)}",
                        detail=f"{evidence['decided_by']} would drop traffic between neighbours on {port.device}, but "
                               "bridged frames do not reach iptables, so they all pass.",
                        evidence=evidence,
                        fix=Fix("If the rule is meant to isolate the bridge, let bridged traffic reach iptables.",
                                _turn_on(ctx, value)))
    if value == "1":
        return ctx.ok(f"Traffic between neighbours on {port.device} passes iptables ({evidence['decided_by']})",
                      evidence=evidence)
    return ctx.ok(f"Traffic on {port.device} bypasses iptables ({_state(value)}) and no rule expects otherwise",
                  evidence=evidence)
