"""dns against real containers: loopback nameservers, resolvers that do not answer, peers on the default
bridge vs a user-defined network, ndots/search, stopped containers. Every nameserver is ours."""

from __future__ import annotations

import pytest

from netdoctor.facts.resolvconf import host_upstream
from netdoctor.lab.resolver import Resolver

pytestmark = pytest.mark.docker


def not_quiet(report, check="dns"):
    return [f for f in report.of(check) if f["status"] in ("warn", "fail", "error")]


@pytest.fixture
def broken_resolver(make_network):
    """A Resolver of ours, broken on purpose, on the gateway address of a user network we create: a host
    address that default-bridge containers reach through the host, like any upstream resolver."""
    started = []

    def start(behaviour: str) -> Resolver:
        network = make_network("dnsup")
        network.reload()
        gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
        server = Resolver(gateway, 53, behaviour=behaviour).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_healthy_container_with_our_resolver_is_quiet(make_container, resolver, netdoctor):
    web = make_container("web")
    report = netdoctor(web.name, "--checks", "dns")
    assert not_quiet(report) == [], report.of("dns")
    [server] = [f for f in report.of("dns") if f["evidence"].get("nameserver") == resolver.address]
    assert server["status"] == "pass"
    # liveness is tested with the root zone's NS query, which names nobody (our resolver: NXDOMAIN, an answer)
    [query] = server["evidence"]["queries"]
    assert query["name"] == "." and query["outcome"] == "nxdomain"


def test_resolve_name_answered_and_unknown_name_fails(make_container, resolver, netdoctor):
    web = make_container("web")
    report = netdoctor(web.name, "--checks", "dns", "--resolve", "known.test", "--resolve", "missing.test")
    by_name = {f["evidence"].get("name"): f for f in report.of("dns") if "name" in f["evidence"]}
    assert by_name["known.test"]["status"] == "pass"
    assert by_name["known.test"]["evidence"]["queries"][0]["addresses"] == ["10.123.45.10"]
    assert by_name["missing.test"]["status"] == "fail"
    assert by_name["missing.test"]["evidence"]["queries"][0]["outcome"] == "nxdomain"
    assert report.exit_code == 1


@pytest.mark.parametrize("server", ["127.0.0.53", "127.0.0.11"])
def test_loopback_nameserver_on_default_bridge_fails(make_container, netdoctor, server):
    web = make_container("web", dns=[server])
    report = netdoctor(web.name, "--checks", "dns")
    [finding] = not_quiet(report)
    assert finding["status"] == "fail"
    assert finding["evidence"]["nameserver"] == server
    # the query from inside the namespace shows what the application sees: nothing answers on loopback there
    assert finding["evidence"]["queries"][0]["outcome"] in ("refused", "timeout")
    assert ("embedded DNS" in finding["evidence"]["reason"]) == (server == "127.0.0.11")
    commands = finding["fix"]["commands"]
    # recreated, keeping the old container until the new one works: nothing deleted first
    assert not any(c.startswith("docker rm -f") for c in commands), commands
    assert commands.index(f"docker rename {web.name} {web.name}-old") < commands.index(f"docker rm {web.name}-old  # once {web.name} works")
    upstream = host_upstream() or "ADDRESS-OF-YOUR-RESOLVER"
    assert any(c.startswith(f"docker run -d --name {web.name} --dns {upstream} ") for c in commands), commands
    assert f"created with --dns {server}" in finding["fix"]["summary"]


def test_embedded_dns_forwarding_to_a_loopback_upstream_fails(make_network, make_container, netdoctor):
    """On a user network resolv.conf says 127.0.0.11, which is right; but Docker's embedded DNS forwards to
    the --dns servers from inside the container's namespace, where 127.0.0.53 answers nothing."""
    net = make_network("app")
    web = make_container("web", network=net.name, dns=["127.0.0.53"])
    report = netdoctor(web.name, "--checks", "dns", "--timeout", "0.5")
    [finding] = not_quiet(report)
    assert finding["status"] == "fail" and finding["evidence"]["nameserver"] == "127.0.0.11"
    assert finding["evidence"]["embedded_dns_upstreams"] == ["127.0.0.53"]
    assert finding["evidence"]["queries"][0]["outcome"] in ("timeout", "servfail")
    assert any(f"--network {net.name} --dns " in c for c in finding["fix"]["commands"])


@pytest.mark.parametrize("behaviour, outcome", [("silent", "timeout"), ("servfail", "servfail")])
def test_nameserver_that_does_not_answer_fails_with_latency(make_container, broken_resolver, netdoctor, behaviour, outcome):
    upstream = broken_resolver(behaviour)
    web = make_container("web", dns=[upstream.address])
    report = netdoctor(web.name, "--checks", "dns", "--timeout", "0.5")
    [finding] = not_quiet(report)
    assert finding["status"] == "fail" and finding["evidence"]["nameserver"] == upstream.address
    [query] = finding["evidence"]["queries"]
    assert query["outcome"] == outcome
    if behaviour == "silent":
        assert 450 <= query["latency_ms"] < 1500
    assert upstream.queries == [""], "the query reached our broken resolver"


def test_peer_does_not_resolve_on_default_bridge(make_container, netdoctor):
    db = make_container("db")
    web = make_container("web")
    report = netdoctor(web.name, "--checks", "dns", "--peer", db.name)
    [finding] = not_quiet(report)
    assert finding["status"] == "warn" and finding["evidence"]["name"] == db.name
    assert "default bridge" in finding["title"]
    net = f"{web.name}-{db.name}"
    assert finding["fix"]["commands"] == [f"docker network create {net}", f"docker network connect {net} {web.name}",
                                          f"docker network connect {net} {db.name}"]


@pytest.mark.parametrize("with_port", [False, True], ids=["peer", "peer:port"])
def test_peer_resolves_through_embedded_dns_on_user_network(make_network, make_container, netdoctor, with_port):
    net = make_network("app")
    db = make_container("db", network=net.name)
    web = make_container("web", network=net.name)
    # --peer NAME:PORT (as icc takes it) names the same container
    report = netdoctor(web.name, "--checks", "dns", "--peer", f"{db.name}:80" if with_port else db.name)
    assert not_quiet(report) == [], report.of("dns")
    db.reload()
    [peer] = [f for f in report.of("dns") if f["evidence"].get("name") == db.name]
    assert peer["evidence"]["queries"][0]["server"] == "127.0.0.11"
    assert peer["evidence"]["queries"][0]["addresses"] == [db.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]]


def test_many_search_domains_with_high_ndots_warn(make_container, netdoctor):
    web = make_container("web", dns_search=["a.test", "b.test", "c.test"], dns_opt=["ndots:5"])
    report = netdoctor(web.name, "--checks", "dns")
    [finding] = not_quiet(report)
    assert finding["status"] == "warn"
    assert finding["evidence"]["ndots"] == 5 and finding["evidence"]["search"] == ["a.test", "b.test", "c.test"]


def test_stopped_container_is_judged_from_its_resolv_conf(make_container, netdoctor):
    web = make_container("web", dns=["127.0.0.53"])
    web.stop(timeout=0)
    report = netdoctor(web.name, "--checks", "dns")
    statuses = {f["status"]: f for f in report.of("dns")}
    assert set(statuses) == {"fail", "skip"}
    assert statuses["fail"]["evidence"]["nameservers"] == ["127.0.0.53"]
    web.reload()  # the engine's own data root (/var/lib/docker on 20.10, another --data-root elsewhere)
    assert statuses["fail"]["evidence"]["resolv_conf"] == web.attrs["ResolvConfPath"]
    assert "exited" in statuses["skip"]["title"]


def test_explain_dns(netdoctor):
    from tests.conftest import run_cli

    code, out, _ = run_cli("explain", "dns")
    assert code == 0 and "127.0.0.11" in out and "root zone" in out
