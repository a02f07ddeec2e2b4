"""Backends and layouts this machine's engines cannot produce, built for real in fake host namespaces:
Docker 29's nftables backend (moby's documented `table ip docker-bridges`, loaded with `nft -f`), a mixed
iptables-legacy + iptables-nft host, and a drop only a rule counter can explain. Each fault is proven with a
real connection first; the fake hosts are targeted with --host-netns.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from netdoctor.firewall import parse_json
from netdoctor.lab import fakehost
from netdoctor.lab.fakehost import REMOTE, REMOTE_PORT, UPLINK
from tests.conftest import sh
from tests.engines import Listener, connects
from tests.fakehost import connects as reaches_remote  # tests.engines has a connects of its own

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "firewall"
OUTSIDE_PORT = 8080


def in_ns(netns: str, *command: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, *command], capture_output=True, text=True, check=True, input=input)


@pytest.fixture
def nft_host(make_netns, lab_netns):
    """A fake host running Docker 29's nftables ruleset for bridge1 (192.0.2.0/24), with its "container"
    192.0.2.2 and an outside namespace listening on 203.0.113.2:8080 (reachable only through NAT)."""
    host, guest, outside = make_netns("h29", forwarding=True), make_netns("c29"), make_netns("o29")
    fakehost.bridge(lab_netns, host, "192.0.2.1/24", name="bridge1")
    fakehost.attach(lab_netns, host, "bridge1", guest, "192.0.2.2/24", gateway="192.0.2.1")
    address = fakehost.uplink(lab_netns, host, outside)
    in_ns(host, "nft", "-f", str(FIXTURES / "docker-29.nft"))
    listener = Listener(outside, address, OUTSIDE_PORT)
    yield host, guest, address
    listener.close()


def test_the_stored_nft_json_is_what_nft_prints_for_the_documents(make_netns):
    """The fast tier reads tests/fixtures/firewall/*.json: it must stay what nft -j prints for the .nft files."""
    for name in ("docker-29", "firewalld", "firewalld-docker"):
        netns = make_netns("nftj")
        in_ns(netns, "nft", "-f", str(FIXTURES / f"{name}.nft"))
        live = parse_json(in_ns(netns, "nft", "-j", "list", "ruleset").stdout)
        stored = parse_json((FIXTURES / f"{name}.json").read_text())
        assert live.problems == stored.problems == ()
        assert [(c.name, [r.text for r in c.rules]) for t in live.tables for c in t.chains] == \
               [(c.name, [r.text for r in c.rules]) for t in stored.tables for c in t.chains]


def test_docker_29_nftables_layout_is_quiet_and_an_iptables_policy_drop_is_named(nft_host, netdoctor):
    host, guest, outside = nft_host
    path = f"/run/netns/{guest}"
    assert connects(path, outside, OUTSIDE_PORT)                     # the documented ruleset forwards and NATs
    report = netdoctor(f"netns:{guest}", "--checks", "forward_policy,firewall", "--host-netns", host)
    assert [f for f in report.findings if f["status"] in ("warn", "fail")] == []
    [ok] = [f for f in report.of("forward_policy") if f["status"] == "pass"]
    assert ok["evidence"]["outgoing_accepted_by"] == \
        'nftables ip docker-bridges filter-forward-out__bridge1: counter accept comment "OUTGOING"'
    # an iptables FORWARD policy DROP (left from an iptables-backend engine) kills what nftables accepted
    in_ns(host, "iptables", "-P", "FORWARD", "DROP")
    assert not connects(path, outside, OUTSIDE_PORT)
    report = netdoctor(f"netns:{guest}", "--checks", "forward_policy", "--host-netns", host)
    [out] = [f for f in report.of("forward_policy") if f["id"].startswith("forward_policy/firewall-drop:outgoing:bridge1@")]
    assert out["status"] == "fail" and out["evidence"]["decided_by"] == "FORWARD policy DROP"
    assert out["evidence"]["where"] == "iptables-nft filter FORWARD"
    assert f"ip netns exec {host} iptables -I FORWARD -i bridge1 -o uplink0 -j ACCEPT" in out["fix"]["commands"]


def test_docker_29_nftables_drops_direct_access_from_a_vpn(nft_host, make_netns, netdoctor):
    host, guest, _ = nft_host
    peer = make_netns("wg")
    sh("ip", "-n", host, "link", "add", "wg0", "type", "veth", "peer", "name", "eth0", "netns", peer)
    sh("ip", "-n", host, "addr", "add", "10.66.0.1/24", "dev", "wg0")
    sh("ip", "-n", host, "link", "set", "wg0", "up")
    sh("ip", "-n", peer, "addr", "add", "10.66.0.2/24", "dev", "eth0")
    sh("ip", "-n", peer, "link", "set", "eth0", "up")
    sh("ip", "-n", peer, "route", "add", "192.0.2.0/24", "via", "10.66.0.1")
    listener = Listener(guest, "192.0.2.2", 80)
    try:
        assert not connects(f"/run/netns/{peer}", "192.0.2.2", 80)
    finally:
        listener.close()
    report = netdoctor(f"netns:{guest}", "--checks", "forward_policy", "--host-netns", host)
    [direct] = [f for f in report.of("forward_policy") if "firewall-drop:direct:wg0:bridge1" in f["id"]]
    assert direct["evidence"]["rule"] == 'ip daddr 192.0.2.2 iifname != "bridge1" counter drop comment "DROP DIRECT ACCESS"'
    assert direct["evidence"]["where"] == "nftables ip docker-bridges raw-PREROUTING"
    assert direct["status"] == "info"                                  # nothing on this host says wg0 peers should


@pytest.fixture
def lab(lab_netns):
    return fakehost.build(lab_netns)


def test_mixed_host_legacy_drop_is_found_beside_iptables_nft(lab, netdoctor):
    assert reaches_remote(lab)
    in_ns(lab.host, "iptables-legacy", "-A", "FORWARD", "-o", UPLINK, "-j", "DROP")
    assert not reaches_remote(lab)
    assert "-A FORWARD" not in in_ns(lab.host, "iptables-nft-save").stdout   # invisible to iptables-nft
    report = netdoctor(*lab.target("--checks", "forward_policy").argv)
    [drop] = [f for f in report.of("forward_policy") if f["status"] == "fail"]
    assert drop["evidence"]["where"] == "iptables-legacy filter FORWARD"
    assert drop["evidence"]["rule"] == f"-A FORWARD -o {UPLINK} -j DROP"
    delete = f"ip netns exec {lab.host} iptables-legacy -D FORWARD -o {UPLINK} -j DROP"
    assert drop["fix"]["commands"][0] == delete
    [mixed] = [f for f in netdoctor("host", "--checks", "firewall", "--host-netns", lab.host).of("firewall")
               if f["status"] == "warn"]
    assert "mixed-backends" in mixed["id"] and mixed["evidence"]["legacy_tables"] == ["ip filter"]
    subprocess.run(delete, shell=True, check=True)
    assert reaches_remote(lab)


def test_the_rule_that_dropped_the_probe_is_named_by_its_counter(lab, netdoctor):
    """A rule on packet length: netdoctor cannot tell statically whether it matches the probe (a partial
    drop); the counter it moves while the probe runs can."""
    in_ns(lab.host, "iptables", "-I", "FORWARD", "-m", "length", "--length", "0:100", "-j", "DROP")
    assert not reaches_remote(lab)
    report = netdoctor(*lab.target("--checks", "reachability", "--probe", f"{REMOTE}:{REMOTE_PORT}", "--timeout", "1").argv)
    [probe] = [f for f in report.of("reachability") if f["evidence"].get("probe")]
    assert probe["status"] == "fail" and probe["evidence"]["layer"] == "firewall"
    [moved] = probe["evidence"]["counters_moved"]
    assert moved.startswith("iptables-nft filter FORWARD: -A FORWARD -m length --length 0:100 -j DROP (+")
    assert f"ip netns exec {lab.host} iptables -D FORWARD -m length --length 0:100 -j DROP" in probe["fix"]["commands"]
    assert "nftrace" in probe["evidence"]["counter_method"]
