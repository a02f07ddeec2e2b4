"""The firewall of one network namespace as one model of the packet path.

    firewall = view.firewall                       # read once per namespace (read.read on its thread)
    path = follow(firewall, Packet(4, src="10.0.0.2", iif="docker0", oif="eth0"), FORWARDED)
    path.drop            # the Step (backend, table, chain, rule or policy) that drops it, or None
    path.partial_drops   # rules that may drop part of such traffic (they test what is not known)

Parsers take text/JSON and return a `Parsed` (tables + problems), never raising on malformed input:
`parse_save` (iptables-save, either backend), `parse_json` (nft -j list ruleset); `from_dumps` builds a
whole Firewall from such dumps (tests, fakes).
"""

from __future__ import annotations

from netdoctor.firewall.iptables import parse_save
from netdoctor.firewall.model import (DROPPING, IPTABLES_NFT, LEGACY, NFTABLES, Chain, Firewall, Packet, Parsed,
                                      Rule, Table)
from netdoctor.firewall.nft import adopt_incompatible, parse_json
from netdoctor.firewall.path import Path, Step, follow

FORWARDED = ("prerouting", "forward", "postrouting")
TO_HOST = ("prerouting", "input")
FROM_HOST = ("output", "postrouting")


def from_dumps(iptables: str = "", ip6tables: str = "", legacy: str = "", legacy6: str = "", nft_json: str = "") -> Firewall:
    """A Firewall from dumps as the read module gets them (iptables-nft-save, ip6tables-nft-save,
    iptables-legacy-save, ip6tables-legacy-save, nft -j list ruleset); empty ones are left out."""
    dumps = ((iptables, IPTABLES_NFT, "ip"), (ip6tables, IPTABLES_NFT, "ip6"), (legacy, LEGACY, "ip"), (legacy6, LEGACY, "ip6"))
    parts = [(family, backend, parse_save(text, backend, family)) for text, backend, family in dumps if text]
    if nft_json:
        parts.append(("", NFTABLES, parse_json(nft_json)))
    tables = [t for _, _, p in parts for t in p.tables]
    problems = [x for _, _, p in parts for x in p.problems]
    for family, backend, parsed in parts:
        if backend == IPTABLES_NFT and parsed.notes.get("incompatible"):  # as read.py completes them
            tables, more = adopt_incompatible(tables, family, parsed.notes["incompatible"], nft_json)
            problems += more
    return Firewall(tuple(tables), ("constructed",), (), tuple(problems))


__all__ = ["DROPPING", "FORWARDED", "FROM_HOST", "IPTABLES_NFT", "LEGACY", "NFTABLES", "TO_HOST", "Chain", "Firewall",
           "Packet", "Parsed", "Path", "Rule", "Step", "Table", "follow", "from_dumps", "parse_json", "parse_save"]
