from __future__ import annotations

from typing import Iterator

from netdoctor.context import CheckContext
from netdoctor.facts.docker import NetworkInfo
from netdoctor.facts.namespace import Link
from netdoctor.facts.overlay import VXLAN_OVERHEAD
from netdoctor.fixes import merge_daemon_json
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.probes import pmtu
from netdoctor.registry import check



def _network_of(ctx: CheckContext, link: Link) -> NetworkInfo | None:
    for attachment, network in ctx.networks():
        if attachment.mac and attachment.mac.lower() == link.address.lower():
            return network
    return None


def _has_mss_clamp(ctx: CheckContext) -> bool:
    rules = ctx.host.firewall
    return any("TCPMSS" in r.target for r in rules.rules if r.table == "mangle")


def _fix(ctx: CheckContext, link: Link, network: NetworkInfo | None, limit: int, egress_dev: str) -> Fix:
    # the stopgap is an alternative: commented, so pasting the whole fix applies only the real one
    clamp = "# or, as a stopgap for TCP only: " + ctx.on_host(
        f"iptables -t mangle -A FORWARD -o {egress_dev} -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu")
    if network is None:
        return Fix(f"Lower {link.name}'s MTU to {limit} (or clamp TCP MSS on the host as a stopgap).",
                   (ctx.in_target(f"ip link set dev {link.name} mtu {limit}"), clamp))
    if network.is_default_bridge:
        return Fix(f"Set the default bridge's MTU to {limit} in /etc/docker/daemon.json, restart Docker and recreate "
                   f"the container; or clamp TCP MSS on the host as a stopgap (UDP stays affected).",
                   (merge_daemon_json({"mtu": limit}),
                    "sudo systemctl restart docker", clamp))
    return Fix(f"Recreate network {network.name} with MTU {limit} (compose: driver_opts "
               f"com.docker.network.driver.mtu: {limit}); or clamp TCP MSS on the host as a stopgap.",
               (f"docker network create --driver {network.driver} --opt com.docker.network.driver.mtu={limit} "
                f"{network.name}-mtu{limit}",
                f"docker network disconnect {network.name} {ctx.target_name}",
                f"docker network connect {network.name}-mtu{limit} {ctx.target_name}", clamp))


@check(id="mtu", title="Interface MTU fits the host's egress path", scope=Scope.NAMESPACE, severity=Severity.HIGH,
       needs={Need.ROOT, Need.NETNS, Need.HOST_NETNS})
def mtu(ctx: CheckContext) -> Iterator[Finding]:
    """Each interface of the target must not be bigger than the path its packets leave the host by.

    Docker gives bridge networks an MTU of 1500 whatever the uplink has. When the host's egress path
    (the device and route of its default route) is smaller, e.g. 1400 or 1450 on cloud VMs, VPNs and
    nested overlays, full-size packets from the container are dropped or need fragmenting: ping and
    small requests work, but TLS handshakes, large downloads and `apt-get` hang. Overlay (VXLAN)
    interfaces need 50 bytes of headroom below the underlay. A container veth larger than its host
    bridge is a second, local mismatch.

    A suspected mismatch is then probed: DF-bit ICMP echoes of growing size from inside the target to an
    address of its own config or one you named (--probe HOST:PORT, --peer), and the largest that made the
    round trip goes into the evidence. Only a destination the host routes out through the egress device
    can confirm it; the gateway of a Docker bridge is the host's own bridge address, so a probe to it
    only covers the target -> host hop, and the evidence says so.

    Fix: set the MTU Docker uses (daemon.json "mtu" for the default bridge,
    `--opt com.docker.network.driver.mtu=N` or compose driver_opts for user networks), or clamp TCP MSS
    on the host (`iptables -t mangle ... -j TCPMSS --clamp-mss-to-pmtu`), which helps TCP only.
    """
    if ctx.is_host_namespace:
        yield ctx.info("Target uses the host's own interfaces: no container MTU to compare")
        return
    host = ctx.host.facts
    defaults = host.default_routes()
    if not defaults:
        yield ctx.info("Host has no default route: no egress path to compare against",
                       evidence={"host_netns": ctx.host.path})
        return
    egress = defaults[0]
    egress_link = host.link(index=egress.oif)
    egress_dev = egress_link.name if egress_link else "?"
    egress_mtu = host.egress_mtu(egress)
    if egress_mtu is None:  # a multipath or nexthop-object default route names no single device
        yield ctx.info("The host's default route has no single egress device: its MTU cannot be compared",
                       evidence={"host_netns": ctx.host.path, "gateway": egress.gateway})
        return
    interfaces = [l for l in ctx.netns.facts.links if not l.is_loopback and l.up]
    if not interfaces:
        yield ctx.info("Target has no interface besides loopback")
        return
    for link in interfaces:
        network = _network_of(ctx, link)
        if network is not None and (network.internal or network.driver in ("null", "host")):
            yield ctx.ok(f"{link.name}: network {network.name} does not leave the host; MTU {link.mtu} is fine")
            continue
        if link.kind in ("macvlan", "ipvlan"):
            # no host routing involved: frames leave by the parent, whose MTU the kernel already caps this one to
            yield ctx.ok(f"{link.name}: {link.kind} traffic leaves directly by its parent interface; MTU {link.mtu} "
                         "is within the parent's", evidence={"interface": link.name, "interface_mtu": link.mtu})
            continue
        overlay = network is not None and network.driver == "overlay"
        limit = egress_mtu - VXLAN_OVERHEAD if overlay else egress_mtu
        evidence = {"interface": link.name, "interface_mtu": link.mtu, "egress_device": egress_dev,
                    "egress_mtu": egress_mtu, "limit": limit, "network": network.name if network else None}
        if link.mtu > limit:
            clamped = _has_mss_clamp(ctx)
            evidence["tcp_mss_clamp"] = clamped
            probe = pmtu.confirm(ctx, link, egress)
            evidence.update(probe.to_evidence())
            reason = (f"{link.name} MTU {link.mtu} is larger than the host's egress path {egress_dev} "
                      f"(MTU {egress_mtu}{', minus 50 for VXLAN' if overlay else ''})")
            detail = ("Full-size packets from the target are dropped or fragmented on the way out: small requests work, "
                      "TLS handshakes and large transfers stall.")
            fix = _fix(ctx, link, network, limit, egress_dev)
            if probe.verdict == "not_confirmed":  # full-size DF packets did cross the egress device
                yield ctx.warn(reason, detail="The DF-bit probe saw full-size packets pass the egress path anyway, so "
                               "the static comparison may overstate it; lower the MTU to be safe.",
                               evidence=evidence, fix=fix)
            elif clamped:
                yield ctx.warn(reason, detail=detail + " A TCPMSS clamp on the host saves TCP; UDP and ICMP remain affected.",
                               evidence=evidence, fix=fix)
            else:
                yield ctx.fail(reason, detail=detail, evidence=evidence, fix=fix)
        else:
            yield ctx.ok(f"{link.name} MTU {link.mtu} fits the egress path ({egress_dev}, MTU {egress_mtu})", evidence=evidence)
        yield from _bridge_mismatch(ctx, link)


def _bridge_mismatch(ctx: CheckContext, link: Link) -> Iterator[Finding]:
    """The host end of the target's veth and the bridge it hangs on should not be smaller than the target side."""
    if link.kind != "veth" or link.peer_index is None:
        return
    host = ctx.host.facts
    peer = host.link(index=link.peer_index)
    if peer is None or peer.kind != "veth" or peer.peer_index != link.index:
        return  # the peer lives in another namespace than the one we treat as host
    bridge = host.link(index=peer.master) if peer.master else None
    smallest = min((l for l in (peer, bridge) if l), key=lambda l: l.mtu)
    if smallest.mtu < link.mtu:
        yield ctx.warn(f"{link.name} MTU {link.mtu} is larger than its host side {smallest.name} (MTU {smallest.mtu})",
                       detail="Frames larger than the host side are dropped at the bridge.",
                       evidence={"interface": link.name, "interface_mtu": link.mtu, "host_side": smallest.name,
                                 "host_side_mtu": smallest.mtu},
                       fix=Fix("Give both ends the same MTU.",
                               (ctx.in_target(f"ip link set dev {link.name} mtu {smallest.mtu}"),)))
