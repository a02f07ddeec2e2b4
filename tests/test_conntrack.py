"""conntrack: a real connection-tracking table filled by real flows in a namespace we own.

nf_conntrack_max is global and read-only outside the initial namespace (checked on this kernel), but
nf_conntrack_count is per namespace and the kernel compares it with the global maximum when it creates
an entry. So a fake host namespace is filled with distinct UDP flows over its own loopback (one entry
each, kept for 10 minutes) until it is 85 %, 97 % and then over 100 % of the maximum: the kernel really
runs out of room there (its early_drop counter moves) while the real host's table is untouched.
"""

import subprocess
from pathlib import Path

import pytest

from netdoctor.checks.conntrack import assess
from netdoctor.model import Status
from tests.conftest import sh

MAX_TO_FILL = 1_000_000  # above this the test would need too many flows to stay quick

FILL = """
import socket, sys
start, count = int(sys.argv[1]), int(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(start, start + count):   # each (address, port) pair is a new conntrack entry
    host = 1 + i // 65000
    sock.sendto(b"x", (f"127.{host >> 16 & 255}.{host >> 8 & 255}.{host & 255}", 1 + i % 65000))
"""


class TrackedNamespace:
    def __init__(self, name: str):
        self.name = name
        self.sent = 0
        sh("ip", "netns", "exec", name, "iptables", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT")
        sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=600")

    def sysctl(self, key: str) -> int:
        return int(sh("ip", "netns", "exec", self.name, "sysctl", "-n", key).stdout)

    def fill_to(self, entries: int) -> None:
        """Open new flows until this many have been created in all."""
        subprocess.run(["ip", "netns", "exec", self.name, "python3", "-c", FILL, str(self.sent), str(entries - self.sent)],
                       check=True, timeout=120)
        self.sent = entries


@pytest.fixture
def tracked(make_netns):
    return TrackedNamespace(make_netns("host"))


def conntrack_finding(netdoctor, host: str) -> dict:
    [finding] = netdoctor("host", "--checks", "conntrack", "--host-netns", host).of("conntrack")
    return finding


def test_fresh_namespace_has_room(tracked, netdoctor):
    finding = conntrack_finding(netdoctor, tracked.name)
    assert finding["status"] == "pass"
    assert finding["evidence"]["nf_conntrack_count"] == 0
    assert finding["evidence"]["nf_conntrack_max"] == tracked.sysctl("net.netfilter.nf_conntrack_max")


def test_filling_the_table_warns_then_fails_then_shows_drops(tracked, netdoctor):
    maximum = tracked.sysctl("net.netfilter.nf_conntrack_max")
    if maximum > MAX_TO_FILL:
        pytest.skip(f"nf_conntrack_max is {maximum}: filling it would take too long")

    tracked.fill_to(int(maximum * 0.85))
    finding = conntrack_finding(netdoctor, tracked.name)
    assert finding["status"] == "warn", finding["evidence"]
    assert 84 <= finding["evidence"]["percent_used"] <= 86 and finding["evidence"]["early_drop"] == 0

    tracked.fill_to(int(maximum * 0.97))
    finding = conntrack_finding(netdoctor, tracked.name)
    assert finding["status"] == "fail" and 96 <= finding["evidence"]["percent_used"] <= 98
    assert f"sudo sysctl -w net.netfilter.nf_conntrack_max={maximum * 2}" in finding["fix"]["commands"]

    tracked.fill_to(int(maximum * 1.05))  # more flows than room: the kernel evicts or drops
    finding = conntrack_finding(netdoctor, tracked.name)
    assert finding["status"] == "fail"
    assert finding["evidence"]["nf_conntrack_count"] >= maximum * 0.99  # full; the kernel keeps evicting
    assert finding["evidence"]["early_drop"] + finding["evidence"]["drop"] > 0
    assert "already dropped or evicted" in finding["detail"]


def test_real_host_matches_its_own_numbers(netdoctor):
    proc = Path("/proc/sys/net/netfilter")
    if not (proc / "nf_conntrack_count").exists():
        assert netdoctor("host", "--checks", "conntrack").statuses("conntrack") == {"info"}
        return
    count, maximum = int((proc / "nf_conntrack_count").read_text()), int((proc / "nf_conntrack_max").read_text())
    [finding] = netdoctor("host", "--checks", "conntrack").of("conntrack")
    assert finding["evidence"]["nf_conntrack_max"] == maximum
    if assess(count, maximum) is not Status.PASS:
        assert finding["status"] == assess(count, maximum).value
    else:
        assert finding["status"] in ("pass", "info")  # info: below 80 % but the table overflowed before


@pytest.mark.parametrize("count, status", [(0, Status.PASS), (800, Status.PASS), (801, Status.WARN),
                                           (950, Status.WARN), (951, Status.FAIL), (1000, Status.FAIL)])
def test_thresholds(count, status):
    assert assess(count, 1000) is status
