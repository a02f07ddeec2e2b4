"""conntrack's judgement of the host's table from constructed counters (the real fill-up: tests/test_conntrack.py)."""

import pytest

from netdoctor.model import Status
from netdoctor.targets import Target
from tests.fakes import FakeWorld


def _run(count: int | None, maximum: int | None, drops: dict | None = None):
    world = FakeWorld()
    if count is not None:
        world.host.sysctls.update({"net.netfilter.nf_conntrack_count": str(count),
                                   "net.netfilter.nf_conntrack_max": str(maximum),
                                   "net.netfilter.nf_conntrack_buckets": "65536"})
    world.host.readers["read_stats"] = {"entries": count or 0, "drop": 0, "early_drop": 0, "insert_failed": 0,
                                        **(drops or {})}
    return world.run([Target("host", "host", world.host.path)], ["conntrack"])


@pytest.mark.parametrize("count,status", [(1000, Status.PASS), (85_000, Status.WARN), (97_000, Status.FAIL),
                                          (100_000, Status.FAIL)])
def test_fullness_decides_the_status(count, status):
    [finding] = _run(count, 100_000)
    assert finding.status is status
    assert finding.evidence["percent_used"] == round(100 * count / 100_000, 1)


def test_a_full_table_fix_doubles_the_maximum_and_persists_it():
    [finding] = _run(99_000, 100_000)
    assert "sudo sysctl -w net.netfilter.nf_conntrack_max=200000" in finding.fix.commands
    assert any("/etc/sysctl.d/" in command for command in finding.fix.commands)


def test_drops_already_counted_are_reported_even_when_the_table_has_room_now():
    [finding] = _run(1000, 100_000, {"drop": 12, "early_drop": 3})
    assert finding.status is Status.INFO and "overflowed before" in finding.title
    assert finding.evidence["drop"] == 12 and finding.evidence["early_drop"] == 3


def test_without_nf_conntrack_nothing_can_fill_up():
    [finding] = _run(None, None)
    assert finding.status is Status.INFO and "not loaded" in finding.title
