"""Shared by the checks that ask the firewall model about a target's traffic (forward_policy, ports, firewall,
reachability/icc/dns through _layers): the flows a bridge network's traffic consists of, whether Docker's own
rules should be there (and are), who owns the rule that decides, and the one fix builder (`unblock_fix`), in
the syntax of the backend the deciding rule lives in.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from netdoctor.context import CheckContext
from netdoctor.dockerapi import DockerUnavailable
from netdoctor.facts import dockerd
from netdoctor.facts.docker import NetworkInfo
from netdoctor.facts.engine import NFTABLES as NFT_BACKEND, EngineFacts
from netdoctor.firewall import DROPPING, FORWARDED, NFTABLES, Chain, Firewall, Packet, Path, Rule, Step, follow
from netdoctor.firewall import commands, docker
from netdoctor.model import Fix

UNKNOWN_UPLINK = "(uplink)"   # no default route: an interface that is none of the host's bridges
VPN_KINDS = ("tun", "wireguard", "ipip", "gre", "sit", "ip6tnl", "vti", "xfrm")
VPN_PREFIXES = ("tailscale", "wg", "tun", "zt", "nebula", "ipsec", "vti", "ppp", "utun")
BRIDGE_FLOW = ("iif", "oif")  # a bridge's traffic, as forward_policy's fixes name it: by interfaces only
# IPv6 space that is never the far end of a connection (IPv4-compatible and IPv4-mapped addresses, RFC 4291;
# 6to4, deprecated by RFC 7526): firewalld rejects forwarding to it on every host, which is no partial drop
NEVER_FAR_V6 = ("::/96", "::ffff:0:0/96", "2002::/16")


@dataclass(frozen=True)
class Endpoint:
    """One of the target's addresses behind a host device: the thing whose traffic the host forwards."""

    device: str                   # docker0, br-..., br0, a routed veth
    family: int
    address: str
    subnet: str
    network: NetworkInfo | None   # the Docker network, for container targets

    @property
    def label(self) -> str:
        if self.network:
            return f"network {self.network.name} ({self.device}{', IPv6' if self.family == 6 else ''})"
        return self.device if self.family == 4 else f"{self.device} (IPv6)"

    @property
    def suffix(self) -> str:
        """Key suffix: IPv6 findings are told apart from IPv4 ones."""
        return "6" if self.family == 6 else ""


@dataclass(frozen=True)
class Uplink:
    name: str
    address: str | None


@dataclass(frozen=True)
class Flow:
    """One direction of a kind of connection: the packet as the filter hooks see it (after DNAT), its way
    through them, and the fields of it that a rule exempting or accepting it names."""

    direction: str                # outgoing, replies, requests (to a published port)
    packet: Packet
    path: Path
    fields: tuple[str, ...]


def flow(direction: str, path: Path, fields: tuple[str, ...]) -> Flow:
    packet = path.packet
    # an interface that is only a placeholder is not named in a fix
    named = tuple(f for f in fields if not (f in ("iif", "oif") and getattr(packet, f) == UNKNOWN_UPLINK))
    return Flow(direction, packet, path, named)


def engine_of(ctx: CheckContext) -> EngineFacts | None:
    """The engine's facts when the target is one of its containers, or the host itself (None otherwise: a
    namespace's host need not be any engine's)."""
    if ctx.container is None and ctx.target.kind != "host":
        return None
    try:
        return ctx.docker.engine_facts()
    except (DockerUnavailable, OSError, LookupError):
        return None


def uplink_of(ctx: CheckContext, family: int) -> Uplink:
    host = ctx.host.facts
    wanted = socket.AF_INET if family == 4 else socket.AF_INET6
    link = host.egress_link(wanted) or host.egress_link()
    if link is None:
        return Uplink(UNKNOWN_UPLINK, None)
    addresses = [a for a in host.addresses_of(link.index, wanted) if a.scope == 0]
    return Uplink(link.name, addresses[0].address if addresses else None)


def far_outside(ctx: CheckContext, family: int) -> tuple[str, ...]:
    """Networks the far end of the target's traffic beyond the host does not lie in: the networks of every host
    interface but the uplink (each Docker bridge's subnet among them; the uplink's own network is beyond the
    host: a nameserver or a NAS on the LAN), for a container every Docker network's, and IPv6 space that is never
    a far end. A rule only about those (Docker 28's raw-table DROP for each other container, a rule for the
    target's own subnet) is no rule about the far end."""
    host = ctx.host.facts
    egress = host.egress_link(socket.AF_INET if family == 4 else socket.AF_INET6) or host.egress_link()
    found = {str(a.interface.network) for a in host.addresses
             if a.interface.version == family and (egress is None or a.index != egress.index)}
    if family == 6:
        found |= set(NEVER_FAR_V6)
    if ctx.container is not None:
        try:
            found |= {s for n in ctx.docker.all_networks() for s in n.subnets if (":" in s) == (family == 6)}
        except (DockerUnavailable, OSError):
            pass
    return tuple(sorted(found))


def outgoing(ep: Endpoint, uplink: Uplink, far: tuple[str, ...]) -> Packet:
    """A new connection from the target to anything beyond the host (its address unknown, outside `far`)."""
    return Packet(ep.family, src=ep.address, iif=ep.device, oif=uplink.name, state="new", src_local=False,
                  dst_local=False, far_outside=far or (ep.subnet,), ephemeral=("sport",))


def replies(ep: Endpoint, uplink: Uplink, nat: bool, far: tuple[str, ...]) -> Packet:
    """Answers coming back in through the uplink; when the host NATs the target, they arrive addressed to the
    uplink and conntrack restores the target's address at the dstnat priority."""
    if nat:
        return Packet(ep.family, dst=uplink.address, denat_dst=ep.address, iif=uplink.name, oif=ep.device,
                      state="established", dst_local=True, far_outside=far or (ep.subnet,), ephemeral=("dport",))
    return Packet(ep.family, dst=ep.address, iif=uplink.name, oif=ep.device, state="established", dst_local=False,
                  far_outside=far or (ep.subnet,), ephemeral=("dport",))


def forward_flows(firewall: Firewall, ep: Endpoint, uplink: Uplink, far: tuple[str, ...]) -> dict[str, Flow]:
    """The two directions every connection of the target beyond the host needs."""
    packet = outgoing(ep, uplink, far)
    # whether the host NATs the target decides what its replies look like, dropped on the way out or not
    nat = any(r.action.kind in ("masquerade", "snat") for r in follow(firewall, packet, ("postrouting",)).translations())
    return {"outgoing": flow("outgoing", follow(firewall, packet, FORWARDED), BRIDGE_FLOW),
            "replies": flow("replies", follow(firewall, replies(ep, uplink, nat, far), FORWARDED), BRIDGE_FLOW + ("state",))}


def bridge_here(ctx: CheckContext, device: str) -> bool:
    """The host namespace holds this bridge: it is the engine's namespace, so Docker's rules belong here."""
    return ctx.host.facts.link(name=device) is not None


def docker_accepts(firewall: Firewall, packet: Packet, bridges: set[str]) -> bool:
    """Docker's own rules accept the packet in the forward hook, others' drops aside: are Docker's rules for it
    there (and reached), whatever else happens to it?"""
    def foreign_drop(rule) -> bool:
        return rule.action.kind in DROPPING and docker.owner(rule, bridges) != "docker"

    path = follow(firewall, packet, ("forward",), ignore=foreign_drop)
    return any(s.verdict == "accept" and s.rule is not None and docker.owner(s.rule, bridges) == "docker"
               for s in path.steps)


def expects_docker_rules(firewall: Firewall, engine: EngineFacts | None, family: int) -> bool:
    """Docker writes rules for this family: always for IPv4; for IPv6 from 27 on (or when it already did)."""
    if family == 4 or (engine is not None and engine.release >= (27, 0)):
        return True
    return firewall.iptables_chain(6, "filter", "DOCKER") is not None or docker.nft_table_present(firewall, 6)


def docker_rules_off(ctx: CheckContext, firewall: Firewall, family: int) -> str:
    """Why Docker writes no firewall rules of this family on this host ("" when it does): dockerd runs with
    --iptables=false / --ip6tables=false (its command line or daemon.json), or, where dockerd cannot be asked,
    the signs of it: no Docker chain or table at all, and a default bridge that does not masquerade (dockerd
    turns masquerading off itself without iptables)."""
    try:
        settings = ctx.session.fact(dockerd.settings, ctx.host.path)
    except OSError:
        settings = dockerd.FirewallSettings()
    if settings.writes_rules(family) is False:
        return f"dockerd runs with --{'ip6tables' if family == 6 else 'iptables'}=false ({settings.source})"
    if settings.source or family == 6 or firewall.iptables_chain(4, "filter", "DOCKER") is not None \
            or docker.nft_table_present(firewall, 4):
        return ""
    try:
        networks = ctx.docker.all_networks()
    except (DockerUnavailable, OSError):
        return ""
    default = next((n for n in networks if n.driver == "bridge" and n.is_default_bridge), None)
    if default is not None and default.options.get(docker.MASQUERADE_OPTION) == "false" and bridge_here(ctx, default.bridge_name):
        return ("dockerd apparently runs with --iptables=false: there is no Docker chain or table at all, and the "
                f"default bridge does not masquerade ({docker.MASQUERADE_OPTION}=false, which dockerd sets without iptables)")
    return ""


def missing_docker_parts(firewall: Firewall, engine: EngineFacts | None, family: int) -> list[str]:
    """Docker's base structure that is gone: chains for the iptables backend, the table for nftables."""
    if engine is not None and engine.backend == NFT_BACKEND:
        return [] if docker.nft_table_present(firewall, family) else [f"table {'ip' if family == 4 else 'ip6'} "
                                                                       f"{docker.NFT_TABLE}"]
    layout = engine.layout if engine is not None else "20.10"
    return docker.missing_chains(firewall, layout, family)


def rules_gone_fix(firewall: Firewall, engine: EngineFacts | None, devices: list[str]) -> tuple[str, Fix]:
    """Why Docker's rules are probably gone, and how to get them back (and keep them)."""
    managers = docker.firewall_managers(firewall, engine is not None and engine.with_firewalld)
    commands_ = ["sudo systemctl restart docker"]
    summary = "Restart Docker: it writes all of its rules again at start (containers with a restart policy come back)."
    if "firewalld" in managers:
        commands_ += [f"sudo firewall-cmd --permanent --zone=docker --add-interface={d}" for d in devices]
        commands_.append("sudo firewall-cmd --reload && sudo systemctl restart docker")
        summary += (" firewalld: keep Docker's bridges in its 'docker' zone permanently, and restart Docker after "
                    "every firewalld reload (Docker 28+ does it by itself).")
    elif "ufw" in managers:
        summary += " ufw: restart Docker after `ufw enable`/`ufw reload`, so Docker's rules are written after ufw's."
    return docker.wiped_by(managers), Fix(summary, tuple(commands_))


def rules_gone(ctx: CheckContext, firewall: Firewall, engine: EngineFacts | None, ep: Endpoint, uplink: Uplink,
               far: tuple[str, ...]) -> bool:
    """Docker's own rules for the endpoint's network belong in this host namespace and do not accept its traffic
    any more (wiped), although Docker writes rules here."""
    return (ep.network is not None and bridge_here(ctx, ep.device) and expects_docker_rules(firewall, engine, ep.family)
            and not docker_accepts(firewall, outgoing(ep, uplink, far), {ep.device})
            and not docker_rules_off(ctx, firewall, ep.family))


def container_endpoint(ctx: CheckContext, device: str, family: int, address: str) -> Endpoint | None:
    """The target container's endpoint on the Docker network whose bridge is `device`, if it has one."""
    for _, network in ctx.networks():
        if network.driver == "bridge" and network.bridge_name == device:
            subnet = next((s for s in network.subnets if (":" in s) == (family == 6)), None)
            if subnet:
                return Endpoint(device, family, address, subnet, network)
    return None


def drop_evidence(step: Step, bridges: set[str]) -> dict:
    who = docker.owner(step.rule or step.chain, bridges)
    return {"decided_by": step.decided_by, "where": (step.rule or step.chain).place,
            "owner": who or "host", **step.to_evidence()}


# --- the one fix builder --------------------------------------------------------------------------------------

def unblock_fix(ctx: CheckContext, step: Step, flows: list[Flow], bridges: set[str], engine: EngineFacts | None = None,
                gone: Fix | None = None, join: str | None = None) -> Fix:
    """How to let through what `step` drops of `flows` (the directions of one kind of connection), always with its
    replies. Docker's own rules gone: restarting Docker (`gone`, from rules_gone_fix) is the fix, never a
    hand-written copy of them. A firewall manager's rule: its own way (firewalld's docker zone, `ufw route allow`).
    A rule of Docker's: left alone (`join`: the network to connect the target to instead). Any other rule: delete
    it, or exempt the flows it drops just above it. A policy: accept the flows and their replies explicitly where
    they are decided (DOCKER-USER when the chain jumps there first; never `-i BRIDGE` alone, which would also
    open the way to Docker's other networks)."""
    if gone is not None:
        return gone
    rule, chain = step.rule, step.chain
    who = docker.owner(rule or chain, bridges)
    devices = sorted(bridges)
    if who == "firewalld":
        return Fix(f"firewalld rejects {', '.join(devices)}'s traffic: its zones do not include this bridge. Put the "
                   "bridge in firewalld's 'docker' zone (target ACCEPT) permanently; Docker 20.10+ does that itself "
                   "when it starts after firewalld.",
                   (*(f"sudo firewall-cmd --permanent --zone=docker --add-interface={d}" for d in devices),
                    "sudo firewall-cmd --reload", "sudo systemctl restart docker"))
    if rule is not None and who == "docker":
        return Fix("A rule of Docker's own decides (network isolation, an internal network, an unpublished port): Docker "
                   "means it and puts it back at every start. Change how the containers are connected instead"
                   + (f": put {ctx.target_name} on {join}." if join else "."),
                   (f"docker network connect {join} {ctx.target_name}",) if join else ())
    if rule is not None:
        # the directions this rule drops outright, and those it may drop in part: an exemption that leaves the
        # replies of some far ends to the rule would fix one finding and leave another
        hit = [f for f in flows if (f.path.drop is not None and f.path.drop.rule is not None
                                    and f.path.drop.rule.key == rule.key) or rule.test(f.packet) is not False]
        if who == "ufw":
            return Fix("ufw's forward rules drop this traffic (ufw's DEFAULT_FORWARD_POLICY, or a ufw route rule). "
                       "Allow it in ufw, which keeps it across reloads.",
                       tuple(dict.fromkeys(_ufw_allow(f, bridges) for f in hit)))
        return _exempt(ctx, rule, hit, who)
    return _accept(ctx, chain, flows, bridges, engine)


def _ufw_allow(f: Flow, bridges: set[str]) -> str:
    packet = f.packet
    if packet.iif in bridges:
        return f"sudo ufw route allow in on {packet.iif}"
    if packet.state == "new" and packet.dst and packet.dport:
        return f"sudo ufw route allow proto {packet.proto} from any to {packet.dst} port {packet.dport}"
    return f"sudo ufw route allow out on {packet.oif}"


def _exempt(ctx: CheckContext, rule: Rule, flows: list[Flow], who: str) -> Fix:
    own = ctx.host.firewall.chain(rule.backend, rule.family, rule.table, rule.chain)
    # in a base chain an exemption accepts; in a user chain it returns to the caller, which decides as before
    verdict = "accept" if own is not None and own.is_base else "return"
    exempts = [ctx.on_host(commands.insert(rule.backend, rule.family, rule.table, rule.chain,
                                           commands.flow_spec(rule.backend, f.packet, f.fields, verdict)))
               for f in flows]
    directions = " and ".join(dict.fromkeys(f.direction for f in flows)) or "this"
    extra = {"tailscale": " Tailscale re-creates its ts-* chains: change its netfilter mode instead if it must stay."}.get(who, "")
    return Fix(f"Delete the rule (first command); or, to keep it for other traffic, run only the other command(s), which "
               f"exempt the {directions} traffic above it. Persist the change wherever the rule comes from (your firewall "
               f"script, ufw/firewalld configuration).{extra}",
               tuple(dict.fromkeys((ctx.on_host(commands.delete(rule)), *exempts))))


def _jumps_first_to_user_chain(chain: Chain) -> bool:
    """An iptables FORWARD that sends everything to DOCKER-USER before anything can drop it."""
    for rule in chain.rules:
        if rule.action.kind == "jump" and rule.action.target == docker.USER_CHAIN and not rule.matches and not rule.unknown:
            return True
        if rule.action.kind in DROPPING:
            return False
    return False


def _accept(ctx: CheckContext, chain: Chain, flows: list[Flow], bridges: set[str], engine: EngineFacts | None) -> Fix:
    if engine is not None and engine.backend == NFT_BACKEND and chain.backend != NFTABLES:
        # Docker's nftables rules judge its bridges' traffic; iptables only has to stop deciding it
        tool = commands.tool(chain.backend, chain.family)
        return Fix(f"Let Docker's nftables rules decide for {', '.join(sorted(bridges))}: accept the bridges' traffic in "
                   f"iptables' {chain.name} chain too (Docker's own isolation stays in table {docker.NFT_TABLE}), or set "
                   "its policy back to ACCEPT if nothing else relies on it.",
                   (*(ctx.on_host(f"{tool} -I {chain.name} {commands.flow_spec(chain.backend, Packet(4, iif=b), ('iif',))}")
                      for b in sorted(bridges)),
                    *(ctx.on_host(f"{tool} -I {chain.name} {commands.flow_spec(chain.backend, Packet(4, oif=b), ('oif',))}")
                      for b in sorted(bridges)),
                    "# or: " + ctx.on_host(f"{tool} -P {chain.name} ACCEPT")))
    into = chain.name
    if chain.backend != NFTABLES and chain.hook == "forward" and _jumps_first_to_user_chain(chain):
        into = docker.USER_CHAIN
    wanted: list[tuple[Packet, tuple[str, ...]]] = [(f.packet, f.fields) for f in flows]
    if chain.hook == "forward":  # the replies cross the same hook: always accepted with their connection
        wanted += [commands.reply(f.packet, f.fields) for f in flows if f.packet.state == "new"]
    specs = dict.fromkeys(commands.flow_spec(chain.backend, packet, fields) for packet, fields in wanted)
    return Fix(f"The {chain.policy_text} policy decides because no rule accepts this traffic: accept it and its replies "
               "explicitly" + (" (DOCKER-USER is the chain Docker leaves to you)." if into == docker.USER_CHAIN else "."),
               tuple(ctx.on_host(commands.insert(chain.backend, chain.family, chain.table, into, spec)) for spec in specs))


def vpn_like(ctx: CheckContext) -> list[str]:
    """Host interfaces over which peers may route to container addresses directly (VPNs, tunnels)."""
    found = []
    for link in ctx.host.facts.links:
        if link.is_loopback or not link.up:
            continue
        if link.kind in VPN_KINDS or (link.name.startswith(VPN_PREFIXES) and link.kind not in ("bridge",)):
            found.append(link.name)
    return found
