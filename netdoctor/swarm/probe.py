"""One node's half of the node matrix: what this node sends to every other node, and what reaches it.

Run by the node agent (netdoctor/swarm/node.py) on every node at once, for every other node of the
manager's list:

- control plane, sent: a TCP handshake to 7946 (gossip) and, on managers, 2377, from the node's own
  namespace (the engine's); a few UDP datagrams to 7946, marked as ours.
- data plane, sent: "hellos", small UDP datagrams from netdoctor's task on this node to netdoctor's task on
  the other node over netdoctor's own overlay network, i.e. VXLAN on the data-path port. A hello arriving is
  proof the path works in that direction; each hello also says which nodes' hellos and UDP probes this node
  has received, so both ends learn when they are done and stop early.
- received: a packet socket in the node's namespace (a BPF filter keeps UDP to 7946 and to the data-path
  port) sees, per sender, our UDP probes and any VXLAN packet as they reach the node's interface, i.e.
  before its firewall. Whether the firewall then drops them is read from its rules (next point); whether
  VXLAN got through is what the hellos say.
- rules: the node's firewall verdict (any backend, netdoctor/firewall) for each swarm port, in from and out
  to each node, with the deciding rule and the command that removes it.

Nothing here changes the node: sockets are opened and closed, no rule or setting is touched. memberlist
(the engine's gossip) receives our UDP probes on 7946, cannot decrypt them and drops them (it may log one
line per probe); at most 2 x MAX_UDP_PROBES per other node are sent, and none once it has confirmed receipt.
"""

from __future__ import annotations

import ctypes
import json
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from netdoctor.facts import NamespaceView
from netdoctor.firewall import FROM_HOST, TO_HOST, Packet, commands, follow
from netdoctor.probes import concurrently

MANAGER_PORT = 2377
GOSSIP_PORT = 7946
HELLO_PORT = 7999          # in netdoctor's own task containers, on netdoctor's own overlay: nobody else's port
ROUND = 0.25               # seconds between two rounds of hellos
MAX_UDP_PROBES = 4         # UDP datagrams to one node's 7946 before its first hello, and as many after
UDP_PROBE_SPACING = 0.75
ENDPOINT_REFRESH = 0.5     # how often the overlay's endpoints are read again until every node's is known
LINGER_ROUNDS = 2          # hellos sent after being done, so the other ends hear that we heard them


@dataclass(frozen=True)
class PeerNode:
    index: int        # position in the manager's list: hellos name nodes by it (short datagrams at any size)
    id: str
    name: str
    addr: str
    manager: bool


def nodes_of(plan: dict) -> list[PeerNode]:
    return [PeerNode(i, n["id"], n["name"], n["addr"], bool(n.get("manager"))) for i, n in enumerate(plan["nodes"])]


def ports(peer_is_manager: bool, data_port: int) -> list[tuple[str, int]]:
    """The swarm's ports towards a node: 2377 only to managers."""
    return [("tcp", GOSSIP_PORT), ("udp", GOSSIP_PORT), ("udp", data_port)] + ([("tcp", MANAGER_PORT)] if peer_is_manager else [])


# --- a packet socket that keeps UDP to two ports (classic BPF, for a SOCK_DGRAM socket: offsets from the IP header)

class _Instruction(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_Instruction))]


SO_ATTACH_FILTER = 26
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4


def udp_filter(*dports: int) -> list[tuple[int, int, int, int]]:
    """IPv4, UDP, not a later fragment, destination port one of `dports` (two)."""
    first, second = dports
    return [
        (0x30, 0, 0, 9),            # ldb [9]              protocol
        (0x15, 0, 6, 17),           # jeq #17 else drop    UDP
        (0x28, 0, 0, 6),            # ldh [6]              flags + fragment offset
        (0x45, 4, 0, 0x1FFF),       # jset #0x1fff drop    a later fragment has no UDP header
        (0xB1, 0, 0, 0),            # ldxb 4*([0]&0xf)     IP header length
        (0x48, 0, 0, 2),            # ldh [x+2]            UDP destination port
        (0x15, 2, 0, first),        # jeq #first accept
        (0x15, 1, 0, second),       # jeq #second accept else drop
        (0x06, 0, 0, 0),            # drop
        (0x06, 0, 0, 0x40000),      # accept
    ]


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    instructions = (_Instruction * len(program))(*(_Instruction(*i) for i in program))
    fprog = _Program(len(program), ctypes.cast(instructions, ctypes.POINTER(_Instruction)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))  # the kernel copies the program


def parse_udp(packet: bytes) -> tuple[str, int, bytes] | None:
    """(source address, destination port, payload) of an IPv4 UDP packet, as a SOCK_DGRAM packet socket gives it."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 17:
        return None
    header = (packet[0] & 0x0F) * 4
    if len(packet) < header + 8:
        return None
    dport = struct.unpack_from("!H", packet, header + 2)[0]
    return socket.inet_ntoa(packet[12:16]), dport, packet[header + 8:]


# --- the measurement ------------------------------------------------------------------------------------

@dataclass
class _Peer:
    node: PeerNode
    endpoint: str = ""              # its task's address on our overlay, once the engine knows it
    known_at: float = 0.0
    heard: bool = False             # its hello reached us over the overlay
    acked_hello: bool = False       # it says ours reached it
    udp_heard: bool = False         # our packet socket saw its UDP probe to 7946
    acked_udp: bool = False         # it says ours reached it
    vxlan_seen: int = 0             # VXLAN packets from its address seen reaching our interface
    udp_sent: int = 0
    udp_after_hello: int = 0        # probes sent since its first hello came
    udp_last: float = 0.0
    hellos_after_done: int = 0

    @property
    def done(self) -> bool:
        """Both ways proven: what it sent reached us, what we sent reached it (and it told us so)."""
        return self.heard and self.udp_heard and self.acked_hello and self.acked_udp


@dataclass
class Measurement:
    """Everything one node measures; `row()` is what it reports (the manager pairs rows up)."""

    run: str
    me: PeerNode
    peers: dict[int, _Peer]
    data_port: int
    tcp: dict[tuple[str, int], dict] = field(default_factory=dict)    # (node id, port) -> outcome
    rules: dict = field(default_factory=dict)
    underlay: str = ""
    errors: list[str] = field(default_factory=list)
    window_ms: float = 0.0
    watched: bool = False          # a packet socket watched the node's interface
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hello(self) -> bytes:
        with self.lock:
            return json.dumps({"nd": self.run, "from": self.me.index,
                               "heard": [i for i, p in self.peers.items() if p.heard],
                               "udp": [i for i, p in self.peers.items() if p.udp_heard]}).encode()

    def take_hello(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            peer = self.peers.get(message["from"]) if message.get("nd") == self.run else None
        except (ValueError, KeyError, TypeError):
            return
        if peer is None:
            return
        with self.lock:
            peer.heard = True
            peer.acked_hello |= self.me.index in message.get("heard", ())
            peer.acked_udp |= self.me.index in message.get("udp", ())

    def take_packet(self, packet: bytes, by_address: dict[str, _Peer], marker: bytes) -> None:
        parsed = parse_udp(packet)
        peer = by_address.get(parsed[0]) if parsed else None
        if peer is None:
            return
        _, dport, payload = parsed
        with self.lock:
            if dport == self.data_port:
                peer.vxlan_seen += 1
            elif payload.startswith(marker):
                peer.udp_heard = True

    def row(self) -> dict:
        ids = {p.node.index: p.node.id for p in self.peers.values()}
        return {
            "node": self.me.id, "addr": self.me.addr, "underlay": self.underlay, "data_port": self.data_port,
            "window_ms": round(self.window_ms, 1), "errors": self.errors,
            "tcp": {f"{node}:{port}": outcome for (node, port), outcome in self.tcp.items()},
            "overlay_known": sorted(ids[i] for i, p in self.peers.items() if p.endpoint),
            "overlay_heard": sorted(ids[i] for i, p in self.peers.items() if p.heard),
            "udp_heard": sorted(ids[i] for i, p in self.peers.items() if p.udp_heard),
            "vxlan_seen": {ids[i]: p.vxlan_seen for i, p in self.peers.items() if p.vxlan_seen},
            "watched": self.watched,
            # what was still missing when the exchange ended (a window that ran out says why)
            "missing": {ids[i]: [flag for flag in ("heard", "udp_heard", "acked_hello", "acked_udp") if not getattr(p, flag)]
                        for i, p in self.peers.items() if not p.done},
            "rules": self.rules,
        }


def measure(swarm: dict, me_id: str, host: NamespaceView, overlay: NamespaceView | None, endpoints, timeout: float,
            window: float) -> dict:
    """Measure this node's row. `endpoints()` returns {node address: its task's address on our overlay}
    as this node's engine knows them (read again until every node's is known)."""
    nodes = nodes_of(swarm)
    me = next(n for n in nodes if n.id == me_id)
    peers = {n.index: _Peer(n) for n in nodes if n.id != me_id}
    m = Measurement(swarm["run"], me, peers, int(swarm["data_port"]))
    started = time.monotonic()
    tcp_done = threading.Thread(target=_tcp, args=(m, host, timeout), name="matrix tcp", daemon=True)
    tcp_done.start()
    _rules(m, host)
    sockets = _open(m, host, overlay)
    stop = threading.Event()
    receiver = threading.Thread(target=_receive, args=(m, sockets, stop), name="matrix receive", daemon=True)
    receiver.start()
    try:
        _exchange(m, sockets, endpoints, started, window)
    finally:
        stop.set()
        receiver.join(1)
        for sock in sockets.values():
            sock.close()
    tcp_done.join(timeout + 1)
    m.window_ms = (time.monotonic() - started) * 1000
    return m.row()


def _tcp(m: Measurement, host: NamespaceView, timeout: float) -> None:
    jobs = [(p.node, port) for p in m.peers.values() for port in (GOSSIP_PORT, MANAGER_PORT)
            if port == GOSSIP_PORT or p.node.manager]
    try:
        results = concurrently(lambda job: host.connect(job[0].addr, job[1], timeout), jobs, 16)
    except OSError as exc:
        m.errors.append(f"TCP probes from the node's namespace failed: {exc}")
        return
    for (node, port), result in zip(jobs, results):
        m.tcp[(node.id, port)] = {"outcome": result.outcome, "latency_ms": round(result.latency_ms, 1),
                                  **({"error": result.error} if result.error else {})}


def _rules(m: Measurement, host: NamespaceView) -> None:
    """The node's verdicts for each swarm port, in from and out to each node: drops only, with the rule (or
    policy), where it lives and the command that removes it, in its backend's syntax."""
    try:
        facts, rules = host.facts, host.firewall
    except OSError as exc:
        m.errors.append(f"the node's addresses and firewall could not be read: {exc}")
        return
    holder = next((a for a in facts.addresses if a.address == m.me.addr), None)
    link = facts.link(index=holder.index) if holder else None
    m.underlay = link.name if link else ""
    if rules.error:
        m.rules = {"error": rules.error}
        return
    family = 6 if ":" in m.me.addr else 4
    drops: dict[str, dict[str, dict[str, dict]]] = {"INPUT": {}, "OUTPUT": {}}
    for peer in m.peers.values():
        for direction, wanted in (("INPUT", ports(m.me.manager, m.data_port)), ("OUTPUT", ports(peer.node.manager, m.data_port))):
            for proto, port in wanted:
                if direction == "INPUT":
                    packet, hooks = Packet(family, src=peer.node.addr, dst=m.me.addr, proto=proto, dport=port,
                                           iif=m.underlay, oif="", src_local=False, dst_local=True), TO_HOST
                else:
                    packet, hooks = Packet(family, src=m.me.addr, dst=peer.node.addr, proto=proto, dport=port,
                                           iif="", oif=m.underlay, src_local=True, dst_local=False), FROM_HOST
                step = follow(rules, packet, hooks).drop
                if step is not None:
                    drops[direction].setdefault(peer.node.id, {})[f"{proto}/{port}"] = {
                        "rule": step.decided_by, "where": (step.rule or step.chain).place,
                        "undo": commands.delete(step.rule) if step.rule else commands.set_policy(step.chain, "accept")}
    m.rules = drops


def _open(m: Measurement, host: NamespaceView, overlay: NamespaceView | None) -> dict[str, socket.socket]:
    sockets: dict[str, socket.socket] = {}
    try:
        capture = host.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        attach_filter(capture, udp_filter(GOSSIP_PORT, m.data_port))
        while _pending(capture):  # packets queued before the filter was attached
            capture.recv(65535)
        sockets["capture"] = capture
        m.watched = True
    except OSError as exc:
        m.errors.append(f"cannot watch the node's interface (a packet socket needs CAP_NET_RAW): {exc}")
    try:
        sockets["probe"] = host.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        m.errors.append(f"cannot send UDP from the node's namespace: {exc}")
    if overlay is not None:
        try:
            hello = overlay.socket(socket.AF_INET, socket.SOCK_DGRAM)
            hello.bind(("0.0.0.0", HELLO_PORT))
            sockets["hello"] = hello
        except OSError as exc:
            m.errors.append(f"cannot listen on netdoctor's overlay: {exc}")
    return sockets


def _pending(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def _receive(m: Measurement, sockets: dict[str, socket.socket], stop: threading.Event) -> None:
    by_address = {p.node.addr: p for p in m.peers.values()}
    marker = f"NETDOCTOR {m.run} ".encode()
    watched = [s for name, s in sockets.items() if name in ("capture", "hello")]
    while watched and not stop.is_set():
        try:
            ready, _, _ = select.select(watched, [], [], 0.1)
            for sock in ready:
                if sock is sockets.get("capture"):
                    packet, address = sock.recvfrom(65535)
                    if address[2] != PACKET_OUTGOING:
                        m.take_packet(packet, by_address, marker)
                else:
                    m.take_hello(sock.recv(65535))
        except OSError:  # closed under us at the end
            return


def _exchange(m: Measurement, sockets: dict[str, socket.socket], endpoints, started: float, window: float) -> None:
    """Rounds of hellos and UDP probes until every node confirmed both ways (then a few more rounds, so the
    others hear it too), or the window closes; a node whose endpoint appeared late gets its own window."""
    probe, hello = sockets.get("probe"), sockets.get("hello")
    last_refresh, linger = 0.0, None
    while True:
        now = time.monotonic()
        unknown = [p for p in m.peers.values() if not p.endpoint]
        if hello and unknown and now - last_refresh >= ENDPOINT_REFRESH:
            last_refresh = now
            try:
                known = endpoints()
            except Exception as exc:  # the engine's answer is one input among others: note it, go on
                known = {}
                if not m.errors or not m.errors[-1].startswith("the overlay's endpoints"):
                    m.errors.append(f"the overlay's endpoints could not be read: {exc}")
            for peer in unknown:
                if known.get(peer.node.addr):
                    peer.endpoint, peer.known_at = known[peer.node.addr], now
        if hello:
            payload = m.hello()
            for peer in m.peers.values():
                # a peer proven both ways gets a few more, so that it hears what we saw of it; then no more traffic
                if peer.endpoint and peer.hellos_after_done < LINGER_ROUNDS:
                    _send(hello, payload, (peer.endpoint, HELLO_PORT))
                    if peer.done:
                        peer.hellos_after_done += 1
        if probe:
            for peer in m.peers.values():
                if _probe_due(peer, now, window):
                    _send(probe, f"NETDOCTOR {m.run} {m.me.index}".encode(), (peer.node.addr, GOSSIP_PORT))
                    peer.udp_sent, peer.udp_last = peer.udp_sent + 1, now
                    peer.udp_after_hello += peer.heard
        with m.lock:
            done = all(p.done for p in m.peers.values())
        if done and linger is None:
            linger = LINGER_ROUNDS
        if linger is not None:
            if linger == 0:
                return
            linger -= 1
        late = max((p.known_at for p in m.peers.values()), default=0.0)
        if now - started >= window and (now - late >= window / 2 or now - started >= 2 * window):
            return
        time.sleep(ROUND)


def _probe_due(peer: _Peer, now: float, window: float) -> bool:
    """Whether to send `peer` a UDP probe now. Its packet socket watches from the moment its agent starts,
    and its hellos say it has: once one came, a few probes in quick succession until it confirms one; before
    that (its agent late, or the overlay broken), a few spread over the window, so a late agent still sees one."""
    if peer.acked_udp:
        return False
    if peer.heard:
        return peer.udp_after_hello < MAX_UDP_PROBES and now - peer.udp_last >= UDP_PROBE_SPACING
    return peer.udp_sent < MAX_UDP_PROBES and now - peer.udp_last >= window / MAX_UDP_PROBES


def _send(sock: socket.socket, payload: bytes, address: tuple[str, int]) -> None:
    try:
        sock.sendto(payload, address)
    except OSError:
        pass  # unreachable or refused right away: the other end's report says what did not arrive
