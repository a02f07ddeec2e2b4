"""The lab is where every check meets its real fault: each fault scenario, brought up for real, must make its
intended check fail (or warn) with the right fix; the healthy scenario must keep every check quiet; and
`netdoctor lab down` must remove exactly what the lab made, from any state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from netdoctor.lab.catalog import BUILT_IN, scenarios
from netdoctor.lab.scenario import LAB_LABEL, LabTarget
from netdoctor.lab.topology import STATE_ROOT, LabError, exclusive, leftovers, netns_names
from tests.conftest import run_cli, sh

pytestmark = pytest.mark.docker

SCENARIOS = scenarios()
FAULTS = [pytest.param(name, marks=[pytest.mark.slow] if getattr(s, "slow", False) else [])
          for name, s in SCENARIOS.items() if s.expect is not None]


@pytest.fixture(autouse=True, scope="module")
def one_lab_user_at_a_time():
    """Scenario names are global on this machine: concurrent test runs take turns instead of clobbering."""
    with exclusive():
        yield


def _container(target: LabTarget) -> str:
    return target.spec.split(":", 1)[1] if ":" in target.spec else target.spec


def _host_netns(target: LabTarget) -> str:
    return target.args[target.args.index("--host-netns") + 1]


# What "the right fix" contains for each built-in fault, with the scenario's real names in it.
RIGHT_FIX = {
    "ip_forward": lambda t: f"ip netns exec {_host_netns(t)} sysctl -w net.ipv4.ip_forward=1",
    "mtu": lambda t: "mtu 1400" if t.spec.startswith("netns:") else "com.docker.network.driver.mtu=",
    "dns": lambda t: "--dns",
    "ports": lambda t: _container(t),
    "reachability": lambda t: "MASQUERADE",
    "icc": lambda t: "ndlab-icc-net",
    "forward_policy": lambda t: f"ip netns exec {_host_netns(t)} iptables",
    "bridge_nf": lambda t: f"ip netns exec {_host_netns(t)} sysctl -w net.bridge.bridge-nf-call-iptables=1",
    "subnet_overlap": lambda t: "docker network create",
}


@pytest.fixture
def lab(test_image, monkeypatch):
    """Bring scenarios up; they always go down again, whatever the test does."""
    started = []

    def up(name: str) -> list[LabTarget]:
        scenario = SCENARIOS[name]
        started.append(scenario)
        return scenario.up()

    yield up
    for scenario in reversed(started):
        scenario.down()


def _diagnose(netdoctor, target: LabTarget):
    return netdoctor(target.spec, *target.args)


@pytest.mark.parametrize("name", FAULTS)
def test_fault_scenario_makes_its_check_find_it(name, lab, netdoctor, monkeypatch):
    scenario = SCENARIOS[name]
    targets = lab(name)
    assert targets, f"{name} gave nothing to diagnose"
    for target in targets:
        report = _diagnose(netdoctor, target)
        assert report.doc is not None, f"{target.command}: no report ({report.stderr})"
        found = [f for f in report.of(scenario.expect.check) if f["status"] in scenario.expect.statuses]
        seen = [(f["status"], f["title"]) for f in report.of(scenario.expect.check)]
        assert found, f"{target.command}: {scenario.expect.check} did not find the fault; it said {seen}"
        fixes = [" ".join([f["fix"]["summary"], *f["fix"]["commands"]]) for f in found]
        assert all(f["fix"]["commands"] for f in found), f"{target.command}: a finding without fix commands"
        if name in RIGHT_FIX:
            expected = RIGHT_FIX[name](target)
            assert any(expected in fix for fix in fixes), f"{target.command}: no fix mentions {expected!r}: {fixes}"
        if any(f["status"] == "fail" for f in found):
            assert report.exit_code == 1, f"{target.command}: a fail, yet exit code {report.exit_code}"


def test_healthy_scenario_is_quiet(lab, netdoctor, monkeypatch):
    """No exceptions are granted. The one thing truly wrong with these machines (docker0 at 1500 over a
    1400 uplink, so every default-bridge container fails `mtu` for real) is kept out of the scenario by
    giving its network the host's egress MTU: see the next test. The healthy Docker target is checked
    against the real host, so any other real host problem would show up here, by name."""
    targets = lab("healthy")
    passed: set[str] = set()
    for target in targets:
        report = _diagnose(netdoctor, target)
        assert report.doc is not None, f"{target.command}: no report ({report.stderr})"
        loud = [(f["check"], f["status"], f["title"], f["detail"]) for f in report.findings
                if f["status"] in ("warn", "fail", "error")]
        assert not loud, f"{target.command} is not quiet: {loud}"
        passed |= {f["check"] for f in report.findings if f["status"] == "pass"}
    # the baseline means something only if the checks the faults trip actually ran and passed here
    built_in_faults = {SCENARIOS[n].expect.check for n in BUILT_IN if SCENARIOS[n].expect}
    assert built_in_faults <= passed, f"never passed on the healthy scenario: {built_in_faults - passed}"


def test_healthy_network_mtu_follows_the_host_uplink(lab, docker_client):
    """The one real fault of this machine (docker0 1500 over a 1400 uplink) must not leak into `healthy`."""
    from netdoctor.lab.topology import host_egress_mtu

    lab("healthy")
    network = docker_client.networks.get("ndlab-healthy-net")
    assert network.attrs["Options"]["com.docker.network.driver.mtu"] == str(host_egress_mtu())


def test_lab_containers_ask_only_our_resolver(lab, docker_client):
    lab("healthy")
    lab("ports")
    for container in docker_client.containers.list(filters={"label": LAB_LABEL}):
        if container.labels[LAB_LABEL] not in ("healthy", "ports"):
            continue
        [server] = container.attrs["HostConfig"]["Dns"]
        network = docker_client.networks.get(f"ndlab-{container.labels[LAB_LABEL]}-net")
        assert server == network.attrs["IPAM"]["Config"][0]["Gateway"]
        state = json.loads((STATE_ROOT / container.labels[LAB_LABEL] / "state.json").read_text())
        assert any(p["module"] == "netdoctor.lab.resolver" for p in state["processes"])


def test_failed_up_leaves_nothing(test_image, monkeypatch):
    from netdoctor.lab import topology

    def broken(self, *args, **kwargs):
        raise LabError("injected failure")

    monkeypatch.setattr(topology.Builder, "listener", broken)
    with pytest.raises(LabError, match="injected"):
        SCENARIOS["ip_forward"].up()
    assert not [n for n in netns_names() if n.startswith("ndlab-ip_forward-")]
    assert not (STATE_ROOT / "ip_forward").exists()


def test_down_after_a_crash_that_lost_the_state(lab, docker_client):
    """Labels, name prefixes and the services' command lines are enough to find everything."""
    lab("dns")
    state = json.loads((STATE_ROOT / "dns" / "state.json").read_text())
    [resolver] = [p["pid"] for p in state["processes"]]
    for path in (STATE_ROOT / "dns").iterdir():
        path.unlink()
    (STATE_ROOT / "dns").rmdir()
    code, out, err = run_cli("lab", "down", "dns")
    assert code == 0, err
    assert not docker_client.containers.list(all=True, filters={"label": f"{LAB_LABEL}=dns"})
    assert not docker_client.networks.list(filters={"label": f"{LAB_LABEL}=dns"})
    assert not Path(f"/proc/{resolver}").exists() or "netdoctor.lab" not in Path(f"/proc/{resolver}/cmdline").read_text()


def test_down_is_idempotent_and_spares_lookalikes(make_netns):
    """`down` of a scenario that is not up succeeds; a namespace that only resembles a lab name survives."""
    lookalike = "ndlab-icc-not-ours"  # a "-" in the role: never a name the lab makes
    sh("ip", "netns", "add", lookalike)
    try:
        code, _, err = run_cli("lab", "down", "icc")
        assert code == 0, err
        assert lookalike in netns_names()
    finally:
        sh("ip", "netns", "delete", lookalike, check=False)


def test_lab_up_prints_the_commands_and_down_all_leaves_nothing(test_image, docker_client):
    try:
        code, out, err = run_cli("lab", "up", "ip_forward", "icc")
        assert code == 0, err
        assert "netdoctor check netns:ndlab-ip_forward-ctr --host-netns ndlab-ip_forward-host" in out
        assert "netdoctor check ndlab-icc-a --peer ndlab-icc-b" in out
        code, out, _ = run_cli("lab", "list")
        assert any(line.split()[:2] == ["icc", "up"] for line in out.splitlines())
    finally:
        code, out, err = run_cli("lab", "down", "--all")
    assert code == 0, err
    assert leftovers() == {}
    assert not docker_client.containers.list(all=True, filters={"label": LAB_LABEL})
    assert not docker_client.networks.list(filters={"label": LAB_LABEL})
    assert not [n for n in netns_names() if n.startswith("ndlab-")]
    host_links = sh("ip", "-o", "link").stdout
    assert "ndl" not in host_links and "vethctr" not in host_links and "uplink0" not in host_links
    services = [p for p in os.listdir("/proc") if p.isdigit() and "netdoctor.lab." in _cmdline(p)]
    assert not services


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_lab_refuses_unknown_scenarios_and_ambiguous_down():
    assert run_cli("lab", "up", "nosuch")[0] == 2
    assert run_cli("lab", "down")[0] == 2
    assert run_cli("lab", "down", "icc", "--all")[0] == 2
