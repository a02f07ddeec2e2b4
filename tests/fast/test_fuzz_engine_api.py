"""Engine API documents (container and network inspect data, as engines from 20.10 to 29 shape them: fields
missing or null, empty strings, port ranges, odd states and network modes): turning them into facts never
raises, and the checks that judge a container by them give findings or skips, never an error."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings, strategies as st

from netdoctor.facts.docker import container_from_attrs, network_from_attrs
from netdoctor.model import Status
from netdoctor.targets import Target
from tests.fakes import FakeWorld

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
hexid = st.text("0123456789abcdef", min_size=1, max_size=64)
ip4 = st.ip_addresses(v=4).map(str)
ip6 = st.ip_addresses(v=6).map(str)


def maybe(strategy):
    return st.one_of(st.none(), strategy)


def optional(**fields):
    """A JSON object in which every field may be missing, and any present one null."""
    return st.fixed_dictionaries({}, optional={k: maybe(v) for k, v in fields.items()})


subnets = st.one_of(st.builds(lambda ip, n: str(ipaddress.ip_network(f"{ip}/{n}", strict=False)), ip4, st.integers(8, 30)),
                    st.builds(lambda ip, n: str(ipaddress.ip_network(f"{ip}/{n}", strict=False)), ip6, st.integers(48, 126)))
port_specs = st.one_of(st.builds(lambda p, proto: f"{p}/{proto}", st.integers(0, 65535), st.sampled_from(["tcp", "udp", "sctp"])),
                       st.sampled_from(["80-90/tcp", "53/udp", "/tcp", "x/tcp", "80", "", "65536/tcp"]), text)
bindings = maybe(st.lists(optional(HostIp=st.sampled_from(["", "0.0.0.0", "::", "127.0.0.1"]) | ip4 | ip6,
                                   HostPort=st.sampled_from(["", "0", "8000-8010", "70000", "-1", "x"])
                                   | st.integers(0, 65535).map(str)), max_size=3))
port_maps = st.dictionaries(port_specs, bindings, max_size=4)
modes = st.sampled_from(["default", "bridge", "host", "none", "container:0123456789ab", "shop", ""]) | text
statuses = st.sampled_from(["created", "running", "paused", "restarting", "removing", "exited", "dead"]) | text
NETWORK_NAMES = ["bridge", "host", "none", "shop", "front"]


def endpoints():
    return optional(NetworkID=st.sampled_from([f"{n}-id" for n in NETWORK_NAMES]) | hexid, IPAddress=ip4 | st.just(""),
                    IPPrefixLen=st.integers(0, 32), Gateway=ip4 | st.just(""), GlobalIPv6Address=ip6 | st.just(""),
                    MacAddress=text, Aliases=st.lists(text, max_size=3))


containers = optional(
    Id=hexid, Name=text.map(lambda n: "/" + n), RestartCount=st.integers(0, 10**6), ResolvConfPath=text,
    State=optional(Status=statuses, Pid=st.integers(-1, 2**22), ExitCode=st.integers(-1, 255), Error=text,
                   FinishedAt=st.sampled_from(["0001-01-01T00:00:00Z", "2026-12-02T02:40:12.189303578Z", ""]) | text,
                   Running=st.booleans(), Paused=st.booleans(), Restarting=st.booleans()),
    Config=optional(Image=text, ExposedPorts=st.dictionaries(port_specs, st.just({}), max_size=4),
                    Labels=st.dictionaries(text, text, max_size=3)),
    HostConfig=optional(NetworkMode=modes, Dns=st.lists(ip4 | ip6, max_size=3), PortBindings=port_maps),
    NetworkSettings=optional(Networks=st.dictionaries(st.sampled_from(NETWORK_NAMES) | text, maybe(endpoints()), max_size=3),
                             Ports=port_maps),
)
networks = optional(
    Id=hexid, Name=st.sampled_from(NETWORK_NAMES) | text, Driver=st.sampled_from(["bridge", "overlay", "macvlan", "ipvlan",
                                                                                  "host", "null"]) | text,
    Scope=st.sampled_from(["local", "swarm"]), Internal=st.booleans(),
    Options=st.dictionaries(st.sampled_from(["com.docker.network.bridge.name", "com.docker.network.bridge.enable_icc",
                                             "com.docker.network.driver.mtu", "parent",
                                             "com.docker.network.bridge.default_bridge"]) | text,
                            st.sampled_from(["true", "false", "1500", "abc", "", "eth0", "docker0"]) | text, max_size=4),
    IPAM=optional(Config=st.lists(optional(Subnet=subnets, Gateway=ip4 | ip6 | st.just("")), max_size=2)),
)


@settings(max_examples=250, deadline=None)
@given(containers)
def test_container_documents_become_facts(attrs):
    info = container_from_attrs(attrs)
    info.running, info.paused, info.has_namespace, info.short_id, info.state_text
    for published in info.published:
        published.label
    for attachment in info.attachments:
        attachment.subnet


@settings(max_examples=200, deadline=None)
@given(networks)
def test_network_documents_become_facts(attrs):
    info = network_from_attrs(attrs)
    info.is_default_bridge, info.bridge_name, info.icc_enabled, info.uses_nat


CHECKS = ["ports", "icc", "subnet_overlap", "dns", "ip_forward", "reachability"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(containers, st.lists(networks, max_size=3), st.lists(st.sampled_from(["shop", "front", "nosuch"]), max_size=2))
def test_checks_judge_any_container_document(attrs, network_docs, peers):
    world = FakeWorld()
    world.host.link("eth0").addr("eth0", "192.0.2.10/24").route("default", via="192.0.2.1", dev="eth0")
    world.host.sysctls["net.ipv4.ip_forward"] = "1"
    world.host.iptables = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    world.host_files.update({"read": lambda path: __import__("netdoctor.facts.resolvconf", fromlist=["parse"]).parse(
        "nameserver 192.0.2.53\n", path), "host_upstream": None, "socket_holders": {}, "process": None})
    for doc in network_docs:
        network = network_from_attrs(doc)
        world.docker.networks_by_name[network.name or network.id] = network
    info = container_from_attrs(attrs)
    world.docker.containers_by_name[info.name or "unnamed"] = info
    for peer in peers:  # peers that exist (a healthy neighbour) or not
        if peer != "nosuch":
            world.container(peer, network=world.bridge_network(peer, "10.77.0.0/24" if peer == "shop" else "10.78.0.0/24"))
    namespace = world.namespace(f"ctr-{info.name}")
    namespace.link("lo").addr("lo", "127.0.0.1/8")
    target = Target("container", info.name or "unnamed", namespace.path if info.has_namespace else None, info,
                    info.pid if info.has_namespace else None,
                    unavailable="" if info.has_namespace else f"{info.state_text}: it has no network namespace")
    findings = world.run([target], CHECKS, peers=tuple(peers))
    assert {f.check for f in findings} == set(CHECKS)  # every check judged, skipped or said why
    errors = [f for f in findings if f.status is Status.ERROR]
    assert not errors, [(f.check, f.title, f.detail) for f in errors]
