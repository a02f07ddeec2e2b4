"""Shared by the checks that ask the firewall model about a target's traffic (forward_policy, ports, firewall,
reachability through _layers): the packets a bridge network's traffic consists of, who owns the rule that
decides, and fixes in the syntax of the backend that rule lives in.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from netdoctor.context import CheckContext
from netdoctor.dockerapi import DockerUnavailable
from netdoctor.facts.docker import NetworkInfo
from netdoctor.facts.engine import NFTABLES as NFT_BACKEND, EngineFacts
from netdoctor.firewall import DROPPING, FORWARDED, NFTABLES, Firewall, Packet, Path, Step, follow
from netdoctor.firewall import commands, docker
from netdoctor.model import Fix

UNKNOWN_UPLINK = "(uplink)"   # no default route: an interface that is none of the host's bridges
VPN_KINDS = ("tun", "wireguard", "ipip", "gre", "sit", "ip6tnl", "vti", "xfrm")
VPN_PREFIXES = ("tailscale", "wg", "tun", "zt", "nebula", "ipsec", "vti", "ppp", "utun")


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


def engine_of(ctx: CheckContext) -> EngineFacts | None:
    """The engine's facts when the target is a container of a reachable engine (None otherwise)."""
    if ctx.container is None:
        return None
    try:
        return ctx.docker.engine_facts()
    except (DockerUnavailable, OSError, LookupError):
        return None


def uplink_of(ctx: CheckContext, family: int) -> Uplink:
    host = ctx.host.facts
    defaults = host.default_routes(socket.AF_INET if family == 4 else socket.AF_INET6) or host.default_routes()
    link = host.link(index=defaults[0].oif) if defaults and defaults[0].oif else None
    if link is None:
        return Uplink(UNKNOWN_UPLINK, None)
    wanted = socket.AF_INET if family == 4 else socket.AF_INET6
    addresses = [a for a in host.addresses_of(link.index, wanted) if a.scope == 0]
    return Uplink(link.name, addresses[0].address if addresses else None)


def outgoing(ep: Endpoint, uplink: Uplink) -> Packet:
    """A new connection from the target to anything beyond the host (its address space unknown)."""
    return Packet(ep.family, src=ep.address, iif=ep.device, oif=uplink.name, state="new", src_local=False,
                  dst_local=False, far_outside=(ep.subnet,))


def replies(ep: Endpoint, uplink: Uplink, nat: bool) -> Packet:
    """Answers coming back in through the uplink; when the host NATs the target, they arrive addressed to the
    uplink and conntrack restores the target's address at the dstnat priority."""
    if nat:
        return Packet(ep.family, dst=uplink.address, denat_dst=ep.address, iif=uplink.name, oif=ep.device,
                      state="established", dst_local=True, far_outside=(ep.subnet,))
    return Packet(ep.family, dst=ep.address, iif=uplink.name, oif=ep.device, state="established", dst_local=False,
                  far_outside=(ep.subnet,))


def forward_paths(firewall: Firewall, ep: Endpoint, uplink: Uplink) -> dict[str, Path]:
    """The two directions every connection of the target beyond the host needs."""
    packet = outgoing(ep, uplink)
    # whether the host NATs the target decides what its replies look like, dropped on the way out or not
    nat = any(r.action.kind in ("masquerade", "snat") for r in follow(firewall, packet, ("postrouting",)).translations())
    return {"outgoing": follow(firewall, packet, FORWARDED), "replies": follow(firewall, replies(ep, uplink, nat), FORWARDED)}


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


def drop_evidence(step: Step, bridges: set[str]) -> dict:
    who = docker.owner(step.rule or step.chain, bridges)
    return {"decided_by": step.decided_by, "where": (step.rule or step.chain).place,
            "owner": who or "host", **step.to_evidence()}


def exempt_fix(ctx: CheckContext, step: Step, device: str, direction: str, bridges: set[str]) -> Fix:
    """Remove (or get around) what drops one direction of a bridge's forwarded traffic."""
    chain, rule = step.chain, step.rule
    who = docker.owner(rule or chain, bridges)
    replies_only = direction == "replies"
    in_iface, out_iface = (None, device) if replies_only else (device, None)
    if who == "firewalld":
        return Fix(f"firewalld rejects {device}'s traffic: its zones do not include this bridge. Put the bridge in "
                   "firewalld's 'docker' zone (target ACCEPT) permanently; Docker 20.10+ does that itself when it "
                   "starts after firewalld.",
                   (f"sudo firewall-cmd --permanent --zone=docker --add-interface={device}", "sudo firewall-cmd --reload",
                    "sudo systemctl restart docker"))
    if who == "ufw":
        return Fix(f"ufw's forward rules drop {device}'s traffic (ufw's DEFAULT_FORWARD_POLICY, or a ufw route rule). "
                   "Allow the bridge's routed traffic in ufw, which keeps it across reloads.",
                   (f"sudo ufw route allow {'out' if replies_only else 'in'} on {device}",))
    if rule is None:  # a policy decided, for both directions: accept the bridge's traffic and its replies above it
        target_chain = chain.name
        if chain.backend != NFTABLES and ctx.host.firewall.chain(chain.backend, chain.family, chain.table, docker.USER_CHAIN):
            target_chain = docker.USER_CHAIN
        specs = (commands.accept_spec(chain.backend, in_iface=device),
                 commands.accept_spec(chain.backend, out_iface=device, established=True))
        return Fix(f"The {chain.policy_text} policy decides because no rule accepts this traffic: accept {device}'s "
                   "traffic and its replies explicitly"
                   + (" (DOCKER-USER is the chain Docker leaves to you)." if target_chain == docker.USER_CHAIN else "."),
                   tuple(ctx.on_host(commands.insert(chain.backend, chain.family, chain.table, target_chain, spec))
                         for spec in specs))
    delete = ctx.on_host(commands.delete(rule))
    if rule.backend == NFTABLES:
        spec = commands.accept_spec(NFTABLES, in_iface, out_iface, established=replies_only)
        exempt = commands.insert(NFTABLES, rule.family, rule.table, rule.chain, spec)
    else:
        own = ctx.host.firewall.chain(rule.backend, rule.family, rule.table, rule.chain)
        # in a base chain an exemption accepts; in a user chain it returns to the caller, which decides as before
        jump = "ACCEPT" if own is not None and own.is_base else "RETURN"
        spec = commands.accept_spec(rule.backend, in_iface, out_iface, established=replies_only).replace("-j ACCEPT", f"-j {jump}")
        exempt = commands.insert(rule.backend, rule.family, rule.table, rule.chain, spec)
    extra = {"tailscale": " Tailscale re-creates its ts-* chains: change its netfilter mode instead if it must stay."}.get(who, "")
    return Fix(f"Delete the rule (first command); or, to keep it for other traffic, run only the second command, which "
               f"exempts {device}'s {direction} traffic above it. Persist the change wherever the rule comes from (your "
               f"firewall script, ufw/firewalld configuration).{extra}", (delete, ctx.on_host(exempt)))


def vpn_like(ctx: CheckContext) -> list[str]:
    """Host interfaces over which peers may route to container addresses directly (VPNs, tunnels)."""
    found = []
    for link in ctx.host.facts.links:
        if link.is_loopback or not link.up:
            continue
        if link.kind in VPN_KINDS or (link.name.startswith(VPN_PREFIXES) and link.kind not in ("bridge",)):
            found.append(link.name)
    return found
