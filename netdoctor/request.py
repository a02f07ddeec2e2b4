"""What a user asks netdoctor to do, validated where it enters: the one place that turns command-line
flags, a config file's defaults and a Python caller's arguments into a `Request`.

Every front end (the `check` and `tui` commands, the demo, a Python user) builds a Request and hands it
to `netdoctor.core.diagnose`. A value that is wrong raises BadInput here, with one sentence naming it,
so that no check ever sees a value it could crash on.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from netdoctor.config import Config, discover as discover_config, load as load_config
from netdoctor.errors import FAIL_ON, BadInput
from netdoctor.targets import CONTAINER_NAME, TargetError, check_spec, netns_path

if TYPE_CHECKING:
    from netdoctor.swarm.engines import Remote

DEFAULT_TIMEOUT = 2.0
DEFAULT_DEADLINE = 60.0
DEADLINE_RANGE = (5.0, 3600.0)
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
    swarm: bool = False                  # --swarm: every node, each diagnosed by netdoctor's image run through Swarm
    remote: Remote | None = None         # -H/--context: the engine netdoctor's image runs on (with --swarm: the manager)
    image: str | None = None             # --image: netdoctor's image for --swarm and -H (None: netdoctor.swarm.cluster's)
    deadline: float = DEFAULT_DEADLINE   # --deadline: seconds a node or remote engine has to report

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


DNS_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")


def validate_dns_name(value: str, where: str = "--resolve") -> str:
    """A name a resolver can be asked: dot-separated labels of 1-63 letters, digits, hyphens or underscores
    (internationalised labels in their IDNA form), at most 253 characters, not an IP address."""
    name = value.strip()
    text = name[:-1] if name.endswith(".") else name
    problem = ""
    if not text:
        problem = "it is empty"
    elif _is_ip(text):
        problem = f"it is an IP address, which needs no resolving (--probe {text}:PORT tests reaching it)"
    else:
        labels = text.split(".")
        try:
            encoded = [label if label.isascii() else label.encode("idna").decode("ascii") for label in labels]
        except UnicodeError:
            encoded, problem = [], "it has a label that is not a valid internationalised name"
        empty = [i for i, label in enumerate(encoded) if not label]
        long = [label for label in encoded if len(label) > 63]
        odd = [label for label in encoded if label and len(label) <= 63 and not DNS_LABEL.fullmatch(label)]
        if problem:
            pass
        elif empty:
            problem = "it has an empty label (two dots in a row, or a leading dot)"
        elif long:
            problem = f"its label {long[0][:16]}... is {len(long[0])} characters long (at most 63)"
        elif odd:
            problem = f"its label {odd[0]!r} has characters other than letters, digits, '-' and '_'"
        elif len(".".join(encoded)) > 253:
            problem = f"it is {len('.'.join(encoded))} characters long (at most 253)"
    if problem:
        raise BadInput(f"{where} {value!r} is not a DNS name: {problem}")
    return name


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def validate_timeout(value: float, where: str = "--timeout") -> float:
    low, high = TIMEOUT_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise BadInput(f"{where} must be a number of seconds from {low:g} to {high:g}, not {value!r}")
    return float(value)


def _discover_config(cwd: Path | None) -> Path | None:
    try:
        start = cwd or Path.cwd()
    except OSError:  # the working directory was deleted: there is nothing to search upwards from
        return None
    return discover_config(start)


def _endpoint_host(endpoint: Endpoint, spec: str, where: str, container: bool = False) -> Endpoint:
    if container and endpoint.is_ip:
        raise BadInput(f"{where} {spec!r}: a peer is a container name or id, not an address (--probe ADDRESS:PORT "
                       "tests an address)")
    if not endpoint.is_ip and not CONTAINER_NAME.fullmatch(endpoint.host):
        expected = "a container name or id" if container else "an IP address or a container name (names are not looked up in DNS)"
        raise BadInput(f"{where} {spec!r}: {endpoint.host!r} is not {expected}")
    return endpoint


def _validate_docker_environment() -> None:
    """DOCKER_HOST and the TLS variables, read as netdoctor's engine client will read them, so that a
    malformed value is bad input here rather than 'Docker unreachable' later."""
    if not any(os.environ.get(v) for v in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")):
        return
    from netdoctor.dockerapi import connection_factory, engine_address

    connection_factory(engine_address())  # BadInput for an address it cannot speak to or unusable TLS files


def build(*, targets: Iterable[str] = (), all: bool = False, labels: Iterable[str] = (),
          compose_project: str | None = None, networks: Iterable[str] = (), config_path: str | None = None,
          checks: Iterable[str] | str | None = None, skip: Iterable[str] | str | None = None,
          timeout: float | None = None, host_netns: str | None = None, node: str | None = None,
          fail_on: str | None = None, peers: Iterable[str] = (), probes: Iterable[str] = (),
          resolve: Iterable[str] = (), cwd: Path | None = None, swarm: bool = False, host: str | None = None,
          context: str | None = None, image: str | None = None, deadline: float | None = None) -> Request:
    """A Request from flags (None or empty: not given), filled in from the config file's defaults.
    A flag given replaces the config's value; BadInput names any value that is wrong."""
    config = load_config(Path(config_path) if config_path else _discover_config(cwd))
    defaults = config.defaults
    if checks is not None and not _ids(checks):
        raise BadInput(f"--checks {checks!r} names no check id (see `netdoctor list`)")
    checks = _ids(checks) if checks is not None else tuple(defaults.get("checks", ()))
    skip = _ids(skip) if skip is not None else tuple(defaults.get("skip", ()))
    timeout = validate_timeout(timeout if timeout is not None else defaults.get("timeout", DEFAULT_TIMEOUT))
    fail_on = fail_on or defaults.get("fail-on", "fail")
    if fail_on not in FAIL_ON:
        raise BadInput(f"--fail-on must be one of {', '.join(FAIL_ON)}, not {fail_on!r}")
    # a value from the config file is named by where it came from, so the user knows what to edit
    (peers, peers_from), (probes, probes_from), (resolve, resolve_from) = (
        (tuple(given), flag) if tuple(given) else (tuple(defaults.get(key, ())), f"{config.path}: {key}")
        for given, key, flag in ((peers, "peers", "--peer"), (probes, "probes", "--probe"), (resolve, "resolve", "--resolve")))
    for spec in probes:
        _endpoint_host(parse_endpoint(spec, probes_from, port_required=True), spec, probes_from)
    for spec in peers:
        _endpoint_host(parse_endpoint(spec, peers_from, port_required=False), spec, peers_from, container=True)
    for name in resolve:
        validate_dns_name(name, resolve_from)
    _validate_docker_environment()
    docker_host = None
    if node:
        from netdoctor.lab.nodes import node as lab_node

        entry = lab_node(node)
        docker_host, host_netns = entry["docker_host"], host_netns or entry["netns"]
    if host_netns:
        try:
            netns_path(host_netns)
        except TargetError as exc:
            raise BadInput(f"--host-netns {host_netns!r}: {exc}") from None
    for label in labels:
        if not str(label).partition("=")[0].strip():
            raise BadInput(f"--label {label!r} is not KEY or KEY=VALUE")
    remote = _remote_run(swarm, host, context, image, deadline, node, host_netns)
    targets = tuple(targets)
    for spec in targets:
        if swarm or remote:  # named on other engines: only its form can be judged here
            check_spec_elsewhere(spec, swarm)
        else:
            check_spec(spec)
    selector = Selector(bool(all), tuple(labels), compose_project or None, tuple(networks))
    if not targets and not selector.active and not (swarm or remote):
        from netdoctor.targets import running_in_container

        if running_in_container():
            targets = ("self",)  # in a container: the namespace it runs in (or joined)
    options = Options(timeout=timeout, peers=peers, probes=probes, resolve=tuple(resolve), host_netns=host_netns)
    return Request(targets=targets, selector=selector, checks=checks, skip=skip, options=options, config=config,
                   fail_on=fail_on, docker_host=docker_host, swarm=bool(swarm), remote=remote, image=image or None,
                   deadline=DEFAULT_DEADLINE if deadline is None else deadline)


def _remote_run(swarm: bool, host: str | None, context: str | None, image: str | None, deadline: float | None,
                node: str | None, host_netns: str | None) -> Remote | None:
    """--swarm, -H/--context and what only they take (--image, --deadline): the engine to run on, or None."""
    from netdoctor.swarm.engines import remote as remote_engine

    remote = remote_engine(host, context)
    if not (swarm or remote):
        given = [flag for flag, value in (("--image", image), ("--deadline", deadline)) if value is not None]
        if given:
            raise BadInput(f"{' and '.join(given)} apply to --swarm and -H/--context only")
        return None
    if remote and node:
        raise BadInput("--node names a lab node's engine and -H/--context another engine: give one of them")
    if host_netns and not node:
        raise BadInput("--host-netns does not apply to --swarm or -H/--context: each engine's own namespace is its host")
    if image is not None and not image.strip():
        raise BadInput("--image names no image")
    if deadline is not None:
        low, high = DEADLINE_RANGE
        if not math.isfinite(deadline) or not low <= deadline <= high:
            raise BadInput(f"--deadline must be a number of seconds from {low:g} to {high:g}, not {deadline!r}")
    return remote


def check_spec_elsewhere(spec: str, swarm: bool) -> None:
    """A target named for another engine: `NODE/SPEC` with --swarm; pid: and netns: are that engine's."""
    node, slash, rest = spec.partition("/")
    if swarm and slash and ":" not in node:
        if not node:
            raise TargetError(f"{spec!r}: NODE/TARGET needs a node name before the /")
        spec = rest
    kind, sep, value = spec.partition(":")
    if sep and kind == "pid":
        if not value.isdigit():
            raise TargetError(f"{spec!r}: pid:PID takes a process id")
    elif not (sep and kind == "netns"):
        check_spec(spec)
