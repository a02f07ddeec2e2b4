"""The Engine API, through the docker SDK (imported only when a container is involved)."""

from __future__ import annotations

import os
import threading

from netdoctor.errors import BadInput, CannotCheck

from netdoctor.facts.docker import Attachment, ContainerInfo, NetworkInfo, container_from_attrs, network_from_attrs


class DockerUnavailable(CannotCheck):
    """The engine cannot be reached: netdoctor cannot check containers at all (exit 3)."""


class SwarmUnavailable(Exception):
    """The engine is in a swarm but cannot answer for it (no leader, not a manager)."""


class ContainerNotFound(BadInput, LookupError):
    """No container by that name or id (exit 2 when the user named it)."""


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


class DockerSession:
    """One connection per run; network inspections cached, since many targets share networks.

    `base_url` selects another engine than DOCKER_HOST's (a lab node named with `check --node`)."""

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = base_url
        self._client = None
        self._lock = threading.Lock()
        self._networks: dict[str, NetworkInfo] = {}

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                import docker  # heavy: only here

                try:
                    client = (docker.DockerClient(base_url=self.base_url, version="auto", timeout=10) if self.base_url
                              else docker.from_env(version="auto", timeout=10))
                    client.ping()
                except Exception as exc:
                    raise DockerUnavailable(f"the Docker engine at {self.address} is not reachable ({_reason(exc)})") from None
                self._client = client
            return self._client

    @property
    def address(self) -> str:
        return self.base_url or engine_address()

    def container(self, name: str) -> ContainerInfo:
        import docker.errors

        try:
            return container_from_attrs(self.client.api.inspect_container(name))
        except docker.errors.NotFound:
            raise ContainerNotFound(f"no container named or with id {name!r} on {self.address}") from None
        except docker.errors.APIError as exc:
            raise DockerUnavailable(f"the Docker engine refused to inspect {name!r}: {exc.explanation}") from None

    def containers(self, filters: dict | None = None, all: bool = False) -> list[ContainerInfo]:
        found = self.client.api.containers(all=all, filters=filters or {})
        result = []
        for summary in found:
            try:
                result.append(self.container(summary["Id"]))
            except ContainerNotFound:  # removed between list and inspect
                continue
        return result

    def network(self, name_or_id: str) -> NetworkInfo:
        with self._lock:
            cached = self._networks.get(name_or_id)
        if cached is None:
            cached = network_from_attrs(self.client.api.inspect_network(name_or_id))
            with self._lock:
                self._networks[name_or_id] = cached
        return cached

    def networks_of(self, container: ContainerInfo) -> list[tuple[Attachment, NetworkInfo]]:
        """Its networks that still exist (a stopped container keeps endpoints of removed networks, and a
        swarm worker does not know an overlay until a local container uses it)."""
        import docker.errors

        found = []
        for attachment in container.attachments:
            try:
                found.append((attachment, self.network(attachment.network_id or attachment.network)))
            except docker.errors.NotFound:
                continue
        return found

    def has_network(self, name_or_id: str) -> bool:
        import docker.errors

        try:
            self.network(name_or_id)
            return True
        except docker.errors.NotFound:
            return False

    def network_endpoints(self, network_id: str) -> dict[str, str]:
        """Overlay endpoint address -> task or container name, across the swarm (a manager's verbose view)."""
        import docker.errors

        try:
            verbose = self.client.api.inspect_network(network_id, verbose=True)
        except docker.errors.APIError:
            return {}
        endpoints = {c["IPv4Address"].partition("/")[0]: c["Name"] for c in (verbose.get("Containers") or {}).values()
                     if c.get("IPv4Address") and c.get("Name")}
        endpoints.update({task["EndpointIP"]: task["Name"] for service in (verbose.get("Services") or {}).values()
                          for task in service.get("Tasks") or () if task.get("EndpointIP") and task.get("Name")})
        return endpoints

    def swarm_nodes(self) -> list[dict]:
        """Every node of the swarm (only a manager can list them); SwarmUnavailable says why not."""
        import docker.errors

        try:
            return [node.attrs for node in self.client.nodes.list()]
        except docker.errors.APIError as exc:  # e.g. 503 "swarm does not have a leader": lost quorum
            raise SwarmUnavailable(f"the manager cannot list nodes: {exc.explanation}") from None

    def all_networks(self) -> list[NetworkInfo]:
        """Every network of the engine (the list call carries IPAM and options: no inspect per network)."""
        return [network_from_attrs(attrs) for attrs in self.client.api.networks()]

    def info(self) -> dict:
        return self.client.info()


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "No such file" in text or "FileNotFoundError" in text:
        return "no socket there: is dockerd running?"
    if "Permission denied" in text:
        return "permission denied on the socket: run as root or join the docker group"
    if "Connection refused" in text:
        return "connection refused: is dockerd running?"
    return text.splitlines()[0][:200] if text else type(exc).__name__

