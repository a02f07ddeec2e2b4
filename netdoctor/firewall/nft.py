"""`nft -j list ruleset` (libnftables' JSON schema) -> native nftables tables of the firewall model.

JSON, never nft's text output: the JSON schema is nftables' documented machine interface (libnftables-json(5)).
Tables that iptables-nft manages (ip/ip6 filter, nat, mangle, raw, security) are left to the iptables
parser by default: their matches are `xt` compat expressions here, while iptables-nft-save prints them in
full. bridge, arp and netdev tables are kept (they are reported) but hold no IP hook netdoctor evaluates.
`parse_json` never raises: what it cannot read is reported in `Parsed.problems`.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import replace
from typing import Any

from netdoctor.firewall.model import (HOOKS, IPTABLES_NFT, NFTABLES, PRIORITIES, Action, Chain, Match, Parsed, Rule,
                                      Table)

IPTABLES_TABLES = frozenset({"filter", "nat", "mangle", "raw", "security"})
VERDICTS = {"accept": "accept", "drop": "drop", "reject": "reject", "return": "return", "continue": "continue",
            "queue": "queue", "jump": "jump", "goto": "goto"}
TRANSLATIONS = ("dnat", "snat", "masquerade", "redirect")
CONDITIONAL = ("limit", "quota", "xt", "synproxy")   # statements that stop a rule for some packets
PAYLOAD_PORTS = ("tcp", "udp", "sctp", "udplite", "dccp")
NAMED_PROTOCOL = {"ip": "ipv4", "ip6": "ipv6"}


def is_iptables_table(family: str, name: str) -> bool:
    return family in ("ip", "ip6") and name in IPTABLES_TABLES


def adopt_incompatible(tables: list[Table], family: str, names: list[str], nft_json: str) -> tuple[list[Table], list[str]]:
    """Complete iptables-nft-save's view of `family` where it said a table is incompatible (written with nft,
    e.g. a hand-made `table ip filter` whose base chain is `forward`): iptables-nft then shows none of the
    table, or only its iptables-style chains plus built-in chains it invents (`:FORWARD ACCEPT`). The chains
    it showed that really exist are kept as iptables-nft's; the invented ones go; the base chains it could
    not show come from nft's JSON as native nftables chains, with the table's regular chains (their jumps
    resolve). Returns the tables and what could not be completed."""
    native = {t.name: t for t in parse_json(nft_json, skip_iptables_tables=False).tables
              if t.family == family and t.name in names} if nft_json else {}
    kept: list[Table] = []
    shown: dict[str, set[str]] = {}
    for table in tables:
        real = native.get(table.name) if table.backend == IPTABLES_NFT and table.family == family else None
        if real is None:
            kept.append(table)
            continue
        exists = {c.name for c in real.chains}
        chains = tuple(c for c in table.chains if c.name in exists)
        shown[table.name] = {c.name for c in chains}
        if chains:
            kept.append(replace(table, chains=chains))
    for name, real in native.items():
        unseen = tuple(c for c in real.chains if not c.is_base or c.name not in shown.get(name, set()))
        if any(c.is_base for c in unseen):
            kept.append(replace(real, chains=unseen))
    problems = [f"{family} table {name}: iptables-nft calls it incompatible and nft's JSON does not hold it"
                for name in names if name not in native]
    return kept, problems


def parse_json(text: str, skip_iptables_tables: bool = True) -> Parsed:
    """Native tables of a ruleset dump; notes["iptables_nft"] lists the families holding iptables-nft tables."""
    try:
        items = json.loads(text).get("nftables")
        if not isinstance(items, list):
            raise ValueError("no \"nftables\" list")
    except (ValueError, AttributeError) as exc:
        return Parsed(problems=(f"nft JSON unreadable: {exc}",))
    problems: list[str] = []
    tables: dict[tuple[str, str], dict] = {}
    compat: set[str] = set()

    def table(family: str, name: str) -> dict | None:
        if skip_iptables_tables and is_iptables_table(family, name):
            compat.add(family)
            return None
        return tables.setdefault((family, name), {"chains": {}, "rules": {}, "sets": {}})

    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(f"nft JSON: unexpected item {str(item)[:80]}")
            continue
        (kind, body), = item.items()
        if kind == "metainfo" or not isinstance(body, dict):
            continue
        try:
            found = table(body["family"], body["name"] if kind == "table" else body["table"])
            if found is None:
                continue
            if kind == "chain":
                found["chains"][body["name"]] = body
            elif kind == "rule":
                found["rules"].setdefault(body["chain"], []).append(body)
            elif kind in ("set", "map"):
                found["sets"][body["name"]] = body.get("elem") or []
        except (KeyError, TypeError) as exc:
            problems.append(f"nft JSON: {kind} without {exc}")
    built = []
    for (family, name), content in tables.items():
        for orphan in set(content["rules"]) - set(content["chains"]):
            problems.append(f"nft {family} {name}: rules for undeclared chain {orphan}")
        chains = []
        for chain_name, chain in content["chains"].items():
            rules = []
            for body in content["rules"].get(chain_name, []):
                try:
                    rules.append(_rule(family, name, chain_name, body, content["sets"]))
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    problems.append(f"nft {family} {name} {chain_name} handle {body.get('handle')}: {exc!r}")
            try:
                chains.append(_chain(family, name, chain, tuple(rules)))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                problems.append(f"nft {family} {name} chain {chain_name}: {exc!r}")
        built.append(Table(NFTABLES, family, name, tuple(chains)))
    return Parsed(tuple(built), tuple(problems), {"iptables_nft": sorted(compat)})


def _priority(value: Any) -> int:
    """`-100`, or a named priority with an offset as newer nft prints it: "filter + 10", "dstnat - 5"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).replace(" ", "")
    sign = "+" if "+" in text else "-" if "-" in text[1:] else ""
    base, _, offset = text.partition(sign) if sign else (text, "", "0")
    if base not in PRIORITIES and not base.lstrip("-").isdigit():
        raise ValueError(f"unknown priority {value!r}")
    start = PRIORITIES[base] if base in PRIORITIES else int(base)
    return start + (int(offset) if sign != "-" else -int(offset))


def _chain(family: str, table: str, body: dict, rules: tuple[Rule, ...]) -> Chain:
    hook = body.get("hook")
    if hook not in HOOKS or family not in ("ip", "ip6", "inet"):
        hook = None  # not a base chain, or one of a family (bridge, arp, netdev) no IP hook of ours runs
    policy = body.get("policy", "accept")
    if policy not in ("accept", "drop"):
        raise ValueError(f"policy {policy!r}")
    kind = body.get("type", "filter")
    return Chain(NFTABLES, family, table, str(body["name"]), rules, hook, _priority(body.get("prio", 0)) if hook else None,
                 kind if isinstance(kind, str) else "filter", policy if hook else None)


def _rule(family: str, table: str, chain: str, body: dict, sets: dict) -> Rule:
    matches: list[Match] = []
    unknown: list[str] = []
    words: list[str] = []
    counter = None
    action = Action("continue")
    for statement in body.get("expr") or []:
        (kind, value), = statement.items()
        if kind == "match":
            text = f"{_left_text(value['left'])} {_op_text(value['op'])}{_right_text(value['right'], value['left'])}"
            found = _match(value, sets)
            if found is None:
                unknown.append(text)
            else:
                matches.extend(found)
            words.append(text)
        elif kind == "counter":
            if isinstance(value, dict) and "packets" in value:
                counter = (int(value["packets"]), int(value.get("bytes", 0)))
            words.append("counter")
        elif kind in VERDICTS:
            action = Action(VERDICTS[kind], value.get("target", "") if isinstance(value, dict) else "")
            words.append(_verdict_text(statement))
        elif kind == "vmap":
            action = _vmap(value, sets)
            words.append(f"{_left_text(value['key'])} vmap {_data_text(value['data'])}")
        elif kind in TRANSLATIONS:
            target = _translation(value)
            action = Action(kind, target)
            words.append(f"{kind} to {target}" if target else kind)
        elif kind in CONDITIONAL:
            unknown.append(kind)
            words.append(kind)
        else:
            # log, mangle (meta/ct/tcp option set), notrack, set updates...: the packet goes on
            words.append(kind if not value else f"{kind} {json.dumps(value, separators=(',', ':'))}")
    comment = body.get("comment") or ""
    if comment:
        words.append(f'comment "{comment}"')
    return Rule(NFTABLES, family, table, chain, tuple(matches), action, " ".join(words), int(body.get("handle", 0)),
                tuple(unknown), counter, comment)


def _field(left: Any) -> tuple[str | None, tuple[Match, ...]]:
    """The model field `left` reads, and the conditions it implies (`tcp dport` implies TCP, `ip saddr` IPv4)."""
    if not isinstance(left, dict):
        return None, ()
    if "meta" in left:
        key = left["meta"].get("key")
        return {"iifname": "iif", "iif": "iif", "oifname": "oif", "oif": "oif", "l4proto": "proto",
                "nfproto": "nfproto", "protocol": "nfproto"}.get(key), ()
    if "payload" in left:
        proto, what = left["payload"].get("protocol"), left["payload"].get("field")
        if proto in ("ip", "ip6"):
            implied = (Match("nfproto", (NAMED_PROTOCOL[proto],)),)
            if what in ("saddr", "daddr"):
                return ("src" if what == "saddr" else "dst"), implied
            if what in ("protocol", "nexthdr"):
                return "proto", implied
            return None, ()
        if what in ("sport", "dport"):
            return what, (Match("proto", (proto,)),) if proto in PAYLOAD_PORTS else ()
        return None, ()
    if "ct" in left:
        return {"state": "state", "status": "ctstatus"}.get(left["ct"].get("key")), ()
    if "fib" in left and left["fib"].get("result") == "type":
        flags = left["fib"].get("flags") or []
        return ("dst_type" if "daddr" in flags else "src_type" if flags == ["saddr"] else None), ()
    return None, ()


def _match(body: dict, sets: dict) -> list[Match] | None:
    left, op, right = body["left"], body["op"], body["right"]
    if isinstance(left, dict) and "fib" in left and left["fib"].get("result") in ("oif", "oifname") \
            and "saddr" in (left["fib"].get("flags") or []):
        return [Match("rpfilter", ())]
    field, implied = _field(left)
    if field is None:
        return None
    values = _values(field, right, sets)
    if values is None:
        return None
    if op in ("==", "in"):
        negate = False
    elif op == "!=":
        negate = True
    elif op in ("<", "<=", ">", ">=") and field in ("sport", "dport") and len(values) == 1:
        port = values[0][0]
        values = ((0, port - (op == "<")),) if op.startswith("<") else ((port + (op == ">"), 65535),)
        negate = False
    else:
        return None
    return [*implied, Match(field, values, negate)]


def _values(field: str, right: Any, sets: dict) -> tuple | None:
    if isinstance(right, str) and right.startswith("@"):
        elements = sets.get(right[1:])
        if elements is None:
            return None
        items = elements
    elif isinstance(right, dict) and "set" in right:
        items = right["set"]
    elif isinstance(right, list):
        items = right
    else:
        items = [right]
    values = []
    for item in items:
        if isinstance(item, dict) and "elem" in item:
            item = item["elem"].get("val")
        value = _value(field, item)
        if value is None:
            return None
        values.append(value)
    return tuple(values)


def _value(field: str, item: Any) -> Any:
    try:
        if field in ("src", "dst"):
            if isinstance(item, dict) and "prefix" in item:
                return ipaddress.ip_network(f"{item['prefix']['addr']}/{item['prefix']['len']}", strict=False)
            if isinstance(item, dict) and "range" in item:
                low, high = item["range"]
                return ipaddress.ip_address(low), ipaddress.ip_address(high)
            return ipaddress.ip_network(item, strict=False) if isinstance(item, str) else None
        if field in ("sport", "dport"):
            if isinstance(item, dict) and "range" in item:
                low, high = item["range"]
                return _port(low), _port(high)
            port = _port(item)
            return port, port
        if field == "nfproto":
            return NAMED_PROTOCOL.get(item, item) if isinstance(item, str) else None
        if field == "proto":
            return str(item).lower() if isinstance(item, (str, int)) else None
        if field in ("iif", "oif", "state", "ctstatus", "dst_type", "src_type"):
            return item.replace("\\*", "*") if isinstance(item, str) else None
    except (ValueError, TypeError, KeyError, OSError):
        return None
    return None


def _port(item: Any) -> int:
    if isinstance(item, int) or (isinstance(item, str) and item.isdigit()):
        return int(item)
    return socket.getservbyname(item)  # OSError when not a service name: the caller's None


def _vmap(body: dict, sets: dict) -> Action:
    field, _ = _field(body.get("key"))
    data = body.get("data")
    pairs = sets.get(data[1:], []) if isinstance(data, str) and data.startswith("@") else \
        data.get("set", []) if isinstance(data, dict) else []
    elements = []
    for pair in pairs:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], dict) or len(pair[1]) != 1:
            continue
        (kind, value), = pair[1].items()
        key = _value(field, pair[0]) if field else None
        verdict = Action(VERDICTS.get(kind, "continue"), value.get("target", "") if isinstance(value, dict) else "")
        elements.append(((key,) if key is not None else (), verdict))
    return Action("vmap", key=field or "", elements=tuple(elements))  # no field: the lookup is not known


def _translation(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    address, port = body.get("addr"), body.get("port")
    address = _right_text(address, None) if address is not None else ""
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


# --- rendering, for evidence: nft-like text of a rule (never parsed back) ---------------------------------

def _left_text(left: Any) -> str:
    if not isinstance(left, dict):
        return str(left)
    if "meta" in left:
        key = left["meta"].get("key", "")
        return key if key in ("iifname", "oifname", "iif", "oif", "mark") else f"meta {key}"
    if "payload" in left:
        return f"{left['payload'].get('protocol', 'th')} {left['payload'].get('field', '')}"
    if "ct" in left:
        return f"ct {left['ct'].get('key', '')}"
    if "fib" in left:
        return f"fib {' . '.join(left['fib'].get('flags') or [])} {left['fib'].get('result', '')}"
    return json.dumps(left, separators=(",", ":"))


def _op_text(op: str) -> str:
    return "" if op in ("==", "in") else f"{op} "


def _right_text(right: Any, left: Any) -> str:
    quoted = isinstance(left, dict) and left.get("meta", {}).get("key") in ("iifname", "oifname")
    if isinstance(right, str):
        return f'"{right}"' if quoted and not right.startswith("@") else right
    if isinstance(right, list):
        return ",".join(_right_text(r, left) for r in right)
    if isinstance(right, dict):
        if "set" in right:
            return "{ " + ", ".join(_right_text(r, left) for r in right["set"]) + " }"
        if "prefix" in right:
            return f"{right['prefix'].get('addr')}/{right['prefix'].get('len')}"
        if "range" in right:
            return "-".join(_right_text(r, left) for r in right["range"])
        if "elem" in right:
            return _right_text(right["elem"].get("val"), left)
        return json.dumps(right, separators=(",", ":"))
    return str(right).lower() if isinstance(right, bool) else str(right)


def _verdict_text(verdict: dict) -> str:
    (kind, value), = verdict.items()
    if kind == "reject" and isinstance(value, dict):
        return f"reject with {value.get('type', '')} {value.get('expr', '')}".strip()
    target = value.get("target", "") if isinstance(value, dict) else ""
    return f"{kind} {target}".strip()


def _data_text(data: Any) -> str:
    if isinstance(data, dict) and "set" in data:
        pairs = [f"{_right_text(key, None)} : {_verdict_text(verdict)}" for key, verdict in data["set"]
                 if isinstance(verdict, dict) and len(verdict) == 1]
        return "{ " + ", ".join(pairs) + " }"
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
