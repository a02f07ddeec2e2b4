"""The Engine API, spoken directly over its socket with http.client (no docker SDK on the hot path).

A run needs a handful of GET requests (inspect a container, a network, the engine's info), so the SDK
and requests/urllib3 under it (about 0.12 s of imports, a fifth of a whole diagnosis) buy nothing here.
Addresses follow the SDK's conventions: DOCKER_HOST (default unix:///var/run/docker.sock) as unix://PATH,
tcp://HOST:PORT or http(s)://HOST:PORT; TLS when DOCKER_TLS_VERIFY is set (and not empty) or
DOCKER_CERT_PATH names a directory (ca.pem, cert.pem, key.pem; default ~/.docker). Requests carry no API
version prefix, so the engine answers in its own current version, as the SDK's version="auto" did.
Connections are kept alive and shared by the run's threads, one request at a time on each.

Within one DockerSession (one run) every container and network is inspected at most once: a run judges
one snapshot, and the checks of many targets ask about the same networks and neighbours.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from netdoctor.errors import BadInput, CannotCheck
from netdoctor.facts.engine import EngineFacts, engine_from_api
from netdoctor.facts.docker import (Attachment, ContainerInfo, NetworkInfo, PublishedPort, container_from_attrs,
                                    network_from_attrs)

DEFAULT_ADDRESS = "unix:///var/run/docker.sock"
TIMEOUT = 10.0


class DockerUnavailable(CannotCheck):
    """The engine cannot be reached: netdoctor cannot check containers at all (exit 3)."""


class SwarmUnavailable(Exception):
    """The engine is in a swarm but cannot answer for it (no leader, not a manager)."""


class ContainerNotFound(BadInput, LookupError):
    """No container by that name or id (exit 2 when the user named it)."""


class AmbiguousContainer(ContainerNotFound):
    """An id prefix that more than one container's id starts with (exit 2, naming them)."""


def _ambiguous(exc: "EngineError") -> bool:
    # 500 on Docker 20.10, 400 on later engines; the message has said this since the first releases
    return "multiple ids found" in str(exc).lower()


class NetworkNotFound(LookupError):
    """No network by that name or id (any more)."""


class EngineError(Exception):
    """The engine answered a request with an HTTP error status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_ADDRESS


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _tls_context():
    """The TLS settings the docker SDK (and CLI) take from the environment, or None for plain HTTP."""
    verify = bool(os.environ.get("DOCKER_TLS_VERIFY"))
    cert_path = os.environ.get("DOCKER_CERT_PATH") or None
    if not (verify or cert_path):
        return None
    import ssl

    cert_path = cert_path or os.path.join(os.path.expanduser("~"), ".docker")
    context = ssl.create_default_context(cafile=os.path.join(cert_path, "ca.pem") if verify else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert, key = os.path.join(cert_path, "cert.pem"), os.path.join(cert_path, "key.pem")
    if os.path.isfile(cert) and os.path.isfile(key):
        context.load_cert_chain(cert, key)
    return context


def connection_factory(address: str):
    """A function making one new connection to the engine at `address`; BadInput when it cannot be an address."""
    if address.startswith("/"):
        address = "unix://" + address
    parts = urlsplit(address)
    if parts.scheme in ("unix", "http+unix"):
        path = parts.path if not parts.netloc else f"/{parts.netloc}{parts.path}"  # unix://var/run/x.sock, as the SDK
        return lambda: _UnixConnection(path, TIMEOUT)
    if parts.scheme in ("tcp", "http", "https"):
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or not port:
            raise BadInput(f"DOCKER_HOST {address!r}: expected tcp://HOST:PORT")
        try:
            tls = _tls_context() if parts.scheme != "http" else None
        except OSError as exc:  # TLS files missing, unreadable or not certificates (ssl.SSLError)
            raise BadInput(f"the environment's Docker TLS settings are not usable (DOCKER_CERT_PATH="
                           f"{os.environ.get('DOCKER_CERT_PATH', '')!r}): {getattr(exc, 'strerror', None) or exc}; "
                           "expected a directory holding ca.pem, cert.pem and key.pem") from None
        if parts.scheme == "https" and tls is None:
            import ssl

            tls = ssl.create_default_context()
        if tls is not None:
            return lambda: http.client.HTTPSConnection(parts.hostname, port, timeout=TIMEOUT, context=tls)
        return lambda: http.client.HTTPConnection(parts.hostname, port, timeout=TIMEOUT)
    raise BadInput(f"DOCKER_HOST {address!r}: netdoctor speaks to the engine over unix:// or tcp://; for an engine "
                   f"on another machine, run `netdoctor check -H {address} ...` (or --context NAME), which runs "
                   "netdoctor's image there: a container's namespaces are on the engine's machine, not this one")


class Engine:
    """GET requests to one engine, on kept-alive connections reused by any thread."""

    def __init__(self, address: str):
        self.address = address
        self._connect = connection_factory(address)
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def get(self, path: str, **query: Any) -> Any:
        """The decoded JSON answer; EngineError for an error status, DockerUnavailable when nobody answers."""
        url = path + (f"?{urlencode(query)}" if query else "")
        with self._lock:
            conn, reused = (self._idle.pop(), True) if self._idle else (None, False)
        try:
            status, body, keep = self._exchange(conn or self._connect(), url)
        except (OSError, http.client.HTTPException) as exc:
            if not reused:
                raise DockerUnavailable(f"the Docker engine at {self.address} is not reachable ({_reason(exc)})") from None
            try:  # the engine closed a kept-alive connection meanwhile: once more on a new one (GET is idempotent)
                status, body, keep = self._exchange(self._connect(), url)
            except (OSError, http.client.HTTPException) as again:
                raise DockerUnavailable(f"the Docker engine at {self.address} is not reachable ({_reason(again)})") from None
        if keep is not None:
            with self._lock:
                self._idle.append(keep)
        try:
            data = json.loads(body) if body else None
        except ValueError:  # not the engine (a proxy's error page?)
            data = None
            if status < 400:
                raise DockerUnavailable(f"{self.address} answered {path} with something that is not JSON: is it a "
                                        "Docker engine?") from None
        if status >= 400:
            message = data.get("message") if isinstance(data, dict) else None
            raise EngineError(status, message or f"HTTP {status}: {body[:200].decode(errors='replace').strip()}")
        return data

    @staticmethod
    def _exchange(conn: http.client.HTTPConnection, url: str) -> tuple[int, bytes, http.client.HTTPConnection | None]:
        try:
            conn.request("GET", url, headers={"Accept": "application/json"})
            response = conn.getresponse()
            body = response.read()
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
            return response.status, body, None
        return response.status, body, conn

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class DockerSession:
    """One engine per run, every container and network inspected at most once (a run judges one snapshot).

    `base_url` selects another engine than DOCKER_HOST's (a lab node named with `check --node`)."""

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = base_url
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._containers: dict[str, ContainerInfo] = {}   # by id, and by the name or id asked for
        self._networks: dict[str, NetworkInfo | None] = {}   # None: no such network
        self._listings: dict[str, Any] = {}

    @property
    def address(self) -> str:
        return self.base_url or engine_address()

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = Engine(self.address)
            return self._engine

    def _get(self, path: str, **query: Any) -> Any:
        try:
            return self.engine.get(path, **query)
        except EngineError as exc:
            if exc.status == 404 or _ambiguous(exc):
                raise
            raise DockerUnavailable(f"the Docker engine at {self.address} refused {path}: {exc}") from None

    def _listing(self, path: str, **query: Any) -> Any:
        """A list call, made once per run."""
        key = path + json.dumps(query, sort_keys=True)
        with self._lock:
            if key in self._listings:
                return self._listings[key]
        found = self._get(path, **query)
        with self._lock:
            return self._listings.setdefault(key, found)

    def container(self, name: str, fresh: bool = False) -> ContainerInfo:
        """The container as inspected in this run (`fresh`: ask the engine again, e.g. to see whether it changed)."""
        with self._lock:
            cached = None if fresh else self._containers.get(name)
        if cached is not None:
            return cached
        try:
            info = container_from_attrs(self._get(f"/containers/{quote(name, safe='')}/json"))
        except EngineError as exc:
            if _ambiguous(exc):
                raise AmbiguousContainer(self._ambiguity(name)) from None
            raise ContainerNotFound(f"no container named or with id {name!r} on {self.address}") from None
        with self._lock:
            self._containers[name] = self._containers[info.id] = info
        return info

    def _ambiguity(self, prefix: str, shown: int = 20) -> str:
        matches = sorted(((c.get("Names") or ["/?"])[0].lstrip("/"), c["Id"][:12])
                         for c in self._get("/containers/json", all="1") if c.get("Id", "").startswith(prefix))
        names = ", ".join(f"{name} ({short})" for name, short in matches[:shown])
        more = f" and {len(matches) - shown} more" if len(matches) > shown else ""
        return (f"{prefix!r} is the start of the id of {len(matches) or 'several'} containers ({names}{more}): "
                "give more of the id, or the name")

    def containers(self, filters: dict | None = None, all: bool = False) -> list[ContainerInfo]:
        """Containers matching Engine API list filters (running ones unless `all`), inspected."""
        query = {"all": "1"} if all else {}
        if filters:
            query["filters"] = json.dumps(filters)
        result = []
        for summary in self._listing("/containers/json", **query):
            try:
                result.append(self.container(summary["Id"]))
            except ContainerNotFound:  # removed between list and inspect
                continue
        return result

    def states(self, ids: list[str]) -> dict[str, str]:
        """Container id -> state (running, paused, exited...) now, for every one of `ids` that still exists:
        one list call, however many containers, never answered from this run's cache."""
        found = self._get("/containers/json", all="1", filters=json.dumps({"id": list(ids)}))
        return {summary["Id"]: summary.get("State") or "" for summary in found}

    def network(self, name_or_id: str) -> NetworkInfo:
        with self._lock:
            known = name_or_id in self._networks
            cached = self._networks.get(name_or_id)
        if not known:
            try:
                cached = network_from_attrs(self._get(f"/networks/{quote(name_or_id, safe='')}"))
            except EngineError:
                cached = None  # gone: asked once per run too
            with self._lock:
                self._networks[name_or_id] = cached
                if cached is not None:
                    self._networks[cached.id] = cached
        if cached is None:
            raise NetworkNotFound(f"no network named or with id {name_or_id!r} on {self.address}")
        return cached

    def networks_of(self, container: ContainerInfo) -> list[tuple[Attachment, NetworkInfo]]:
        """Its networks that still exist (a stopped container keeps endpoints of removed networks, and a
        swarm worker does not know an overlay until a local container uses it)."""
        found = []
        for attachment in container.attachments:
            try:
                found.append((attachment, self.network(attachment.network_id or attachment.network)))
            except NetworkNotFound:
                continue
        return found

    def has_network(self, name_or_id: str) -> bool:
        try:
            self.network(name_or_id)
            return True
        except NetworkNotFound:
            return False

    def network_verbose(self, network_id: str) -> dict:
        """The network as `docker network inspect --verbose` shows it: on an overlay, the tasks and attached
        containers of every node (Services[NAME or ""].Tasks: Name, EndpointIP, Info["Host IP"]) and a
        service's VIP; {} when it cannot be read."""
        try:
            return self._get(f"/networks/{quote(network_id, safe='')}", verbose="true") or {}
        except (EngineError, DockerUnavailable):
            return {}

    def network_endpoints(self, network_id: str) -> dict[str, str]:
        """Overlay endpoint address -> task or container name, across the swarm (a manager's verbose view)."""
        verbose = self.network_verbose(network_id)
        endpoints = {c["IPv4Address"].partition("/")[0]: c["Name"] for c in (verbose.get("Containers") or {}).values()
                     if c.get("IPv4Address") and c.get("Name")}
        endpoints.update({task["EndpointIP"]: task["Name"] for service in (verbose.get("Services") or {}).values()
                          for task in service.get("Tasks") or () if task.get("EndpointIP") and task.get("Name")})
        return endpoints

    def swarm_nodes(self) -> list[dict]:
        """Every node of the swarm (only a manager can list them); SwarmUnavailable says why not."""
        try:
            return self.engine.get("/nodes")
        except EngineError as exc:  # e.g. 503 "swarm does not have a leader": lost quorum
            raise SwarmUnavailable(f"the manager cannot list nodes: {exc}") from None

    def all_networks(self) -> list[NetworkInfo]:
        """Every network of the engine (the list call carries IPAM and options: no inspect per network)."""
        return [network_from_attrs(attrs) for attrs in self._listing("/networks")]

    def info(self) -> dict:
        return self._listing("/info")

    def published_ports(self) -> list[tuple[str, dict[str, str], list[PublishedPort]]]:
        """Every running container's published ports, from the run's one list call (no inspect per container):
        (name, {network: IPv4 address}, ports)."""
        found = []
        for summary in self._listing("/containers/json"):
            ports = [PublishedPort(p["PrivatePort"], p.get("Type") or "tcp", p.get("IP") or "", p["PublicPort"])
                     for p in summary.get("Ports") or () if p.get("PublicPort") and p.get("PrivatePort")]
            if ports:
                networks = ((summary.get("NetworkSettings") or {}).get("Networks") or {}).items()
                found.append(((summary.get("Names") or ["/?"])[0].lstrip("/"),
                              {name: n.get("IPAddress") for name, n in networks if n.get("IPAddress")}, ports))
        return found

    def engine_facts(self) -> EngineFacts:
        """The engine's version, API version and firewall backend (Info.FirewallBackend, API >= 1.49)."""
        return engine_from_api(self.info(), self._listing("/version"))

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no socket there: is dockerd running?"
    if isinstance(exc, PermissionError):
        return "permission denied on the socket: run as root or join the docker group"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: is dockerd running?"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer within {TIMEOUT:g} s"
    text = str(exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__
