"""Fix commands in the syntax of the backend a rule lives in (printed for the user, never run)."""

from __future__ import annotations

from netdoctor.firewall.model import LEGACY, NFTABLES, Chain, Rule


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


def accept_spec(backend: str, in_iface: str | None = None, out_iface: str | None = None,
                established: bool = False) -> str:
    """An ACCEPT rule for traffic in on / out of an interface (replies only, with `established`)."""
    if backend == NFTABLES:
        parts = [f'iifname "{in_iface}"' if in_iface else "", f'oifname "{out_iface}"' if out_iface else "",
                 "ct state established,related" if established else "", "accept"]
    else:
        parts = [f"-i {in_iface}" if in_iface else "", f"-o {out_iface}" if out_iface else "",
                 "-m conntrack --ctstate RELATED,ESTABLISHED" if established else "", "-j ACCEPT"]
    return " ".join(p for p in parts if p)
