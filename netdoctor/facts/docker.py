"""Docker's view of a container and its networks, from the Engine API's inspect data (never docker exec)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Attachment:
    """The container's endpoint on one network."""

    network: str
    network_id: str
    ip: str
    prefixlen: int
    gateway: str
    ipv6: str
    mac: str
    aliases: tuple[str, ...] = ()

    @property
    def subnet(self) -> str | None:
        return str(ipaddress.ip_interface(f"{self.ip}/{self.prefixlen}").network) if self.ip else None


@dataclass(frozen=True)
class PublishedPort:
    container_port: int
    proto: str
    host_ip: str
    host_port: int

    @property
    def label(self) -> str:
        host = f"{self.host_ip}:" if self.host_ip not in ("", "0.0.0.0", "::") else ""
        return f"{host}{self.host_port}->{self.container_port}/{self.proto}"


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    image: str
    status: str               # created, running, exited, paused, ...
    pid: int
    error: str                # State.Error: why the last start failed, e.g. "port is already allocated"
    network_mode: str
    attachments: tuple[Attachment, ...]
    published: tuple[PublishedPort, ...]
    exposed: tuple[str, ...]  # "80/tcp"
    labels: dict[str, str] = field(default_factory=dict)
    dns: tuple[str, ...] = ()
    resolv_conf_path: str = ""
    exit_code: int = 0        # State.ExitCode: of the last run, for an exited or restarting container
    finished_at: str = ""     # State.FinishedAt, ISO 8601 ("0001-01-01T00:00:00Z" when it never ran)
    restart_count: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def running(self) -> bool:
        return self.status == "running" and self.pid > 0

    @property
    def paused(self) -> bool:
        return self.status == "paused" and self.pid > 0

    @property
    def has_namespace(self) -> bool:
        """Its network namespace exists: running, or paused (frozen processes keep their namespace)."""
        return self.running or self.paused

    @property
    def state_text(self) -> str:
        """Why it is not running, for a reader: what happened and what Docker does about it."""
        when = f" at {self.finished_at[:19].replace('T', ' ')} UTC" if self.finished_at[:4] not in ("", "0001") else ""
        text = {
            "created": f"container {self.name} was created but never started",
            "exited": f"container {self.name} exited with code {self.exit_code}{when}",
            "restarting": f"container {self.name} keeps stopping and Docker keeps restarting it (last exit code "
                          f"{self.exit_code}{when}, {self.restart_count} restarts so far)",
            "paused": f"container {self.name} is paused: its processes are frozen",
            "dead": f"container {self.name} is dead: Docker failed to stop or remove it",
            "removing": f"container {self.name} is being removed",
        }.get(self.status, f"container {self.name} is {self.status}")
        return text + (f" (last error: {self.error})" if self.error else "")

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def attachment(self, network: str) -> Attachment | None:
        return next((a for a in self.attachments if a.network == network or a.network_id == network), None)


def _published(attrs: dict) -> tuple[PublishedPort, ...]:
    # HostConfig.PortBindings holds what was asked for, even for a container that never started;
    # NetworkSettings.Ports holds what the engine actually bound (with the host port it picked).
    bindings = (attrs.get("NetworkSettings") or {}).get("Ports") or (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    ports = []
    for spec, binds in bindings.items():
        port, _, proto = spec.partition("/")
        if not port.partition("-")[0].isdecimal():
            continue  # not "PORT/PROTO" or "FIRST-LAST/PROTO": no engine writes that, nothing to judge
        for bind in binds or []:
            bind = bind or {}
            host_port = bind.get("HostPort") or "0"
            # a range ("8000-8010") is resolved by the engine at start: until then the port is not known (0)
            ports.append(PublishedPort(int(port.partition("-")[0]), proto or "tcp", bind.get("HostIp") or "",
                                       int(host_port) if host_port.isdecimal() else 0))
    return tuple(dict.fromkeys(ports))


def container_from_attrs(attrs: dict) -> ContainerInfo:
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    host_config = attrs.get("HostConfig") or {}
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    attachments = tuple(
        Attachment(network=name, network_id=n.get("NetworkID") or "", ip=n.get("IPAddress") or "",
                   prefixlen=n.get("IPPrefixLen") or 0, gateway=n.get("Gateway") or "",
                   ipv6=n.get("GlobalIPv6Address") or "", mac=n.get("MacAddress") or "",
                   aliases=tuple(n.get("Aliases") or ()))
        for name, n in ((name, n or {}) for name, n in networks.items()))
    return ContainerInfo(
        id=attrs.get("Id") or "", name=(attrs.get("Name") or "").lstrip("/"), image=config.get("Image") or "",
        status=state.get("Status") or "unknown", pid=state.get("Pid") or 0, error=state.get("Error") or "",
        network_mode=host_config.get("NetworkMode") or "", attachments=attachments, published=_published(attrs),
        exposed=tuple(sorted((config.get("ExposedPorts") or {}).keys())), labels=config.get("Labels") or {},
        dns=tuple(host_config.get("Dns") or ()), resolv_conf_path=attrs.get("ResolvConfPath") or "",
        exit_code=state.get("ExitCode") or 0, finished_at=state.get("FinishedAt") or "",
        restart_count=attrs.get("RestartCount") or 0, raw=attrs)


@dataclass(frozen=True)
class NetworkInfo:
    id: str
    name: str
    driver: str               # bridge, overlay, macvlan, ipvlan, host, null
    scope: str
    internal: bool
    options: dict[str, str]
    subnets: tuple[str, ...]
    gateways: tuple[str, ...]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_default_bridge(self) -> bool:
        return self.options.get("com.docker.network.bridge.default_bridge") == "true" or self.name == "bridge"

    @property
    def bridge_name(self) -> str:
        """The host bridge device of a bridge network (docker0 or br-<12 hex of the id>)."""
        return self.options.get("com.docker.network.bridge.name") or ("docker0" if self.is_default_bridge else f"br-{self.id[:12]}")

    @property
    def icc_enabled(self) -> bool:
        return self.options.get("com.docker.network.bridge.enable_icc", "true") != "false"

    @property
    def uses_nat(self) -> bool:
        """Bridge networks reach the outside through the host's forwarding and MASQUERADE."""
        return self.driver == "bridge" and not self.internal


def network_from_attrs(attrs: dict) -> NetworkInfo:
    ipam = (attrs.get("IPAM") or {}).get("Config") or []
    return NetworkInfo(
        id=attrs.get("Id") or "", name=attrs.get("Name") or "", driver=attrs.get("Driver") or "",
        scope=attrs.get("Scope") or "", internal=bool(attrs.get("Internal")), options=attrs.get("Options") or {},
        subnets=tuple(c["Subnet"] for c in ipam if c and c.get("Subnet")),
        gateways=tuple(c["Gateway"] for c in ipam if c and c.get("Gateway")), raw=attrs)
