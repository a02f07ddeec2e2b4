"""Building blocks of lab scenarios: network namespaces, veth pairs, bridges, iptables rules inside lab
namespaces, labelled Docker objects and small background services.

Every object gets the scenario's name (`ndlab-<scenario>-<role>`, Docker label `netdoctor.lab=<scenario>`) and
is written to /run/netdoctor-lab/<scenario>/state.json the moment it exists, so `teardown` removes exactly
those objects, from any partial state and after a crash. Links only ever live inside lab namespaces
(deleting the namespace deletes them), and iptables rules only inside lab namespaces: the real host's
sysctls, routes and firewall are never touched. Docker's own rules for lab networks are Docker's business.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from netdoctor.lab.scenario import LAB_LABEL, LabTarget, Scenario

STATE_ROOT = Path(os.environ.get("NETDOCTOR_LAB_STATE", "/run/netdoctor-lab"))
IMAGE = os.environ.get("NETDOCTOR_TEST_IMAGE", "netdoctor-test/busybox:latest")
ROLE = re.compile(r"^[a-z0-9]+$")  # no "-" in roles: `ndlab-vxlan-` can never match scenario `vxlan-mtu`'s objects
READY_TIMEOUT = 5.0


class LabError(RuntimeError):
    """A lab object could not be built; the message says which command failed and why."""


def run(*args: str, check: bool = True) -> str:
    done = subprocess.run(args, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise LabError(f"`{' '.join(args)}` failed: {done.stderr.strip() or done.returncode}")
    return done.stdout


def docker_client():
    """The Engine API client, or None when no engine answers (the lab then uses namespaces only)."""
    try:
        import docker  # heavy: only when a lab command runs

        client = docker.from_env(version="auto", timeout=30)
        client.ping()
        return client
    except Exception:
        return None


def host_egress_mtu() -> int:
    """MTU of this host's default route (route metric or device), read the way the mtu check reads it."""
    from netdoctor.facts.namespace import gather

    facts = gather()
    defaults = facts.default_routes()
    return (facts.egress_mtu(defaults[0]) if defaults else None) or 1500


_lock_depth = 0  # exclusive() is re-entrant within a process: a test holding it may run `lab up`


@contextmanager
def exclusive(waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the machine-wide lab lock: scenario names are global, so the demo, `lab up/down` and test runs
    take turns instead of rebuilding each other's scenarios. `waiting` is called if someone else holds it."""
    global _lock_depth
    if _lock_depth:
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    STATE_ROOT.parent.mkdir(parents=True, exist_ok=True)
    with open(STATE_ROOT.parent / "netdoctor-lab.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                waiting()
            fcntl.flock(lock, fcntl.LOCK_EX)
        _lock_depth = 1
        try:
            yield
        finally:
            _lock_depth = 0


def netns_names() -> list[str]:
    return [line.split()[0] for line in run("ip", "netns", "list", check=False).splitlines() if line.strip()]


def object_name(scenario: str, role: str) -> str:
    if not ROLE.match(role):
        raise ValueError(f"lab role {role!r} must be lowercase letters and digits")
    return f"ndlab-{scenario}-{role}"


def owned_by(scenario: str, name: str) -> bool:
    prefix = f"ndlab-{scenario}-"
    return name.startswith(prefix) and bool(ROLE.match(name[len(prefix):]))


class Plumbing:
    """Links, addresses, routes, sysctls and iptables rules inside namespaces that exist already, and the lab's
    services in them: done the same way whoever made the namespaces (a scenario's Builder; the tests'
    namespaces, tests/fakehost.py), which says how services are started and stopped (`spawn`)."""

    def sysctl(self, netns: str, key: str, value) -> None:
        run("ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}={value}")

    def veth(self, netns_a: str, dev_a: str, netns_b: str, dev_b: str, mtu: int = 1500) -> None:
        """A veth pair between two lab namespaces (never the real host's)."""
        run("ip", "-n", netns_a, "link", "add", dev_a, "mtu", str(mtu), "type", "veth",
            "peer", "name", dev_b, "netns", netns_b, "mtu", str(mtu))
        run("ip", "-n", netns_a, "link", "set", dev_a, "up")
        run("ip", "-n", netns_b, "link", "set", dev_b, "up")

    def bridge(self, netns: str, dev: str, mtu: int = 1500) -> None:
        run("ip", "-n", netns, "link", "add", dev, "mtu", str(mtu), "type", "bridge")
        run("ip", "-n", netns, "link", "set", dev, "up")

    def enslave(self, netns: str, dev: str, bridge: str) -> None:
        run("ip", "-n", netns, "link", "set", dev, "master", bridge)

    def addr(self, netns: str, dev: str, cidr: str) -> None:
        run("ip", "-n", netns, "addr", "add", cidr, "dev", dev)

    def route(self, netns: str, *spec: str) -> None:
        run("ip", "-n", netns, "route", "add", *spec)

    def iptables(self, netns: str, *rule: str) -> None:
        run("ip", "netns", "exec", netns, "iptables", "-w", *rule)

    # --- what the maker of the namespaces decides: their names and lifetime, how services run -------------

    def netns(self, role: str, forwarding: bool | None = None) -> str:
        """A new namespace for `role`, loopback up, IPv4 forwarding as asked; returns its name."""
        raise NotImplementedError

    def spawn(self, role: str, module: str, *args: str, netns: str | None = None) -> int:
        """Start `python -m module args --pidfile F` (inside `netns`), wait until it is ready; returns its pid."""
        raise NotImplementedError

    def resolver(self, role: str, address: str, behaviour: str = "answer", records: dict[str, str] | None = None,
                 netns: str | None = None) -> str:
        """Our own DNS server on `address` (an address of this lab), so lab containers never ask anyone else's."""
        args = ["--address", address, "--behaviour", behaviour]
        for name, ip in (records or {}).items():
            args += ["--record", f"{name}={ip}"]
        self.spawn(role, "netdoctor.lab.resolver", *args, netns=netns)
        return address

    def listener(self, role: str, netns: str, port: int, address: str = "0.0.0.0") -> None:
        self.spawn(role, "netdoctor.lab.listener", "--address", address, "--port", str(port), netns=netns)


def start_service(argv: list[str], pidfile: Path, log: Path, what: str,
                  started: Callable[[subprocess.Popen], None] = lambda proc: None) -> subprocess.Popen:
    """Start a service that writes `pidfile` once it is ready (netdoctor.lab.listener, .resolver) and wait for
    that; `started` is told of the process at once (to record it). LabError with its last output line when
    it exits or takes longer than READY_TIMEOUT."""
    pidfile.unlink(missing_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # not killed by a Ctrl-C aimed at its starter
    started(proc)
    deadline = time.monotonic() + READY_TIMEOUT
    while not pidfile.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            output = log.read_text().strip().splitlines()
            raise LabError(f"{what} did not start: {output[-1] if output else 'no output'}")
        time.sleep(0.02)
    return proc


class Builder(Plumbing):
    """Makes one scenario's objects and records each in the scenario's state file as soon as it exists."""

    def __init__(self, scenario: str):
        self.scenario = scenario
        self.dir = STATE_ROOT / scenario
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.dir / "state.json"
        self.state: dict[str, list] = {"netns": [], "containers": [], "networks": [], "processes": [], "targets": []}
        self._docker = None

    def _record(self, kind: str, value) -> None:
        self.state[kind].append(value)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        tmp.replace(self.state_file)

    def name(self, role: str) -> str:
        return object_name(self.scenario, role)

    def note_targets(self, targets: list[LabTarget]) -> None:
        for target in targets:
            self._record("targets", target.command)

    @property
    def has_docker(self) -> bool:
        if self._docker is None:
            self._docker = docker_client() or False
        return bool(self._docker)

    # --- network namespaces --------------------------------------------------------------------------

    def netns(self, role: str, forwarding: bool | None = None) -> str:
        name = self.name(role)
        self._record("netns", name)
        run("ip", "netns", "add", name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        if forwarding is not None:
            self.sysctl(name, "net.ipv4.ip_forward", int(forwarding))
        return name

    # --- background services -------------------------------------------------------------------------

    def spawn(self, role: str, module: str, *args: str, netns: str | None = None) -> int:
        """Start `python -m module args --pidfile F` (inside `netns` when given) and wait until it says it is
        ready by writing its pidfile; the lab outlives the `netdoctor lab up` process."""
        pidfile = self.dir / f"{role}.pid"
        argv = [sys.executable, "-m", module, *args, "--pidfile", str(pidfile)]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]

        def record(proc: subprocess.Popen) -> None:  # before it is ready: `lab down` stops it whatever happens next
            self._record("processes", {"role": role, "pid": proc.pid, "module": module})

        return start_service(argv, pidfile, self.dir / f"{role}.log", f"{module} ({role})", record).pid

    # --- Docker ---------------------------------------------------------------------------------------

    @property
    def docker(self):
        if not self.has_docker:
            raise LabError("this scenario needs Docker, and no Docker engine answers")
        return self._docker

    def _image(self) -> str:
        import docker.errors

        try:
            self.docker.images.get(IMAGE)
        except docker.errors.ImageNotFound:
            script = Path(__file__).resolve().parents[2] / "scripts" / "build-test-image.sh"
            if not script.exists():
                raise LabError(f"image {IMAGE} is missing: build it with scripts/build-test-image.sh") from None
            run("bash", str(script), IMAGE)
        return IMAGE

    def network(self, role: str, mtu: int | None = None, options: dict[str, str] | None = None, **kwargs):
        name = self.name(role)
        self._record("networks", name)
        options = dict(options or {})
        if mtu:
            options["com.docker.network.driver.mtu"] = str(mtu)
        network = self.docker.networks.create(name, driver="bridge", options=options,
                                              labels={LAB_LABEL: self.scenario}, **kwargs)
        network.reload()
        return network

    def lan(self, role: str = "net", mtu: int | None = None, options: dict[str, str] | None = None,
            records: dict[str, str] | None = None):
        """A lab Docker network with our resolver on its gateway. Its MTU is the host's egress MTU (so only the
        mtu scenario has an MTU fault), unless `mtu` says otherwise. Returns (network, resolver address)."""
        network = self.network(role, mtu=mtu or host_egress_mtu(), options=options)
        return network, self.resolver(f"{role}dns", gateway_of(network), records=records)

    def container(self, role: str, command: str = "httpd -f -p 80", **kwargs):
        """A started busybox container; `dns` must name a resolver of this lab (or be the fault)."""
        if "dns" not in kwargs:
            raise ValueError("lab containers must be given --dns: a resolver we own, or the fault being shown")
        name = self.name(role)
        self._record("containers", name)
        container = self.docker.containers.run(self._image(), command, name=name, detach=True,
                                               labels={LAB_LABEL: self.scenario}, **kwargs)
        container.reload()
        return container


def gateway_of(network) -> str:
    config = network.attrs["IPAM"]["Config"][0]
    return config["Gateway"]


def subnet_of(network) -> str:
    return network.attrs["IPAM"]["Config"][0]["Subnet"]


def host_port_of(container, port: str = "80/tcp") -> int:
    return int(container.attrs["NetworkSettings"]["Ports"][port][0]["HostPort"])


# --- teardown -------------------------------------------------------------------------------------------

def _services_of(scenario: str) -> list[int]:
    """Lab services of `scenario` still running: found by the pidfile path in their command line, so they
    are found also when the state file is gone, and a recycled pid is never mistaken for one."""
    directory = str(STATE_ROOT / scenario) + "/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(arg.startswith("netdoctor.lab.") for arg in argv) and any(
                flag == "--pidfile" and value.startswith(directory) for flag, value in zip(argv, argv[1:])):
            found.append(int(entry.name))
    return found


def _stop(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL what is still there after a second."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 1.0
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _is_zombie(p)]
        time.sleep(0.02)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _remove(obj, **kwargs) -> None:
    """Remove a Docker object that may already be gone, or be going (another `down` got there first)."""
    import docker.errors

    deadline = time.monotonic() + 10
    while True:
        try:
            obj.remove(**kwargs)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code != 409 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # "removal already in progress", or a network whose endpoints are still going


def load_state(scenario: str) -> dict:
    try:
        return json.loads((STATE_ROOT / scenario / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def is_up(scenario: str) -> bool:
    return (STATE_ROOT / scenario / "state.json").exists()


def teardown(scenario: str, client=None) -> list[str]:
    """Remove everything scenario `scenario` made: recorded services, processes left in its namespaces,
    Docker objects labelled with it, its namespaces. Works when nothing or only part exists. Returns
    what was removed."""
    state = load_state(scenario)
    removed: list[str] = []
    namespaces = sorted({*state.get("netns", []), *(n for n in netns_names() if owned_by(scenario, n))})
    namespaces = [n for n in namespaces if owned_by(scenario, n)]

    pids = _services_of(scenario)
    for name in namespaces:
        pids += [int(p) for p in run("ip", "netns", "pids", name, check=False).split()]
    if pids:
        _stop(sorted(set(pids)))
        removed.append(f"{len(set(pids))} process(es)")

    client = client or docker_client()
    if client is not None:
        selector = {"label": f"{LAB_LABEL}={scenario}"}
        for container in client.containers.list(all=True, filters=selector):
            _remove(container, force=True)
            removed.append(f"container {container.name}")
        for network in client.networks.list(filters=selector):
            _remove(network)
            removed.append(f"network {network.name}")

    for name in namespaces:
        if name in netns_names():
            run("ip", "netns", "delete", name, check=False)
            removed.append(f"netns {name}")

    directory = STATE_ROOT / scenario
    if directory.exists():
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()
    return removed


def leftovers(client=None) -> dict[str, list[str]]:
    """What any lab scenario made that still exists, by scenario name (empty after `down --all`)."""
    found: dict[str, list[str]] = {}
    for name in netns_names():
        if name.startswith("ndlab-") and "-" in name[len("ndlab-"):]:
            found.setdefault(name[len("ndlab-"):].rsplit("-", 1)[0], []).append(f"netns {name}")
    client = client or docker_client()
    if client is not None:
        for container in client.containers.list(all=True, filters={"label": LAB_LABEL}):
            found.setdefault(container.labels[LAB_LABEL], []).append(f"container {container.name}")
        for network in client.networks.list(filters={"label": LAB_LABEL}):
            found.setdefault(network.attrs["Labels"][LAB_LABEL], []).append(f"network {network.name}")
    if STATE_ROOT.exists():
        for directory in STATE_ROOT.iterdir():
            if directory.is_dir():  # a scenario's; beside them lives the lab nodes' registry (nodes.json)
                found.setdefault(directory.name, []).append(f"state {directory}")
    return found


class BuiltScenario(Scenario):
    """A scenario made with a Builder: `up` starts from a clean slate and undoes a half-built topology on
    error; `down` is `teardown`, which needs no memory of `up` beyond the state file and the names."""

    def build(self, lab: Builder) -> list[LabTarget]:
        raise NotImplementedError

    def up(self) -> list[LabTarget]:
        self.down()
        lab = Builder(self.name)
        try:
            targets = self.build(lab)
        except BaseException:
            self.down()
            raise
        lab.note_targets(targets)
        return targets

    def down(self) -> None:
        teardown(self.name)
