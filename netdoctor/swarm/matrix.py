"""The node matrix: every ordered pair of nodes, on every plane Swarm needs, judged from both ends.

Each node measures its half (netdoctor/swarm/probe.py): what it sent (TCP handshakes to 2377 and 7946,
hellos over VXLAN, UDP probes to 7946) and what reached it (hellos, and at its interface, before its
firewall, our UDP probes and VXLAN packets), plus its own firewall's verdict for each port and peer. Here
the manager pairs the halves up: A -> B on a plane works when B received what A sent (TCP: A's handshake
completed). When it does not, the cause is placed where the evidence is: B's INPUT rule (the packets even
reached B's interface), A's OUTPUT rule, nothing listening (refused), or the path between them.

Then the pattern is read, one plane at a time: a node that no other node reaches while it reaches them
"drops inbound"; one that reaches nobody while they reach it "loses outbound"; one cut both ways is cut
off on that plane. Each becomes one finding naming the node, the direction, the port and the rule; pairs
no pattern explains get a finding each. The matrix itself is the `node-matrix` finding's evidence (JSON),
a table in the text report, a grid in the TUI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from netdoctor.model import Finding, Fix, Severity, Status
from netdoctor.swarm.probe import GOSSIP_PORT, MANAGER_PORT

CHECK = "swarm"        # the `check` of the cluster's own findings
TARGET = "swarm"       # and their target
MATRIX_KEY = "node-matrix"
PLANES = ("tcp/2377", "tcp/7946", "udp/7946", "vxlan")
MARK = {"ok": "✓", "fail": "✗", "unknown": "?", "n/a": "·"}
TABLE_MAX_NODES = 12   # beyond, the table shows only the nodes of failing or unknown pairs


def is_matrix(finding: Finding) -> bool:
    return finding.check == CHECK and finding.key == MATRIX_KEY


def plane_label(plane: str, data_port: int) -> str:
    return f"UDP {data_port} (VXLAN)" if plane == "vxlan" else plane.replace("/", " ").upper()


def plane_port(plane: str, data_port: int) -> tuple[str, int]:
    return ("udp", data_port) if plane == "vxlan" else (plane.split("/")[0], int(plane.split("/")[1]))


@dataclass
class Cell:
    state: str            # ok, fail, unknown, n/a
    seen: str = ""        # what the two ends saw
    cause: str = ""       # for a failure: input (the receiver's rule), output (the sender's), refused, path,
                          # stack (arrived at the interface, not at our task), endpoint (never learned), "" unknown
    rule: str = ""        # the deciding rule (or policy), as its backend prints it
    at: str = ""          # the node whose rule it is
    where: str = ""       # backend, table and chain: "iptables-nft filter INPUT"
    undo: str = ""        # the command that removes it, run on `at`
    arrived: bool | None = None  # the packets reached the receiver's interface (None: not watched, or TCP)


@dataclass(frozen=True)
class Node:
    id: str
    name: str
    addr: str
    manager: bool


class Matrix:
    def __init__(self, nodes: list[Node], rows: dict[str, dict], data_port: int):
        self.nodes = nodes
        self.rows = rows                       # node id -> its row; a node without one did not report
        self.data_port = data_port
        self.by_id = {n.id: n for n in nodes}
        self.cells: dict[tuple[str, str, str], Cell] = {
            (a.id, b.id, plane): self._cell(a, b, plane) for a in nodes for b in nodes if a.id != b.id for plane in PLANES}

    # --- one cell -----------------------------------------------------------------------------------

    def _rule(self, node: Node, direction: str, peer: Node, plane: str) -> dict:
        """What drops `plane` on `node`, in (INPUT) from or out (OUTPUT) to `peer`: {rule, where, undo}, or {}."""
        proto, port = plane_port(plane, self.data_port)
        rules = (self.rows.get(node.id) or {}).get("rules") or {}
        return ((rules.get(direction) or {}).get(peer.id) or {}).get(f"{proto}/{port}") or {}

    def _blame(self, a: Node, b: Node, plane: str, seen: str, arrived: bool | None) -> Cell:
        """A failed A -> B: B's INPUT rule when the packets reached B (or nobody watched), else A's OUTPUT rule."""
        inbound, outbound = self._rule(b, "INPUT", a, plane), self._rule(a, "OUTPUT", b, plane)
        if inbound and arrived is not False:
            return Cell("fail", seen + (f" (they reach {b.name}'s interface)" if arrived else ""), "input",
                        inbound["rule"], b.name, inbound.get("where", ""), inbound.get("undo", ""), arrived)
        if outbound and not arrived:
            return Cell("fail", seen, "output", outbound["rule"], a.name, outbound.get("where", ""),
                        outbound.get("undo", ""), arrived)
        if arrived:
            return Cell("fail", f"{seen} (they reach {b.name}'s interface, not netdoctor's task there)", "stack",
                        arrived=True)
        return Cell("fail", seen + (f" (nothing arrives at {b.name}'s interface)" if arrived is False else ""), "path",
                    arrived=arrived)

    def _cell(self, a: Node, b: Node, plane: str) -> Cell:
        """A -> B on `plane`. A pair with a node that did not report stays unknown: that node's own error
        finding says what happened to it, and half a measurement would blame the wrong end."""
        mine, theirs = self.rows.get(a.id), self.rows.get(b.id)
        if plane == "tcp/2377" and not b.manager:
            return Cell("n/a")
        if mine is None or theirs is None:
            return Cell("unknown", f"{(b if mine else a).name} did not report")
        if plane.startswith("tcp/"):
            port = int(plane.split("/")[1])
            result = mine.get("tcp", {}).get(f"{b.id}:{port}")
            if not result:
                return Cell("unknown", f"{a.name} could not probe it")
            outcome = result["outcome"]
            if outcome == "connected":
                return Cell("ok", f"connected in {result['latency_ms']} ms")
            if outcome == "refused" and not self._rule(b, "INPUT", a, plane):
                return Cell("fail", "refused: nothing listens (or a REJECT rule answers)", "refused")
            return self._blame(a, b, plane, outcome, None)
        if plane == "udp/7946":
            if a.id in theirs.get("udp_heard", ()):
                arrived = Cell("ok", f"our probe reached {b.name}'s interface")
                return arrived if not self._rule(b, "INPUT", a, plane) else self._blame(a, b, plane, "probe seen", True)
            if not theirs.get("watched", True):  # B could not watch its interface: only a rule can tell
                if not (self._rule(b, "INPUT", a, plane) or self._rule(a, "OUTPUT", b, plane)):
                    return Cell("unknown", f"{b.name} could not watch its interface for our UDP probes")
                return self._blame(a, b, plane, "our UDP probes are dropped by a rule", None)
            return self._blame(a, b, plane, "our UDP probes did not arrive", False)
        if a.id in theirs.get("overlay_heard", ()):
            return Cell("ok", "hellos arrive over the overlay")
        if b.id not in mine.get("overlay_known", ()):
            # without the endpoint the engine programs no VXLAN route to it: not a data-plane test, and the
            # gossip that should have delivered it is judged on its own planes
            return Cell("unknown", f"{a.name}'s engine had not learned {b.name}'s overlay endpoint: not tested", "endpoint")
        seen = int((theirs.get("vxlan_seen") or {}).get(a.id, 0))
        return self._blame(a, b, plane, "hellos over VXLAN do not arrive", seen > 0 if theirs.get("watched", True) else None)

    # --- reading the pattern ------------------------------------------------------------------------

    def state(self, a: Node, b: Node, plane: str) -> str:
        return self.cells[(a.id, b.id, plane)].state

    def findings(self) -> list[Finding]:
        found: list[Finding] = self._endpoints_late()
        for plane in PLANES:
            claimed: set[tuple[str, str]] = set()
            for node in sorted(self.nodes, key=lambda n: -self._failures(n, plane)):
                finding = self._node_pattern(node, plane, claimed)
                if finding:
                    found.append(finding)
            found += [self._pair(a, b, plane) for a in self.nodes for b in self.nodes
                      if a.id != b.id and (a.id, b.id) not in claimed and self.state(a, b, plane) == "fail"]
        return found + [self.summary()]

    def _endpoints_late(self) -> list[Finding]:
        """Overlay endpoints that did not reach an engine although gossip works between every pair."""
        late = [(a, b) for (a, b, plane), c in self.cells.items() if plane == "vxlan" and c.cause == "endpoint"]
        if not late or any(c.state == "fail" for (_, _, plane), c in self.cells.items() if plane in ("tcp/7946", "udp/7946")):
            return []
        return [Finding(check=CHECK, target=TARGET, status=Status.WARN, severity=Severity.MEDIUM,
                        title=f"Overlay endpoints reached {len(late)} node pair(s) late or never, although gossip "
                              f"(TCP+UDP {GOSSIP_PORT}) works between every pair",
                        detail="A node's engine learns the other nodes' overlay endpoints by gossip; until it does, it "
                               "has no VXLAN route to them and their containers are unreachable from it. Slow gossip "
                               "comes from overloaded engines or a large cluster; run the check again to see if it "
                               "persists.", evidence={"pairs": [f"{self.by_id[a].name} -> {self.by_id[b].name}" for a, b in late]},
                        key="endpoints-late")]

    def _failures(self, node: Node, plane: str) -> int:
        return sum((self.state(o, node, plane) == "fail") + (self.state(node, o, plane) == "fail")
                   for o in self.nodes if o.id != node.id)

    def _judged(self, pairs: list[tuple[Node, Node]], plane: str) -> list[tuple[Node, Node]]:
        return [(a, b) for a, b in pairs if self.state(a, b, plane) in ("ok", "fail")]

    def _node_pattern(self, node: Node, plane: str, claimed: set) -> Finding | None:
        others = [o for o in self.nodes if o.id != node.id]
        inbound = [p for p in self._judged([(o, node) for o in others], plane) if (p[0].id, p[1].id) not in claimed]
        outbound = [p for p in self._judged([(node, o) for o in others], plane) if (p[0].id, p[1].id) not in claimed]
        in_fail = bool(inbound) and all(self.state(a, b, plane) == "fail" for a, b in inbound)
        out_fail = bool(outbound) and all(self.state(a, b, plane) == "fail" for a, b in outbound)
        if not (in_fail or out_fail):
            return None
        if in_fail and out_fail:
            direction, pairs = "both", inbound + outbound
        elif in_fail:
            direction, pairs = "inbound", inbound
        else:
            direction, pairs = "outbound", outbound
        # with two nodes, "A drops inbound" and "B loses outbound" describe the same pair: only a rule decides
        rule_side = [self.cells[(a.id, b.id, plane)] for a, b in pairs]
        if len(others) < 2 and direction != "both" and not any(c.at == node.name for c in rule_side):
            return None
        claimed |= {(a.id, b.id) for a, b in pairs}
        return self._node_finding(node, plane, direction, pairs)

    def _node_finding(self, node: Node, plane: str, direction: str, pairs: list[tuple[Node, Node]]) -> Finding:
        proto, port = plane_port(plane, self.data_port)
        label = plane_label(plane, self.data_port)
        cells = {(a.name, b.name): self.cells[(a.id, b.id, plane)] for a, b in pairs}
        drops = list({c.rule: c for c in cells.values() if c.rule and c.at == node.name}.values())  # its own rules
        peers = sorted({a.name if b.id == node.id else b.name for a, b in pairs})
        what = {"inbound": f"{node.name} drops inbound {label}", "outbound": f"{node.name}'s outbound {label} is lost",
                "both": f"{node.name} is cut off on {label}, in both directions"}[direction]
        whom = "every other node" if len(peers) == len(self.nodes) - 1 else ", ".join(peers)
        contrast = self._contrast(node, plane, peers, whom) if direction == "inbound" else ""
        title = what + ": " + (contrast or {
            "inbound": f"{whom} cannot reach it ({self._outcomes(cells)}), while it reaches them",
            "outbound": f"it reaches none of {whom} ({self._outcomes(cells)}), while they reach it",
            "both": f"neither it nor {whom} get through ({self._outcomes(cells)})"}[direction])
        if drops:
            where = f"{node.name}'s firewall: " + "; ".join(f"{c.rule} ({c.where})" for c in drops)
        elif direction == "inbound" and any(b == node.name and c.arrived for (_, b), c in cells.items()):
            where = (f"the packets reach {node.name}'s interface and no rule there drops them: look at its "
                     f"overlay (checksum offload) and `dmesg`")
        else:
            where = ("no rule on either end drops it: something between the nodes does (a cloud security group, "
                     "a hardware firewall)")
        chain = "INPUT" if direction == "inbound" else "OUTPUT" if direction == "outbound" else "INPUT+OUTPUT"
        key = f"firewall-drop:{node.name}:{chain}:{proto}-{port}" if drops else f"{direction}-lost:{node.name}:{proto}-{port}"
        evidence = {"node": node.name, "address": node.addr, "direction": direction, "plane": plane, "proto": proto,
                    "port": port, "peers": peers, "pairs": [f"{a} -> {b}: {c.seen}" for (a, b), c in cells.items()]}
        if drops:  # as every firewall finding names it (issue 11's vocabulary): where, and which rule
            evidence.update(where="; ".join(c.where for c in drops), rule="; ".join(c.rule for c in drops))
        undo = [f"{c.undo}   # on {node.name}" for c in drops if c.undo]
        if not undo:
            flag = "-d" if direction == "outbound" else "-s"
            addresses = sorted({(a if b.id == node.id else b).addr for a, b in pairs})
            undo = [f"iptables -S {'OUTPUT' if direction == 'outbound' else 'INPUT'} | grep -w {port}   # on {node.name}",
                    f"nft list ruleset | grep -w {port}   # on {node.name}"]
            undo += [f"iptables -I {'OUTPUT' if direction == 'outbound' else 'INPUT'} -p {proto} --dport {port} {flag} "
                     f"{address} -j ACCEPT   # on {node.name}" for address in addresses]
        way = {"inbound": "in to", "outbound": "out of", "both": "in to and out of"}[direction]
        return Finding(check=CHECK, target=TARGET, status=Status.FAIL, severity=self._severity(plane), title=title,
                       detail=f"{self._why(plane)} Where: {where}.", evidence=evidence, key=key,
                       fix=Fix(f"Let {label} {way} {node.name}" + (": remove what drops it." if drops else "."), tuple(undo)))

    def _contrast(self, node: Node, plane: str, peers: list[str], whom: str) -> str:
        """For inbound VXLAN: the control plane to the same node works (the trouble is VXLAN, not the node)."""
        if plane != "vxlan":
            return ""
        tcp_ok = [o for o in self.nodes if o.name in peers and self.state(o, node, "tcp/7946") == "ok"]
        if len(tcp_ok) == len(peers):
            return f"{whom} reaches {node.name} over TCP {GOSSIP_PORT} but not its overlay endpoints"
        return ""

    @staticmethod
    def _outcomes(cells: dict) -> str:
        """`timeout`, or `timeout, refused` when they differ."""
        return ", ".join(dict.fromkeys(c.seen.split(" (")[0].split(":")[0] for c in cells.values()))

    def _why(self, plane: str) -> str:
        return {"tcp/2377": f"Without TCP {MANAGER_PORT} a node cannot join or follow its managers (raft, tasks).",
                "tcp/7946": f"Without TCP {GOSSIP_PORT} nodes cannot sync their network state: overlay endpoints "
                            "and names appear late or never.",
                "udp/7946": f"Without UDP {GOSSIP_PORT} gossip falls back to TCP: failure detection and updates slow down, "
                            "and nodes are falsely marked down.",
                "vxlan": f"VXLAN (UDP {self.data_port}) carries all container traffic between nodes: services and "
                         "containers on other nodes are unreachable while the control plane looks healthy."}[plane]

    def _pair(self, a: Node, b: Node, plane: str) -> Finding:
        cell = self.cells[(a.id, b.id, plane)]
        proto, port = plane_port(plane, self.data_port)
        label = plane_label(plane, self.data_port)
        where = {"input": f"{b.name}'s firewall drops it: {cell.rule} ({cell.where})",
                 "output": f"{a.name}'s firewall drops it: {cell.rule} ({cell.where})",
                 "refused": f"nothing listens on {b.name}:{port}: is its engine in the swarm?",
                 "stack": f"{b.name} receives the packets but they do not reach its containers",
                 "endpoint": f"{a.name} has no overlay route to {b.name}", "path": "lost between the two nodes"}.get(cell.cause, cell.seen)
        commands = ((f"{cell.undo}   # on {cell.at}",) if cell.undo else
                    (f"iptables -I INPUT -p {proto} --dport {port} -s {a.addr} -j ACCEPT   # on {b.name}",))
        direction = "INPUT" if cell.cause == "input" else "OUTPUT"
        key = (f"firewall-drop:{cell.at}:{direction}:{proto}-{port}:{a.name}->{b.name}" if cell.rule
               else f"pair-lost:{proto}-{port}:{a.name}->{b.name}")
        evidence = {"from": a.name, "to": b.name, "plane": plane, "proto": proto, "port": port, "seen": cell.seen,
                    "cause": cell.cause}
        if cell.rule:
            evidence.update(node=cell.at, where=cell.where, rule=cell.rule)
        return Finding(check=CHECK, target=TARGET, status=Status.FAIL, severity=self._severity(plane),
                       title=f"{a.name} -> {b.name}: {label} fails ({cell.seen})", detail=f"{where}. {self._why(plane)}",
                       evidence=evidence, fix=Fix(f"Let {label} from {a.name} in to {b.name}.", commands), key=key)

    def _severity(self, plane: str) -> Severity:
        return Severity.CRITICAL if plane == "tcp/2377" else Severity.HIGH

    # --- the whole --------------------------------------------------------------------------------

    def as_dict(self) -> dict:
        return {
            "data_port": self.data_port, "planes": list(PLANES),
            "nodes": [{**asdict(n), "reported": n.id in self.rows} for n in self.nodes],
            "pairs": [{"from": a.name, "to": b.name, **{plane: _cell_dict(self.cells[(a.id, b.id, plane)]) for plane in PLANES}}
                      for a in self.nodes for b in self.nodes if a.id != b.id],
        }

    def summary(self) -> Finding:
        states = [c.state for c in self.cells.values() if c.state != "n/a"]
        failing, unknown = states.count("fail"), states.count("unknown")
        paths = len(states)
        planes = f"TCP {MANAGER_PORT} to managers, TCP+UDP {GOSSIP_PORT}, UDP {self.data_port} (VXLAN)"
        if not failing and not unknown:
            title, status = f"Node matrix: all {paths} paths between {len(self.nodes)} nodes work ({planes})", Status.PASS
        else:
            title = "Node matrix: " + ", ".join(part for part in (
                f"{failing} of {paths} paths between {len(self.nodes)} nodes fail" if failing else "",
                f"{unknown} {'' if failing else f'of {paths} '}unknown (a node did not report)" if unknown else "",
                f"{paths - failing - unknown} work") if part)
            status = Status.INFO  # each failure is a finding of its own
        return Finding(check=CHECK, target=TARGET, status=status, severity=Severity.HIGH, title=title,
                       detail=f"Every ordered pair of nodes, from both ends: {planes}.", evidence=self.as_dict(),
                       key=MATRIX_KEY)


def _cell_dict(cell: Cell) -> dict:
    return {k: v for k, v in asdict(cell).items() if v not in ("", None)}


def table_lines(evidence: dict) -> list[str]:
    """The matrix as a text table: a row per sending node, a column per receiving node, a mark per plane."""
    nodes = [n["name"] for n in evidence["nodes"]]
    planes = evidence["planes"]
    pairs = {(p["from"], p["to"]): p for p in evidence["pairs"]}
    shown = nodes
    if len(nodes) > TABLE_MAX_NODES:
        bad = {name for (a, b), p in pairs.items() if any(p[pl]["state"] in ("fail", "unknown") for pl in planes)
               for name in (a, b)}
        shown = [n for n in nodes if n in bad][:TABLE_MAX_NODES]
    width = max([len(n) for n in shown] + [2 * len(planes) - 1])
    lines = [" " * (width + 2) + "  ".join(n.ljust(width) for n in shown)]
    for a in shown:
        cells = ["-".center(2 * len(planes) - 1).ljust(width) if a == b else
                 " ".join(MARK[pairs[(a, b)][pl]["state"]] for pl in planes).ljust(width) for b in shown]
        lines.append(f"{a.ljust(width)}  " + "  ".join(cells))
    legend = ", ".join(plane_label(pl, evidence["data_port"]) for pl in planes)
    lines.append(f"rows send, columns receive; in each cell: {legend}")
    lines.append("✓ works  ✗ fails  ? unknown (a node did not report)  · not applicable (2377 only to managers)")
    if shown != nodes:
        lines.append(f"(only the {len(shown)} nodes of failing or unknown pairs of {len(nodes)} are shown)")
    return lines
