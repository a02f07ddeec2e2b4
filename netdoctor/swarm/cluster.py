"""`check --swarm` and `check -H URL / --context NAME`: netdoctor's image diagnoses each engine where it
runs; this side starts it, gathers what every node says into one run, and leaves nothing behind.

    --swarm   on a manager: an internal overlay network and a global service (restart condition none,
              endpoint mode dnsrr), both named netdoctor-<run>. Swarm starts one task per node; each task
              starts the node agent next to its own engine (netdoctor/swarm/task.py, node.py). What the
              agents say comes back as the service's logs, one stream for the whole cluster.
    -H URL    the node agent started directly on that engine; what it says comes back on its attach stream.

A `Gathering` is what `netdoctor.core.diagnose` returns for such a request: like a local Diagnosis it has
its targets and jobs when returned (every node has sent its plan, or is reported as not answering), and
iterating it yields findings as the nodes send them: each labelled with its node (`worker1/container:web`),
the config's acceptances applied here. Then an error finding for each node that did not answer within
--deadline, the node matrix's findings (--swarm), and the removal of everything started: the service (Swarm
stops its tasks, each task removes its node agent), the network, a remote engine's agent container. The
same removal runs when the run is interrupted (Ctrl-C, SIGTERM, an exception): `close()`.

Why a global service and not a global job: Docker 20.10 neither stops the running tasks of a removed job
nor removes its completed tasks' containers; a service with restart condition none runs each task once,
and removing it stops and removes them all.
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Iterator

from netdoctor.errors import BadInput, CannotCheck
from netdoctor.gate import Gate
from netdoctor.model import CheckInfo, Finding, Fix, Status, about_run
from netdoctor.registry import Catalogue
from netdoctor.request import DEADLINE_RANGE, Request
from netdoctor.swarm import engines, node as agent
from netdoctor.swarm.matrix import Matrix, Node
from netdoctor.swarm.protocol import VERSION, Decoder, finding_from_dict, on_node, target_from_dict
from netdoctor.swarm.task import NODE_ENV
from netdoctor.targets import Target

DEFAULT_IMAGE = "netdoctor:latest"
RUN_LABEL = "netdoctor.swarm.run"
DEADLINE_LABEL = "netdoctor.swarm.deadline"  # the run's --deadline, on its service and network: how long it may last
REMOVAL_TIMEOUT = 30.0      # seconds to wait for Swarm to let go of the network after the service is gone
STALE_MARGIN = 600.0        # seconds past a run's own end before what it made counts as left by a killed run
                            # (its clean-up; this machine's clock against the manager's, which stamps CreatedAt)
POLL = 1.0                  # seconds between two looks at the tasks' states
AGENT_MARGIN = 5.0          # the node agents give up this much before the manager's deadline, to report it
LOG_LAG = 10.0              # seconds a completed task's last log lines may take to arrive


def default_image() -> str:
    """NETDOCTOR_IMAGE, else the image netdoctor itself runs from (in a container), else netdoctor:latest."""
    if os.environ.get("NETDOCTOR_IMAGE"):
        return os.environ["NETDOCTOR_IMAGE"]
    from netdoctor.targets import network_owner_id

    own = network_owner_id()
    if own:
        from netdoctor.dockerapi import DockerSession, DockerUnavailable, ContainerNotFound

        try:
            return DockerSession().container(own).image or DEFAULT_IMAGE
        except (DockerUnavailable, ContainerNotFound):
            pass
    return DEFAULT_IMAGE


@dataclass
class NodeState:
    """One node (or remote engine) as this run knows it."""

    name: str                       # how its targets are labelled
    id: str = ""
    addr: str = ""
    manager: bool = False
    decoder: Decoder = field(default_factory=Decoder)
    plan: dict | None = None
    row: dict | None = None
    done: bool = False
    failure: str = ""               # why it will not report (any more): its task failed, the deadline passed
    task: str = ""                  # its task's last state, as Swarm reports it
    completed_at: float = 0.0       # when Swarm first said its task completed
    findings: int = 0
    arrived: dict[str, float] = field(default_factory=dict)   # seconds into the run each kind of record first came
    cost: dict[str, dict] = field(default_factory=dict)  # what each agent cost the node ("done": node agent, "relayed": task)

    @property
    def finished(self) -> bool:
        return self.done or bool(self.failure)


_running: set["Gathering"] = set()  # started and not yet cleaned up (close_all)
_running_lock = threading.Lock()


def close_all() -> None:
    """Clean up every run still open: a TUI that quits mid-run ends its process without closing them."""
    with _running_lock:
        runs = list(_running)
    for run in runs:
        run.close()


class Gathering:
    """A diagnosis run by netdoctor's image on other engines; the same interface as core.Diagnosis."""

    kind = "engine"

    def __init__(self, request: Request, catalogue: Catalogue, checks: list[CheckInfo]):
        self.request = request
        self.catalogue = catalogue
        self.checks = checks
        self.gate = Gate(request.fail_on, request.config.path)
        self.targets: list[Target] = []
        self.jobs: list[tuple[CheckInfo, Target]] = []
        self.duration_ms = 0.0
        self.image = request.image or default_image()
        self.run_id = uuid.uuid4().hex[:8]
        self.nodes: dict[str, NodeState] = {}       # by the key its records arrive under
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: list[Finding] = []           # findings that arrived while waiting for the plans
        self._stopping = threading.Event()
        self._cleaned = False
        self._cleanup_lock = threading.Lock()
        self._started = time.monotonic()
        self.deadline = self._started + request.deadline

    # --- the run ------------------------------------------------------------------------------------

    def plan(self, swarm: dict | None = None, engine: dict | None = None) -> dict:
        """What every node agent is asked to do: the request's own choices, minus what only this side does
        (the config's acceptances and the gate). `engine`: which engine the agent must find behind its socket
        (node.engine_plan); a Swarm task fills it in for its own node."""
        request, options = self.request, self.request.options
        return {"v": VERSION, "run": self.run_id, "targets": list(request.targets),
                "selector": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(request.selector).items()},
                "checks": list(request.checks), "skip": list(request.skip), "explicit": request.explicit,
                "timeout": options.timeout, "peers": list(options.peers), "probes": list(options.probes),
                "resolve": list(options.resolve), "node_deadline": max(5.0, request.deadline - AGENT_MARGIN),
                **({"swarm": swarm} if swarm else {}), **({"engine": engine} if engine else {})}

    def _start(self) -> None:
        raise NotImplementedError

    def _cleanup(self) -> list[Finding]:
        """Remove everything started; findings for what could not be removed."""
        raise NotImplementedError

    def begin(self) -> "Gathering":
        """Start the agents and wait for every node's plan (or its failure): then targets and jobs are known."""
        with _running_lock:
            _running.add(self)
        try:
            self._start()
            while not all(n.plan is not None or n.finished for n in self.nodes.values()):
                if time.monotonic() >= self.deadline:
                    break
                self._pending += self._pump(0.2)
        except BaseException:
            self.close()
            raise
        return self

    def __iter__(self) -> Iterator[Finding]:
        try:
            yield from self._before()
            yield from self._pending
            self._pending = []
            while not all(n.finished for n in self.nodes.values()) and time.monotonic() < self.deadline:
                yield from self._pump(0.2)
            for state in self.nodes.values():
                if not state.finished:
                    state.failure = f"did not answer within --deadline {self.request.deadline:g}s"
                    yield self._unanswered(state)
            yield from self._after()
            yield from self._missing()
            yield from self._cleanup_once()
        finally:
            self.duration_ms = (time.monotonic() - self._started) * 1000

    def _before(self) -> Iterator[Finding]:
        return iter(())

    def _after(self) -> Iterator[Finding]:
        return iter(())

    def close(self) -> None:
        self._cleanup_once()

    def __enter__(self) -> "Gathering":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _cleanup_once(self) -> list[Finding]:
        """Remove what was started, once, whoever comes first: the run's end, close() (Ctrl-C, an error),
        close_all(). A second Ctrl-C meanwhile is ignored: a half-done removal would leave things behind."""
        with self._cleanup_lock:  # a second caller waits until the first is done: then nothing is left
            if self._cleaned:
                return []
            self._cleaned = True
            self._stopping.set()
            main = threading.current_thread() is threading.main_thread()
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
            try:
                return self._cleanup()
            finally:
                if main:
                    signal.signal(signal.SIGINT, previous)
                with _running_lock:
                    _running.discard(self)

    # --- what the nodes say -------------------------------------------------------------------------

    def _feed(self, key: str, text: str) -> None:
        """From a reader thread: `text` arrived on node `key`'s stream."""
        state = self.nodes.get(key)
        if state is not None:
            for record in state.decoder.feed(text):
                self._events.put((key, record))

    def _pump(self, wait: float) -> list[Finding]:
        """Handle what arrived within `wait` seconds; the findings among it, ready to report."""
        found: list[Finding] = []
        try:
            key, record = self._events.get(timeout=wait)
        except queue.Empty:
            return found
        while True:
            if key in self.nodes:  # not a node that joined after the run started
                found += self._handle(self.nodes[key], record)
            try:
                key, record = self._events.get_nowait()
            except queue.Empty:
                return found

    def _handle(self, state: NodeState, record: dict) -> list[Finding]:
        kind = record.get("t")
        state.arrived.setdefault(kind, time.monotonic() - self._started)
        if "peak_rss_kib" in record:
            state.cost[kind] = {"peak_rss_kib": record["peak_rss_kib"], "cpu_s": record.get("cpu_s")}
        if state.finished:
            return []  # reported as failed already: what it says now comes too late to be judged fairly
        if kind == "hello":
            state.id = state.id or record["node"].get("id", "")
            state.addr = state.addr or record["node"].get("addr", "")
        elif kind == "plan":
            state.plan = record
            self._add_plan(state, record)
        elif kind == "finding":
            state.findings += 1
            return [self.request.config.apply(finding_from_dict(record, state.name))]
        elif kind == "row":
            state.row = record
        elif kind == "error":
            return [replace(about_run(f"{self.kind} {state.name}: {record.get('message', 'failed')}",
                                      "Its findings so far are in this report; the rest of it was not diagnosed.",
                                      target=on_node(state.name, "host"), key=f"node-error:{state.name}"),
                            evidence={"node": state.name})]
        elif kind == "done":
            state.done = True
        elif kind == "task":  # from this side's look at Swarm's tasks, not from the node
            return self._task_state(state, record)
        return []

    def _add_plan(self, state: NodeState, plan: dict) -> None:
        targets = {t["target"]: target_from_dict(t, state.name) for t in plan.get("targets") or ()}
        self.targets += targets.values()
        for check_id, label in plan.get("jobs") or ():
            info = self.catalogue.get(check_id)
            target = targets.get(label)
            if info is not None:
                self.jobs.append((info, target or Target("host", "host", None)))

    def _task_state(self, state: NodeState, record: dict) -> list[Finding]:
        return []

    def _unanswered(self, state: NodeState) -> Finding:
        said = (f"It had sent its plan and {state.findings} finding(s)" if state.plan is not None
                else "It sent nothing")
        last = list(state.decoder.noise)
        detail = (f"{said}; no more within {self.request.deadline:g}s. "
                  + (f"Its task is {state.task}. " if state.task else "")
                  + (f"Its last output: {' | '.join(last[-5:])}. " if last else "")
                  + "The other nodes' findings stand; raise --deadline for a slow node, or look at the node itself.")
        return replace(about_run(f"{self.kind} {state.name} did not answer within {self.request.deadline:g}s",
                                 detail, target=on_node(state.name, "host"), key=f"node-unanswered:{state.name}"),
                       evidence={"node": state.name, "address": state.addr, "task": state.task,
                                 "findings_received": state.findings, "plan_received": state.plan is not None},
                       fix=Fix(f"Look at {state.name}: is its engine up, does it reach the manager?",
                               (f"docker node ps {state.id or state.name}   # on a manager",
                                "docker info   # on " + state.name)))

    def _missing(self) -> Iterator[Finding]:
        """A container named that none of the nodes asked about has."""
        plans = [n.plan for n in self.nodes.values() if n.plan is not None]
        if not plans or len(plans) < len(self.nodes):
            return  # a node that did not answer might have had it
        asked = {spec for plan in plans for spec in plan.get("asked") or ()}
        found = {spec for plan in plans for spec in plan.get("asked") or () if spec not in (plan.get("missing") or ())}
        for spec in sorted(asked - found):
            yield about_run(f"{spec}: no such container on any {self.kind}", f"Asked on: {', '.join(self.nodes)}.",
                            target=spec, key="unresolved")


class EngineGathering(Gathering):
    """`-H URL` / `--context NAME`: the node agent on one remote engine."""

    kind = "engine"

    def _start(self) -> None:
        import docker.errors

        self.engine = engines.client(None, self.request.remote)
        try:
            self.engine.images.get(self.image)
        except docker.errors.ImageNotFound:
            raise CannotCheck(f"netdoctor's image {self.image} is not on the engine at {self.request.remote.name}: "
                              f"copy it there (`docker save {self.image} | docker -H {self.request.remote.url} load`) "
                              f"or name another with --image") from None
        info = self.engine.info()
        name = self.request.remote.context or info.get("Name") or self.request.remote.url
        self.nodes[name] = NodeState(name)
        # the agent talks to the engine through a socket mounted from the engine's machine: this engine's own
        # when -H names it (an engine in a mount namespace of its own does not listen on /var/run/docker.sock
        # there), and the agent refuses one whose engine is another
        plan = self.plan(engine=agent.engine_plan(info, self.request.remote.socket_path or agent.SOCKET))
        self.container, stream = agent.start(self.engine, self.image, plan)
        threading.Thread(target=self._read, args=(name, stream), name=f"engine {name}", daemon=True).start()

    def _read(self, name: str, stream) -> None:
        try:
            for out, err in stream:
                if out:
                    self._feed(name, out.decode(errors="replace"))
                if err:  # kept as its last words (apart from stdout: a record may be half-way through there)
                    self.nodes[name].decoder.noise.extend(line for line in err.decode(errors="replace").splitlines() if line.strip())
        except Exception as exc:  # the stream broke: the deadline reports the engine
            self.nodes[name].decoder.noise.append(f"(its output stream broke: {exc})")

    def _cleanup(self) -> list[Finding]:
        import docker.errors

        container = getattr(self, "container", None)
        if container is not None:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass  # auto-removed when it exited
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: its removal is already in progress
                    return [about_run(f"could not remove netdoctor's container {container.name} on "
                                      f"{self.request.remote.name}: {exc.explanation}",
                                      f"Remove it: docker -H {self.request.remote.url} rm -f {container.name}",
                                      status=Status.WARN, key="leftover")]
        return []


class SwarmGathering(Gathering):
    """`--swarm`: a global service runs the node agent on every node."""

    kind = "node"

    def _start(self) -> None:
        import docker.errors

        self._notes: list[Finding] = []
        self.engine = engines.client(self.request.docker_host, self.request.remote)
        info = self.engine.info()
        swarm = info.get("Swarm") or {}
        where = self.request.remote.name if self.request.remote else self.request.docker_host or "this host"
        if swarm.get("LocalNodeState") != "active":
            raise BadInput(f"--swarm: the engine at {where} is not in a swarm (its state: {swarm.get('LocalNodeState') or 'inactive'})")
        if not swarm.get("ControlAvailable"):
            raise BadInput(f"--swarm: the engine at {where} is a swarm worker: run netdoctor on a manager "
                           "(`docker node ls` works there), or point -H/--context at one")
        self._remove_stale()
        listed = self._nodes(self.engine.api.nodes())
        self.data_port = data_port = int(self.engine.api.inspect_swarm().get("DataPathPort") or 4789)
        self.name = f"netdoctor-{self.run_id}"
        labels = {RUN_LABEL: self.run_id, DEADLINE_LABEL: f"{self.request.deadline:g}"}
        window = max(6.0, 3 * self.request.options.timeout)  # for what does not arrive; the rest ends early
        swarm_plan = {"run": self.run_id, "service": self.name, "network": self.name, "data_port": data_port,
                      "window": window, "nodes": [{"id": s.id, "name": s.name, "addr": s.addr, "manager": s.manager}
                                                  for s in listed]}
        self.network = self.engine.networks.create(self.name, driver="overlay", internal=True, labels=labels)
        spec = docker.types.ContainerSpec(
            self.image, args=["agent", "swarm-task", "--plan", json.dumps(self.plan(swarm_plan), separators=(",", ":"))],
            mounts=[docker.types.Mount(agent.SOCKET, agent.SOCKET, type="bind")], labels={agent.AGENT_LABEL: self.run_id},
            env=[f"{NODE_ENV}={{{{.Node.ID}}}}"])  # Swarm fills in the node: the task checks its socket's engine is it
        template = docker.types.TaskTemplate(
            spec, restart_policy=docker.types.RestartPolicy("none"), networks=[self.name],
            log_driver=docker.types.DriverConfig("json-file", {"max-size": "10m"}))
        try:
            self.service = self.engine.api.create_service(
                template, name=self.name, labels=labels, mode=docker.types.ServiceMode("global"),
                endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"))["ID"]
        except docker.errors.APIError as exc:
            raise CannotCheck(f"--swarm: the manager refused to create netdoctor's service: {exc.explanation}") from None
        threading.Thread(target=self._read_logs, name="swarm logs", daemon=True).start()
        threading.Thread(target=self._watch_tasks, name="swarm tasks", daemon=True).start()

    def _nodes(self, listed: list[dict]) -> list[NodeState]:
        """The nodes Swarm will run a task on; the others become findings now (drained, paused, down)."""
        hostname = lambda n: (n.get("Description") or {}).get("Hostname") or n["ID"][:12]  # noqa: E731
        listed = sorted(listed, key=lambda n: (not n.get("ManagerStatus"), hostname(n)))  # managers first
        names = [hostname(n) for n in listed]
        expected = []
        for raw, name in zip(listed, names):
            if names.count(name) > 1:
                name = f"{name}-{raw['ID'][:6]}"  # two nodes with one hostname: keep them apart
            addr = (raw.get("Status") or {}).get("Addr", "")
            if addr in ("", "0.0.0.0"):  # some managers report this: their manager address says where they are
                addr = ((raw.get("ManagerStatus") or {}).get("Addr") or "").rpartition(":")[0].strip("[]")
            state = NodeState(name, id=raw["ID"], addr=addr, manager=bool(raw.get("ManagerStatus")))
            availability = (raw.get("Spec") or {}).get("Availability", "active")
            status = (raw.get("Status") or {}).get("State", "unknown")
            if availability != "active":
                self._notes.append(about_run(f"node {name} is {'drained' if availability == 'drain' else 'paused'}: "
                                             "Swarm runs no new task there, so it was not diagnosed",
                                             target=on_node(name, "host"), status=Status.INFO, key=f"node-{availability}:{name}"))
            elif status != "ready":
                self._notes.append(replace(about_run(
                    f"node {name} is {status} as the manager sees it: not diagnosed",
                    (raw.get("Status") or {}).get("Message", "") or "The manager has no contact with its engine.",
                    target=on_node(name, "host"), key=f"node-{status}:{name}"),
                    fix=Fix(f"Bring {name}'s engine back, or remove the node from the swarm.",
                            (f"docker node inspect {name} --format '{{{{.Status}}}}'",
                             f"docker node rm {name}   # if it is gone for good"))))
            else:
                self.nodes[state.id] = state
                expected.append(state)
        return expected

    def _before(self) -> Iterator[Finding]:
        yield from self._notes

    def _read_logs(self) -> None:
        try:
            for frame in self.engine.api.service_logs(self.service, details=True, follow=True, stdout=True,
                                                       stderr=True, is_tty=False):
                if self._stopping.is_set():
                    return
                attrs, _, message = frame.decode(errors="replace").partition(" ")
                details = dict(pair.partition("=")[::2] for pair in attrs.split(","))
                self._feed(details.get("com.docker.swarm.node.id", ""), message)
        except Exception as exc:  # the manager went away: the deadline reports the nodes that did not finish
            for state in self.nodes.values():
                state.decoder.noise.append(f"(the service's log stream broke: {exc})")

    def _watch_tasks(self) -> None:
        while not self._stopping.wait(POLL):
            try:
                tasks = self.engine.api.tasks(filters={"service": self.service})
            except Exception:
                continue
            for task in tasks:
                status = task.get("Status") or {}
                self._events.put((task.get("NodeID", ""), {"t": "task", "state": status.get("State", ""),
                                                           "err": status.get("Err", ""), "at": time.monotonic()}))

    def _task_state(self, state: NodeState, record: dict) -> list[Finding]:
        state.task = record["state"] + (f" ({record['err']})" if record["err"] else "")
        if record["state"] in ("failed", "rejected", "orphaned", "remove"):
            state.failure = f"its task {state.task}"
            if "image" in record["err"].lower():
                fix = Fix(f"Make the image {self.image} available on {state.name} (nothing is pulled for it when the "
                          "registry does not have it), then run again.",
                          (f"docker save {self.image} | ssh {state.name} docker load",))
            else:
                fix = Fix(f"See why Swarm could not run the task on {state.name}.",
                          (f"docker service ps --no-trunc {self.name}   # on a manager, while the run lasts",))
            return [replace(about_run(f"node {state.name}: netdoctor's task could not run there: {state.task}",
                                      "Swarm could not start the task or it died; the node was not diagnosed.",
                                      target=on_node(state.name, "host"), key=f"node-task:{state.name}"), fix=fix)]
        if record["state"] == "complete" and not state.done:
            # the task ended; its last records may still be on their way through the log stream: a moment
            state.completed_at = state.completed_at or record["at"]
            if record["at"] - state.completed_at > LOG_LAG:
                state.failure = "its task ended without finishing its report"
                last = list(state.decoder.noise)
                return [replace(about_run(f"node {state.name}: netdoctor's task ended before its report was complete",
                                          f"It sent {state.findings} finding(s). "
                                          + (f"Its last output: {' | '.join(last[-5:])}." if last else ""),
                                          target=on_node(state.name, "host"), key=f"node-task:{state.name}"),
                                evidence={"node": state.name, "findings_received": state.findings})]
        return []

    def _after(self) -> Iterator[Finding]:
        reported = [s for s in self.nodes.values() if s.done and s.row and "tcp" in s.row]
        for state in self.nodes.values():
            if state.row and state.row.get("errors"):
                yield replace(about_run(f"node {state.name}: part of the node matrix was not measured",
                                        "; ".join(state.row["errors"]), target=on_node(state.name, "host"),
                                        status=Status.WARN, key=f"matrix-incomplete:{state.name}"))
        if len(self.nodes) < 2:
            return
        matrix = Matrix([Node(s.id, s.name, s.addr, s.manager) for s in self.nodes.values()],
                        {s.id: s.row for s in reported}, self.data_port)
        yield from matrix.findings()

    def _remove_stale(self, now=None) -> None:
        """A killed run's service and network (older than its own deadline allows, see stale_after): they run
        nothing, but are clutter. Another run still going, however long its --deadline, is left alone.
        `now`: the time to judge their age at (a datetime; default: now)."""
        import datetime as dt

        import docker.errors

        now = now or dt.datetime.now(dt.timezone.utc)
        for listing, remove in ((self.engine.api.services, self.engine.api.remove_service),
                                (self.engine.api.networks, self.engine.api.remove_network)):
            for item in listing(filters={"label": RUN_LABEL}):
                stamp = item.get("CreatedAt") or item.get("Created") or ""  # services say CreatedAt, networks Created
                labels = item.get("Labels") or (item.get("Spec") or {}).get("Labels") or {}  # networks; services
                try:
                    created = dt.datetime.fromisoformat(stamp[:19] + "+00:00")
                except ValueError:
                    continue
                if (now - created).total_seconds() > stale_after(labels):
                    try:
                        remove(item.get("ID") or item["Id"])  # services say ID, networks Id
                    except docker.errors.APIError:
                        pass

    def _cleanup(self) -> list[Finding]:
        import docker.errors

        self._stopping.set()
        service, network = getattr(self, "service", None), getattr(self, "network", None)
        if service:
            try:
                self.engine.api.remove_service(service)  # Swarm stops the tasks; each removes its node agent
            except docker.errors.NotFound:
                pass
        if network is None:
            return []
        deadline = time.monotonic() + REMOVAL_TIMEOUT
        while True:
            try:
                network.remove()  # refused while a task on some node still holds an endpoint on it
                return []
            except docker.errors.NotFound:
                return []
            except docker.errors.APIError as exc:
                if time.monotonic() > deadline:
                    return [about_run(f"could not remove netdoctor's network {self.name}: {exc.explanation}",
                                      "A node still holds an endpoint on it (a node that stopped answering keeps "
                                      "its task until it comes back). It runs nothing; the next --swarm run removes "
                                      f"it once it is {stale_after({DEADLINE_LABEL: str(self.request.deadline)}) // 60:.0f} "
                                      f"minutes old, or remove it: docker network rm {self.name}",
                                      status=Status.WARN, key="leftover")]
                time.sleep(0.5)


def stale_after(labels: dict) -> float:
    """Seconds after which a run's service or network (with these labels) was left by a run that was killed:
    past the run's own --deadline and clean-up, and a margin. Without the label (a run of an older netdoctor),
    the longest --deadline there is."""
    try:
        deadline = float(labels[DEADLINE_LABEL])
    except (KeyError, TypeError, ValueError):
        deadline = float("nan")
    if not math.isfinite(deadline) or deadline <= 0:
        deadline = DEADLINE_RANGE[1]
    return deadline + REMOVAL_TIMEOUT + STALE_MARGIN


def gather(request: Request, catalogue: Catalogue, checks: list[CheckInfo]) -> Gathering:
    """The Gathering for a --swarm or -H/--context request, started: its targets and jobs are known."""
    kind = SwarmGathering if request.swarm else EngineGathering
    return kind(request, catalogue, checks).begin()
