"""mtu's path-MTU measurement against real paths with a small hop beyond the host, in namespaces we own:

    box eth0 10.77.0.2 -- br0 10.77.0.1 [host] uplink0 203.0.113.1 -- 203.0.113.2 [router] far0 10.69.0.1 -- 10.69.0.2 [far]
                          MASQUERADE 10.77.0.0/24                                                            web :8080
The box and the host are netdoctor/lab/fakehost.py's, with a router in place of its "internet". Every MTU
on the box and the fake host is 1500. The hop router -> far is the small one:
- black hole: the far end's interface has MTU 1280; the router's side 1500 sends full frames the far
  side drops without a word (veth enforces the receiver's MTU, give or take a VLAN header's 4 bytes);
- fragmentation needed: the router's own side has MTU 1280, so it refuses bigger DF packets and says so;
- healthy: 1500 everywhere, the same hops.
"""

from __future__ import annotations

import os
import shutil
import time

from dataclasses import dataclass

import pytest

from netdoctor.lab import fakehost
from netdoctor.lab.fakehost import BRIDGE, CONTAINER_IP, HOST_LAN_IP, MASQUERADE, REMOTE as ROUTER
from tests.conftest import Report, run_cli, sh

ROUTER_FAR, FAR, FAR_NAMESERVER = "10.69.0.1", "10.69.0.2", "10.69.0.53"
PROBE = f"{FAR}:8080"


def _link(ns_a: str, a: str, addr_a: str | None, ns_b: str, b: str, addr_b: str, mtu_a: int = 1500, mtu_b: int = 1500):
    sh("ip", "-n", ns_a, "link", "add", a, "mtu", str(mtu_a), "type", "veth", "peer", "name", b, "netns", ns_b,
       "mtu", str(mtu_b))
    for ns, dev, addr in ((ns_a, a, addr_a), (ns_b, b, addr_b)):
        if addr:
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")


@dataclass
class Path:
    box: str
    fakehost: str
    far: str

    def check(self, *args: str) -> Report:
        return Report(*run_cli("check", "--format", "json", f"netns:{self.box}", "--host-netns", self.fakehost, *args))

    def nameserver(self, address: str) -> None:
        """Give the box a resolv.conf (the one `ip netns exec` would show it) naming `address`."""
        os.makedirs(f"/etc/netns/{self.box}", exist_ok=True)
        with open(f"/etc/netns/{self.box}/resolv.conf", "w") as f:
            f.write(f"nameserver {address}\n")


@pytest.fixture
def path(make_netns, lab_netns):
    """Builds the path with a small last hop of the kind asked for."""
    made: list = []

    def build(kind: str) -> Path:
        host, box = make_netns("host", forwarding=True), make_netns("box")
        router, far = make_netns("router", forwarding=True), make_netns("far")
        fakehost.bridge(lab_netns, host, f"{HOST_LAN_IP}/24")
        fakehost.attach(lab_netns, host, BRIDGE, box, f"{CONTAINER_IP}/24", gateway=HOST_LAN_IP)
        fakehost.uplink(lab_netns, host, router)
        lab_netns.iptables(host, *MASQUERADE)
        router_mtu, far_mtu = {"black-hole": (1500, 1280), "frag-needed": (1280, 1280), "healthy": (1500, 1500)}[kind]
        _link(router, "far0", ROUTER_FAR, far, "eth0", FAR, router_mtu, far_mtu)
        sh("ip", "-n", far, "addr", "add", f"{FAR_NAMESERVER}/24", "dev", "eth0")
        sh("ip", "-n", far, "route", "add", "default", "via", ROUTER_FAR)
        lab_netns.listener(f"web{len(made)}", far, 8080, FAR)  # stopped with the namespace
        built = Path(box, host, far)
        made.append(built)
        return built

    yield build
    for built in made:
        shutil.rmtree(f"/etc/netns/{built.box}", ignore_errors=True)


def _echoes_received(netns: str) -> int:
    """ICMP echo requests the namespace's kernel has received (Icmp InEchos of its /proc/net/snmp)."""
    lines = sh("ip", "netns", "exec", netns, "cat", "/proc/net/snmp").stdout.splitlines()
    names, values = [line.split()[1:] for line in lines if line.startswith("Icmp:")]
    return int(values[names.index("InEchos")])


def _path_findings(report, destination=FAR):
    return [f for f in report.of("mtu") if f["key"].endswith(f":{destination}")]


def test_black_hole_beyond_the_host_fails_with_what_passes(path):
    lab = path("black-hole")
    started = time.monotonic()
    report = lab.check("--checks", "mtu,reachability", "--probe", PROBE, "--timeout", "1")
    elapsed = time.monotonic() - started
    [probe] = [f for f in report.of("reachability") if f["key"] == f"probe:{PROBE}"]
    assert probe["status"] == "pass"  # the handshake's small packets pass: only size fails
    [finding] = _path_findings(report)
    assert finding["status"] == "fail" and finding["key"] == f"pmtu-blackhole:{FAR}"
    passed, lost = finding["evidence"]["largest_df_packet_passed"], finding["evidence"]["smallest_df_packet_lost"]
    # a veth drops what exceeds its MTU plus a VLAN header's 4 bytes: 1280 to 1284 cross, nothing bigger
    assert 1280 <= passed <= 1284 and lost == passed + 1
    assert finding["title"] == f"Path MTU black hole toward {FAR}: {passed} bytes pass, {lost} do not"
    assert "router_reported_mtu" not in finding["evidence"]
    assert finding["evidence"]["echoes_sent"] <= 16  # a handful, not a sweep
    commands = " ".join(finding["fix"]["commands"])
    assert f"ip link set dev eth0 mtu {passed}" in commands and f"TCPMSS --set-mss {passed - 40}" in commands
    # the static comparison stays quiet: every MTU on the host is right
    assert [f["status"] for f in report.of("mtu") if f["key"] == "mtu:eth0"] == ["pass"]
    # bounded by one --timeout (the search runs beside the probe, not after it)
    assert finding["duration_ms"] < 1000 + 300 and elapsed < 1 + 2


def test_router_that_says_fragmentation_needed_is_named(path):
    report = path("frag-needed").check("--checks", "mtu", "--probe", PROBE, "--timeout", "1")
    [finding] = _path_findings(report)
    assert finding["status"] == "warn" and finding["key"] == f"pmtu-smaller:{FAR}"
    assert finding["evidence"]["path_mtu"] == 1280 and finding["evidence"]["largest_df_packet_passed"] == 1280
    assert finding["evidence"]["router_reported_mtu"] == 1280 and finding["evidence"]["reported_by"] == ROUTER
    assert ROUTER in finding["title"] and "1280" in finding["title"]


def test_what_the_kernel_learned_is_read_without_sending(path):
    """The router's message leaves a path-MTU exception in the box's route cache and counts in its ICMP
    counters: the next run reads both, and without --probe says so without sending anything."""
    lab = path("frag-needed")
    lab.check("--checks", "mtu", "--probe", PROBE, "--timeout", "1")
    before = _echoes_received(lab.far)
    [learned] = [f for f in lab.check("--checks", "mtu", "--timeout", "1").of("mtu") if f["key"] == f"pmtu-learned:{FAR}"]
    assert learned["status"] == "info" and learned["evidence"]["mtu"] == 1280 and learned["evidence"]["via"] == HOST_LAN_IP
    assert _echoes_received(lab.far) == before
    [measured] = _path_findings(lab.check("--checks", "mtu", "--probe", PROBE, "--timeout", "1"))
    assert measured["evidence"]["kernel_learned_mtu"]["mtu"] == 1280
    assert measured["evidence"]["kernel_counters"]["IcmpInType3"] >= 1


def test_healthy_path_with_the_same_hops_stays_quiet(path):
    report = path("healthy").check("--checks", "mtu", "--probe", PROBE, "--timeout", "1")
    assert report.statuses("mtu") == {"pass"}, report.of("mtu")
    [finding] = _path_findings(report)
    assert finding["evidence"]["largest_df_packet_passed"] == 1500 and finding["evidence"]["echoes_sent"] == 2


def test_far_end_that_answers_no_echo_costs_one_timeout_at_most(path):
    lab = path("healthy")
    sh("ip", "netns", "exec", lab.far, "iptables", "-A", "INPUT", "-p", "icmp", "-j", "DROP")
    report = lab.check("--checks", "mtu", "--probe", PROBE, "--timeout", "1")
    [finding] = _path_findings(report)
    assert finding["status"] == "info" and finding["key"] == f"pmtu-unmeasured:{FAR}"
    assert finding["duration_ms"] < 1000 + 300


def test_nameserver_beyond_the_host_is_measured_with_the_probe(path):
    lab = path("black-hole")
    lab.nameserver(FAR_NAMESERVER)
    report = lab.check("--checks", "mtu", "--probe", PROBE, "--timeout", "1")
    assert {f["key"] for f in report.of("mtu") if f["status"] == "fail"} == {f"pmtu-blackhole:{FAR}",
                                                                           f"pmtu-blackhole:{FAR_NAMESERVER}"}


def test_without_an_endpoint_nothing_is_sent(path):
    lab = path("black-hole")
    lab.nameserver(FAR_NAMESERVER)
    before = _echoes_received(lab.far)
    report = lab.check("--checks", "mtu", "--timeout", "1")
    assert report.statuses("mtu") == {"pass"} and not _path_findings(report, FAR_NAMESERVER)
    assert _echoes_received(lab.far) == before
    lab.check("--checks", "mtu", "--probe", PROBE, "--timeout", "1")
    assert _echoes_received(lab.far) > before  # the counter does see the searches


@pytest.fixture
def slow_far_end():
    """The far end's echoes answered by tests/slowecho.py instead of its kernel: a slow round trip, and the
    losses asked for."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    started = []

    def answer(lab: Path, *options: str) -> None:
        sh("ip", "netns", "exec", lab.far, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1")
        started.append(subprocess.Popen(["ip", "netns", "exec", lab.far, sys.executable, "-m", "tests.slowecho", *options],
                                        cwd=ROOT))
        time.sleep(0.3)  # its raw socket is open

    yield answer
    for process in started:
        process.kill()
        process.wait(5)


def test_a_lossy_slow_path_is_confirmed_before_it_is_called_a_black_hole(path, slow_far_end):
    """A round trip of 0.1 s (a lost echo then costs 0.4 s of the one-second budget) and one packet lost, the
    first full-size echo: the budget ends the halving long before it narrows down. The boundary is sent again
    and the full size comes back: loss, not a black hole. A real limit on the same slow path still is one,
    and a path without loss passes."""
    lossy = path("healthy")
    slow_far_end(lossy, "--delay", "0.1", "--lose-once-above", "576")
    [finding] = _path_findings(lossy.check("--checks", "mtu", "--probe", PROBE, "--timeout", "1"))
    assert finding["key"] == f"pmtu-unstable:{FAR}" and finding["status"] == "info", finding
    assert finding["evidence"]["consistent"] is False and finding["duration_ms"] < 1000 + 300

    hole = path("healthy")
    slow_far_end(hole, "--delay", "0.1", "--limit", "1280")
    [finding] = _path_findings(hole.check("--checks", "mtu", "--probe", PROBE, "--timeout", "1"))
    assert finding["key"] == f"pmtu-blackhole:{FAR}" and finding["status"] == "fail", finding
    assert finding["evidence"]["smallest_df_packet_lost"] > 1280 and finding["duration_ms"] < 1000 + 300

    healthy = path("healthy")
    slow_far_end(healthy, "--delay", "0.1")
    [finding] = _path_findings(healthy.check("--checks", "mtu", "--probe", PROBE, "--timeout", "1"))
    assert finding["key"] == f"pmtu:{FAR}" and finding["status"] == "pass", finding
