"""Root causes on real single faults: a "container" namespace behind a fake host, its nameserver and a web
server in an "internet" namespace (tests/causelab.py, on netdoctor/lab/fakehost.py). Each fault breaks one hop; every check runs, with
--probe and the nameserver beyond that hop, so several checks fail. Exactly one finding must stand as
the root cause, the one naming the fault, and every other warn/fail finding must point at it."""

import json

import pytest

from netdoctor.lab.fakehost import REMOTE
from tests import causelab
from tests.causelab import NAMESERVER, PROBE
from tests.conftest import run_cli

PROBED = ("reachability", f"probe:{PROBE}")
NAMESERVER_SILENT = ("dns", f"nameserver-silent:{NAMESERVER}")

# fault -> (the root cause: check, key or key prefix*), the consequences that must point at it
SCENARIOS = {
    "forwarding-off": (("ip_forward", "forwarding-off"), {PROBED, NAMESERVER_SILENT}),
    "gateway-removed": (("reachability", "gateway-silent"), {PROBED, NAMESERVER_SILENT}),
    "bridge-down": (("reachability", "host-link-down:br0"), {("reachability", "gateway-silent"), PROBED, NAMESERVER_SILENT}),
    "masquerade-missing": (("reachability", "masquerade-missing"), {PROBED, NAMESERVER_SILENT}),
    # the rule drops only what goes to the nameserver: the probe to the web server passes
    "docker-user-drop": (("forward_policy", "firewall-drop*"), {NAMESERVER_SILENT}),
}


@pytest.fixture
def host(lab_netns):
    built = causelab.build(lab_netns)
    yield built
    causelab.stop(built)


def check(host, fmt: str = "json"):
    code, out, err = run_cli("check", "--format", fmt, *host.args())
    return code, (json.loads(out) if fmt == "json" else out), err


def _matches(f: dict, expected: tuple[str, str]) -> bool:
    check_id, key = expected
    return f["check"] == check_id and (f["key"].startswith(key[:-1]) if key.endswith("*") else f["key"] == key)


def test_healthy_host_has_nothing_to_explain(host):
    code, doc, _ = check(host)
    assert [f for f in doc["findings"] if f["status"] in ("warn", "fail", "error")] == []
    by_key = {(f["check"], f["key"]): f for f in doc["findings"]}
    assert by_key[PROBED]["status"] == "pass"
    # dns runs on the namespace: its resolv.conf is the one `ip netns exec` gives it
    assert by_key[("dns", f"nameserver:{NAMESERVER}")]["status"] == "pass"
    assert by_key[("mtu", f"pmtu:{REMOTE}")]["status"] == "pass"
    assert code == 0


@pytest.mark.parametrize("fault", list(SCENARIOS))
def test_single_fault_has_one_root_cause_and_the_rest_points_at_it(host, fault):
    expected_root, expected_consequences = SCENARIOS[fault]
    causelab.FAULTS[fault](host)
    code, doc, _ = check(host)
    bad = [f for f in doc["findings"] if f["status"] in ("warn", "fail")]
    roots = [f for f in bad if f["caused_by"] is None]
    assert len(roots) == 1, [(f["check"], f["key"], f["title"]) for f in roots]
    [root] = roots
    assert _matches(root, expected_root), root
    assert all(f["caused_by"] == root["id"] for f in bad if f is not root), bad
    consequences = {(f["check"], f["key"]) for f in bad if f["caused_by"]}
    assert expected_consequences <= consequences, consequences
    for f in bad:
        if f["caused_by"]:
            assert f["detail"].startswith(f"Because of {root['check']}: {root['title']}")
    # the gate still counts every FAIL, consequences too
    assert code == 1
    assert doc["summary"]["fail"] == sum(1 for f in doc["findings"] if f["status"] == "fail") >= len(expected_consequences)


def test_text_report_shows_the_root_cause_first_and_counts_both(host):
    causelab.FAULTS["forwarding-off"](host)
    code, out, _ = check(host, "text")
    lines = out.splitlines()
    root = next(i for i, line in enumerate(lines) if line.startswith("  FAIL  ip_forward "))
    under = lines.index("    ↳ because of ip_forward:")
    assert under > root
    consequences = lines[under + 1:under + 3]
    assert [line.split()[:2] for line in consequences] == [["FAIL", "dns"], ["FAIL", "reachability"]]
    assert not any(line.startswith("  FAIL  dns") or line.startswith("  FAIL  reachability") for line in lines)
    assert "3 fail" in lines[-1] and "; 1 root cause, 2 consequences" in lines[-1]
    assert code == 1


def test_ndjson_stays_a_stream_with_each_finding_once_and_causes_first(host):
    causelab.FAULTS["masquerade-missing"](host)
    code, out, _ = check(host, "ndjson")
    lines = [json.loads(line) for line in out.splitlines()]
    findings = [line for line in lines if line["type"] == "finding"]
    assert lines[-1]["type"] == "summary" and len({f["id"] for f in findings}) == len(findings)
    seen = set()
    for f in findings:
        assert f["caused_by"] is None or f["caused_by"] in seen, f  # the root cause was written before
        seen.add(f["id"])
    assert sum(1 for f in findings if f["caused_by"]) >= 2 and code == 1
