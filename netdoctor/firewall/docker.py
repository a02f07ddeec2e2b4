"""What Docker writes into the firewall, per release and backend, and who else writes there.

Layouts (see moby's integration/network/bridge/iptablesdoc and nftablesdoc):
- 20.10 to 27 (iptables): FORWARD jumps to DOCKER-USER and DOCKER-ISOLATION-STAGE-1, then per bridge
  `-o BR -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`, `-o BR -j DOCKER`, `-i BR ! -o BR -j ACCEPT`,
  `-i BR -o BR -j ACCEPT` directly in FORWARD; nat PREROUTING/OUTPUT jump to DOCKER (DNAT per published
  port), POSTROUTING `-s SUBNET ! -o BR -j MASQUERADE`. 27 writes the same into ip6tables by default.
- 28.x (iptables): FORWARD jumps only to DOCKER-USER and DOCKER-FORWARD, which holds DOCKER-CT (replies),
  DOCKER-ISOLATION-STAGE-1, DOCKER-BRIDGE (-> DOCKER: per-port ACCEPTs then `! -i BR -o BR -j DROP`,
  the unpublished-port DROP) and `-i BR -j ACCEPT`; the raw table drops packets addressed to a
  container from anywhere but its bridge (`-A PREROUTING -d CTR/32 ! -i BR -j DROP`, direct routing),
  unless the network's gateway mode is routed/nat-unprotected or the interface is trusted (28.2+).
  28.0.0 alone used ipsets (docker-ext-bridges-v4), which netdoctor cannot see into (partial matches).
- 29 (iptables): DOCKER-ISOLATION-STAGE-* are gone, DOCKER-INTERNAL isolates internal networks.
- 29 with `"firewall-backend": "nftables"`: tables `ip docker-bridges` / `ip6 docker-bridges`, per-bridge
  chains reached through verdict maps (filter-forward-in__BR, filter-forward-out__BR,
  nat-postrouting-out__BR...), no DOCKER-USER. An iptables FORWARD policy DROP left from an earlier
  iptables-backend run still drops what those chains accept.
"""

from __future__ import annotations

from netdoctor.firewall.model import NFTABLES, Chain, Firewall, Rule

NFT_TABLE = "docker-bridges"
# Bridge network options that decide which rules Docker writes for a network (docker network create -o ...).
MASQUERADE_OPTION = "com.docker.network.bridge.enable_ip_masquerade"
GATEWAY_MODE = "com.docker.network.bridge.gateway_mode_ipv"   # + "4" or "6": nat, nat-unprotected, routed, isolated
TRUSTED_INTERFACES = "com.docker.network.bridge.trusted_host_interfaces"
# The chains each layout needs before any network exists (the minimum: 28.0.0 lacked DOCKER-FORWARD).
REQUIRED_CHAINS = {
    "20.10": ("DOCKER", "DOCKER-USER", "DOCKER-ISOLATION-STAGE-1"),
    "28": ("DOCKER", "DOCKER-USER", "DOCKER-ISOLATION-STAGE-1"),
    "29": ("DOCKER", "DOCKER-USER", "DOCKER-FORWARD", "DOCKER-INTERNAL"),
}
USER_CHAIN = "DOCKER-USER"


def owner(item: Rule | Chain, bridges: set[str] = frozenset()) -> str:
    """Who wrote a rule or chain: docker, docker-user (the admin's rules in DOCKER-USER), ufw, firewalld,
    tailscale, libvirt, kubernetes, or "" (the host's own rules, or unknown)."""
    table, chain = item.table, item.chain if isinstance(item, Rule) else item.name
    if item.backend == NFTABLES:
        return {NFT_TABLE: "docker", "firewalld": "firewalld"}.get(table, "tailscale" if table.startswith("ts-") else "")
    if chain == USER_CHAIN:
        return "docker-user"
    for prefix, who in (("DOCKER", "docker"), ("ufw", "ufw"), ("ts-", "tailscale"), ("LIBVIRT_", "libvirt"),
                        ("KUBE-", "kubernetes"), ("CILIUM_", "kubernetes"), ("cali-", "kubernetes")):
        if chain.startswith(prefix):
            return who
    if chain.endswith("_direct") or chain.startswith(("FWD_", "FWDI_", "FWDO_", "IN_", "FORWARD_IN_ZONES")):
        return "firewalld"  # firewalld's iptables backend
    if isinstance(item, Rule) and _names_only(item, bridges) and item.action.kind in ("accept", "jump"):
        return "docker"  # 20.10-27 write each bridge's ACCEPT rules straight into FORWARD
    return ""


def _names_only(rule: Rule, bridges: set[str]) -> bool:
    """Every interface the rule names is a Docker bridge (and it names one)."""
    names = [v for m in rule.matches if m.field in ("iif", "oif") for v in m.values]
    return bool(names) and all(n in bridges or n == "docker0" or n.startswith("br-") for n in names)


def describe_owner(who: str) -> str:
    return {"docker": "Docker's own rule", "docker-user": "a rule in DOCKER-USER (the chain Docker leaves to you)",
            "ufw": "ufw", "firewalld": "firewalld", "tailscale": "Tailscale", "libvirt": "libvirt",
            "kubernetes": "a Kubernetes network plugin"}.get(who, "a rule of this host's own firewall")


def gateway_mode(options: dict[str, str], family: int) -> str:
    return options.get(f"{GATEWAY_MODE}{family}", "nat")


def masquerades(options: dict[str, str], family: int) -> bool:
    """Docker NATs this network's traffic on its way out (the default; not with masquerading off or routed)."""
    return options.get(MASQUERADE_OPTION) != "false" and gateway_mode(options, family) in ("nat", "nat-unprotected")


def missing_chains(firewall: Firewall, layout: str, family: int = 4) -> list[str]:
    return [c for c in REQUIRED_CHAINS[layout] if firewall.iptables_chain(family, "filter", c) is None]


def nft_table_present(firewall: Firewall, family: int = 4) -> bool:
    return firewall.table(NFTABLES, "ip" if family == 4 else "ip6", NFT_TABLE) is not None


def is_direct_access_drop(rule: Rule) -> bool:
    """Docker 28+'s raw-table DROP of packets addressed to a container from anywhere but its bridge."""
    if rule.backend == NFTABLES:
        return rule.table == NFT_TABLE and rule.comment == "DROP DIRECT ACCESS"
    return (rule.table == "raw" and rule.chain == "PREROUTING" and rule.action.kind == "drop"
            and any(m.field == "iif" and m.negate for m in rule.matches)
            and any(m.field == "dst" and not m.negate for m in rule.matches))


def is_unpublished_port_drop(rule: Rule) -> bool:
    """Docker 28+'s DROP of anything but a published port, for packets routed into a bridge from outside it."""
    if rule.backend == NFTABLES:
        return rule.table == NFT_TABLE and rule.comment == "UNPUBLISHED PORT DROP"
    fields = {(m.field, m.negate) for m in rule.matches}
    return (rule.table == "filter" and rule.chain == "DOCKER" and rule.action.kind == "drop"
            and fields == {("iif", True), ("oif", False)})


def firewall_managers(firewall: Firewall, firewalld_engine: bool = False) -> list[str]:
    """Firewall managers visible in this namespace (the usual suspects when Docker's rules vanish)."""
    found = []
    if firewalld_engine or firewall.table(NFTABLES, "inet", "firewalld") is not None or \
            any(owner(c) == "firewalld" for c in firewall.chains()):
        found.append("firewalld")
    if any(owner(c) == "ufw" for c in firewall.chains()):
        found.append("ufw")
    return found


def wiped_by(managers: list[str]) -> str:
    """Why Docker's rules are probably gone, in a sentence."""
    if "firewalld" in managers:
        return ("firewalld is active here: a `firewall-cmd --reload` or a firewalld restart after dockerd started "
                "rebuilds the firewall without Docker's rules (Docker 28+ re-creates them on a reload it is told about)")
    if "ufw" in managers:
        return ("ufw is active here (its ufw-* chains are loaded): `ufw reset`, `ufw disable`/`enable` or an "
                "iptables-restore of ufw's files rewrites the tables without Docker's rules")
    return ("something rewrote the firewall after dockerd started: `iptables -F`, `iptables -t nat -F`, an "
            "iptables-restore of a saved ruleset, `nft flush ruleset`, or a firewall service restarted after Docker")
