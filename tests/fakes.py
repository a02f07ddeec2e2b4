"""A machine made of constructed facts, for the fast test tier: no root, no Docker, no namespaces.

A FakeWorld holds a host namespace and any number of target namespaces, each built from links,
addresses, routes, sysctls and firewall rules; Docker containers and networks as the Engine API would
describe them; and a script of what active probes get back. `world.run(targets, checks)` runs real
checks through the real runner against it, so a fast test proves a check's judgement on exactly the
facts it states. The real-fault tier (the other test modules) is what proves that those facts are what
the kernel and the engine really show.

    world = FakeWorld()
    world.host.link("eth0", mtu=1400).addr("eth0", "192.0.2.10/24").route("default", via="192.0.2.1", dev="eth0")
    world.host.sysctls["net.ipv4.ip_forward"] = "0"
    web = world.container("web", network=world.bridge_network("bridge", "172.17.0.0/16"))
    [finding] = world.run([web], ["ip_forward"])
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from netdoctor.context import Session
from netdoctor.dockerapi import ContainerNotFound
from netdoctor.facts.docker import ContainerInfo, NetworkInfo, container_from_attrs, network_from_attrs
from netdoctor.facts.firewall import Ruleset, parse as parse_iptables
from netdoctor.facts.namespace import Address, Link, Listener, NamespaceFacts, Route
from netdoctor.model import Finding
from netdoctor.probes.dns import QueryResult
from netdoctor.probes.icmp import EchoRound
from netdoctor.probes.tcp import ConnectResult
from netdoctor.registry import discover
from netdoctor.request import Options
from netdoctor.targets import Target

IFF_UP = "UP"


class FakeNamespace:
    """One network namespace's facts, and what probes from it get back. Builder methods return self."""

    def __init__(self, name: str):
        self.path = f"fake:{name}"
        self.label = name
        self.links: list[Link] = []
        self.addresses: list[Address] = []
        self.routes: list[Route] = []
        self.listeners: list[Listener] = []
        self.sysctls: dict[str, str] = {}
        self.iptables = ""                       # iptables-save text of this namespace
        self.readers: dict[str, Any] = {}        # other facts by reader name (view.read), e.g. "read_stats"
        # probe script: what each probe gets; anything not scripted times out (silence)
        self.tcp: dict[tuple[str, int], str] = {}            # (host, port) -> connected/refused/timeout/...
        self.dns: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}  # (server, name) -> (outcome, addresses)
        self.icmp: dict[str, int] = {}                       # address -> largest DF packet that comes back
        self.frag_needed: dict[str, tuple[int, str]] = {}    # address -> (MTU, router) reported above that size
        self.neighbours: dict[str, str] = {}                 # address -> NUD state after a probe

    # --- building ---------------------------------------------------------------------------------

    def index_of(self, name: str) -> int:
        return next(l.index for l in self.links if l.name == name)

    def link(self, name: str, kind: str = "", mtu: int = 1500, up: bool = True, master: str | None = None,
             peer_index: int | None = None, **info: Any) -> "FakeNamespace":
        index = 1 + max((l.index for l in self.links), default=0)
        self.links.append(Link(index, name, kind, mtu, up, "UP" if up else "DOWN", 0, f"02:00:00:00:00:{index:02x}",
                               self.index_of(master) if master else None, peer_index, info))
        return self

    def addr(self, dev: str, cidr: str) -> "FakeNamespace":
        interface = ipaddress.ip_interface(cidr)
        family = socket.AF_INET if interface.version == 4 else socket.AF_INET6
        self.addresses.append(Address(self.index_of(dev), family, str(interface.ip), interface.network.prefixlen, 0))
        return self

    def route(self, dst: str, via: str | None = None, dev: str | None = None, mtu: int | None = None,
              priority: int = 0) -> "FakeNamespace":
        family = socket.AF_INET6 if ":" in (via or dst) else socket.AF_INET
        self.routes.append(Route(family, dst, via, self.index_of(dev) if dev else None, 254, mtu, priority))
        return self

    def listen(self, proto: str, address: str, port: int, inode: int = 0) -> "FakeNamespace":
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.listeners.append(Listener(proto, family, address, port, inode))
        return self

    # --- what checks read (NamespaceView's interface) --------------------------------------------

    @property
    def facts(self) -> NamespaceFacts:
        return NamespaceFacts(tuple(self.links), tuple(self.addresses), tuple(self.routes), tuple(self.listeners))

    def sysctl(self, key: str) -> str | None:
        return self.sysctls.get(key)

    @property
    def firewall(self) -> Ruleset:
        return parse_iptables(self.iptables)

    def read(self, reader: Callable[..., Any], *args: Any) -> Any:
        value = self.readers[reader.__name__]
        return value(*args) if callable(value) else value

    def connect(self, host: str, port: int, timeout: float) -> ConnectResult:
        outcome = self.tcp.get((host, port), "timeout")
        return ConnectResult(host, port, outcome, timeout * 1000 if outcome == "timeout" else 0.5)

    def query(self, server: str, name: str, timeout: float, rdtype: str = "A") -> QueryResult:
        outcome, addresses = self.dns.get((server, name), ("timeout", ()))
        return QueryResult(server, name, outcome, timeout * 1000 if outcome == "timeout" else 1.0, addresses)

    def echo(self, destination: str, sizes: list[int], wait: float) -> EchoRound:
        result = EchoRound(destination)
        largest = self.icmp.get(destination)
        for size in sizes:
            if largest is not None and size <= largest:
                result.answered.add(size)
            elif destination in self.frag_needed:
                result.frag_needed[size] = self.frag_needed[destination]
        return result

    def neighbour_state(self, address: str) -> str | None:
        return self.neighbours.get(address)


class FakeDocker:
    """The Engine API's answers (DockerSession's interface) from constructed inspect documents."""

    def __init__(self):
        self.containers_by_name: dict[str, ContainerInfo] = {}
        self.networks_by_name: dict[str, NetworkInfo] = {}
        self.engine_info: dict[str, Any] = {"ServerVersion": "20.10.24", "Swarm": {"LocalNodeState": "inactive"}}
        self.address = "unix:///fake/docker.sock"

    def container(self, name: str) -> ContainerInfo:
        for container in self.containers_by_name.values():
            if name in (container.name, container.id) or (len(name) >= 3 and container.id.startswith(name)):
                return container
        raise ContainerNotFound(f"no container named or with id {name!r} on {self.address}")

    def containers(self, filters: dict | None = None, all: bool = False) -> list[ContainerInfo]:
        return [c for c in self.containers_by_name.values() if all or c.running]

    def network(self, name_or_id: str) -> NetworkInfo:
        for network in self.networks_by_name.values():
            if name_or_id in (network.name, network.id):
                return network
        raise LookupError(name_or_id)

    def has_network(self, name_or_id: str) -> bool:
        return any(name_or_id in (n.name, n.id) for n in self.networks_by_name.values())

    def networks_of(self, container: ContainerInfo):
        return [(a, self.network(a.network_id or a.network)) for a in container.attachments if self.has_network(a.network_id or a.network)]

    def all_networks(self) -> list[NetworkInfo]:
        return list(self.networks_by_name.values())

    def info(self) -> dict:
        return self.engine_info

    def network_endpoints(self, network_id: str) -> dict[str, str]:
        return {}

    def swarm_nodes(self) -> list[dict]:
        return []


class FakeSession(Session):
    """A Session whose namespaces, Docker engine and host files are the world's constructed facts."""

    def __init__(self, world: "FakeWorld", options: Options):
        self.options = options
        self.docker = world.docker
        self.world = world
        self.host_target = Target("host", "host", world.host.path)
        self._views = {}

    def view(self, path: str, label: str) -> FakeNamespace:
        return self.world.namespaces[path]

    @property
    def privileged(self) -> bool:
        return True

    def has_tool(self, name: str) -> bool:
        return True

    def namespace_exists(self, path: str) -> bool:
        return path in self.world.namespaces

    def same_namespace(self, path: str, other: str) -> bool:
        return path == other

    def fact(self, reader: Callable[..., Any], *args: Any) -> Any:
        value = self.world.host_files[reader.__name__]
        return value(*args) if callable(value) else value

    def close(self) -> None:
        pass


@dataclass
class FakeWorld:
    host: FakeNamespace = field(default_factory=lambda: FakeNamespace("host"))
    docker: FakeDocker = field(default_factory=FakeDocker)
    host_files: dict[str, Any] = field(default_factory=dict)   # host-file facts by reader name (session.fact)

    def __post_init__(self):
        self.namespaces: dict[str, FakeNamespace] = {self.host.path: self.host}
        self._next_pid = 40000

    def namespace(self, name: str) -> FakeNamespace:
        namespace = FakeNamespace(name)
        self.namespaces[namespace.path] = namespace
        return namespace

    def target(self, namespace: FakeNamespace) -> Target:
        """A `netns:` target on a namespace of the world."""
        return Target("netns", namespace.label, namespace.path)

    def bridge_network(self, name: str, subnet: str, gateway: str | None = None, **options: str) -> NetworkInfo:
        """A Docker bridge network, with its bridge in the host namespace holding the gateway address."""
        net = ipaddress.ip_network(subnet)
        gateway = gateway or str(net[1])
        default = name == "bridge"
        network_id = f"{abs(hash(name)):064x}"[:64]
        attrs = {"Id": network_id, "Name": name, "Driver": "bridge", "Scope": "local", "Internal": False,
                 "Options": ({"com.docker.network.bridge.default_bridge": "true", "com.docker.network.bridge.name": "docker0"}
                             if default else {}) | options,
                 "IPAM": {"Config": [{"Subnet": subnet, "Gateway": gateway}]}}
        network = network_from_attrs(attrs)
        self.docker.networks_by_name[name] = network
        self.host.link(network.bridge_name, kind="bridge").addr(network.bridge_name, f"{gateway}/{net.prefixlen}")
        return network

    def container(self, name: str, network: NetworkInfo | None = None, ip: str | None = None, mtu: int = 1500,
                  published: Iterable[tuple[int, str, str, int]] = (), dns: Iterable[str] = (),
                  status: str = "running", **config: Any) -> Target:
        """A container on `network` (a veth into its bridge, a default route via its gateway), as the
        engine would describe it; returns its target. `published`: (container port, proto, host ip, host port)."""
        self._next_pid += 1
        pid = self._next_pid if status == "running" else 0
        namespace = self.namespace(f"ctr-{name}")
        networks = {}
        if network is not None:
            subnet = ipaddress.ip_network(network.subnets[0])
            ip = ip or str(subnet[2 + len(self.docker.containers_by_name)])
            host_end = f"veth{name}"[:15]
            self.host.link(host_end, kind="veth", mtu=mtu, master=network.bridge_name)
            namespace.link("eth0", kind="veth", mtu=mtu, peer_index=self.host.index_of(host_end))
            self.host.links[-1] = replace(self.host.links[-1], peer_index=namespace.index_of("eth0"))
            namespace.addr("eth0", f"{ip}/{subnet.prefixlen}").route("default", via=network.gateways[0], dev="eth0")
            mac = namespace.links[-1].address
            networks[network.name] = {"NetworkID": network.id, "IPAddress": ip, "IPPrefixLen": subnet.prefixlen,
                                      "Gateway": network.gateways[0], "MacAddress": mac}
        ports = {}
        for container_port, proto, host_ip, host_port in published:
            ports.setdefault(f"{container_port}/{proto}", []).append({"HostIp": host_ip, "HostPort": str(host_port)})
        attrs = {"Id": f"{abs(hash(name)):064x}"[:64], "Name": f"/{name}",
                 "State": {"Status": status, "Pid": pid},
                 "Config": {"Image": config.pop("image", "busybox"), "ExposedPorts": config.pop("exposed", {}),
                            "Labels": config.pop("labels", {})},
                 "HostConfig": {"NetworkMode": network.name if network else "none", "Dns": list(dns)},
                 "NetworkSettings": {"Networks": networks, "Ports": ports}, **config}
        container = container_from_attrs(attrs)
        self.docker.containers_by_name[name] = container
        path = namespace.path if status == "running" else None
        return Target("container", name, path, container, pid or None,
                      unavailable="" if path else f"container {name} is {status}: it has no network namespace")

    def session(self, options: Options | None = None) -> FakeSession:
        return FakeSession(self, options or Options(timeout=0.1))

    def run(self, targets: list[Target], checks: Iterable[str], **options: Any) -> list[Finding]:
        """Run the named checks on `targets` with the real runner; findings in completion order."""
        from netdoctor.runner import run

        catalogue = discover()
        infos = [catalogue.get(check_id) for check_id in checks]
        session = self.session(Options(**{"timeout": 0.1, **options}))
        return list(run(infos, targets, session, explicit=True))
