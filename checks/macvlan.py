from __future__ import annotations

import ipaddress
from typing import Iterator

from netdoctor.context import CheckContext
from netdoctor.facts import device
from netdoctor.facts.docker import Attachment, NetworkInfo
from netdoctor.facts.namespace import Link
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.probes import icmp
from netdoctor.registry import check

DRIVERS = ("macvlan", "ipvlan")
ECHO_SIZE = 84
IFNAMSIZ = 15


def _shim_name(network: NetworkInfo) -> str:
    return f"{network.name[:IFNAMSIZ - 5]}-shim"


def _shim_fix(ctx: CheckContext, network: NetworkInfo, parent: str) -> Fix:
    subnet = ipaddress.ip_network(network.subnets[0]) if network.subnets else None
    shim = _shim_name(network)
    spare = f"{subnet[-2]}" if subnet else "SPARE_ADDRESS"  # the subnet's last usable address, kept out of Docker's IPAM
    target = str(subnet) if subnet else "SUBNET"
    return Fix(f"Give the host its own macvlan interface on {parent} (a 'shim') and route the network's subnet through "
               f"it. {spare} must be unused: keep Docker from handing it out with "
               f"`--aux-address host={spare}` when (re)creating {network.name}.",
               (ctx.on_host(f"ip link add {shim} link {parent} type macvlan mode bridge"),
                ctx.on_host(f"ip addr add {spare}/32 dev {shim}"),
                ctx.on_host(f"ip link set {shim} up"),
                ctx.on_host(f"ip route add {target} dev {shim}")))


def _parent(ctx: CheckContext, network: NetworkInfo, attachment: Attachment, parent_name: str) -> tuple[Link | None, list[Finding]]:
    host = ctx.host.facts
    parent = host.link(name=parent_name)
    evidence = {"network": network.name, "driver": network.driver, "parent": parent_name, "host_netns": ctx.host.path}
    if parent is None:
        lost = ""
        if ctx.target.netns_path and not any(a.address == attachment.ip for a in ctx.netns.facts.addresses):
            lost = f" The kernel deleted {ctx.target_name}'s interface on {network.name} ({attachment.ip}) with it."
        return None, [ctx.fail(
            f"Parent interface {parent_name} of {network.driver} network {network.name} does not exist on the host",
            detail=f"{network.driver} interfaces hang off their parent; without it the network carries nothing.{lost}",
            evidence=evidence,
            fix=Fix(f"Bring {parent_name} back (a renamed NIC, a VLAN sub-interface that was removed) and reconnect the "
                    f"container, or recreate the network on an existing parent.",
                    (ctx.on_host("ip -br link"),
                     f"docker network disconnect {network.name} {ctx.target_name}",
                     f"docker network connect {network.name} {ctx.target_name}")),
            key=f"parent-missing:{network.name}")]
    dev = ctx.host.read(device.read, parent_name)
    evidence.update({"parent_up": parent.up, "operstate": parent.operstate, "promiscuity": parent.promiscuity,
                     "parent_driver": dev.driver or None, "wireless": dev.wireless, "mtu": parent.mtu})
    findings = []
    if not parent.up:
        findings.append(ctx.fail(
            f"Parent interface {parent_name} of network {network.name} is down",
            detail=f"Every {network.driver} interface on {parent_name} is down with it: {ctx.target_name} reaches nothing "
                   f"on {network.name}, not even its gateway.",
            evidence=evidence, fix=Fix(f"Bring {parent_name} up (and make it come up at boot).",
                                       (ctx.on_host(f"ip link set {parent_name} up"),)),
            key=f"parent-down:{network.name}"))
    elif parent.operstate not in ("UP", "UNKNOWN"):
        findings.append(ctx.fail(
            f"Parent interface {parent_name} of network {network.name} has no carrier (operstate {parent.operstate})",
            detail="The interface is enabled but its link is down: cable, switch port, or the far end of a veth/bond.",
            evidence=evidence, fix=Fix(f"Restore the link of {parent_name}.", (ctx.on_host(f"ip link show {parent_name}"),)),
            key=f"parent-no-carrier:{network.name}"))
    if dev.wireless and network.driver == "macvlan":
        findings.append(ctx.fail(
            f"Parent interface {parent_name} of macvlan network {network.name} is wireless",
            detail="Wi-Fi access points accept frames only from the MAC address that associated; macvlan gives every "
                   "container its own MAC, so their traffic is dropped. ipvlan (L2) shares the parent's MAC and works.",
            evidence=evidence,
            fix=Fix(f"Recreate {network.name} as an ipvlan network on {parent_name}.",
                    (f"docker network create -d ipvlan -o parent={parent_name} -o ipvlan_mode=l2 "
                     + " ".join(f"--subnet {s}" for s in network.subnets) + f" {network.name}-ipvlan",))))
    if not findings:
        findings.append(ctx.ok(
            f"Parent {parent_name} of {network.name} is up (operstate {parent.operstate}, promiscuity {parent.promiscuity}"
            f"{', wired' if dev.wireless is False else ''})",
            detail="On a VM the hypervisor must also accept frames for the containers' MAC addresses "
                   "(VMware: promiscuous mode and forged transmits; clouds usually refuse them).",
            evidence=evidence))
    return parent, findings


def _host_to_container(ctx: CheckContext, network: NetworkInfo, attachment: Attachment, parent: Link) -> Finding:
    """macvlan children cannot talk to their own parent: the host needs a shim interface of its own."""
    host = ctx.host.facts
    route = host.route_to(attachment.ip)
    via = host.link(index=route.oif) if route and route.oif else None
    evidence = {"container_ip": attachment.ip, "network": network.name, "parent": parent.name,
                "host_route": {"dst": route.dst, "dev": via.name if via else None, "gateway": route.gateway} if route else None}
    shim = via if via and via.kind in DRIVERS and via.peer_index == parent.index else None
    if shim is None and via is not parent:
        # The host would send it elsewhere (its default route): nothing to probe, the answer is known.
        return ctx.info(f"The host cannot reach {ctx.target_name} ({attachment.ip}) on {network.name}: it has no shim "
                        f"interface on {parent.name}",
                        detail=f"By design the kernel passes no traffic between a {network.driver} parent and its "
                               f"children: other machines on the LAN reach {ctx.target_name}, this host does not.",
                        evidence=evidence, fix=_shim_fix(ctx, network, parent.name))
    result = ctx.host.echo(attachment.ip, [ECHO_SIZE], ctx.options.timeout)
    evidence["echo_answered"] = bool(result.answered)
    if shim is not None and result.answered:
        return ctx.ok(f"The host reaches {ctx.target_name} ({attachment.ip}) through its shim {shim.name}", evidence=evidence)
    if shim is not None:
        return ctx.warn(f"The host has a shim {shim.name} on {parent.name}, yet {ctx.target_name} ({attachment.ip}) "
                        f"does not answer it", detail="Check the shim is up, has an address, and that the container "
                        "accepts ICMP.", evidence=evidence, fix=_shim_fix(ctx, network, parent.name))
    return ctx.warn(f"The host cannot reach {ctx.target_name} ({attachment.ip}): its route goes out the parent "
                    f"{parent.name} itself",
                    detail=f"The host has an address on {parent.name}'s subnet, so it tries to reach the container "
                           f"through the parent, and the kernel never delivers a parent's own frames to its "
                           f"{network.driver} children. Other machines on the LAN are not affected.",
                    evidence=evidence, fix=_shim_fix(ctx, network, parent.name))


def _gateway(ctx: CheckContext, network: NetworkInfo, attachment: Attachment, parent: Link | None) -> Finding | None:
    if not attachment.gateway or not ctx.target.netns_path or network.internal:
        return None
    result = ctx.netns.echo(attachment.gateway, [ECHO_SIZE], ctx.options.timeout)
    arp = ctx.netns.neighbour_state(attachment.gateway)
    evidence = {"gateway": attachment.gateway, "echo_answered": bool(result.answered), "arp": arp,
                "parent": parent.name if parent else None}
    if result.answered or arp in icmp.NUD_ANSWERED:
        return ctx.ok(f"Gateway {attachment.gateway} answers {ctx.target_name} over {network.name}"
                      + ("" if result.answered else " (ARP only; it ignores ping)"), evidence=evidence)
    cause = (f"the parent {parent.name} is down" if parent is not None and not parent.up else
             "the parent interface is missing" if parent is None else
             f"nothing on {parent.name}'s segment answers ARP for it: wrong subnet/gateway, another VLAN, or a "
             "switch/hypervisor dropping the containers' MAC addresses")
    return ctx.fail(f"Gateway {attachment.gateway} of {network.name} does not answer {ctx.target_name}",
                    detail=f"Neither ICMP nor ARP came back: {cause}.", evidence=evidence,
                    fix=Fix("Fix the parent first (findings above); then check the gateway is on that segment.",
                            (ctx.in_target(f"ip neigh show {attachment.gateway}"),
                             f"docker network inspect {network.name} --format '{{{{json .IPAM.Config}}}}'")),
                    key=f"gateway-silent:{network.name}")


@check(id="macvlan", title="macvlan/ipvlan parent interface carries the container's traffic", scope=Scope.CONTAINER,
       severity=Severity.HIGH, needs={Need.ROOT, Need.DOCKER, Need.HOST_NETNS})
def macvlan(ctx: CheckContext) -> Iterator[Finding]:
    """A macvlan or ipvlan network works only through a healthy parent interface, and never to its own host.

    For each macvlan/ipvlan network of the container it looks, in the host's namespace, at the parent
    interface named by the network's `parent` option: that it exists, is up and has a carrier, is not
    wireless (sysfs /sys/class/net/PARENT/wireless or phy80211), and its promiscuity. From the
    container's namespace it then pings the network's gateway (ARP counts as an answer).

    It also explains the surprise every macvlan user meets: the host cannot reach its own macvlan
    containers. The kernel does not deliver frames between a parent and its macvlan children, so the
    host needs a macvlan interface of its own on the same parent (a "shim") with a route to the subnet.
    When the host's route to the container goes through such a shim, it pings the container through it;
    when it goes out the parent itself, the ping shows the failure; otherwise (default route) nothing is
    sent, since the answer is known.

    Fix: `ip link set PARENT up`; recreate the network on an existing, wired parent (or use ipvlan on
    Wi-Fi); for host access, `ip link add NAME-shim link PARENT type macvlan mode bridge`, give it a
    spare address of the subnet and `ip route add SUBNET dev NAME-shim`.
    """
    networks = [(a, n) for a, n in ctx.networks() if n.driver in DRIVERS]
    if not networks:
        yield ctx.info(f"{ctx.target_name} is on no macvlan or ipvlan network")
        return
    for attachment, network in networks:
        parent_name = network.options.get("parent")
        if not parent_name:
            yield ctx.info(f"{network.driver} network {network.name} has no parent: Docker made an internal dummy "
                           f"link, so it only connects containers of this host", evidence={"network": network.name})
            continue
        parent, findings = _parent(ctx, network, attachment, parent_name)
        yield from findings
        if not ctx.target.netns_path:
            yield ctx.info(f"{ctx.target_name} is not running: gateway and host reachability not tested",
                           detail=ctx.target.unavailable)
            continue
        gateway = _gateway(ctx, network, attachment, parent)
        if gateway:
            yield gateway
        if parent is not None and parent.up and attachment.ip:
            yield _host_to_container(ctx, network, attachment, parent)
