"""The root-cause rules (netdoctor/causes.py) on constructed findings: which finding follows from which,
how a stream is held and released, and how reports show it. The real faults are in tests/test_root_causes.py."""

import io
import json

import pytest

from netdoctor import causes
from netdoctor.gate import Gate
from netdoctor.model import Finding, Severity, Status
from netdoctor.report.text import TextReporter

BOX = "netns:box"


def finding(check, key, status=Status.FAIL, target=BOX, title="", **evidence) -> Finding:
    return Finding(check=check, target=target, status=status, severity=Severity.HIGH, title=title or f"{check} {key}",
                   detail="what was seen", evidence=evidence, key=key)


FORWARDING_OFF = finding("ip_forward", "forwarding-off", title="Host does not forward IPv4")
PROBE = finding("reachability", "probe:198.51.100.254:8080", layer="forwarding", outcome="timeout")
NAMESERVER = finding("dns", "nameserver-silent:198.51.100.53", layer="forwarding", outcome="timeout")


def roots(findings) -> dict[str, str]:
    return {consequence: cause.id for consequence, cause in causes.link(findings).items()}


def test_forwarding_off_explains_what_broke_at_forwarding():
    unrelated = finding("mtu", "mtu-mismatch:eth0", limit=1400)
    assert roots([PROBE, NAMESERVER, FORWARDING_OFF, unrelated]) == {PROBE.id: FORWARDING_OFF.id,
                                                                     NAMESERVER.id: FORWARDING_OFF.id}


def test_a_cause_explains_only_its_own_target_and_layer():
    other_target = finding("dns", "nameserver-silent:10.0.0.2", target="container:web", layer="forwarding")
    other_layer = finding("reachability", "probe:10.0.0.9:80", layer="beyond_host")
    assert roots([FORWARDING_OFF, other_target, other_layer]) == {}


def test_a_missing_ipv4_default_route_does_not_explain_an_ipv6_path():
    no_default = finding("reachability", "no-default-route")
    v4 = finding("reachability", "probe:198.51.100.254:80", layer="no_route", family="ipv4")
    v6 = finding("reachability", "probe:[2001:db8::1]:80", layer="no_route", family="ipv6")
    assert roots([no_default, v4, v6]) == {v4.id: no_default.id}


def test_linking_stays_linear_in_the_number_of_targets():
    many = [f for n in range(300) for f in (
        finding("ip_forward", "forwarding-off", target=f"container:c{n}"),
        finding("reachability", "probe:198.51.100.254:8080", target=f"container:c{n}", layer="forwarding"),
        finding("dns", "nameserver-silent:198.51.100.53", target=f"container:c{n}", layer="forwarding"))]
    linked = roots(many)
    assert len(linked) == 600
    assert all(cause.endswith(consequence.rpartition("@")[2]) for consequence, cause in linked.items())


def test_pass_and_info_findings_are_never_linked():
    passed = finding("reachability", "probe:10.0.0.9:80", status=Status.PASS, layer="forwarding")
    info_cause = finding("ip_forward", "forwarding-off", status=Status.INFO)
    assert roots([FORWARDING_OFF, passed]) == {} and roots([info_cause, PROBE]) == {}


def test_a_chain_resolves_to_its_root():
    link_down = finding("reachability", "host-link-down:br0", device="br0")
    gateway = finding("reachability", "gateway-silent", gateway="10.66.0.1")
    probe = finding("reachability", "probe:198.51.100.254:8080", layer="gateway")
    nameserver = finding("dns", "nameserver-silent:198.51.100.53", layer="gateway")
    assert roots([probe, nameserver, gateway, link_down]) == {gateway.id: link_down.id, probe.id: link_down.id,
                                                               nameserver.id: link_down.id}
    # without the link down, the silent gateway is the root
    assert roots([probe, gateway]) == {probe.id: gateway.id}


RULE = "-A DOCKER-USER -d 198.51.100.53/32 -j DROP"


def test_a_firewall_drop_explains_what_its_rule_stopped():
    drop = finding("forward_policy", "firewall-drop-partial:outgoing:br0", status=Status.WARN, rule=RULE)
    stopped = finding("dns", "nameserver-silent:198.51.100.53", layer="firewall",
                      host_forward_verdict=f"iptables-nft filter FORWARD: {RULE}")
    by_another = finding("reachability", "probe:198.51.100.254:80", layer="firewall",
                         host_forward_verdict="iptables-nft filter FORWARD: -A FORWARD -p tcp --dport 80 -j DROP")
    assert roots([drop, stopped, by_another]) == {stopped.id: drop.id}


def test_a_policy_drop_is_explained_by_the_same_chains_policy_or_by_dockers_missing_rules():
    policy = finding("forward_policy", "firewall-drop:outgoing:br0", policy="drop", where="iptables-nft filter FORWARD")
    stopped = finding("reachability", "probe:198.51.100.254:80", layer="firewall",
                      host_forward_verdict="iptables-nft filter FORWARD: FORWARD policy DROP")
    assert roots([policy, stopped]) == {stopped.id: policy.id}
    wiped = finding("forward_policy", "docker-rules-missing:forward:br0")
    assert roots([wiped, stopped]) == {stopped.id: wiped.id}


def test_nat_and_missing_route_layers():
    masquerade = finding("reachability", "masquerade-missing")
    no_route = finding("reachability", "no-default-route")
    by_nat = finding("icc", "peer:db:5432@net", layer="nat")
    by_route = finding("dns", "nameserver-silent:1.1.1.1", layer="no_route")
    assert roots([masquerade, no_route, by_nat, by_route]) == {by_nat.id: masquerade.id, by_route.id: no_route.id}


def test_a_full_conntrack_table_on_the_host_explains_timeouts_on_every_target():
    full = finding("conntrack", "table-full", target="host")
    timeout = finding("reachability", "probe:10.0.0.9:80", target="container:web", layer="beyond_host", outcome="timeout")
    refused = finding("reachability", "probe:10.0.0.9:81", target="container:web", layer="beyond_host", outcome="refused")
    assert roots([full, timeout, refused]) == {timeout.id: full.id}


def test_a_host_route_inside_the_subnet_explains_lost_replies_to_addresses_in_it():
    collides = finding("subnet_overlap", "route-inside:10.66.0.0/25:10.66.0.0/24", route="10.66.0.0/25 via 10.9.0.1 dev tun0")
    inside = finding("reachability", "probe:1.1.1.1:443", layer="beyond_host", source="10.66.0.2")
    outside = finding("reachability", "probe:1.1.1.1:80", layer="beyond_host", source="10.66.0.200")
    assert roots([collides, inside, outside]) == {inside.id: collides.id}


def test_unenforced_icc_explains_the_peer_that_connected_on_that_network_only():
    unenforced = finding("bridge_nf", "icc-unenforced:back", target="container:web")
    same = finding("icc", "peer-unisolated:db:5432@back", status=Status.WARN, target="container:web")
    other = finding("icc", "peer-unisolated:db:5432@front", status=Status.WARN, target="container:web")
    assert roots([unenforced, same, other]) == {same.id: unenforced.id}


def test_the_measured_path_mtu_follows_from_the_interface_mismatch_it_confirms():
    mismatch = finding("mtu", "mtu-mismatch:eth0", limit=1400)
    confirmed = finding("mtu", "pmtu-smaller:198.51.100.254", status=Status.WARN, path_mtu=1400)
    further = finding("mtu", "pmtu-blackhole:10.9.0.1", path_mtu=1280)
    assert roots([mismatch, confirmed, further]) == {confirmed.id: mismatch.id}


def test_a_macvlan_parent_down_explains_both_gateway_findings():
    down = finding("macvlan", "parent-down:lan", target="container:web")
    macvlan_gateway = finding("macvlan", "gateway-silent:lan", target="container:web", gateway="192.168.1.1")
    reachability_gateway = finding("reachability", "gateway-silent", target="container:web", gateway="192.168.1.1")
    assert roots([down, macvlan_gateway, reachability_gateway]) == {macvlan_gateway.id: down.id,
                                                                    reachability_gateway.id: down.id}


def test_the_vxlan_data_path_follows_from_this_nodes_rule_dropping_the_data_port():
    rule = "-A INPUT -p udp --dport 4789 -j DROP"
    dropped = finding("vxlan", "firewall-drop:swarm:0a1b2c3d", target="host", rule=rule)
    broken = finding("vxlan", "data-path-broken:ov:10.0.0.3", target="host", local_rules_dropping_vxlan=[rule])
    elsewhere = finding("vxlan", "data-path-broken:ov:10.0.0.4", target="host", local_rules_dropping_vxlan=[])
    assert roots([dropped, broken, elsewhere]) == {broken.id: dropped.id}


def test_consequences_say_because_and_keep_their_detail():
    [probe, cause] = causes.apply([PROBE, FORWARDING_OFF])
    assert probe.caused_by == FORWARDING_OFF.id and cause.caused_by is None
    assert probe.detail == "Because of ip_forward: Host does not forward IPv4.\nwhat was seen"
    assert causes.tally([probe, cause, finding("mtu", "mtu:eth0", status=Status.PASS)]) == (1, 1)


def test_linker_holds_a_possible_consequence_until_the_checks_that_could_explain_it_finish():
    jobs = [("ip_forward", BOX), ("reachability", BOX), ("dns", BOX), ("mtu", BOX), ("forward_policy", BOX)]
    linker = causes.Linker(jobs)
    ok = finding("mtu", "mtu:eth0", status=Status.PASS)
    by_firewall = finding("dns", "nameserver-silent:198.51.100.54", layer="firewall")
    assert linker.add("mtu", BOX, [ok]) == [ok]
    assert linker.add("dns", BOX, [NAMESERVER, by_firewall]) == []  # ip_forward, reachability may explain them
    assert linker.add("reachability", BOX, [PROBE]) == []
    released = linker.add("ip_forward", BOX, [FORWARDING_OFF])
    assert {f.id: f.caused_by for f in released} == {NAMESERVER.id: FORWARDING_OFF.id, PROBE.id: FORWARDING_OFF.id,
                                                     FORWARDING_OFF.id: None}
    assert released[0].id == FORWARDING_OFF.id  # a reader of the stream meets the cause before its consequences
    # lost at the firewall: a firewall check (forward_policy) may still name the rule
    assert [f.id for f in linker.add("forward_policy", BOX, [])] == [by_firewall.id]
    assert linker.finish() == []


def test_linker_passes_on_at_once_what_nothing_pending_could_explain_and_releases_all_at_the_end():
    linker = causes.Linker([("dns", BOX), ("ip_forward", "netns:other")])
    assert linker.add("dns", BOX, [NAMESERVER]) == [NAMESERVER]  # no check left that explains this target
    linker = causes.Linker([("dns", BOX), ("ip_forward", BOX)])
    assert linker.add("dns", BOX, [NAMESERVER]) == []
    assert linker.finish() == [NAMESERVER]  # the explaining job never reported (hung, vanished): said as it is


def test_explain_names_the_root_causes_a_check_can_follow_from():
    text = causes.explain("dns")
    assert "ip_forward `forwarding-off`" in text and "reachability `gateway-silent`" in text
    assert "`firewall-drop*`" in text
    assert "can be the root cause of" in causes.explain("ip_forward")
    assert "firewall `docker-rules-missing`" in causes.explain("ports")  # a published port's share of the wipe
    assert causes.explain("nosuchcheck") == ""


def test_text_report_puts_the_root_cause_first_with_its_consequences_under_it():
    findings = causes.apply([NAMESERVER, PROBE, FORWARDING_OFF, finding("mtu", "mtu:eth0", status=Status.PASS)])
    out = io.StringIO()
    reporter = TextReporter(out, gate=Gate())
    reporter.start([])
    for f in findings:
        reporter.add(f)
    reporter.finish(1200)
    lines = out.getvalue().splitlines()
    root = next(i for i, line in enumerate(lines) if "ip_forward     Host does not forward IPv4" in line)
    under = lines.index("    ↳ because of ip_forward:")
    assert root < under
    assert lines[under + 1].split()[:2] == ["FAIL", "dns"] and lines[under + 2].split()[:2] == ["FAIL", "reachability"]
    assert lines[-1].startswith("netdoctor: FAILED — 3 fail, 1 pass on 0 targets")
    assert "; 1 root cause, 2 consequences (gate: --fail-on fail)" in lines[-1]


def test_report_schema_describes_the_causal_fields():
    jsonschema = pytest.importorskip("jsonschema")
    from netdoctor.report import document, schema

    [probe, cause] = causes.apply([PROBE, FORWARDING_OFF])
    doc = json.loads(json.dumps(document([], [probe, cause], 10.0)))
    jsonschema.validate(doc, schema())
    fields = schema()["$defs"]["finding"]["properties"]
    assert {"id", "key", "caused_by"} <= set(fields)
    assert doc["findings"][0]["caused_by"] == cause.id == doc["findings"][1]["id"]


def test_a_diagnosis_links_the_real_checks_findings(monkeypatch):
    """ip_forward, reachability and dns on a constructed host that does not forward: the core streams the
    probe's and the nameserver's failures under ip_forward's, each once."""
    from netdoctor import core, targets
    from netdoctor.facts.resolvconf import ResolvConf
    from netdoctor.request import Options, Request
    from tests.fakes import FakeWorld

    monkeypatch.setattr(targets, "_sees_host_pids", lambda: True)
    monkeypatch.setattr(targets, "network_owner_id", lambda: None)
    monkeypatch.setattr(targets, "_runs_here", lambda container: True)  # the fake engine's pids count as ours
    world = FakeWorld()
    world.uplink()
    world.host.sysctls["net.ipv4.ip_forward"] = "0"
    world.host.iptables = ("*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n"
                           "COMMIT\n")
    web = world.container("web", network=world.bridge_network("bridge", "172.17.0.0/16"), ip="172.17.0.2",
                          dns=["192.0.2.53"])
    inside = world.namespaces[web.netns_path]
    inside.icmp["172.17.0.1"] = 1500
    inside.neighbours["172.17.0.1"] = "REACHABLE"
    world.host_files.update(read=lambda path: ResolvConf(path, ("192.0.2.53",), (), 1), host_upstream=None)
    request = Request(targets=("web",), checks=("ip_forward", "reachability", "dns"),
                      options=Options(timeout=0.1, probes=("192.0.2.80:443",)))
    with core.diagnose(request, session=world.session(request.options)) as diagnosis:
        findings = list(diagnosis)
    bad = {f.key: f for f in findings if f.status is Status.FAIL}
    assert set(bad) == {"forwarding-off", "probe:192.0.2.80:443", "nameserver-silent:192.0.2.53"}
    root = bad["forwarding-off"]
    assert bad["probe:192.0.2.80:443"].caused_by == root.id == bad["nameserver-silent:192.0.2.53"].caused_by
    assert bad["nameserver-silent:192.0.2.53"].evidence["layer"] == "forwarding"
    assert any("net.ipv4.ip_forward=1" in c for c in bad["nameserver-silent:192.0.2.53"].fix.commands)
    assert len({f.id for f in findings}) == len(findings)
    assert findings.index(root) < min(findings.index(bad[k]) for k in bad if k != "forwarding-off")


def test_ci_reports_mention_the_cause():
    from netdoctor.report.github import GithubReporter
    from netdoctor.report.junit import JunitReporter
    from netdoctor.report.sarif import SarifReporter

    findings = causes.apply([PROBE, FORWARDING_OFF])
    outputs = {}
    for name, kind in (("junit", JunitReporter), ("sarif", SarifReporter), ("github", GithubReporter)):
        out = io.StringIO()
        reporter = kind(out, gate=Gate())
        reporter.start([])
        for f in findings:
            reporter.add(f)
        reporter.finish(10.0)
        outputs[name] = out.getvalue()
    assert f'because of {FORWARDING_OFF.id}' in outputs["junit"]
    [probe_result] = [r for r in json.loads(outputs["sarif"])["runs"][0]["results"] if r["ruleId"] == "reachability"]
    assert probe_result["properties"]["caused_by"] == FORWARDING_OFF.id
    assert "Because of ip_forward: Host does not forward IPv4." in probe_result["message"]["text"]
    assert "Because of ip_forward: Host does not forward IPv4." in outputs["github"]


def test_explain_and_schema_commands_show_the_causes():
    from tests.conftest import run_cli

    code, out, _ = run_cli("explain", "dns")
    assert code == 0 and "can be consequences of these root causes" in out and "ip_forward `forwarding-off`" in out
    code, out, _ = run_cli("schema")
    assert code == 0 and "caused_by" in json.loads(out)["$defs"]["finding"]["properties"]
