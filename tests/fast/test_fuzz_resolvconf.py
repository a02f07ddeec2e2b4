"""resolv.conf as a container may write it (anything at all): parsing never raises, and the dns check on what
was parsed gives findings or skips, never an error. The file is the container's, so it is untrusted input."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings, strategies as st

from netdoctor.facts import resolvconf
from netdoctor.model import Status
from tests.fakes import FakeWorld

addresses = st.one_of(st.ip_addresses().map(str), st.sampled_from(["127.0.0.53", "127.0.0.11", "::1", "fe80::1%eth0",
                                                                   "0.0.0.0", "255.255.255.255", "::ffff:10.0.0.1"]))
words = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=70)
labels = st.one_of(st.from_regex(r"[a-z0-9-]{0,70}", fullmatch=True), words)
names = st.lists(labels, min_size=1, max_size=6).map(".".join)
lines = st.one_of(
    st.builds(lambda a, tail: f"nameserver {a}{tail}", addresses, st.sampled_from(["", " # x", "  extra", "\t"])),
    st.builds(lambda w: f"nameserver {w}", words),
    st.builds(lambda ns: "search " + " ".join(ns), st.lists(names, max_size=8)),
    st.builds(lambda n: f"domain {n}", names),
    st.builds(lambda n: f"options ndots:{n}", st.one_of(st.integers(-10**12, 10**12).map(str), words)),
    st.builds(lambda o: f"options {o}", st.sampled_from(["rotate", "timeout:0", "attempts:99", "edns0", "use-vc",
                                                         "ndots:", "ndots", "trust-ad", "no-aaaa", "inet6"])),
    st.sampled_from(["", "#", ";", "nameserver", "search", "domain", "options", "sortlist 10.0.0.0/8"]),
    words,
)
files = st.one_of(st.lists(lines, max_size=25).map("\n".join), st.text(max_size=2000))


@settings(max_examples=150, deadline=None)
@given(files)
def test_parse_never_raises_and_keeps_what_libc_would_use(text):
    conf = resolvconf.parse(text, "/fuzz/resolv.conf")
    for server in conf.nameservers:
        ipaddress.ip_address(server.split("%")[0])  # only addresses come out
    assert 0 <= conf.ndots <= resolvconf.MAX_NDOTS
    assert all(isinstance(name, str) and name for name in conf.search)
    conf.to_evidence()


def _world(text: str):
    world = FakeWorld()
    world.host.link("eth0").addr("eth0", "192.0.2.10/24").route("default", via="192.0.2.1", dev="eth0")
    world.host.iptables = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    world.host_files["read"] = lambda path: resolvconf.parse(text, path)
    world.host_files["host_upstream"] = "192.0.2.53"
    bridge = world.bridge_network("bridge", "172.17.0.0/16")
    user = world.bridge_network("shop", "172.30.0.0/24")
    return world, [world.container("web", network=bridge), world.container("api", network=user),
                   world.container("stopped", network=user, status="exited")]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files, st.lists(names, max_size=2))
def test_dns_check_on_any_resolv_conf_gives_findings_not_errors(text, resolve):
    world, targets = _world(text)
    names_ok = [n for n in resolve if _valid(n)]
    findings = world.run(targets, ["dns"], resolve=tuple(names_ok))
    errors = [f for f in findings if f.status is Status.ERROR]
    assert not errors, [(f.title, f.detail) for f in errors]
    assert {f.target for f in findings} == {t.label for t in targets}


def _valid(name: str) -> bool:
    from netdoctor.errors import BadInput
    from netdoctor.request import validate_dns_name

    try:
        validate_dns_name(name)
        return True
    except BadInput:
        return False
