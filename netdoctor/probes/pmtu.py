"""Path-MTU sweep: the largest DF packet that makes the round trip from a namespace to one destination.

Two rounds of DF echoes (probes/icmp.py), each sent all at once and waited for at most half the time
budget: a coarse round over the whole range, then every size between the largest answered and the
smallest unanswered. A router's "fragmentation needed" reply is recorded too. What this measures is the
round trip to that destination and nothing else: a destination that does not cross a link cannot say
anything about that link's MTU.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netdoctor.facts import NamespaceView
from netdoctor.probes import concurrently
from netdoctor.probes.icmp import EchoRound

MIN_SIZE = 576            # every IPv4 path carries this much; below it the destination is just not answering
COARSE_STEPS = 16
COMMON_MTUS = (1280, 1400, 1420, 1450, 1460, 1472, 1480, 1492, 1500, 9000)


@dataclass(frozen=True)
class PmtuResult:
    destination: str
    ceiling: int                  # the largest size tried: the outgoing interface's MTU
    largest_passed: int | None    # None: not even MIN_SIZE came back
    smallest_failed: int | None   # None: everything up to the ceiling came back
    reported_mtu: int | None      # next-hop MTU from a router's "fragmentation needed", if one answered
    reported_by: str | None       # that router
    probes_sent: int
    detail: str = ""              # unreachable / local errors, when they explain a silence

    @property
    def answered(self) -> bool:
        return self.largest_passed is not None

    def to_evidence(self) -> dict:
        data = {"destination": self.destination, "largest_df_packet_passed": self.largest_passed,
                "smallest_df_packet_lost": self.smallest_failed, "tried_up_to": self.ceiling,
                "echoes_sent": self.probes_sent}
        if self.reported_mtu:
            data["router_reported_mtu"] = self.reported_mtu
            data["reported_by"] = self.reported_by
        if self.detail:
            data["detail"] = self.detail
        return data


def _coarse_sizes(ceiling: int) -> list[int]:
    low = min(MIN_SIZE, ceiling)
    step = max(1, (ceiling - low) // COARSE_STEPS)
    sizes = set(range(low, ceiling, step)) | {m for m in COMMON_MTUS if low < m < ceiling} | {low, ceiling}
    return sorted(sizes)


def _bounds(rounds: list[tuple[list[int], EchoRound]]) -> tuple[int | None, int | None]:
    """Largest size answered, and the smallest size above it that was tried but not answered."""
    passed = set().union(*(r.answered for _, r in rounds))
    tried = set().union(*(sizes for sizes, _ in rounds))
    largest = max(passed, default=None)
    lost = [s for s in tried - passed if largest is None or s > largest]
    return largest, min(lost, default=None)


def sweep(view: NamespaceView, destination: str, ceiling: int, timeout: float) -> PmtuResult:
    """Measure the largest DF IPv4 packet (up to `ceiling` bytes) that reaches `destination` and comes back.
    Takes at most about `timeout` seconds."""
    wait = max(0.1, timeout / 2)
    coarse = _coarse_sizes(ceiling)
    rounds = [(coarse, view.echo(destination, coarse, wait))]
    largest, lost = _bounds(rounds)
    if largest is not None and lost is not None and lost - largest > 1:
        fine = list(range(largest + 1, lost))
        rounds.append((fine, view.echo(destination, fine, wait)))
        largest, lost = _bounds(rounds)
    reported_mtu, reported_by = min((report for _, r in rounds for report in r.frag_needed.values() if report[0]),
                                    default=(None, None))
    notes = sorted({why for _, r in rounds for why in (*r.unreachable.values(), *r.send_errors.values())})
    return PmtuResult(destination, ceiling, largest, lost, reported_mtu, reported_by,
                      sum(len(sizes) for sizes, _ in rounds), "; ".join(notes))


@dataclass(frozen=True)
class Confirmation:
    """What DF probes could say about a suspected MTU mismatch on the host's egress device."""

    verdict: str                  # confirmed, not_confirmed, inconclusive, not_probed
    text: str
    results: tuple[PmtuResult, ...] = ()

    def to_evidence(self) -> dict:
        data: dict = {"df_probe": self.text}
        if self.results:
            data["df_probe_results"] = [r.to_evidence() for r in self.results]
        return data


def _named_destinations(ctx) -> list[str]:
    """IPv4 addresses the user named (--probe HOST:PORT with an IP, --peer containers) and the target's gateway."""
    found = []
    for spec in ctx.options.probes:
        host = spec.rpartition(":")[0].strip("[]")
        try:
            if ipaddress.ip_address(host).version == 4:
                found.append(host)
        except ValueError:
            continue
    for name in ctx.options.peer_names:
        try:
            peer = ctx.docker.container(name)
        except Exception:  # an unknown peer is the icc check's finding, not this one's
            continue
        found += [a.ip for a in peer.attachments if a.ip]
    defaults = ctx.netns.facts.default_routes()
    if defaults and defaults[0].gateway:
        found.append(defaults[0].gateway)
    return list(dict.fromkeys(found))


def confirm(ctx, link, egress_route) -> Confirmation:
    """Try to confirm that `link` (in the target) is bigger than the host's egress path, with DF echoes to
    an address of the target's own config or one the user named. Only a destination the host routes out
    through the egress device can confirm it: the usual gateway of a Docker bridge is the host's own
    bridge address, and a probe to it only measures the target -> host hop."""
    host = ctx.host.facts
    host_addresses = {a.address for a in host.addresses}
    egress = host.link(index=egress_route.oif)
    egress_name = egress.name if egress else "the egress device"
    defaults = ctx.netns.facts.default_routes()
    gateway = defaults[0].gateway if defaults else None
    if not gateway or gateway not in host_addresses:
        return Confirmation("not_probed", f"not probed: the target's gateway {gateway or '(none)'} is not an address of the "
                                          f"host namespace {ctx.host.path}, so no probe can be tied to {egress_name}")
    beyond, local = [], []
    for address in _named_destinations(ctx):
        route = host.route_to(address)
        crosses = address not in host_addresses and route is not None and route.oif == egress_route.oif
        (beyond if crosses else local).append(address)
    chosen = beyond[:3] or [gateway]
    results = tuple(concurrently(lambda address: sweep(ctx.netns, address, link.mtu, ctx.options.timeout), chosen))
    if not beyond:
        [result] = results
        passed = f"DF packets of up to {result.largest_passed} bytes reach it" if result.answered else "it did not answer ICMP echo"
        return Confirmation("inconclusive",
                            f"inconclusive: the only address to probe was the gateway {gateway}, an address of the host "
                            f"itself; {passed}, which covers the target -> host hop only, not {egress_name}. "
                            f"Name a host beyond {egress_name} with --probe HOST:PORT to confirm.", results)
    smaller = [r for r in results if r.answered and r.largest_passed < link.mtu]
    if smaller:
        best = min(smaller, key=lambda r: r.largest_passed)
        reported = f", a router reported MTU {best.reported_mtu}" if best.reported_mtu else ""
        return Confirmation("confirmed", f"confirmed: largest DF packet that passed = {best.largest_passed} bytes "
                                         f"(to {best.destination} and back, out through {egress_name}{reported}; "
                                         f"{link.name} sends up to {link.mtu})", results)
    told = [r for r in results if r.reported_mtu and r.reported_mtu < link.mtu]
    if told:
        best = min(told, key=lambda r: r.reported_mtu)
        return Confirmation("confirmed", f"confirmed by a router: {best.reported_by} refused DF packets to {best.destination} "
                                         f"above {best.reported_mtu} bytes ('fragmentation needed', MTU {best.reported_mtu}); "
                                         f"{best.destination} itself sent no echo reply; {link.name} sends up to {link.mtu}", results)
    answered = [r for r in results if r.answered]
    if answered:
        return Confirmation("not_confirmed", f"not confirmed: DF packets of {link.mtu} bytes (the full {link.mtu} of {link.name}) "
                                             f"reached {', '.join(r.destination for r in answered)} and came back "
                                             f"through {egress_name}", results)
    return Confirmation("inconclusive", f"inconclusive: {', '.join(r.destination for r in results)} did not answer "
                                        "ICMP echo (filtered, or down)", results)
