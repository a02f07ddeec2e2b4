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
from netdoctor.facts import resolvconf
from netdoctor.facts.dockerd import FirewallSettings
from netdoctor.facts.engine import EngineFacts, engine_from_api
from netdoctor.facts.processes import Process
from netdoctor.firewall import Firewall, from_dumps
from netdoctor.facts.namespace import Address, Link, Listener, NamespaceFacts, Route
from netdoctor.model import Finding
from netdoctor.probes.dns import QueryResult
from netdoctor.probes.icmp import EchoRound
from netdoctor.probes.tcp import ConnectResult
from netdoctor.registry import discover
from netdoctor.request import Options
from netdoctor.targets import Target

IFF_UP = "UP"
all_of = all  # FakeDocker.containers has a parameter named `all`, as the engine's API does


class FakeNamespace:
    """One network namespace's facts, and what probes from it get back. Builder methods return self."""

    def __init__(self, name: str, path: str | None = None):
        self.path = path or f"fake:{name}"
        self.label = name
        self.links: list[Link] = []
        self.addresses: list[Address] = []
        self.routes: list[Route] = []
        self.listeners: list[Listener] = []
        self.sysctls: dict[str, str] = {}
        self.iptables = ""                       # iptables-nft-save text of this namespace
        self.ip6tables = ""                      # ip6tables-nft-save text
        self.iptables_legacy = ""                # iptables-legacy-save text
        self.ip6tables_legacy = ""               # ip6tables-legacy-save text
        self.nft = ""                            # `nft -j list ruleset` JSON (native tables)
        self.firewall_after: Firewall | None = None  # what later fresh reads return (counters moved by a probe)
        self.fresh_reads = 0
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
             peer_index: int | None = None, operstate: str | None = None, promiscuity: int = 0,
             **info: Any) -> "FakeNamespace":
        """`operstate` defaults to UP or DOWN as `up` says (LOWERLAYERDOWN: up without a carrier)."""
        index = 1 + max((l.index for l in self.links), default=0)
        self.links.append(Link(index, name, kind, mtu, up, operstate or ("UP" if up else "DOWN"), promiscuity,
                               f"02:00:00:00:00:{index:02x}", self.index_of(master) if master else None, peer_index, info))
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
    def firewall(self) -> Firewall:
        return from_dumps(self.iptables, self.ip6tables, self.iptables_legacy, self.ip6tables_legacy, self.nft)

    def fresh_firewall(self) -> Firewall:
        """The first fresh read (a drop watch's, right before a probe) sees the rules as built, later ones
        `firewall_after`."""
        self.fresh_reads += 1
        return self.firewall_after if self.firewall_after is not None and self.fresh_reads > 1 else self.firewall

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
        self.engine_version: dict[str, Any] = {"Version": "20.10.24", "ApiVersion": "1.41"}
        self.address = "unix:///fake/docker.sock"

    def container(self, name: str, fresh: bool = False) -> ContainerInfo:
        for container in self.containers_by_name.values():
            if name in (container.name, container.id) or (len(name) >= 3 and container.id.startswith(name)):
                return container
        raise ContainerNotFound(f"no container named or with id {name!r} on {self.address}")

    def states(self, ids: list[str]) -> dict[str, str]:
        return {c.id: c.status for c in self.containers_by_name.values() if c.id in ids}

    def containers(self, filters: dict | None = None, all: bool = False) -> list[ContainerInfo]:
        """Like the engine's list: running ones unless `all`; `label` filters (KEY or KEY=VALUE) must all
        match, a `network` filter any one of its names."""
        filters = filters or {}

        def labelled(c: ContainerInfo, wanted: str) -> bool:
            key, sep, value = wanted.partition("=")
            return key in c.labels and (not sep or c.labels[key] == value)

        return [c for c in self.containers_by_name.values() if (all or c.running)
                and all_of(labelled(c, wanted) for wanted in filters.get("label", ()))
                and (not filters.get("network") or any(a.network in filters["network"] for a in c.attachments))]

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

    def engine_facts(self) -> EngineFacts:
        return engine_from_api(self.engine_info, self.engine_version)

    def published_ports(self):
        return [(c.name, {a.network: a.ip for a in c.attachments if a.ip}, list(c.published))
                for c in self.containers_by_name.values() if c.running and c.published]

    def network_endpoints(self, network_id: str) -> dict[str, str]:
        return {}

    def network_verbose(self, network_id: str) -> dict:
        return {}

    def swarm_nodes(self) -> list[dict]:
        return []

    def close(self) -> None:
        pass


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
        if reader.__name__ in self.world.host_files:
            value = self.world.host_files[reader.__name__]
            return value(*args) if callable(value) else value
        known = self.world.host_file_readers()
        name = f"{reader.__module__}.{reader.__name__}"
        if name not in known:
            raise KeyError(f"the fake world has no answer for {name}{args!r}: set world.host_files[{reader.__name__!r}]")
        return known[name](*args)

    def close(self) -> None:
        pass


@dataclass
class FakeWorld:
    host: FakeNamespace = field(default_factory=lambda: FakeNamespace("host"))
    docker: FakeDocker = field(default_factory=FakeDocker)
    host_files: dict[str, Any] = field(default_factory=dict)   # host-file facts by reader name (session.fact)
    files: dict[str, str] = field(default_factory=dict)        # file contents by host path (resolv.conf)
    upstream_resolver: str | None = None                       # the host's own nameserver, for fixes
    processes: dict[int, Process] = field(default_factory=dict)
    sockets: dict[int, tuple[int, ...]] = field(default_factory=dict)  # socket inode -> pids holding it
    dockerd: FirewallSettings = field(default_factory=FirewallSettings)  # what dockerd's command line/daemon.json say

    def __post_init__(self):
        self.namespaces: dict[str, FakeNamespace] = {self.host.path: self.host}
        self._next_pid = 40000

    def namespace(self, name: str, path: str | None = None) -> FakeNamespace:
        namespace = FakeNamespace(name, path)
        self.namespaces[namespace.path] = namespace
        return namespace

    # --- host files and processes (what Session.fact readers find) ---------------------------------

    def host_file_readers(self) -> dict[str, Callable[..., Any]]:
        """The session.fact readers the world answers by itself (world.host_files[name] overrides them)."""

        def read_resolv_conf(path: str):
            if path not in self.files:
                raise resolvconf.ResolvConfUnavailable(f"cannot read {path}: No such file or directory")
            return resolvconf.parse(self.files[path], path)

        return {"netdoctor.facts.resolvconf.read": read_resolv_conf,
                "netdoctor.facts.resolvconf.host_upstream": lambda: self.upstream_resolver,
                "netdoctor.facts.processes.socket_holders": lambda: dict(self.sockets),
                "netdoctor.facts.dockerd.settings": lambda netns_path: self.dockerd,
                "netdoctor.facts.processes.process": self.processes.get}

    def resolv_conf(self, target: Target, text: str) -> str:
        """Give the target this resolv.conf (where netdoctor reads it from the host); returns that path."""
        path = resolvconf.path_of(target)
        self.files[path] = text
        return path

    def process(self, pid: int, *cmdline: str, holds: Iterable[int] = ()) -> Process:
        """A process of the host's, holding the sockets with these inodes (see FakeNamespace.listen(inode=))."""
        self.processes[pid] = Process(pid, cmdline[0].rsplit("/", 1)[-1] if cmdline else "?", tuple(cmdline))
        for inode in holds:
            self.sockets[inode] = (*self.sockets.get(inode, ()), pid)
        return self.processes[pid]

    def uplink(self, mtu: int = 1500, cidr: str = "198.51.100.1/24", gateway: str = "198.51.100.254",
               name: str = "eth0") -> FakeNamespace:
        """The host's way out: `name` with `cidr` and the default route via `gateway`; forwarding on."""
        self.host.link(name, mtu=mtu).addr(name, cidr).route("default", via=gateway, dev=name)
        self.host.sysctls.setdefault("net.ipv4.ip_forward", "1")
        return self.host

    def host_bridge(self, name: str, cidr: str) -> FakeNamespace:
        """A bridge of the host's own (not Docker's) holding the host's address `cidr` on that segment."""
        return self.host.link(name, kind="bridge").addr(name, cidr)

    def plug(self, namespace: FakeNamespace, bridge: str, cidr: str, gateway: str | None = None,
             ifname: str = "eth0", mtu: int = 1500) -> FakeNamespace:
        """A veth from `namespace` (`ifname` with `cidr`, a default route via `gateway`) into host bridge `bridge`."""
        host_end = f"v{namespace.label}"[:15]
        self.host.link(host_end, kind="veth", mtu=mtu, master=bridge)
        namespace.link(ifname, kind="veth", mtu=mtu, peer_index=self.host.index_of(host_end)).addr(ifname, cidr)
        self.host.links[-1] = replace(self.host.links[-1], peer_index=namespace.index_of(ifname))
        if gateway:
            namespace.route("default", via=gateway, dev=ifname)
        return namespace

    def target(self, namespace: FakeNamespace) -> Target:
        """A `netns:` target on a namespace of the world."""
        return Target("netns", namespace.label, namespace.path)

    def bridge_network(self, name: str, subnet: str, gateway: str | None = None, internal: bool = False,
                       **options: str) -> NetworkInfo:
        """A Docker bridge network, with its bridge in the host namespace holding the gateway address."""
        default = name == "bridge"
        options = ({"com.docker.network.bridge.default_bridge": "true", "com.docker.network.bridge.name": "docker0"}
                   if default else {}) | options
        network = self.network(name, "bridge", subnet, gateway, internal=internal, **options)
        net = ipaddress.ip_network(subnet)
        self.host.link(network.bridge_name, kind="bridge").addr(network.bridge_name, f"{network.gateways[0]}/{net.prefixlen}")
        return network

    def network(self, name: str, driver: str, subnet: str | None = None, gateway: str | None = None,
                internal: bool = False, scope: str = "local", **options: str) -> NetworkInfo:
        """A Docker network of any driver as the engine describes it, with no host-side device (see
        bridge_network); `options` are its driver options, e.g. parent="eth1" for macvlan."""
        ipam = [{"Subnet": subnet, "Gateway": gateway or str(ipaddress.ip_network(subnet)[1])}] if subnet else []
        attrs = {"Id": f"{abs(hash(name)):064x}"[:64], "Name": name, "Driver": driver, "Scope": scope,
                 "Internal": internal, "Options": dict(options), "IPAM": {"Config": ipam}}
        network = network_from_attrs(attrs)
        self.docker.networks_by_name[name] = network
        return network

    def container(self, name: str, network: NetworkInfo | None = None, ip: str | None = None, mtu: int = 1500,
                  published: Iterable[tuple[int, str, str, int]] = (), dns: Iterable[str] = (),
                  status: str = "running", networks: Iterable[NetworkInfo] = (), network_mode: str | None = None,
                  error: str = "", **config: Any) -> Target:
        """A container on `network` (and `networks`): an interface per network (eth0, eth1...) with its address
        and, on the first, a default route via the gateway (none on internal networks); bridge networks get
        a veth into their bridge, macvlan/ipvlan ones a child of their `parent` link in the host namespace.
        Described as the engine would; returns its target, whose namespace is at /proc/PID/ns/net as for a
        real container (network_mode="host": the host's). `published`: (container port, proto, host ip, host port)."""
        self._next_pid += 1
        pid = self._next_pid if status in ("running", "paused") else 0
        # host networking: the host's own namespace, which the fake session tells by its path
        namespace = self.host if network_mode == "host" else self.namespace(f"ctr-{name}", f"/proc/{pid}/ns/net" if pid else None)
        endpoints = {}
        for number, net in enumerate([n for n in (network, *networks) if n is not None]):
            endpoints[net.name] = self._plug(namespace, name, net, f"eth{number}", ip if number == 0 else None, mtu,
                                             default_route=number == 0)
        ports = {}
        for container_port, proto, host_ip, host_port in published:
            ports.setdefault(f"{container_port}/{proto}", []).append({"HostIp": host_ip, "HostPort": str(host_port)})
        first = network or next(iter(networks), None)
        attrs = {"Id": f"{abs(hash(name)):064x}"[:64], "Name": f"/{name}",
                 "State": {"Status": status, "Pid": pid, "Error": error},
                 "Config": {"Image": config.pop("image", "busybox"), "ExposedPorts": config.pop("exposed", {}),
                            "Labels": config.pop("labels", {})},
                 "HostConfig": {"NetworkMode": network_mode or (first.name if first else "none"), "Dns": list(dns)},
                 "NetworkSettings": {"Networks": endpoints, "Ports": ports}, **config}
        container = container_from_attrs(attrs)
        self.docker.containers_by_name[name] = container
        path = namespace.path if pid else None
        return Target("container", name, path, container, pid or None,
                      unavailable="" if path else f"{container.state_text}: it has no network namespace")

    def _plug(self, namespace: FakeNamespace, name: str, network: NetworkInfo, ifname: str, ip: str | None, mtu: int,
              default_route: bool) -> dict:
        """The container's interface on `network`, and its endpoint as inspect shows it."""
        subnet = ipaddress.ip_network(network.subnets[0]) if network.subnets else None
        if network.driver == "bridge":
            host_end = f"veth{name}{ifname[3:]}"[:15]
            self.host.link(host_end, kind="veth", mtu=mtu, master=network.bridge_name)
            namespace.link(ifname, kind="veth", mtu=mtu, peer_index=self.host.index_of(host_end))
            self.host.links[-1] = replace(self.host.links[-1], peer_index=namespace.index_of(ifname))
        elif network.driver in ("macvlan", "ipvlan") and network.options.get("parent") in {l.name for l in self.host.links}:
            namespace.link(ifname, kind=network.driver, mtu=mtu, peer_index=self.host.index_of(network.options["parent"]))
        else:
            namespace.link(ifname, kind="veth", mtu=mtu)
        endpoint = {"NetworkID": network.id, "MacAddress": namespace.links[-1].address}
        if subnet is not None:
            ip = ip or str(subnet[2 + len(self.docker.containers_by_name)])
            namespace.addr(ifname, f"{ip}/{subnet.prefixlen}")
            endpoint |= {"IPAddress": ip, "IPPrefixLen": subnet.prefixlen, "Gateway": network.gateways[0]}
            if default_route and not network.internal:
                namespace.route("default", via=network.gateways[0], dev=ifname)
        return endpoint

    def session(self, options: Options | None = None) -> FakeSession:
        return FakeSession(self, options or Options(timeout=0.1))

    def run(self, targets: list[Target], checks: Iterable[str], **options: Any) -> list[Finding]:
        """Run the named checks on `targets` with the real runner; findings in completion order."""
        from netdoctor.runner import run

        catalogue = discover()
        infos = [catalogue.get(check_id) for check_id in checks]
        session = self.session(Options(**{"timeout": 0.1, **options}))
        return list(run(infos, targets, session, explicit=True))
