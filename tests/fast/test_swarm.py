"""The parts of `check --swarm` / `-H` that need no cluster: the node matrix's reading of two nodes' halves,
the records the agents send back, Docker contexts, and the request's validation. The real thing runs in
tests/test_swarm.py against a multi-node lab."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from netdoctor.errors import BadInput
from netdoctor.model import Finding, Severity, Status
from netdoctor.swarm import engines
from netdoctor.swarm.matrix import PLANES, Matrix, Node, table_lines
from netdoctor.swarm.protocol import CHUNK, Decoder, Emitter, finding_from_dict, target_from_dict

MANAGER, W1, W2 = (Node("id-m", "manager", "10.0.0.11", True), Node("id-1", "worker1", "10.0.0.12", False),
                   Node("id-2", "worker2", "10.0.0.13", False))
PORT = {"tcp/2377": ("tcp", 2377), "tcp/7946": ("tcp", 7946), "udp/7946": ("udp", 7946), "vxlan": ("udp", 4789)}


def rows(nodes: list[Node], broken: dict | None = None, rules: dict | None = None, arrived: bool = True) -> dict:
    """The rows the nodes would report: every path works except `broken` {(sender, receiver, plane): tcp outcome};
    `rules` {(node, direction, peer, plane): rule text} are the nodes' firewall drops."""
    broken, rules = broken or {}, rules or {}
    out = {n.id: {"node": n.id, "addr": n.addr, "tcp": {}, "overlay_known": [], "overlay_heard": [], "udp_heard": [],
                  "vxlan_seen": {}, "watched": True, "errors": [], "rules": {"INPUT": {}, "OUTPUT": {}}} for n in nodes}
    for a in nodes:
        for b in nodes:
            if a is b:
                continue
            for plane in PLANES:
                if plane == "tcp/2377" and not b.manager:
                    continue
                failed = (a.name, b.name, plane) in broken
                if plane.startswith("tcp/"):
                    outcome = broken.get((a.name, b.name, plane), "connected")
                    out[a.id]["tcp"][f"{b.id}:{PORT[plane][1]}"] = {"outcome": outcome, "latency_ms": 0.3}
                elif plane == "udp/7946" and not failed:
                    out[b.id]["udp_heard"].append(a.id)
                elif plane == "vxlan":
                    out[a.id]["overlay_known"].append(b.id)
                    if not failed:
                        out[b.id]["overlay_heard"].append(a.id)
                    if not failed or arrived:
                        out[b.id]["vxlan_seen"][a.id] = 3
    by_name = {n.name: n for n in nodes}
    for (node, direction, peer, plane), text in rules.items():
        proto, port = PORT[plane]
        out[by_name[node].id]["rules"][direction].setdefault(by_name[peer].id, {})[f"{proto}/{port}"] = {
            "rule": text, "where": f"iptables-nft filter {direction}", "undo": text.replace("-A ", "iptables -D ", 1)}
    return out


def findings(nodes, **kw) -> list[Finding]:
    return Matrix(nodes, rows(nodes, **kw), 4789).findings()


def test_a_healthy_cluster_gives_one_passing_matrix():
    [summary] = findings([MANAGER, W1, W2])
    assert summary.status is Status.PASS and summary.key == "node-matrix"
    assert "all 20 paths between 3 nodes work" in summary.title  # 6 ordered pairs x 4 planes, 2377 only to the manager
    states = {p["from"] + ">" + p["to"]: {plane: p[plane]["state"] for plane in PLANES} for p in summary.evidence["pairs"]}
    assert states["manager>worker1"] == {"tcp/2377": "n/a", "tcp/7946": "ok", "udp/7946": "ok", "vxlan": "ok"}
    assert states["worker1>manager"]["tcp/2377"] == "ok"


def test_a_node_dropping_inbound_vxlan_is_named_with_its_direction_and_rule():
    rule = "-A INPUT -p udp -m udp --dport 4789 -j DROP"
    found = findings([MANAGER, W1, W2], broken={("manager", "worker2", "vxlan"): "", ("worker1", "worker2", "vxlan"): ""},
                     rules={("worker2", "INPUT", "manager", "vxlan"): rule, ("worker2", "INPUT", "worker1", "vxlan"): rule})
    [finding, summary] = found
    assert finding.title == ("worker2 drops inbound UDP 4789 (VXLAN): every other node reaches worker2 over TCP 7946 "
                             "but not its overlay endpoints")
    assert finding.key == "firewall-drop:worker2:INPUT:udp-4789" and finding.status is Status.FAIL
    assert finding.evidence["direction"] == "inbound" and finding.evidence["rule"] == rule
    assert "manager -> worker2: hellos over VXLAN do not arrive (they reach worker2's interface)" in finding.evidence["pairs"]
    assert finding.fix.commands == ("iptables -D INPUT -p udp -m udp --dport 4789 -j DROP   # on worker2",)
    assert summary.status is Status.INFO and summary.title == "Node matrix: 2 of 20 paths between 3 nodes fail, 18 work"


def test_inbound_without_a_rule_points_past_the_nodes():
    found = findings([MANAGER, W1, W2], arrived=False,
                     broken={("manager", "worker2", "tcp/7946"): "timeout", ("worker1", "worker2", "tcp/7946"): "timeout"})
    [finding, _] = found
    assert finding.title == "worker2 drops inbound TCP 7946: every other node cannot reach it (timeout), while it reaches them"
    assert finding.key == "inbound-lost:worker2:tcp-7946"
    assert "something between the nodes" in finding.detail
    assert any("iptables -I INPUT -p tcp --dport 7946 -s 10.0.0.11 -j ACCEPT" in c for c in finding.fix.commands)


def test_a_node_losing_outbound_traffic_is_told_from_one_that_drops_inbound():
    rule = "-A OUTPUT -p udp -m udp --dport 7946 -j DROP"
    found = findings([MANAGER, W1, W2], arrived=False,
                     broken={("worker1", "manager", "udp/7946"): "", ("worker1", "worker2", "udp/7946"): ""},
                     rules={("worker1", "OUTPUT", "manager", "udp/7946"): rule, ("worker1", "OUTPUT", "worker2", "udp/7946"): rule})
    [finding, _] = found
    assert finding.title.startswith("worker1's outbound UDP 7946 is lost: it reaches none of every other node")
    assert finding.key == "firewall-drop:worker1:OUTPUT:udp-7946"


def test_a_single_broken_pair_is_its_own_finding():
    [pair, _] = findings([MANAGER, W1, W2], broken={("worker1", "worker2", "tcp/7946"): "refused"})
    assert pair.key == "pair-lost:tcp-7946:worker1->worker2"
    assert pair.title == "worker1 -> worker2: TCP 7946 fails (refused: nothing listens (or a REJECT rule answers))"


def test_the_manager_port_is_critical():
    [finding, _] = findings([MANAGER, W1, W2], broken={("worker1", "manager", "tcp/2377"): "timeout",
                                                       ("worker2", "manager", "tcp/2377"): "timeout"})
    assert finding.severity is Severity.CRITICAL and finding.title.startswith("manager drops inbound TCP 2377")


def test_a_node_that_did_not_report_leaves_its_pairs_unknown_and_blames_nobody():
    nodes = [MANAGER, W1, W2]
    measured = rows(nodes, broken={("manager", "worker2", "tcp/7946"): "timeout", ("worker1", "worker2", "tcp/7946"): "timeout"})
    del measured[W2.id]
    [summary] = Matrix(nodes, measured, 4789).findings()
    assert summary.title == "Node matrix: 13 of 20 unknown (a node did not report), 7 work"  # every pair with worker2
    assert summary.status is Status.INFO
    assert [n["reported"] for n in summary.evidence["nodes"]] == [True, True, False]


def test_with_two_nodes_only_a_rule_says_which_end():
    rule = "-A INPUT -p udp -m udp --dport 4789 -j DROP"
    [node_finding, _] = findings([MANAGER, W1], broken={("manager", "worker1", "vxlan"): ""},
                                 rules={("worker1", "INPUT", "manager", "vxlan"): rule})
    assert node_finding.key == "firewall-drop:worker1:INPUT:udp-4789"
    [pair, _] = findings([MANAGER, W1], arrived=False, broken={("manager", "worker1", "vxlan"): ""})
    assert pair.key == "pair-lost:udp-4789:manager->worker1" and "(nothing arrives at worker1's interface)" in pair.title


def test_an_endpoint_gossip_never_delivered_is_not_blamed_on_vxlan():
    nodes = [MANAGER, W1, W2]
    measured = rows(nodes)
    measured[MANAGER.id]["overlay_known"].remove(W2.id)  # the manager's engine never learned worker2's endpoint
    measured[W2.id]["overlay_heard"].remove(MANAGER.id)
    [late, summary] = Matrix(nodes, measured, 4789).findings()
    assert late.key == "endpoints-late" and late.status is Status.WARN and late.evidence["pairs"] == ["manager -> worker2"]
    assert "1 of 20 unknown" in summary.title
    # when gossip itself is broken, that finding says why; the unknown VXLAN pair adds nothing
    measured = rows(nodes, broken={("manager", "worker2", "tcp/7946"): "timeout", ("worker1", "worker2", "tcp/7946"): "timeout"})
    measured[MANAGER.id]["overlay_known"].remove(W2.id)
    measured[W2.id]["overlay_heard"].remove(MANAGER.id)
    assert [f.key for f in Matrix(nodes, measured, 4789).findings()] == ["inbound-lost:worker2:tcp-7946", "node-matrix"]


def test_the_table_marks_each_plane():
    nodes = [MANAGER, W1]
    [_, summary] = Matrix(nodes, rows(nodes, arrived=False, broken={("manager", "worker1", "vxlan"): ""}), 4789).findings()
    lines = table_lines(summary.evidence)
    assert lines[1].split() == ["manager", "-", "·", "✓", "✓", "✗"]
    assert lines[2].split() == ["worker1", "✓", "✓", "✓", "✓", "-"]


def test_records_survive_being_cut_into_lines_and_interleaved_with_noise():
    stream = io.StringIO()
    emit = Emitter(stream)
    big = "x" * (3 * CHUNK + 5)
    emit("finding", check="vxlan", target="host", status="fail", severity="high", title="t", detail=big,
         evidence={}, fix={"summary": "", "commands": []}, key="k", caused_by="mtu/m@host")
    emit("done", duration_ms=1)
    lines = stream.getvalue().splitlines(keepends=True)
    assert len(lines) == 5 and all(len(line) < CHUNK + 40 for line in lines)
    decoder = Decoder()
    got = []
    for i, line in enumerate(lines):
        got += decoder.feed(line[:7])          # lines arrive in pieces, with other output between them
        got += decoder.feed(line[7:])
        if i == 1:
            got += decoder.feed("Traceback: something else\n")
    assert [r["t"] for r in got] == ["finding", "done"] and got[0]["detail"] == big
    assert list(decoder.noise) == ["Traceback: something else"]
    finding = finding_from_dict(got[0], "worker1")
    assert finding.target == "worker1/host" and finding.caused_by == "mtu/m@worker1/host"
    assert finding.id == "vxlan/k@worker1/host"


def test_a_reported_target_keeps_its_description_and_gains_its_node():
    reported = {"target": "container:web", "kind": "container", "name": "web", "netns": "/proc/9/ns/net",
                "container": {"id": "abc", "name": "web", "image": "shop/web", "status": "running", "pid": 9,
                              "network_mode": "ov", "networks": {"ov": "10.0.1.5"}, "published": []}}
    target = target_from_dict(reported, "worker1")
    assert target.label == "worker1/container:web"
    assert target.to_dict() == {**reported, "target": "worker1/container:web", "node": "worker1"}
    assert [(a.network, a.ip) for a in target.container.attachments] == [("ov", "10.0.1.5")]


def test_contexts_are_read_from_the_cli_store(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    digest = hashlib.sha256(b"prod").hexdigest()
    meta = tmp_path / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": "prod", "Endpoints": {"docker": {"Host": "tcp://10.9.0.5:2376"}}}))
    (tmp_path / "contexts" / "tls" / digest / "docker").mkdir(parents=True)
    remote = engines.remote(None, "prod")
    assert (remote.url, remote.name) == ("tcp://10.9.0.5:2376", "prod")
    assert remote.tls_dir.endswith(f"{digest}/docker")
    with pytest.raises(BadInput, match="no such Docker context"):
        engines.remote(None, "nope")
    with pytest.raises(BadInput, match="not both"):
        engines.remote("tcp://a:1", "prod")
    with pytest.raises(BadInput, match="not an engine address"):
        engines.remote("ftp://a", None)


@pytest.mark.parametrize("flags, message", [
    (dict(image="x"), "apply to --swarm and -H/--context only"),
    (dict(deadline=30.0), "apply to --swarm and -H/--context only"),
    (dict(swarm=True, deadline=1.0), "--deadline must be"),
    (dict(swarm=True, host_netns="/proc/1/ns/net"), "--host-netns does not apply"),
    (dict(swarm=True, targets=["/web"]), "needs a node name"),
])
def test_remote_flags_are_validated_where_they_enter(flags, message, tmp_path):
    from netdoctor.request import build

    with pytest.raises(BadInput, match=message):
        build(cwd=tmp_path, **flags)


def test_swarm_targets_may_name_their_node(tmp_path):
    from netdoctor.request import build

    request = build(cwd=tmp_path, swarm=True, targets=["worker1/web", "db", "pid:4242"], image="nd:1", deadline=20)
    assert request.targets == ("worker1/web", "db", "pid:4242")  # pid 4242 is the node's, not checked here
    assert (request.swarm, request.image, request.deadline, request.remote) == (True, "nd:1", 20, None)


class _Manager:
    """What SwarmGathering._remove_stale asks a manager's API: runs' services and networks, as listed."""

    def __init__(self, services: list[dict], networks: list[dict]):
        self.listed = {"service": services, "network": networks}
        self.removed: list[str] = []

    def services(self, filters):
        return self.listed["service"]

    def networks(self, filters):
        return self.listed["network"]

    def remove_service(self, ident):
        self.removed.append(ident)

    def remove_network(self, ident):
        self.removed.append(ident)


def test_another_runs_service_lives_as_long_as_its_own_deadline():
    """A run with --deadline 3600 started 40 minutes ago is still going: another run must not remove its
    service or network as stale; one that gave itself 60 s, or an unlabelled one from hours ago, was killed."""
    import datetime as dt
    from types import SimpleNamespace

    from netdoctor.swarm.cluster import DEADLINE_LABEL, RUN_LABEL, SwarmGathering

    now = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)

    def stamp(minutes_ago: float) -> str:  # as the Engine API writes it: nanoseconds, Z
        return (now - dt.timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")

    def service(ident, minutes_ago, deadline=None):
        labels = {RUN_LABEL: ident, **({DEADLINE_LABEL: deadline} if deadline else {})}
        return {"ID": ident, "CreatedAt": stamp(minutes_ago), "Spec": {"Name": f"netdoctor-{ident}", "Labels": labels}}

    def network(ident, minutes_ago, deadline=None):
        labels = {RUN_LABEL: ident, **({DEADLINE_LABEL: deadline} if deadline else {})}
        return {"Id": ident, "ID": ident, "Created": stamp(minutes_ago), "Labels": labels}

    api = _Manager([service("long", 40, "3600"), service("short", 40, "60"), service("old", 180), service("young", 30)],
                   [network("long-net", 40, "3600"), network("short-net", 40, "60"), network("old-net", 180)])
    gathering = SwarmGathering.__new__(SwarmGathering)
    gathering.engine = SimpleNamespace(api=api)
    gathering._remove_stale(now)
    assert sorted(api.removed) == ["old", "old-net", "short", "short-net"]
