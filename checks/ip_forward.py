from __future__ import annotations

from typing import Iterator

from netdoctor.context import CheckContext
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.registry import check



def _fix(ctx: CheckContext, key: str) -> Fix:
    return Fix(
        "Turn forwarding back on in the host namespace and make it survive reboots. Docker enables it at start "
        "(dockerd --ip-forward=true, the default); something reset it later (a sysctl file, a VPN, a firewall script).",
        (ctx.on_host(f"sysctl -w {key}=1"),
         # a file per key: the IPv4 and IPv6 fixes must not overwrite each other
         f"echo '{key} = 1' | sudo tee /etc/sysctl.d/99-netdoctor-{key}.conf",
         ctx.on_host("sysctl --system")))


def _relies_on_forwarding(ctx: CheckContext) -> tuple[bool, str]:
    if ctx.container:
        nat = [n.name for _, n in ctx.networks() if n.uses_nat]
        if nat:
            return True, f"on NAT bridge network(s) {', '.join(nat)}"
        return False, "on no NAT bridge network (none, macvlan, overlay or internal only)"
    if ctx.netns.facts.default_routes():
        return True, "has a default route through the host"
    return False, "has no default route"


@check(id="ip_forward", title="Host forwards the target's traffic", scope=Scope.NAMESPACE, severity=Severity.CRITICAL,
       needs={Need.ROOT, Need.NETNS, Need.HOST_NETNS})
def ip_forward(ctx: CheckContext) -> Iterator[Finding]:
    """The host must forward packets between a bridge network and its uplink.

    Containers on a bridge network reach anything beyond their host through the host's routing: packets
    arrive on docker0 (or br-...) and must be forwarded to the uplink, then MASQUERADEd. With
    net.ipv4.ip_forward=0 in the host namespace, containers can talk to each other and to the host but
    every connection to the outside times out, while `docker network inspect` looks perfectly normal.
    Forwarding is per network namespace, so it is read in the host's namespace, never the container's.
    IPv6 forwarding (net.ipv6.conf.all.forwarding) matters when the container has a global IPv6 address.

    Fix: `sysctl -w net.ipv4.ip_forward=1`, persist it in /etc/sysctl.d/, and find what turned it off
    (dockerd sets it at start unless started with --ip-forward=false).
    """
    if ctx.is_host_namespace:
        yield ctx.info("Target uses the host's own network stack: no forwarding involved", key="host-stack")
        return
    relies, why = _relies_on_forwarding(ctx)
    if not relies:
        yield ctx.info(f"Forwarding not involved: {ctx.target.label} {why}", key="not-involved")
        return
    v4 = ctx.host.sysctl("net.ipv4.ip_forward")
    evidence = {"net.ipv4.ip_forward": v4, "host_netns": ctx.host.path, "reason": why}
    if v4 != "1":
        yield ctx.fail("Host does not forward IPv4: the target cannot reach beyond this host",
                       detail=f"net.ipv4.ip_forward={v4} in the host namespace while {ctx.target.label} {why}. "
                              "Traffic to other hosts and the internet is dropped; host and same-network peers still work.",
                       evidence=evidence, fix=_fix(ctx, "net.ipv4.ip_forward"), key="forwarding-off")
    else:
        yield ctx.ok("Host forwards IPv4 (net.ipv4.ip_forward=1)", evidence=evidence, key="forwarding-on")
    if ctx.netns.facts.has_global_v6():
        v6 = ctx.host.sysctl("net.ipv6.conf.all.forwarding")
        v6_evidence = {"net.ipv6.conf.all.forwarding": v6, "host_netns": ctx.host.path}
        if v6 != "1":
            yield ctx.fail("Host does not forward IPv6 though the target has a global IPv6 address",
                           detail=f"net.ipv6.conf.all.forwarding={v6}: IPv6 connections beyond this host fail, and "
                                  "clients that prefer IPv6 (happy eyeballs aside) hang first.",
                           evidence=v6_evidence, fix=_fix(ctx, "net.ipv6.conf.all.forwarding"), key="forwarding6-off")
        else:
            yield ctx.ok("Host forwards IPv6 (net.ipv6.conf.all.forwarding=1)", evidence=v6_evidence, key="forwarding6-on")
