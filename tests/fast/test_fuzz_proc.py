"""Readers of /proc files, fed anything a kernel (of another version, or in a namespace of a container) could
print: conntrack statistics, the snmp counters, a process's command line. They never raise; what they cannot
read they leave out, and the checks built on them give findings, not errors."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from netdoctor.facts import conntrack, pathmtu
from netdoctor.facts.processes import Process
from netdoctor.model import Status
from tests.fakes import FakeWorld

CONNTRACK_HEADER = ("entries clashres found new invalid ignore delete delete_list insert insert_failed drop early_drop "
                    "icmp_error expect_new expect_create expect_delete search_restart")
hex_or_not = st.one_of(st.integers(0, 2**64).map(lambda n: f"{n:08x}"), st.text(max_size=12))
tokens = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=20)


def table(header: st.SearchStrategy, cell: st.SearchStrategy) -> st.SearchStrategy:
    rows = st.lists(st.lists(cell, max_size=20).map(" ".join), max_size=8)
    return st.builds(lambda h, r: "\n".join([h, *r]) + "\n", header, rows)


conntrack_texts = st.one_of(table(st.just(CONNTRACK_HEADER), hex_or_not),
                            table(st.lists(tokens, max_size=20).map(" ".join), hex_or_not), st.text(max_size=500))


@settings(max_examples=200, deadline=None)
@given(conntrack_texts)
def test_conntrack_stats_never_raise(text):
    stats = conntrack.parse_stats(text)
    assert all(isinstance(v, int) and v >= 0 for v in stats.values())


@settings(max_examples=60, deadline=None)
@given(conntrack_texts, st.integers(0, 10**7), st.integers(0, 10**7))
def test_conntrack_check_on_any_statistics(text, count, maximum):
    world = FakeWorld()
    world.host.sysctls.update({"net.netfilter.nf_conntrack_count": str(count), "net.netfilter.nf_conntrack_max": str(maximum)})
    world.host.readers["read_stats"] = conntrack.parse_stats(text)
    findings = world.run([world.target(world.host)], ["conntrack"])
    assert findings and not [f for f in findings if f.status is Status.ERROR], findings


snmp_groups = st.sampled_from(["Ip", "Icmp", "IcmpMsg", "Tcp", "Udp", "UdpLite", "Weird"])
snmp_names = st.sampled_from(["FragFails", "InType3", "OutType3", "Forwarding", "InReceives"]) | tokens
snmp_values = st.one_of(st.integers(-2**63, 2**64).map(str), tokens)


@st.composite
def snmp_texts(draw):
    lines = []
    for group in draw(st.lists(snmp_groups | tokens, max_size=6)):
        names = draw(st.lists(snmp_names, max_size=12))
        values = draw(st.lists(snmp_values, max_size=14))
        lines += [f"{group}: {' '.join(names)}", f"{group}: {' '.join(values)}"]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(tokens))  # a line out of step
    return "\n".join(lines)


@settings(max_examples=200, deadline=None)
@given(st.one_of(snmp_texts(), st.text(max_size=500)))
def test_snmp_counters_never_raise(text):
    counters = pathmtu.parse_counters(text)
    assert set(counters) == {"FragFails", "IcmpInType3", "IcmpOutType3"}
    assert all(isinstance(v, int) for v in counters.values())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(tokens, st.sampled_from(["docker-proxy", "/usr/bin/docker-proxy", "-container-ip",
                                                    "-container-port", "-host-port", ""])), max_size=10))
def test_any_command_line_is_described(cmdline):
    process = Process(4242, "x", tuple(cmdline))
    process.is_docker_proxy
    for flag in ("-container-ip", "-container-port", "-host-port"):
        value = process.arg(flag)
        assert value is None or value in cmdline
    process.to_evidence()
