"""Fix commands in the syntax of the backend a rule lives in (printed for the user, never run)."""

from __future__ import annotations

from dataclasses import replace

from netdoctor.firewall.model import LEGACY, NFTABLES, Chain, Packet, Rule


def tool(backend: str, family: str) -> str:
    """iptables, ip6tables, iptables-legacy, ip6tables-legacy (iptables-nft is the default `iptables` today)."""
    name = "ip6tables" if family == "ip6" else "iptables"
    return f"{name}-legacy" if backend == LEGACY else name


def _table_option(table: str) -> str:
    return "" if table == "filter" else f"-t {table} "


def delete(rule: Rule) -> str:
    """The command that deletes exactly this rule."""
    if rule.backend == NFTABLES:
        return f"nft delete rule {rule.family} {rule.table} {rule.chain} handle {rule.handle}"
    spec = rule.text.split(None, 2)[2] if rule.text.count(" ") >= 2 else ""
    return f"{tool(rule.backend, rule.family)} {_table_option(rule.table)}-D {rule.chain} {spec}".rstrip()


def insert(backend: str, family: str, table: str, chain: str, spec: str) -> str:
    """Insert `spec` (in that backend's own syntax) at the top of a chain."""
    if backend == NFTABLES:
        return f"nft insert rule {family} {table} {chain} {spec}"
    return f"{tool(backend, family)} {_table_option(table)}-I {chain} {spec}"


def set_policy(chain: Chain, policy: str) -> str:
    if chain.backend == NFTABLES:
        return (f"nft 'add chain {chain.family} {chain.table} {chain.name} {{ type {chain.kind} hook {chain.hook} "
                f"priority {chain.priority}; policy {policy}; }}'")
    return f"{tool(chain.backend, chain.family)} {_table_option(chain.table)}-P {chain.name} {policy.upper()}"


# Fields a fix may name of a flow (model.Packet's), in the order rules are written.
FLOW_FIELDS = ("iif", "oif", "src", "dst", "proto", "sport", "dport", "state")
MIRROR = {"iif": "oif", "oif": "iif", "src": "dst", "dst": "src", "sport": "dport", "dport": "sport"}


def reply(packet: Packet, fields: tuple[str, ...]) -> tuple[Packet, tuple[str, ...]]:
    """The replies of a flow as the same hook sees them (directions swapped, ESTABLISHED), and the fields that
    name them."""
    swapped = replace(packet, iif=packet.oif, oif=packet.iif, src=packet.dst, dst=packet.src, sport=packet.dport,
                      dport=packet.sport, src_local=packet.dst_local, dst_local=packet.src_local, state="established",
                      dnat=False, denat_dst=None, ephemeral=tuple(MIRROR[p] for p in packet.ephemeral if p in MIRROR))
    return swapped, tuple(dict.fromkeys([MIRROR.get(f, f) for f in fields] + ["state"]))


def flow_spec(backend: str, packet: Packet, fields: tuple[str, ...], verdict: str = "accept") -> str:
    """A rule matching `packet` on `fields` (see FLOW_FIELDS; unknown values are left out), in the backend's syntax.
    `verdict`: accept or return. An established flow is matched as conntrack's RELATED,ESTABLISHED."""
    value = {f: getattr(packet, f) for f in FLOW_FIELDS if f in fields and getattr(packet, f) not in (None, "")}
    ports = [p for p in ("sport", "dport") if p in value]
    if backend == NFTABLES:
        ip = "ip6" if packet.family == 6 else "ip"
        parts = [f'iifname "{value["iif"]}"' if "iif" in value else "", f'oifname "{value["oif"]}"' if "oif" in value else "",
                 f"{ip} saddr {value['src']}" if "src" in value else "", f"{ip} daddr {value['dst']}" if "dst" in value else "",
                 *(f"{value['proto']} {p} {value[p]}" for p in ports if "proto" in value),
                 f"meta l4proto {value['proto']}" if "proto" in value and not ports else "",
                 "ct state established,related" if value.get("state") == "established" else "", verdict]
    else:
        parts = [f"-i {value['iif']}" if "iif" in value else "", f"-o {value['oif']}" if "oif" in value else "",
                 f"-s {value['src']}" if "src" in value else "", f"-d {value['dst']}" if "dst" in value else "",
                 f"-p {value['proto']}" if "proto" in value else "",
                 *(f"--{p} {value[p]}" for p in ports if "proto" in value),
                 "-m conntrack --ctstate RELATED,ESTABLISHED" if value.get("state") == "established" else "",
                 f"-j {verdict.upper()}"]
    return " ".join(p for p in parts if p)
