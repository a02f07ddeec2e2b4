"""Path-MTU search: the largest DF packet that makes the round trip from a namespace to one destination.

A binary search with one DF echo per round (probes/icmp.py), bounded by a time budget:
1. the smallest size every IPv4 path carries (576): does the destination answer echo at all, and how
   fast (its round trip sets how long later rounds wait for a reply); when it does not, the full size is
   still sent once, since a router on the way may answer it with "fragmentation needed";
2. the full size (the interface MTU): when it comes back, the path is whole and the search is over;
3. halving between the largest size that came back and the smallest that did not, while the budget
   leaves room for step 4. A router's "fragmentation needed" names the next-hop MTU: that size is tried
   next, and what is above it is lost;
4. without such a message for the bounds, both are sent again, narrowed to the byte or not (the budget
   may end the halving first): a black hole loses the larger one again, a lossy path may not (then the
   result is marked inconsistent); with no time left even for that, it is marked unconfirmed. Only a
   confirmed boundary is a black hole.
About a dozen packets. What this measures is the round trip to that destination and nothing else (the
far end's echo replies may come back fragmented; the forward path is what DF constrains).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from netdoctor.facts import NamespaceView

MIN_SIZE = 576              # every IPv4 path carries this much; below it the destination is just not answering
MIN_WAIT, RTT_FACTOR = 0.03, 4   # a round waits this many round trips for its reply, and at least MIN_WAIT seconds


@dataclass(frozen=True)
class PmtuResult:
    destination: str
    ceiling: int                  # the largest size tried: the outgoing interface's MTU
    largest_passed: int | None    # None: not even MIN_SIZE came back
    smallest_failed: int | None   # None: everything up to the ceiling came back
    reported_mtu: int | None      # next-hop MTU from a router's "fragmentation needed", if one answered
    reported_by: str | None       # that router
    probes_sent: int
    rtt_ms: float | None = None   # of the smallest echo
    consistent: bool | None = True  # the bounds held when sent again (False: they did not; None: not sent again)
    detail: str = ""              # unreachable / local errors, when they explain a silence

    @property
    def answered(self) -> bool:
        return self.largest_passed is not None

    @property
    def complete(self) -> bool:
        """Narrowed to the byte: the largest size that passes and the next that does not are both known."""
        return self.smallest_failed is None or (self.largest_passed is not None
                                                and self.smallest_failed - self.largest_passed == 1)

    def to_evidence(self) -> dict:
        data = {"destination": self.destination, "largest_df_packet_passed": self.largest_passed,
                "smallest_df_packet_lost": self.smallest_failed, "tried_up_to": self.ceiling,
                "echoes_sent": self.probes_sent}
        if self.rtt_ms is not None:
            data["rtt_ms"] = round(self.rtt_ms, 1)
        if self.reported_mtu:
            data["router_reported_mtu"] = self.reported_mtu
            data["reported_by"] = self.reported_by
        if not self.consistent:
            data["consistent"] = self.consistent  # False: they did not hold; None: no time was left to send them again
        if self.detail:
            data["detail"] = self.detail
        return data


class _Search:
    def __init__(self, view: NamespaceView, destination: str, ceiling: int, timeout: float):
        self.view, self.destination, self.ceiling = view, destination, ceiling
        self.deadline = time.monotonic() + timeout
        self.low: int | None = None       # largest size seen to pass
        self.high: int | None = None      # smallest size seen to fail
        self.reported: tuple[int, str] | None = None
        self.sent = 0
        self.notes: set[str] = set()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def send(self, size: int, wait: float) -> bool:
        """One DF echo of `size` bytes; whether it came back. Records what a router said instead."""
        result = self.view.echo(self.destination, [size], max(0.0, min(wait, self.left())))
        self.sent += 1
        self.notes.update(result.unreachable.values(), result.send_errors.values())
        if size in result.too_big_locally:
            self.notes.add(f"{size} bytes exceed the target's own route to {self.destination}")
        if size in result.frag_needed:
            mtu, router = result.frag_needed[size]
            if mtu and (self.reported is None or mtu < self.reported[0]):
                self.reported = (mtu, router)
        if size in result.answered:
            self.low = max(self.low or 0, size)
            return True
        self.high = min(self.high or size, size)
        return False

    def next_size(self) -> int:
        if self.reported and self.low < self.reported[0] < self.high:
            return self.reported[0]  # the router said so: check it
        return (self.low + self.high) // 2

    def run(self) -> PmtuResult:
        started = time.monotonic()
        floor = min(MIN_SIZE, self.ceiling)
        if not self.send(floor, self.left() / 2):
            if self.ceiling > floor:  # the far end is silent, but a router on the way may say where the path narrows
                self.send(self.ceiling, self.left())
            return self.result(None)
        rtt = time.monotonic() - started
        wait = max(MIN_WAIT, RTT_FACTOR * rtt)
        confirming = 2 * wait  # kept back for sending both bounds again: a lost echo costs a whole wait
        if self.ceiling > floor and not self.send(self.ceiling, wait):
            while self.high - self.low > 1 and self.left() > confirming:
                if self.reported and self.low < self.reported[0] and self.reported[0] + 1 < self.high:
                    self.high = self.reported[0] + 1  # what is above the reported MTU is lost at that router
                    continue
                self.send(self.next_size(), wait)
        consistent: bool | None = True
        unexplained = self.reported is None or self.low < self.reported[0]  # no router's word for this bound
        if unexplained and self.high is not None:
            consistent = None
            if self.left() > 0:
                low, high = self.low, self.high
                consistent = self.send(low, wait) and not self.send(high, wait)
                self.low, self.high = low, high  # a second look does not move the bounds, it only vouches for them
        return self.result(rtt, consistent)

    def result(self, rtt: float | None, consistent: bool = True) -> PmtuResult:
        return PmtuResult(self.destination, self.ceiling, self.low, self.high, *(self.reported or (None, None)),
                          self.sent, None if rtt is None else rtt * 1000, consistent, "; ".join(sorted(self.notes)))


def search(view: NamespaceView, destination: str, ceiling: int, timeout: float) -> PmtuResult:
    """Measure the largest DF IPv4 packet (up to `ceiling` bytes) that reaches `destination` and comes back,
    in at most about `timeout` seconds."""
    return _Search(view, destination, ceiling, timeout).run()
