"""One model of a namespace's packet filter, whatever wrote it: iptables-legacy, iptables-nft, native nftables.

Every rule is reduced to the same shape: a list of conditions (`Match`) that netdoctor can test against a
packet, the conditions it cannot test (`unknown`: a mark, a rate limit, an ipset...), and one action
(accept, drop, jump...). Base chains carry their hook and priority, so the path module can run a packet
through every base chain of a hook in the kernel's order, whichever backend registered it.

Matching is three-valued: True (the rule matches all of the packet's kind of traffic), False (none of
it) or None (perhaps part of it: the rule tests something the packet description leaves open, or
something netdoctor cannot see). A None is never a verdict; the path module reports it as a partial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netdoctor import ipcache

# Backends, as evidence names them.
LEGACY = "iptables-legacy"
IPTABLES_NFT = "iptables-nft"
NFTABLES = "nftables"

HOOKS = ("prerouting", "input", "forward", "output", "postrouting")
DROPPING = ("drop", "reject")
# nftables' named priorities (ip/ip6/inet families); iptables tables register at the same numbers.
PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
# Protocol numbers as rules may write them.
PROTOCOLS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "ipv6-icmp", "132": "sctp", "icmpv6": "ipv6-icmp"}
# Where a client's own (ephemeral) port lies: every system picks them above the privileged ports
EPHEMERAL_PORTS = (1024, 65535)


@dataclass(frozen=True)
class Packet:
    """What a check knows about one kind of traffic. None means "not known": rules that test it match in part.

    `iif`/`oif` "" means no interface (locally generated / delivered locally). `far_outside` lists networks
    an unknown address (src or dst None) is taken NOT to lie in: the far end of forwarded traffic is beyond
    the host, so a rule about the target's own subnet (or another network of the host's) does not match it."""

    family: int                      # 4 or 6
    src: str | None = None
    dst: str | None = None
    proto: str | None = None         # tcp, udp, icmp, ipv6-icmp
    sport: int | None = None
    dport: int | None = None
    iif: str | None = None
    oif: str | None = None
    state: str | None = "new"        # conntrack state: new, established, related, invalid
    src_local: bool | None = None    # the source is one of the host's addresses (addrtype / fib type local)
    dst_local: bool | None = None
    dnat: bool | None = False        # conntrack status DNAT: the connection's destination was translated
    far_outside: tuple[str, ...] = ()
    # A reply to a NATed connection: the address conntrack restores at the dstnat priority (-100) of
    # prerouting; before that (raw, mangle) the packet still carries the address it was sent to.
    denat_dst: str | None = None
    # "sport"/"dport" that is unknown but a client's ephemeral port (EPHEMERAL_PORTS): a rule only about
    # other ports (--dport 80) does not match it
    ephemeral: tuple[str, ...] = ()

    def __post_init__(self):
        if self.family not in (4, 6):
            raise ValueError(f"family must be 4 or 6, not {self.family!r}")


def iface_matches(pattern: str, name: str) -> bool:
    """iptables' `eth+` and nftables' `eth*` are prefix wildcards (normalised to `*` when parsed)."""
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


@dataclass(frozen=True)
class Match:
    """One condition: the packet's `field` equals one of `values` (or none of them, when negated).

    Fields and their values: iif/oif (interface patterns), src/dst (ip_network or (first, last) address
    ranges), proto (names), sport/dport ((low, high) ranges), state/ctstatus (names), src_type/dst_type
    (address types: local, unicast...), nfproto (ipv4/ipv6), rpfilter (a reverse-path check, no values)."""

    field: str
    values: tuple[Any, ...]
    negate: bool = False

    def test(self, packet: Packet) -> bool | None:
        hit = _TESTS[self.field](self.values, packet)
        return hit if hit is None or not self.negate else not hit


def _iface(which: str):
    def test(values, packet: Packet) -> bool | None:
        name = getattr(packet, which)
        if name is None:
            return None
        return any(iface_matches(v, name) for v in values)
    return test


def _in_value(value, address) -> bool:
    if isinstance(value, tuple):
        first, last = value
        return first <= address <= last
    return address in value


def _address(which: str):
    def test(values, packet: Packet) -> bool | None:
        address = getattr(packet, which)
        if address is None:
            if any(not isinstance(v, tuple) and v.prefixlen == 0 for v in values):
                return True
            outside = [ipcache.network(n) for n in packet.far_outside]
            # a rule only about networks the far end is known not to lie in (the target's own subnet, the host's
            # other networks) does not match traffic to or from beyond the host; a wider one may, in part
            if outside and all(not isinstance(v, tuple) and any(v.version == o.version and v.subnet_of(o) for o in outside)
                               for v in values):
                return False
            return None
        try:
            ip = ipcache.address(address)
        except ValueError:
            return None
        return any(_in_value(v, ip) for v in values if (v[0] if isinstance(v, tuple) else v).version == ip.version)
    return test


def _proto(values, packet: Packet) -> bool | None:
    if any(v in ("all", "0") for v in values):
        return True
    if packet.proto is None:
        return None
    return any(PROTOCOLS.get(v, v) == packet.proto for v in values)


def _port(which: str):
    def test(values, packet: Packet) -> bool | None:
        port = getattr(packet, which)
        if port is None:
            if which not in packet.ephemeral:
                return None
            first, last = EPHEMERAL_PORTS
            if all(high < first or low > last for low, high in values):
                return False
            return True if any(low <= first and high >= last for low, high in values) else None
        return any(low <= port <= high for low, high in values)
    return test


def _state(values, packet: Packet) -> bool | None:
    return None if packet.state is None else packet.state in values


def _ctstatus(values, packet: Packet) -> bool | None:
    if values == ("dnat",):
        return packet.dnat
    return None  # snat, confirmed, seen-reply...: not known for a packet description


def _addrtype(which: str):
    def test(values, packet: Packet) -> bool | None:
        local = getattr(packet, which)
        if local is None:
            return None
        if local:
            return "local" in values
        # not one of the host's addresses: some other type, but which one (unicast, broadcast...) is not known
        return None if set(values) - {"local"} else False
    return test


def _nfproto(values, packet: Packet) -> bool | None:
    return f"ipv{packet.family}" in values


def _rpfilter(values, packet: Packet) -> bool | None:
    """A reverse-path check (`fib saddr . iif oif missing`): the traffic a check describes is legitimate,
    so its source is routable back through the interface it came in on."""
    return False


_TESTS = {"iif": _iface("iif"), "oif": _iface("oif"), "src": _address("src"), "dst": _address("dst"),
          "proto": _proto, "sport": _port("sport"), "dport": _port("dport"), "state": _state,
          "ctstatus": _ctstatus, "src_type": _addrtype("src_local"), "dst_type": _addrtype("dst_local"),
          "nfproto": _nfproto, "rpfilter": _rpfilter}
FIELDS = frozenset(_TESTS)


@dataclass(frozen=True)
class Action:
    """What a rule does when it matches.

    kind: accept, drop, reject, return, jump, goto, continue (non-terminating: log, mark, counter...),
    dnat, snat, masquerade, redirect (address translation, terminal in a nat chain), queue (handed to
    a userspace program: its verdict is not known), vmap (a verdict looked up by `key`)."""

    kind: str
    target: str = ""                  # the chain of jump/goto; "ADDR[:PORT]" of dnat/snat
    key: str = ""                     # vmap: the packet field looked up
    elements: tuple[tuple[tuple[Any, ...], "Action"], ...] = ()   # vmap: (values, action) pairs

    @property
    def translates(self) -> bool:
        return self.kind in ("dnat", "snat", "masquerade", "redirect")


@dataclass(frozen=True)
class Rule:
    backend: str
    family: str                       # ip, ip6, inet (bridge, arp, netdev tables are not evaluated)
    table: str
    chain: str
    matches: tuple[Match, ...]
    action: Action
    text: str                         # as the user reads it: "-A DOCKER-USER -i br0 -j DROP", or nft syntax
    handle: int                       # nftables' rule handle; for iptables its 1-based position in the chain
    unknown: tuple[str, ...] = ()     # conditions netdoctor cannot test (each makes a match partial)
    counter: tuple[int, int] | None = None   # packets, bytes (None: the rule has no counter)
    comment: str = ""

    def test(self, packet: Packet) -> bool | None:
        result: bool | None = True
        for match in self.matches:
            hit = match.test(packet)
            if hit is False:
                return False
            if hit is None:
                result = None
        return None if self.unknown and result else result

    @property
    def key(self) -> tuple:
        """Identity across two reads of the same firewall (for counter deltas)."""
        return (self.backend, self.family, self.table, self.chain, self.handle, self.text)

    @property
    def place(self) -> str:
        """Where the rule lives: "iptables-nft filter DOCKER-USER", "nftables inet firewalld filter_FORWARD"."""
        return place(self.backend, self.family, self.table, self.chain)

    def to_evidence(self) -> dict:
        evidence = {"backend": self.backend, "family": self.family, "table": self.table, "chain": self.chain,
                    "rule": self.text}
        if self.backend == NFTABLES:
            evidence["handle"] = self.handle
        if self.counter is not None:
            evidence["counter_packets"] = self.counter[0]
        return evidence


def place(backend: str, family: str, table: str, chain: str) -> str:
    if backend == NFTABLES:
        return f"nftables {family} {table} {chain}"
    return f"{backend.replace('iptables', 'ip6tables') if family == 'ip6' else backend} {table} {chain}"


@dataclass(frozen=True)
class Chain:
    backend: str
    family: str
    table: str
    name: str
    rules: tuple[Rule, ...] = ()
    hook: str | None = None           # base chains only
    priority: int | None = None
    kind: str = "filter"              # filter, nat, route (nftables chain types; iptables: from the table)
    policy: str | None = None         # accept/drop of a base chain
    policy_counter: tuple[int, int] | None = None

    @property
    def is_base(self) -> bool:
        return self.hook is not None

    @property
    def place(self) -> str:
        return place(self.backend, self.family, self.table, self.name)

    @property
    def key(self) -> tuple:
        return (self.backend, self.family, self.table, self.name, "policy")

    @property
    def text(self) -> str:
        """As a partial drop, a chain stands for its policy."""
        return self.policy_text

    @property
    def policy_text(self) -> str:
        """How the policy reads: "FORWARD policy DROP" (iptables) or "chain forward policy drop" (nftables)."""
        if self.backend == NFTABLES:
            return f"chain {self.name} policy {self.policy}"
        return f"{self.name} policy {(self.policy or 'accept').upper()}"


@dataclass(frozen=True)
class Table:
    backend: str
    family: str
    name: str
    chains: tuple[Chain, ...] = ()

    def chain(self, name: str) -> Chain | None:
        return next((c for c in self.chains if c.name == name), None)

    @property
    def families(self) -> tuple[int, ...]:
        return {"ip": (4,), "ip6": (6,), "inet": (4, 6)}.get(self.family, ())

    @property
    def holds_rules(self) -> bool:
        """Anything that can change a packet's fate: a rule, or a base chain whose policy drops."""
        return any(c.rules or c.policy == "drop" for c in self.chains)


@dataclass(frozen=True)
class Firewall:
    """Everything read from one namespace's packet filter.

    `sources`: what was read ("iptables-nft-save -c", "nft -j list ruleset"); `skipped`: what was not, and
    why (not installed, no tables of that kind); `problems`: input the parsers could not understand (the
    rest is still used); `error`: set when nothing at all could be read."""

    tables: tuple[Table, ...] = ()
    sources: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    error: str | None = None

    def table(self, backend: str, family: str, name: str) -> Table | None:
        return next((t for t in self.tables if (t.backend, t.family, t.name) == (backend, family, name)), None)

    def chain(self, backend: str, family: str, table: str, name: str) -> Chain | None:
        found = self.table(backend, family, table)
        return found.chain(name) if found else None

    def chains(self, family: int | None = None) -> list[Chain]:
        return [c for t in self.tables if family is None or family in t.families for c in t.chains]

    def rules(self, family: int | None = None) -> list[Rule]:
        return [r for c in self.chains(family) for r in c.rules]

    def base_chains(self, family: int, hook: str) -> list[Chain]:
        """Every base chain a packet of `family` meets at `hook`, in the kernel's order (priority)."""
        found = [c for c in self.chains(family) if c.hook == hook]
        backends = (LEGACY, IPTABLES_NFT, NFTABLES)  # at equal priority the order is the kernel's; this one is stable
        return sorted(found, key=lambda c: (c.priority or 0, backends.index(c.backend)))

    def backends(self, family: int | None = None) -> list[str]:
        """Backends that hold rules (for that family), in a stable order."""
        held = {t.backend for t in self.tables if t.holds_rules and (family is None or family in t.families)}
        return [b for b in (LEGACY, IPTABLES_NFT, NFTABLES) if b in held]

    @property
    def mixed(self) -> list[int]:
        """Families in which both iptables-legacy and iptables-nft hold rules."""
        return [f for f in (4, 6) if {LEGACY, IPTABLES_NFT} <= set(self.backends(f))]

    def iptables_chain(self, family: int, table: str, name: str) -> Chain | None:
        """An iptables chain, from whichever iptables backend has it (nft first: what Docker uses today)."""
        for backend in (IPTABLES_NFT, LEGACY):
            found = self.chain(backend, "ip" if family == 4 else "ip6", table, name)
            if found is not None:
                return found
        return None

    def to_evidence(self) -> dict:
        evidence: dict[str, Any] = {"read": list(self.sources),
                                    "tables": [f"{t.backend} {t.family} {t.name}" for t in self.tables if t.holds_rules]}
        if self.skipped:
            evidence["not_read"] = list(self.skipped)
        if self.problems:
            evidence["parse_problems"] = list(self.problems[:10])
        return evidence


@dataclass(frozen=True)
class Parsed:
    """What a parser returns: tables, and what it could not understand (never an exception)."""

    tables: tuple[Table, ...] = ()
    problems: tuple[str, ...] = ()
    notes: dict[str, Any] = field(default_factory=dict)
