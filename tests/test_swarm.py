"""`check --swarm`, `-H`/`--context` and `--peer` across nodes, on a real three-node Swarm (netdoctor.lab.swarm)
with netdoctor's own image (built by the session's `netdoctor_image` fixture) copied into every node.

Faults are real iptables rules inside one node's namespace (removed after each test) or a node frozen with
SIGSTOP; after every run, nothing netdoctor started may be left on any node: no service, no network, no
container."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from netdoctor.lab.swarm import RESOLVER, SwarmScenario
from netdoctor.lab.topology import exclusive
from tests.conftest import RUN_ID, sh, unique

pytestmark = [pytest.mark.docker, pytest.mark.slow]

AGENT_LABEL = "netdoctor.agent"
RUN_LABEL = "netdoctor.swarm.run"


@pytest.fixture(scope="module")
def swarm(test_image, netdoctor_image):
    # the lab lock: others' `lab down --all` (tests/test_lab.py) waits until this module is done with its lab
    with exclusive():
        lab = SwarmScenario(f"sw{RUN_ID}", nodes=3, agent_image=netdoctor_image)
        try:
            lab.up()
            assert lab.has_agent_image
            yield lab
        finally:
            lab.down()


@pytest.fixture
def on_node(swarm):
    """A command in a node's namespace; iptables rules inserted this way are deleted afterwards."""
    inserted: list[tuple[str, list[str]]] = []

    def run(node: str, *command: str) -> str:
        if command[:3] == ("iptables", "-I", "INPUT"):
            inserted.append((node, list(command[3:])))
        return sh("ip", "netns", "exec", swarm.netns(node), *command).stdout

    yield run
    for node, rule in inserted:
        sh("ip", "netns", "exec", swarm.netns(node), "iptables", "-D", "INPUT", *rule)


@pytest.fixture
def on_swarm(swarm, netdoctor, netdoctor_image):
    """`netdoctor check --swarm` from the host, with the lab's manager as the engine; afterwards, nothing of
    netdoctor's may be left on any node."""
    def run(*args: str):
        return netdoctor("--swarm", "--node", swarm.node_name("manager"), "--image", netdoctor_image, *args)

    yield run
    assert_nothing_left(swarm)


def assert_nothing_left(lab, wait: float = 20.0) -> None:
    """No service or network of a run on the manager, no container of netdoctor's on any node. Swarm removes
    a removed service's task containers asynchronously, within seconds: poll."""
    deadline = time.monotonic() + wait
    while True:
        left = []
        manager = lab.client("manager")
        try:
            left += [f"service {s.name}" for s in manager.services.list(filters={"label": RUN_LABEL})]
            left += [f"network {n.name}" for n in manager.networks.list(filters={"label": RUN_LABEL})]
        finally:
            manager.close()
        for node in lab.nodes:
            client = lab.client(node)
            try:
                left += [f"{node}: container {c.name}" for c in
                         client.containers.list(all=True, filters={"label": AGENT_LABEL}, ignore_removed=True)]
                left += [f"{node}: network {n.name}" for n in client.networks.list() if n.name.startswith("netdoctor-")]
            finally:
                client.close()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left, left


def cluster(report, key: str | None = None) -> list[dict]:
    """The cluster's own findings (check `swarm`), or the one with `key`."""
    found = [f for f in report.of("swarm") if key is None or f["key"] == key]
    return found


def matrix(report) -> dict:
    [summary] = cluster(report, "node-matrix")
    return {(p["from"], p["to"]): p for p in summary["evidence"]["pairs"]}


def test_a_healthy_cluster_is_quiet_and_every_format_names_the_nodes(swarm, on_swarm, tmp_path):
    outputs = {fmt: tmp_path / f"report.{fmt}" for fmt in ("ndjson", "junit", "sarif", "text")}
    report = on_swarm("--skip", "reachability", "--fail-on", "warn",  # lab nodes have no default route, on purpose
                      *[arg for fmt, path in outputs.items() for arg in ("--report", f"{fmt}={path}")])
    loud = [(f["target"], f["check"], f["status"], f["title"]) for f in report.findings if f["status"] in ("warn", "fail", "error")]
    assert not loud and report.exit_code == 0, (loud, report.stderr)

    # every node diagnosed its host and its container, each target labelled with its node
    targets = {t["target"]: t for t in report.doc["targets"]}
    for node in swarm.nodes:
        assert targets[f"{node}/host"]["node"] == node
        assert targets[f"{node}/container:{swarm.container(node)}"]["container"]["name"] == swarm.container(node)
    assert {f["target"].split("/")[0] for f in report.findings if f["check"] == "vxlan"} == set(swarm.nodes)

    # the node matrix: every ordered pair, every plane, from both ends
    pairs = matrix(report)
    assert len(pairs) == 6
    for (sender, receiver), pair in pairs.items():
        assert pair["tcp/2377"]["state"] == ("ok" if receiver == "manager" else "n/a")
        assert {pair[plane]["state"] for plane in ("tcp/7946", "udp/7946", "vxlan")} == {"ok"}, pair
    import jsonschema

    from netdoctor.report import schema

    jsonschema.validate(report.doc, schema())
    jsonschema.validate(cluster(report, "node-matrix")[0]["evidence"], {"$defs": schema()["$defs"], "$ref": "#/$defs/node_matrix"})

    lines = [json.loads(line) for line in outputs["ndjson"].read_text().splitlines()]
    assert {line["target"] for line in lines if line["type"] == "finding"} >= {"swarm", "worker1/host", "manager/host"}
    assert "worker2/host" in lines[-1]["targets"]
    junit = outputs["junit"].read_text()
    assert 'testsuite name="worker1/host"' in junit and 'testsuite name="swarm"' in junit
    assert json.loads(outputs["sarif"].read_text())["runs"][0]["invocations"][0]["executionSuccessful"] is True
    text = outputs["text"].read_text()
    assert "worker2/container:" in text
    header = next(line for line in text.splitlines() if line.split() == ["manager", "worker1", "worker2"])
    assert header  # the matrix as a table


def test_the_tui_shows_the_node_matrix_and_labelled_targets(swarm, netdoctor_image, tmp_path):
    from rich.console import Console

    from netdoctor.request import build
    from netdoctor.tui.app import NetdoctorApp
    from netdoctor.tui.widgets.matrix import NodeMatrix
    from tests.test_tui import drive, finished, of, rows, until

    request = build(swarm=True, node=swarm.node_name("manager"), image=netdoctor_image, checks="vxlan", cwd=tmp_path)
    app = NetdoctorApp(request, output_dir=tmp_path)

    async def scenario(pilot, messages):
        await until(pilot, finished(messages, 1), timeout=90, what="the swarm diagnosis")
        widget = pilot.app.screen.query_one(NodeMatrix)
        assert widget.display
        console = Console(width=160, record=True, file=io.StringIO())
        console.print(widget.table)
        shown = console.export_text()
        assert all(node in shown for node in swarm.nodes) and "✗" not in shown, shown
        targets = {target for _, _, target in rows(pilot.app)}
        assert {f"{node}/host" for node in swarm.nodes} <= targets and "swarm" in targets
        [started] = of(messages, "RunStarted", 1)
        assert ("vxlan", "worker1/host") in started.jobs

    drive(app, scenario, timeout=120)
    assert_nothing_left(swarm)


def test_udp_4789_dropped_on_one_node_is_named_with_its_direction(swarm, on_node, on_swarm, tmp_path):
    on_node("worker2", "iptables", "-I", "INPUT", "-p", "udp", "--dport", "4789", "-j", "DROP")
    sarif = tmp_path / "report.sarif"
    report = on_swarm("--checks", "vxlan", "--timeout", "1", "--report", f"sarif={sarif}")
    assert report.exit_code == 1, report.stderr

    [finding] = [f for f in cluster(report) if f["status"] == "fail"]  # one finding, about the right node
    assert finding["key"] == "firewall-drop:worker2:INPUT:udp-4789"
    assert finding["title"] == ("worker2 drops inbound UDP 4789 (VXLAN): every other node reaches worker2 over "
                                "TCP 7946 but not its overlay endpoints")
    assert finding["evidence"]["direction"] == "inbound" and finding["evidence"]["peers"] == ["manager", "worker1"]
    assert finding["evidence"]["rule"] == "-A INPUT -p udp -m udp --dport 4789 -j DROP"
    assert "iptables -D INPUT -p udp -m udp --dport 4789 -j DROP   # on worker2" in finding["fix"]["commands"]

    pairs = matrix(report)
    for other in ("manager", "worker1"):
        into, out_of = pairs[(other, "worker2")], pairs[("worker2", other)]
        assert into["vxlan"]["state"] == "fail" and into["vxlan"]["cause"] == "input" and into["vxlan"]["arrived"] is True
        assert into["tcp/7946"]["state"] == "ok" and out_of["vxlan"]["state"] == "ok"
    assert pairs[("manager", "worker1")]["vxlan"]["state"] == "ok"

    results = json.loads(sarif.read_text())["runs"][0]["results"]
    places = {r["locations"][0]["logicalLocations"][0]["name"] for r in results}
    assert {"swarm", "worker2/host"} <= places


def test_tcp_7946_dropped_on_one_node_is_named(swarm, on_node, on_swarm):
    on_node("worker2", "iptables", "-I", "INPUT", "-p", "tcp", "--dport", "7946", "-j", "DROP")
    report = on_swarm("--checks", "vxlan", "--timeout", "1")
    [finding] = cluster(report, "firewall-drop:worker2:INPUT:tcp-7946")
    assert finding["title"].startswith("worker2 drops inbound TCP 7946: every other node cannot reach it (timeout)")
    assert "-A INPUT -p tcp -m tcp --dport 7946 -j DROP" in finding["detail"]
    pairs = matrix(report)
    assert pairs[("worker2", "manager")]["tcp/7946"]["state"] == "ok"
    assert pairs[("manager", "worker1")]["tcp/7946"]["state"] == "ok"
    blamed = {f["evidence"].get("node") for f in cluster(report) if f["status"] == "fail"}
    assert blamed == {"worker2"}, [f["title"] for f in cluster(report)]


def test_a_node_stopped_mid_run_becomes_one_error_finding(swarm, netdoctor_image, tmp_path):
    """worker2's engine and netdoctor's containers on it are frozen (SIGSTOP) once it has said what it will
    diagnose: the run reports it as not answering by the deadline, and the other nodes in full."""
    from netdoctor.core import select_checks
    from netdoctor.registry import discover
    from netdoctor.request import build
    from netdoctor.swarm.cluster import SwarmGathering

    request = build(swarm=True, node=swarm.node_name("manager"), image=netdoctor_image, checks="vxlan", timeout=1,
                    deadline=20, cwd=tmp_path)
    run = SwarmGathering(request, discover(), select_checks(discover(), request))
    frozen: list[int] = []
    failed: list[BaseException] = []

    def begin() -> None:
        try:
            run.begin()
        except BaseException as exc:  # the test's thread says so
            failed.append(exc)

    started = threading.Thread(target=begin, daemon=True)
    started.start()
    try:
        deadline = time.monotonic() + 60
        while not any(s.name == "worker2" and s.plan is not None for s in run.nodes.values()):
            assert not failed and time.monotonic() < deadline, (failed, run.nodes)
            time.sleep(0.01)
        frozen = freeze(swarm, "worker2")
        started.join()
        findings = []
        for finding in run:
            findings.append(finding)
            if finding.key == "node-unanswered:worker2":
                thaw(frozen)  # before the run removes its service: the node's task goes with it
                frozen = []
    finally:
        thaw(frozen)
        run.close()
    errors = [f for f in findings if f.status.value == "error"]
    assert [(f.target, f.key) for f in errors] == [("worker2/host", "node-unanswered:worker2")]
    assert errors[0].title == "node worker2 did not answer within 20s"
    assert {f.target for f in findings if f.check == "vxlan"} >= {"manager/host", "worker1/host"}
    [summary] = [f for f in findings if f.key == "node-matrix"]
    unknown = {(p["from"], p["to"]) for p in summary.evidence["pairs"] if p["vxlan"]["state"] == "unknown"}
    assert unknown == {(a, b) for a in swarm.nodes for b in swarm.nodes if a != b and "worker2" in (a, b)}
    assert not [f for f in findings if f.check == "swarm" and f.status.value == "fail"]
    assert_nothing_left(swarm, wait=40)


def freeze(lab, node: str) -> list[int]:
    """SIGSTOP the node's engine (every process in its namespace) and netdoctor's containers on it."""
    client = lab.client(node)
    try:
        agents = client.containers.list(filters={"label": AGENT_LABEL}, ignore_removed=True)
        pids = [c.attrs["State"]["Pid"] for c in agents]
    finally:
        client.close()
    pids += [int(p) for p in sh("ip", "netns", "pids", lab.netns(node)).stdout.split()]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


def thaw(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def test_interrupted_it_leaves_nothing_behind(swarm, netdoctor_image):
    """Ctrl-C (SIGINT) while the nodes run: the service, its network and every agent go."""
    command = [sys.executable, "-m", "netdoctor", "check", "--swarm", "--node", swarm.node_name("manager"),
               "--image", netdoctor_image, "--checks", "vxlan"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not running_agents(swarm):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert_nothing_left(swarm)


def test_a_node_without_the_image_is_one_error_finding_saying_so(swarm, netdoctor, netdoctor_image):
    """The image under a tag that worker2 does not have: its task is rejected, the others report."""
    tag = f"netdoctor-partial:{RUN_ID}"
    tagged = [node for node in swarm.nodes if node != "worker2"]
    for node in tagged:
        client = swarm.client(node)
        client.images.get(netdoctor_image).tag(tag)
        client.close()
    try:
        report = netdoctor("--swarm", "--node", swarm.node_name("manager"), "--image", tag, "--checks", "vxlan",
                           "--deadline", "40")
    finally:
        for node in tagged:
            client = swarm.client(node)
            client.images.remove(tag)
            client.close()
    [error] = [f for f in report.findings if f["status"] == "error"]
    assert error["target"] == "worker2/host" and error["key"] == "node-task:worker2"
    assert "could not run there" in error["title"] and f"docker save {tag} | ssh worker2 docker load" in error["fix"]["commands"]
    assert {f["target"] for f in report.of("vxlan")} >= {"manager/host", "worker1/host"}
    assert_nothing_left(swarm)


@pytest.mark.skipif(not shutil.which("tmux"), reason="the TUI is driven through tmux")
def test_quitting_the_tui_mid_run_leaves_nothing_behind(swarm, netdoctor_image, tmp_path):
    exited, session = tmp_path / "exited", unique("tmux")
    command = (f"{sys.executable} -m netdoctor tui --swarm --node {swarm.node_name('manager')} --image {netdoctor_image} "
               f"--checks vxlan; touch {exited}")
    sh("tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)
    try:
        deadline = time.monotonic() + 60
        while not running_agents(swarm):
            assert time.monotonic() < deadline, sh("tmux", "capture-pane", "-p", "-t", session, check=False).stdout
            time.sleep(0.1)
        sh("tmux", "send-keys", "-t", session, "q")
        deadline = time.monotonic() + 60
        while not exited.exists():
            assert time.monotonic() < deadline, "the TUI did not exit"
            time.sleep(0.2)
    finally:
        sh("tmux", "kill-session", "-t", session, check=False)
    assert_nothing_left(swarm)


def running_agents(lab) -> list[str]:
    found = []
    for node in lab.nodes:
        client = lab.client(node)
        try:
            found += [c.name for c in client.containers.list(filters={"label": AGENT_LABEL}, ignore_removed=True)]
        finally:
            client.close()
    return found


def test_a_peer_on_another_node_passes_over_the_overlay_and_fails_when_its_node_drops_vxlan(swarm, on_node, netdoctor):
    """`check c1 --peer c3` on node 1, c3 running on node 3: found on the overlay, reached, and when node 3
    drops VXLAN the failure names the data path to node 3, not a missing container."""
    peer = f"{swarm.container('worker2')}:80"
    args = (swarm.container("manager"), "--node", swarm.node_name("manager"), "--checks", "icc", "--timeout", "1")
    deadline = time.monotonic() + 30
    while True:  # the manager's engine learns worker2's endpoint (and its VTEP) by gossip: give it time to converge
        [reached] = netdoctor(*args, "--peer", peer).of("icc")
        if reached["status"] == "pass" or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert reached["status"] == "pass", reached
    assert reached["evidence"]["node"] == f"worker2 ({swarm.address('worker2')})"
    assert reached["evidence"]["found_by"] == "the overlay's endpoints"

    on_node("worker2", "iptables", "-I", "INPUT", "-p", "udp", "--dport", "4789", "-j", "DROP")
    report = netdoctor(*args, "--peer", peer)
    [lost] = report.of("icc")
    assert lost["status"] == "fail" and lost["evidence"]["layer"] == "overlay"
    assert "the VXLAN data path to node worker2" in lost["title"] and lost["evidence"]["node_tcp_7946"] == "connected"
    assert "this node's firewall lets it through, so worker2" in lost["detail"]


def test_a_service_peer_is_reached_by_its_tasks_and_an_alias_by_the_embedded_dns(swarm, netdoctor, test_image):
    """A dnsrr service on the overlay (this kernel has no IPVS for a VIP), by its name and by one task's; and
    a container on another node known only by a network alias, which only the embedded DNS knows."""
    import docker

    manager, worker1 = swarm.client("manager"), swarm.client("worker1")
    name, alias = f"svc{RUN_ID}", f"alias{RUN_ID}"
    service = manager.services.create(
        test_image, ["httpd", "-f", "-p", "8080"], name=name, networks=[swarm.overlay],
        endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"), constraints=["node.hostname==worker1"],
        labels={"netdoctor.lab": swarm.name})
    aliased = worker1.containers.create(test_image, "httpd -f -p 80", name=f"ndt{RUN_ID}-aliased", dns=[RESOLVER],
                                        network=swarm.overlay, labels={"netdoctor.lab": swarm.name})
    try:
        worker1.networks.get(swarm.overlay).disconnect(aliased)
        worker1.networks.get(swarm.overlay).connect(aliased, aliases=[alias])
        aliased.start()
        args = (swarm.container("manager"), "--node", swarm.node_name("manager"), "--checks", "icc", "--timeout", "1")
        found = {}
        deadline = time.monotonic() + 60
        while len(found) < 3 and time.monotonic() < deadline:  # the manager's engine learns them by gossip
            for peer in (f"{name}:8080", f"{name}.1:8080", f"{alias}:80"):
                [finding] = netdoctor(*args, "--peer", peer).of("icc")
                if finding["status"] == "pass":
                    found[peer] = finding
            time.sleep(0.5)
        assert len(found) == 3, found
        by_service, by_task, by_alias = found[f"{name}:8080"], found[f"{name}.1:8080"], found[f"{alias}:80"]
        assert by_service["evidence"]["peer"] == f"service {name} (its tasks, endpoint mode dnsrr)"
        assert by_service["evidence"]["node"] == f"worker1 ({swarm.address('worker1')})"
        assert by_task["evidence"]["peer"] == f"task {name}.1"
        assert by_alias["evidence"]["found_by"] == "the embedded DNS (127.0.0.11)"
    finally:
        service.remove()
        aliased.remove(force=True)
        manager.close()
        worker1.close()


def test_a_remote_engine_is_diagnosed_with_its_own_image_and_labelled(swarm, on_node, netdoctor, netdoctor_image,
                                                                    tmp_path, monkeypatch):
    """worker1's engine, from the host: -H runs netdoctor's image there (alongside mode) and streams back."""
    on_node("worker1", "iptables", "-I", "INPUT", "-p", "udp", "--dport", "4789", "-j", "DROP")
    report = netdoctor("-H", swarm.docker_host("worker1"), "--image", netdoctor_image, "--checks", "vxlan")
    assert report.doc is not None, report.stderr
    assert {t["target"] for t in report.doc["targets"]} >= {"worker1/host", f"worker1/container:{swarm.container('worker1')}"}
    assert {t["node"] for t in report.doc["targets"]} == {"worker1"}
    [dropped] = [f for f in report.of("vxlan", "worker1/host") if f["status"] == "fail"]
    assert dropped["evidence"]["rule"] == "-A INPUT -p udp -m udp --dport 4789 -j DROP"
    assert report.exit_code == 1

    # the same engine as a Docker context: its targets carry the context's name
    import hashlib

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    meta = tmp_path / "contexts" / "meta" / hashlib.sha256(b"lab-w1").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": "lab-w1", "Endpoints": {"docker": {"Host": swarm.docker_host("worker1")}}}))
    report = netdoctor("--context", "lab-w1", "--image", netdoctor_image, "--checks", "vxlan", "host")
    assert [t["target"] for t in report.doc["targets"]] == ["lab-w1/host"], report.stderr
    assert_nothing_left(swarm)


def test_an_engine_without_the_image_cannot_be_checked(swarm, netdoctor):
    report = netdoctor("-H", swarm.docker_host("worker1"), "--image", f"nosuch{RUN_ID}:latest")
    assert report.exit_code == 3
    assert "is not on the engine" in report.stderr and "docker save" in report.stderr


def test_a_concurrent_long_run_is_not_removed_as_stale(swarm, test_image):
    """Another run's service and network, as a real manager lists them: one with --deadline 3600 is still
    going 40 minutes in (the first removal of stale leftovers each run makes must leave it), one that gave
    itself 60 s is then long dead. Judged at a time 40 minutes ahead: a real clock cannot wait that long."""
    import datetime as dt

    import docker

    from netdoctor.swarm.cluster import DEADLINE_LABEL, SwarmGathering

    manager = swarm.client("manager")
    made = {}
    try:
        for name, deadline in (("long", "3600"), ("short", "60")):
            labels = {RUN_LABEL: f"{name}{RUN_ID}", DEADLINE_LABEL: deadline}
            made[name] = (manager.services.create(test_image, ["sleep", "600"], name=f"netdoctor-{name}{RUN_ID}",
                                                  labels=labels, mode=docker.types.ServiceMode("replicated", 0)),
                          manager.networks.create(f"netdoctor-{name}{RUN_ID}", driver="overlay", labels=labels))
        gathering = SwarmGathering.__new__(SwarmGathering)
        gathering.engine = manager
        gathering._remove_stale(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=40))
        services = {s.name for s in manager.services.list(filters={"label": RUN_LABEL})}
        networks = {n.name for n in manager.networks.list(filters={"label": RUN_LABEL})}
        assert f"netdoctor-long{RUN_ID}" in services and f"netdoctor-long{RUN_ID}" in networks
        assert f"netdoctor-short{RUN_ID}" not in services and f"netdoctor-short{RUN_ID}" not in networks
    finally:
        for service, network in made.values():
            for item in (service, network):
                try:
                    item.remove()
                except docker.errors.NotFound:
                    pass
        manager.close()


def test_lab_of_any_size_comes_down_whole(test_image):
    """A two-node lab (the smallest) without netdoctor's image: up, registered, and down leaves nothing."""
    lab = SwarmScenario(f"sw2{RUN_ID}", nodes=2, agent_image=None)
    with exclusive():
        try:
            lab.up()
            assert lab.nodes == ("manager", "worker1") and not lab.has_agent_image
            client = lab.client("manager")
            assert len(client.nodes.list()) == 2
            client.close()
        finally:
            lab.down()
    assert not [n for n in sh("ip", "netns", "list").stdout.split() if n.startswith(lab.prefix)]
    assert not list(Path("/run").glob(f"{lab.prefix}-*"))
    assert not Path(f"/var/lib/netdoctor-lab/{lab.name}").exists()
