"""`--probe` is probed in the destination's own family, and a failure is explained in that family: IPv6
neighbour discovery instead of ARP, IPv6 routes and forwarding, and a destination that is the target itself
(loopback, its own address) never blamed on routes it does not need.

Everything here stays inside containers, networks and namespaces the tests make: fd00::/8 addresses on our
own IPv6 network, loopback in our own namespace.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest

from tests.conftest import sh

pytestmark = pytest.mark.docker


@pytest.fixture
def v6_pair(make_network, make_container, docker_client):
    """Two containers with an httpd on a network of ours with IPv6; (client, server's IPv6, prefix)."""
    prefix = f"fd00:d0c:{random.randrange(0x1000, 0xffff):x}:"
    network = make_network("v6", enable_ipv6=True, ipam={"Driver": "default", "Config": [{"Subnet": f"{prefix}:/64"}]})
    client = make_container("v6c", network=network.name)
    server = make_container("v6s", network=network.name)
    server_v6 = docker_client.api.inspect_container(server.id)["NetworkSettings"]["Networks"][network.name]["GlobalIPv6Address"]
    assert server_v6.startswith(prefix)
    return client, server_v6, prefix


def probes(report) -> dict[str, dict]:
    return {f["evidence"]["probe"]: f for f in report.of("reachability") if f["key"].startswith("probe:")}


def test_ipv6_peer_connects_over_ipv6(v6_pair, netdoctor):
    client, server_v6, _ = v6_pair
    report = netdoctor(client.name, "--checks", "reachability", "--probe", f"[{server_v6}]:80")
    [found] = probes(report).values()
    assert found["status"] == "pass", found
    assert found["evidence"]["endpoint"] == f"{server_v6}:80"


def test_ipv6_refusal_is_the_far_end_not_the_network(v6_pair, netdoctor):
    client, server_v6, _ = v6_pair
    [found] = probes(netdoctor(client.name, "--checks", "reachability", "--probe", f"[{server_v6}]:81")).values()
    assert found["status"] == "fail" and found["evidence"]["layer"] == "refused"
    assert f"[{server_v6}]:81" in found["fix"]["summary"] and "::1" in found["fix"]["summary"]


def test_silent_ipv6_neighbour_is_found_by_neighbour_discovery(v6_pair, netdoctor):
    """Nobody holds this address on our own network: NDP gets no answer (an ARP table lookup would see
    nothing at all and blame the wrong thing)."""
    client, _, prefix = v6_pair
    nobody = f"{prefix}:beef"
    [found] = probes(netdoctor(client.name, "--checks", "reachability", "--probe", f"[{nobody}]:80",
                               "--timeout", "3")).values()
    assert found["status"] == "fail" and found["evidence"]["layer"] == "peer_down", found
    assert "neighbour discovery" in found["detail"]
    assert found["evidence"][f"ndp {nobody}"] in ("INCOMPLETE", "FAILED")


def test_container_without_ipv6_gets_an_ipv6_fix_not_a_default_route(make_container, netdoctor):
    web = make_container("v4only")
    [found] = probes(netdoctor(web.name, "--checks", "reachability", "--probe", "[fd00:d0c::5]:80")).values()
    assert found["evidence"]["layer"] == "no_route"
    assert "IPv6" in found["detail"] and "--ipv6" in " ".join(found["fix"]["commands"])
    assert not any("ip route add default" in c for c in found["fix"]["commands"])
    assert all(":" in r for r in found["evidence"]["target_routes"])  # only IPv6 routes are evidence here


@pytest.fixture
def loopback_ns(make_netns):
    """A namespace of ours with loopback up (IPv4 and IPv6), a listener on [::1]:8080 and port 9 dropped."""
    name = make_netns("lo6")
    for tool in ("iptables", "ip6tables"):
        sh("ip", "netns", "exec", name, tool, "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "DROP")
    serve = ("import socket\ns = socket.create_server(('::1', 8080), family=socket.AF_INET6)\n"
             "while True:\n    s.accept()[0].close()\n")
    listener = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", serve])
    deadline = time.monotonic() + 10
    while "8080" not in sh("ip", "netns", "exec", name, "ss", "-ltnH").stdout:
        assert time.monotonic() < deadline, "listener did not start"
        time.sleep(0.1)
    yield f"netns:{name}"
    listener.kill()
    listener.wait()


@pytest.mark.parametrize("endpoint, status, layer", [
    ("[::1]:8080", "pass", None),                 # the baseline: listening on IPv6 loopback
    ("[::1]:81", "fail", "refused"),
    ("127.0.0.1:81", "fail", "refused"),          # IPv4 loopback is in the local table, not the main one
    ("[::1]:9", "fail", "far_end"),
    ("127.0.0.1:9", "fail", "far_end"),
])
def test_own_address_is_never_blamed_on_routes(loopback_ns, netdoctor, endpoint, status, layer):
    report = netdoctor(loopback_ns, "--checks", "reachability", "--probe", endpoint, "--timeout", "1")
    [found] = probes(report).values()
    assert found["status"] == status, found
    assert found["evidence"].get("layer") == layer
    if layer:
        assert "own address" in found["detail"] and "never left its namespace" in found["detail"]
        assert found["evidence"]["destination"] == "the target itself"
