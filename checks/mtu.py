from __future__ import annotations

import ipaddress
from typing import Iterator

from netdoctor.checks._endpoints import endpoint_address
from netdoctor.context import CheckContext
from netdoctor.dockerapi import DockerUnavailable
from netdoctor.facts import pathmtu, resolvconf
from netdoctor.facts.docker import NetworkInfo
from netdoctor.facts.namespace import Link
from netdoctor.facts.overlay import VXLAN_OVERHEAD
from netdoctor.fixes import merge_daemon_json
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.probes import concurrently, pmtu
from netdoctor.registry import check

MAX_DESTINATIONS = 4
TCP_IP_HEADERS = 40  # an MSS is the MTU minus the IPv4 (20) and TCP (20) headers


def _network_of(ctx: CheckContext, link: Link) -> NetworkInfo | None:
    for attachment, network in ctx.networks():
        if attachment.mac and attachment.mac.lower() == link.address.lower():
            return network
    return None


def _has_mss_clamp(ctx: CheckContext) -> bool:
    """The host clamps TCP MSS somewhere (iptables TCPMSS, nftables `maxseg size set`)."""
    return any("TCPMSS" in rule.text or "maxseg size set" in rule.text for rule in ctx.host.firewall.rules(4))


def _fix(ctx: CheckContext, link: Link, network: NetworkInfo | None, limit: int, egress_dev: str,
         mss: int | None = None) -> Fix:
    """Give the target's network the MTU `limit`; the MSS clamp as a stopgap: to the host's path MTU, or to
    `mss` when the small hop is beyond the host (which then knows nothing of it)."""
    clamp_to = f"--set-mss {mss}" if mss else "--clamp-mss-to-pmtu"
    # the stopgap is an alternative: commented, so pasting the whole fix applies only the real one
    clamp = "# or, as a stopgap for TCP only: " + ctx.on_host(
        f"iptables -t mangle -A FORWARD -o {egress_dev} -p tcp --tcp-flags SYN,RST SYN -j TCPMSS {clamp_to}")
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


@check(id="mtu", title="Interface MTU fits the host's egress path and the path beyond", scope=Scope.NAMESPACE,
       severity=Severity.HIGH, needs={Need.ROOT, Need.NETNS, Need.HOST_NETNS})
def mtu(ctx: CheckContext) -> Iterator[Finding]:
    """Each interface of the target must not be bigger than the path its packets take, to the host's uplink and beyond.

    Docker gives bridge networks an MTU of 1500 whatever the uplink has. When the host's egress path
    (the device and route of its default route) is smaller, e.g. 1400 or 1450 on cloud VMs, VPNs and
    nested overlays, full-size packets from the container are dropped or need fragmenting: ping and
    small requests work, but TLS handshakes, large downloads and `apt-get` hang. Overlay (VXLAN)
    interfaces need 50 bytes of headroom below the underlay. A container veth larger than its host
    bridge is a second, local mismatch.

    A hop beyond the host can be smaller still (a VPN, a cloud tunnel, a misconfigured router) with every
    MTU on the host right. So when you name an endpoint beyond the host (`--probe HOST:PORT`, a `--peer` on
    another host), netdoctor measures the path MTU that really passes to it and to the target's
    nameservers beyond the host: DF-bit ICMP echoes from inside the target, a binary search of about a
    dozen packets bounded by --timeout. Below the interface MTU with no ICMP "fragmentation needed" coming
    back it fails as a path MTU black hole (path MTU discovery cannot work: TLS and uploads hang, DNS
    over TCP times out); when a router does answer, it says which router and what MTU. Without such an
    endpoint nothing is sent. What the target's kernel already learned is read as well: path MTUs cached
    from earlier "fragmentation needed" messages (`ip route show cache`) and its FragFails and ICMP
    destination-unreachable counters (/proc/net/snmp of its namespace).

    Fix: set the MTU Docker uses (daemon.json "mtu" for the default bridge,
    `--opt com.docker.network.driver.mtu=N` or compose driver_opts for user networks), or clamp TCP MSS
    on the host (`iptables -t mangle ... -j TCPMSS --clamp-mss-to-pmtu`, or `--set-mss N-40` for a small
    hop beyond the host, which the host cannot know of), which helps TCP only.
    """
    if ctx.is_host_namespace:
        yield ctx.info("Target uses the host's own interfaces: no container MTU to compare", key="host-stack")
        return
    host = ctx.host.facts
    defaults = host.default_routes()
    if not defaults:
        yield ctx.info("Host has no default route: no egress path to compare against",
                       evidence={"host_netns": ctx.host.path}, key="no-host-default-route")
        return
    egress = defaults[0]
    egress_link = host.egress_link()
    egress_dev = egress_link.name if egress_link else "?"
    egress_mtu = host.egress_mtu(egress)
    if egress_mtu is None:  # a multipath or nexthop-object default route names no single device
        yield ctx.info("The host's default route has no single egress device: its MTU cannot be compared",
                       evidence={"host_netns": ctx.host.path, "gateway": egress.gateway}, key="multipath-egress")
        return
    interfaces = [l for l in ctx.netns.facts.links if not l.is_loopback and l.up]
    if not interfaces:
        yield ctx.info("Target has no interface besides loopback", key="no-interface")
        return
    # what the target's kernel knew before anything was sent, then the DF searches
    learned = {e.destination: e for e in ctx.netns.read(pathmtu.learned)}
    counters = ctx.netns.read(pathmtu.counters)
    measured = _measure(ctx)
    for link in interfaces:
        yield _interface(ctx, link, egress, egress_dev, egress_mtu,
                         [r for address, out, r in measured if out.index == link.index
                          and (host.route_to(address) or egress).oif == egress.oif])
        yield from _bridge_mismatch(ctx, link)
    for address, link, result in measured:
        yield _path(ctx, link, result, egress_dev, counters, learned.get(address))
    for entry in learned.values():
        yield from _learned(ctx, entry, {address for address, _, _ in measured})


def _interface(ctx: CheckContext, link: Link, egress, egress_dev: str, egress_mtu: int,
               measured: list[pmtu.PmtuResult]) -> Finding:
    """The interface against the host's egress path; `measured`: searches that left by both."""
    network = _network_of(ctx, link)
    key = f"mtu:{link.name}"
    if network is not None and (network.internal or network.driver in ("null", "host")):
        return ctx.ok(f"{link.name}: network {network.name} does not leave the host; MTU {link.mtu} is fine", key=key)
    if link.kind in ("macvlan", "ipvlan"):
        # no host routing involved: frames leave by the parent, whose MTU the kernel already caps this one to
        return ctx.ok(f"{link.name}: {link.kind} traffic leaves directly by its parent interface; MTU {link.mtu} "
                      "is within the parent's", evidence={"interface": link.name, "interface_mtu": link.mtu}, key=key)
    overlay = network is not None and network.driver == "overlay"
    limit = egress_mtu - VXLAN_OVERHEAD if overlay else egress_mtu
    evidence = {"interface": link.name, "interface_mtu": link.mtu, "egress_device": egress_dev,
                "egress_mtu": egress_mtu, "limit": limit, "network": network.name if network else None}
    if link.mtu <= limit:
        return ctx.ok(f"{link.name} MTU {link.mtu} fits the egress path ({egress_dev}, MTU {egress_mtu})",
                      evidence=evidence, key=key)
    clamped = _has_mss_clamp(ctx)
    evidence["tcp_mss_clamp"] = clamped
    if measured:
        evidence["measured_path_mtu"] = {r.destination: r.largest_passed for r in measured}
    reason = (f"{link.name} MTU {link.mtu} is larger than the host's egress path {egress_dev} "
              f"(MTU {egress_mtu}{', minus 50 for VXLAN' if overlay else ''})")
    detail = ("Full-size packets from the target are dropped or fragmented on the way out: small requests work, "
              "TLS handshakes and large transfers stall.")
    fix = _fix(ctx, link, network, limit, egress_dev)
    key = f"mtu-mismatch:{link.name}"
    if any(r.answered and r.smallest_failed is None for r in measured):  # full-size DF packets did cross it
        return ctx.warn(reason, detail="DF packets of the full size passed the egress path anyway (measured_path_mtu), "
                        "so the static comparison may overstate it; lower the MTU to be safe.",
                        evidence=evidence, fix=fix, key=key)
    if clamped:
        return ctx.warn(reason, detail=detail + " A TCPMSS clamp on the host saves TCP; UDP and ICMP remain affected.",
                        evidence=evidence, fix=fix, key=key)
    return ctx.fail(reason, detail=detail, evidence=evidence, fix=fix, key=key)


def _destinations(ctx: CheckContext) -> list[str]:
    """Where to measure: the endpoints the user named (--probe, --peer) that lie beyond the host (reached
    through a gateway, not one of the host's own addresses: on the target's own link the interface MTU is
    all there is) and, once there is one, the target's nameservers beyond the host. None: nothing is sent."""
    named = []
    for host in [spec.rpartition(":")[0] for spec in ctx.options.probes] + list(ctx.options.peer_names):
        try:
            address, _ = endpoint_address(ctx, host)
        except DockerUnavailable:  # a container name without Docker: reachability says so
            address = None
        if address:
            named.append(address)
    host_addresses = {a.address for a in ctx.host.facts.addresses}

    def beyond(address: str) -> bool:
        ip = ipaddress.ip_address(address)
        if ip.version != 4 or ip.is_loopback or address in host_addresses:
            return False
        if any(ip in a.interface.network for a in ctx.netns.facts.addresses):
            return False  # on one of the target's own links
        route = ctx.netns.facts.route_to(address)
        return route is not None and bool(route.gateway)

    chosen = [a for a in dict.fromkeys(named) if beyond(a)]
    if chosen:
        chosen += [a for a in _nameservers(ctx) if a not in chosen and beyond(a)]
    return chosen[:MAX_DESTINATIONS]


def _nameservers(ctx: CheckContext) -> list[str]:
    path = resolvconf.path_of(ctx.target)
    try:
        conf = ctx.session.fact(resolvconf.read, path) if path else None
    except resolvconf.ResolvConfUnavailable:
        return []
    return list(conf.nameservers[:resolvconf.LIBC_MAXNS]) if conf else []


def _measure(ctx: CheckContext) -> list[tuple[str, Link, pmtu.PmtuResult]]:
    """A path-MTU search to every destination at once, each bounded by --timeout."""
    facts = ctx.netns.facts
    jobs = []
    for address in _destinations(ctx):
        route = facts.route_to(address)
        link = facts.link(index=route.oif)
        if link is not None:
            jobs.append((address, link, facts.egress_mtu(route) or link.mtu))
    results = concurrently(lambda job: pmtu.search(ctx.netns, job[0], job[2], ctx.options.timeout), jobs)
    return [(address, link, result) for (address, link, _), result in zip(jobs, results)]


def _where(ctx: CheckContext, router: str) -> str:
    if any(a.address == router for a in ctx.host.facts.addresses):
        return f"the host itself ({router}, its egress path)"
    return f"the router {router}"


def _path(ctx: CheckContext, link: Link, result: pmtu.PmtuResult, egress_dev: str, counters: dict,
          learned: pathmtu.LearnedMtu | None) -> Finding:
    """What the search to one destination found."""
    to = result.destination
    evidence = {"interface": link.name, "interface_mtu": link.mtu, **result.to_evidence(), "kernel_counters": counters}
    if learned is not None:
        evidence["kernel_learned_mtu"] = learned.to_evidence()
    network = _network_of(ctx, link)
    full = result.answered and result.smallest_failed is None
    # a router's message explains the limit, unless sizes below its MTU are lost too (a black hole further on)
    told = bool(result.reported_mtu) and not full and (result.largest_passed or result.reported_mtu) >= result.reported_mtu
    if told:
        size = result.largest_passed or result.reported_mtu
        evidence["path_mtu"] = size
        where = _where(ctx, result.reported_by)
        silent = "" if result.answered else f" ({to} itself did not answer echo; the router's word is all there is)"
        return ctx.warn(f"Path MTU to {to} is {size} bytes, below {link.name}'s {link.mtu}: "
                        f"{result.reported_by} reports 'fragmentation needed'",
                        detail=f"The smaller MTU is at {where}{silent}. Its ICMP 'fragmentation needed' comes back, so TCP "
                               "adapts (path MTU discovery) at the cost of a retransmission; traffic whose ICMP is "
                               "filtered on the way back, and full-size UDP (large DNS answers, QUIC, VPNs), is lost.",
                        evidence=evidence, fix=_fix(ctx, link, network, size, egress_dev), key=f"pmtu-smaller:{to}")
    if not result.answered:
        return ctx.info(f"{to} does not answer ICMP echo: its path MTU was not measured",
                        detail=result.detail or "Echo filtered on the way or at the far end, or the path is down "
                                                "(the other checks say which).",
                        evidence=evidence, key=f"pmtu-unmeasured:{to}")
    if full:
        return ctx.ok(f"Path to {to}: DF packets of the full {result.ceiling} bytes pass end to end", evidence=evidence,
                      key=f"pmtu:{to}")
    passed, lost = result.largest_passed, result.smallest_failed
    evidence["path_mtu"] = passed
    if result.consistent is None:
        return ctx.info(f"Path to {to}: {lost} bytes were lost once, {passed} came back; not confirmed within --timeout",
                        detail=f"The round trip to {to} is slow enough that --timeout {ctx.options.timeout:g} s left no time "
                               "to send both sizes again, and one lost packet does not tell a size limit from loss. "
                               "Run again with a larger --timeout to measure it.",
                        evidence=evidence, key=f"pmtu-unconfirmed:{to}")
    if not result.consistent:
        return ctx.info(f"Path to {to} loses packets at random: sizes above {passed} bytes were lost once, then not",
                        detail="The search cannot tell a size limit from loss; run again, or look at the path's loss.",
                        evidence=evidence, key=f"pmtu-unstable:{to}")
    between = "" if result.complete else f" (the search ran out of --timeout between {passed} and {lost})"
    return ctx.fail(f"Path MTU black hole toward {to}: {passed} bytes pass, {lost} do not",
                    detail=f"DF packets up to {passed} bytes reach {to} and come back, larger ones vanish{between}, and no "
                           f"router sends 'fragmentation needed': path MTU discovery cannot work, though {link.name} "
                           f"({link.mtu}) and the host's path are bigger. Small requests succeed; TLS handshakes, uploads "
                           "and DNS over TCP hang. The smaller hop is beyond the host (a VPN or tunnel, or a router "
                           "that filters ICMP).",
                    evidence=evidence, fix=_fix(ctx, link, network, passed, egress_dev, mss=passed - TCP_IP_HEADERS),
                    key=f"pmtu-blackhole:{to}")


def _learned(ctx: CheckContext, entry: pathmtu.LearnedMtu, measured: set[str]) -> Iterator[Finding]:
    """A path MTU the target's kernel cached from an earlier 'fragmentation needed' (nothing sent)."""
    route = ctx.netns.facts.route_to(entry.destination)
    link = ctx.netns.facts.link(index=route.oif) if route and route.oif else None
    if entry.destination in measured or link is None or entry.mtu >= link.mtu:
        return
    yield ctx.info(f"{ctx.target.label}'s kernel learned a path MTU of {entry.mtu} toward {entry.destination}",
                   detail=f"A router's 'fragmentation needed' lowered it from {link.name}'s {link.mtu} (for "
                          f"{entry.expires_s} s more): path MTU discovery works toward it, and a hop there is smaller.",
                   evidence={"interface": link.name, "interface_mtu": link.mtu, **entry.to_evidence()},
                   key=f"pmtu-learned:{entry.destination}")


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
                               (ctx.in_target(f"ip link set dev {link.name} mtu {smallest.mtu}"),)),
                       key=f"bridge-mtu:{link.name}")
