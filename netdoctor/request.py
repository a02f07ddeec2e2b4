"""What a user asks netdoctor to do, validated where it enters: the one place that turns command-line
flags, a config file's defaults and a Python caller's arguments into a `Request`.

Every front end (the `check` and `tui` commands, the demo, a Python user) builds a Request and hands it
to `netdoctor.core.diagnose`. A value that is wrong raises BadInput here, with one sentence naming it,
so that no check ever sees a value it could crash on.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

from netdoctor.config import Config
from netdoctor.errors import BadInput
from netdoctor.gate import FAIL_ON

DEFAULT_TIMEOUT = 2.0
TIMEOUT_RANGE = (0.1, 120.0)


@dataclass(frozen=True)
class Endpoint:
    """A --probe HOST:PORT or --peer NAME[:PORT], parsed once."""

    host: str                 # an IP literal (IPv6 without brackets) or a name
    port: int | None

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
            return True
        except ValueError:
            return False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def _port(value: str, spec: str, flag: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise BadInput(f"{flag} {spec!r}: the port must be a number from 1 to 65535, not {value!r}")
    return int(value)


def parse_endpoint(spec: str, flag: str, port_required: bool) -> Endpoint:
    """`HOST:PORT`, `[V6]:PORT`, or (when the port is optional) `HOST` and `[V6]`."""
    text = spec.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise BadInput(f"{flag} {spec!r}: an IPv6 address goes in brackets, e.g. [2001:db8::1]:443")
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        raise BadInput(f"{flag} {spec!r}: write an IPv6 address in brackets, e.g. [{text}]" +
                       (":PORT" if port_required else ""))
    else:
        host, colon, port_text = text.partition(":")
        port_text = port_text if colon else None
    if not host:
        raise BadInput(f"{flag} {spec!r}: the host is missing ({'HOST:PORT' if port_required else 'NAME[:PORT]'})")
    if port_text is None and port_required:
        raise BadInput(f"{flag} {spec!r} is not HOST:PORT (the port is missing)")
    port = _port(port_text, spec, flag) if port_text is not None else None
    return Endpoint(host, port)


def split_peer(spec: str) -> tuple[str, int | None]:
    """--peer NAME or NAME:PORT (validated when the request was built)."""
    endpoint = parse_endpoint(spec, "--peer", port_required=False)
    return endpoint.host, endpoint.port


@dataclass(frozen=True)
class Options:
    """How the checks probe; every value here was validated by `build()`."""

    timeout: float = DEFAULT_TIMEOUT     # seconds, for each active probe
    peers: tuple[str, ...] = ()          # --peer: containers the target should reach, NAME[:PORT]
    probes: tuple[str, ...] = ()         # --probe HOST:PORT: endpoints to TCP-connect from the target
    resolve: tuple[str, ...] = ()        # --resolve NAME: names the target should resolve
    host_netns: str | None = None        # --host-netns: treat this namespace as the host

    @property
    def peer_names(self) -> tuple[str, ...]:
        """--peer values without their optional :PORT."""
        return tuple(split_peer(spec)[0] for spec in self.peers)

    @property
    def probe_endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(parse_endpoint(spec, "--probe", port_required=True) for spec in self.probes)

    @property
    def check_deadline(self) -> float:
        """How long one check may take in all before it is reported as hung."""
        return 3 * self.timeout + 10


@dataclass(frozen=True)
class Selector:
    """Which running containers `--all / --label / --compose-project / --network` mean."""

    all: bool = False
    labels: tuple[str, ...] = ()
    compose_project: str | None = None
    networks: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.all or self.labels or self.compose_project or self.networks)


@dataclass(frozen=True)
class Request:
    """One diagnosis: what to look at, with which checks, how, and how the gate judges it."""

    targets: tuple[str, ...] = ()        # container names/ids, pid:PID, netns:NAME|PATH, host, self
    selector: Selector = Selector()
    checks: tuple[str, ...] = ()         # run only these ids (empty: every check)
    skip: tuple[str, ...] = ()
    options: Options = Options()
    config: Config = field(default_factory=Config)
    fail_on: str = "fail"
    docker_host: str | None = None       # another engine than DOCKER_HOST's (a lab node)
    explicit: bool | None = None         # checks were named, so they also run where they only say why they skip;
                                         # None: when `checks` is given

    @property
    def checks_named(self) -> bool:
        return bool(self.checks) if self.explicit is None else self.explicit

    def with_targets(self, *targets: str) -> "Request":
        """The same request for other targets (the TUI's picker, a rerun of one target)."""
        return replace(self, targets=tuple(targets), selector=Selector())


def _ids(values: Iterable[str] | str | None) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        values = values.split(",")
    return tuple(part.strip() for value in values for part in str(value).split(",") if part.strip())


def validate_timeout(value: float, where: str = "--timeout") -> float:
    low, high = TIMEOUT_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise BadInput(f"{where} must be a number of seconds from {low:g} to {high:g}, not {value!r}")
    return float(value)


def build(*, targets: Iterable[str] = (), all: bool = False, labels: Iterable[str] = (),
          compose_project: str | None = None, networks: Iterable[str] = (), config_path: str | None = None,
          checks: Iterable[str] | str | None = None, skip: Iterable[str] | str | None = None,
          timeout: float | None = None, host_netns: str | None = None, node: str | None = None,
          fail_on: str | None = None, peers: Iterable[str] = (), probes: Iterable[str] = (),
          resolve: Iterable[str] = (), cwd: Path | None = None) -> Request:
    """A Request from flags (None or empty: not given), filled in from the config file's defaults.
    A flag given replaces the config's value; BadInput names any value that is wrong."""
    from netdoctor.config import discover as discover_config, load as load_config

    config = load_config(Path(config_path) if config_path else discover_config(cwd or Path.cwd()))
    defaults = config.defaults
    checks = _ids(checks) if checks is not None else tuple(defaults.get("checks", ()))
    skip = _ids(skip) if skip is not None else tuple(defaults.get("skip", ()))
    timeout = validate_timeout(timeout if timeout is not None else defaults.get("timeout", DEFAULT_TIMEOUT))
    fail_on = fail_on or defaults.get("fail-on", "fail")
    if fail_on not in FAIL_ON:
        raise BadInput(f"--fail-on must be one of {', '.join(FAIL_ON)}, not {fail_on!r}")
    peers, probes, resolve = (tuple(given) or tuple(defaults.get(key, ())) for given, key in
                              ((peers, "peers"), (probes, "probes"), (resolve, "resolve")))
    for spec in probes:
        parse_endpoint(spec, "--probe", port_required=True)
    for spec in peers:
        parse_endpoint(spec, "--peer", port_required=False)
    docker_host = None
    if node:
        from netdoctor.lab.nodes import node as lab_node

        entry = lab_node(node)
        docker_host, host_netns = entry["docker_host"], host_netns or entry["netns"]
    if host_netns:
        from netdoctor.targets import netns_path

        netns_path(host_netns)  # raises BadInput when it is not there
    for label in labels:
        if not str(label).partition("=")[0].strip():
            raise BadInput(f"--label {label!r} is not KEY or KEY=VALUE")
    targets = tuple(targets)
    selector = Selector(bool(all), tuple(labels), compose_project or None, tuple(networks))
    if not targets and not selector.active:
        from netdoctor.targets import running_in_container

        if running_in_container():
            targets = ("self",)  # in a container: the namespace it runs in (or joined)
    options = Options(timeout=timeout, peers=peers, probes=probes, resolve=tuple(resolve), host_netns=host_netns)
    return Request(targets=targets, selector=selector, checks=checks, skip=skip, options=options, config=config,
                   fail_on=fail_on, docker_host=docker_host)
