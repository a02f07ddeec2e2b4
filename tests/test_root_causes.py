"""Root causes on real single faults: a "container" namespace behind a fake host, its nameserver and a web
server in an "internet" namespace (tests/causelab.py, on netdoctor/lab/fakehost.py); and a Docker container
with a published port on an engine of the tests' own, 20.10 and 28 (tests/engines.py), whose host firewall
is broken the ways users break it. Each fault breaks one thing; every check runs, with --probe (and the
nameserver) beyond it, so several checks fail. Exactly one finding must stand as the root cause, the one
naming the fault, and every other warn/fail finding must point at it."""

import json

import pytest

from netdoctor.lab.fakehost import REMOTE
from tests import causelab, engines
from tests.causelab import NAMESERVER, PROBE
from tests.conftest import run_cli
from tests.engines import CLIENT_IP, CLIENT_PORT, Listener

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


# --- Docker containers: the same promise on an engine of the tests' own (tests/engines.py) ----------------
#
# c1 on network ndrc (bridge brrc) publishes 8080->80 and probes a listener on the engine's client namespace
# (a host beyond this one); its nameserver is our resolver on the engine's uplink (the host itself, so a
# forwarding fault does not touch it). Every check runs. The faults are the host's firewall as users break
# it, inside the engine's namespace: never the shared engine's rules.

DOCKER_BRIDGE, DOCKER_PUBLISHED = "brrc", 8080
DOCKER_PROBE = ("reachability", f"probe:{CLIENT_IP}:{CLIENT_PORT}")
PUBLISHED_DROP = ("ports", f"firewall-drop:published:{DOCKER_PUBLISHED}/tcp")
OUTGOING_DROP = ("forward_policy", f"firewall-drop:outgoing:{DOCKER_BRIDGE}")
NFT_FORWARD_DROP = "table inet filter { chain forward { type filter hook forward priority 0; policy drop; }; }"

# fault -> (what it does to the engine's namespace, the root cause, consequences that must point at it)
DOCKER_FAULTS = {
    # a firewall reload or script that flushes the filter table: Docker's FORWARD policy DROP stays
    "rules-flushed": (("iptables", "-F"), ("firewall", "docker-rules-missing"),
                      {("forward_policy", f"docker-rules-missing:forward:{DOCKER_BRIDGE}"), PUBLISHED_DROP, DOCKER_PROBE}),
    # the user's chain dropping every forwarded packet: the target's traffic, its replies, its published port
    "docker-user-drop": (("iptables", "-I", "DOCKER-USER", "-j", "DROP"), OUTGOING_DROP,
                         {("forward_policy", f"firewall-drop:replies:{DOCKER_BRIDGE}"), PUBLISHED_DROP, DOCKER_PROBE}),
    # a foreign nftables table whose forward chain drops by default (as `inet filter` of a stock nftables.conf)
    "nft-forward-policy-drop": (("nft", NFT_FORWARD_DROP), OUTGOING_DROP,
                                {("forward_policy", f"firewall-drop:replies:{DOCKER_BRIDGE}"), PUBLISHED_DROP, DOCKER_PROBE}),
}


@pytest.fixture(scope="module", params=["20.10", "28"])
def docker_engine(request, test_image):
    with engines.started(request.param) as built:
        built.docker("network", "create", "-o", f"com.docker.network.bridge.name={DOCKER_BRIDGE}", "ndrc")
        built.run("c1", "--network", "ndrc", "-p", f"{DOCKER_PUBLISHED}:80")
        listener = Listener(built.client_netns, "0.0.0.0", CLIENT_PORT)
        try:
            yield built
        finally:
            listener.close()


@pytest.fixture
def docker_host(docker_engine, monkeypatch):
    """The engine, its firewall restored after the test whatever the fault did to it."""
    monkeypatch.setenv("DOCKER_HOST", docker_engine.docker_host)
    saved = docker_engine.rules()
    yield docker_engine
    docker_engine.restore(saved)


def check_container(engine) -> tuple[int, dict]:
    code, out, err = run_cli("check", "--format", "json", "c1", "--probe", f"{CLIENT_IP}:{CLIENT_PORT}",
                             "--timeout", "1", *engine.netdoctor_args())
    assert out.startswith("{"), err
    return code, json.loads(out)


@pytest.mark.docker
def test_a_healthy_container_with_a_published_port_and_a_probe_has_nothing_to_explain(docker_host):
    code, doc = check_container(docker_host)
    loud = [(f["check"], f["key"], f["title"]) for f in doc["findings"] if f["status"] in ("warn", "fail", "error")]
    assert loud == [] and code == 0, loud
    by_key = {(f["check"], f["key"]): f for f in doc["findings"]}
    assert by_key[DOCKER_PROBE]["status"] == "pass"
    assert by_key[("ports", f"published:{DOCKER_PUBLISHED}/tcp")]["status"] == "pass"


@pytest.mark.docker
@pytest.mark.parametrize("fault", list(DOCKER_FAULTS))
def test_a_container_fault_has_one_root_cause_and_the_rest_points_at_it(docker_host, fault):
    command, expected_root, expected_consequences = DOCKER_FAULTS[fault]
    docker_host.in_netns(*command)
    code, doc = check_container(docker_host)
    bad = [f for f in doc["findings"] if f["status"] in ("warn", "fail")]
    roots = [f for f in bad if f["caused_by"] is None]
    assert len(roots) == 1, [(f["check"], f["key"], f["title"]) for f in roots]
    [root] = roots
    assert _matches(root, expected_root), root
    # a published port's requests (inbound) never explain the container's own connection (outbound)
    assert all(f["caused_by"] == root["id"] for f in bad if f is not root), [(f["key"], f["caused_by"]) for f in bad]
    consequences = {(f["check"], f["key"]) for f in bad if f["caused_by"]}
    assert expected_consequences <= consequences, consequences
    assert code == 1
