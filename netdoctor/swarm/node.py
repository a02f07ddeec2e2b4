"""The node agent: netdoctor's image run next to one engine, diagnosing that engine's host and containers.

It is what `docker run --network none --pid host --cap-add ... -v /var/run/docker.sock:... netdoctor check`
is in README's "alongside" mode, started through the engine's API by whoever needs a node diagnosed: the
Swarm task on each node (`check --swarm`, netdoctor/swarm/task.py) or the manager itself for a remote
engine (`check -H URL`, `--context NAME`). It reports through netdoctor/swarm/protocol.py on stdout:
hello, plan, each finding as it completes, with --swarm its half of the node matrix (probe.py), done.

Swarm services cannot have --pid host or the capabilities this needs, which is why a Swarm task starts
this container through its own node's engine rather than being it. The container is started with
auto-remove, exits on its own within the plan's deadline, and is removed by whoever started it when they
are stopped: nothing is left behind on the node.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

from netdoctor.swarm.protocol import Emitter

AGENT_LABEL = "netdoctor.agent"  # on every container netdoctor starts on a node: never diagnosed, always removed
SOCKET = "/var/run/docker.sock"  # where the agent (and a Swarm task) finds its engine's socket
CAPABILITIES = ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "NET_RAW"]


def engine_plan(info: dict, socket: str = SOCKET) -> dict:
    """The plan's word on which engine the agent must talk to: the one that starts it (its Info.ID), through
    `socket` (a path on that engine's machine, as the engine itself sees it), mounted at SOCKET."""
    return {"id": info.get("ID", ""), "name": info.get("Name", ""), "socket": socket}


def start(engine, image: str, plan: dict, task: str | None = None):
    """Create and start the node agent on `engine` (a docker SDK client); returns (container, stream of
    (stdout, stderr) byte chunks). Attached before it starts, so no output is missed. The socket mounted is
    the plan's (engine_plan): the engine's own, wherever it listens."""
    args = ["agent", "node", "--plan", json.dumps(plan, separators=(",", ":"))] + (["--task", task] if task else [])
    source = (plan.get("engine") or {}).get("socket") or SOCKET
    container = engine.containers.create(
        image, args, name=f"netdoctor-{plan['run']}-node", network_mode="none", pid_mode="host",
        cap_add=CAPABILITIES, volumes={source: {"bind": SOCKET, "mode": "rw"}}, auto_remove=True,
        labels={AGENT_LABEL: plan["run"]}, stop_signal="SIGINT")
    stream = engine.api.attach(container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True)
    container.start()
    return container, stream


def engine_namespace() -> str | None:
    """The network namespace the engine runs in, when it is not the machine's own (a lab node's dockerd in a
    namespace of its own): the namespace of the dockerd that shares our containerd shim's namespace."""
    from netdoctor.targets import default_host_netns

    def inode(path: str) -> int | None:
        try:
            return os.stat(path).st_ino
        except OSError:
            return None

    shim = inode(f"/proc/{os.getppid()}/ns/net")
    default, _ = default_host_netns()
    if shim is None or (default and inode(default) == shim):
        return None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (entry / "comm").exists():
            try:
                if (entry / "comm").read_text().strip() == "dockerd" and inode(f"{entry}/ns/net") == shim:
                    return f"{entry}/ns/net"  # stable while the engine runs, unlike the shim's
            except OSError:
                continue
    return f"/proc/{os.getppid()}/ns/net"


def choose_targets(plan: dict, docker, me: dict) -> tuple[list[str], list[str], list[str]]:
    """What this node diagnoses: the targets named (`NODE/SPEC` only on that node; a container that is not
    here is `missing`, not an error), the containers the selector picks, or by default every running
    container and the host. netdoctor's own containers are never targets. Returns (targets, the specs
    that applied to this node, those missing here)."""
    from netdoctor.dockerapi import ContainerNotFound
    from netdoctor.request import Selector
    from netdoctor.selection import SelectionError, select

    names_of_me = {me["name"], me["id"], me["id"][:12], me["addr"]} - {""}
    targets, asked, missing = [], [], []
    for named in plan["targets"]:
        node, slash, spec = named.partition("/")
        if not slash or ":" in node:  # not NODE/SPEC: every node is asked
            spec = named
        elif node not in names_of_me:
            continue
        asked.append(named)
        kind, _, name = spec.partition(":")
        if spec in ("host", "self") or kind in ("pid", "netns"):
            targets.append(spec)
            continue
        try:
            docker.container(name if kind == "container" else spec)
            targets.append(spec)
        except ContainerNotFound:
            missing.append(named)
    selector = Selector(**plan["selector"])
    if selector.active or not plan["targets"]:
        try:
            chosen = select(docker, selector if selector.active else Selector(all=True))
        except SelectionError:
            chosen = []
        targets += [c.id for c in chosen if AGENT_LABEL not in c.labels]
        if not selector.active:
            targets.append("host")
    return targets, asked, missing


def diagnose_node(plan: dict, emit: Emitter, task: str | None = None) -> None:
    from netdoctor.core import diagnose
    from netdoctor.dockerapi import DockerSession
    from netdoctor.errors import NetdoctorError
    from netdoctor.request import build

    started = time.monotonic()
    docker = DockerSession()
    info = docker.info()
    swarm = info.get("Swarm") or {}
    me = {"id": swarm.get("NodeID") or info.get("ID", ""), "name": info.get("Name", ""),
          "addr": swarm.get("NodeAddr", ""), "engine": info.get("ServerVersion", "")}
    emit("hello", node=me)
    mismatch = foreign_socket(plan.get("engine") or {}, info, _knows_me(docker))
    if mismatch:  # another engine's containers and networks, judged against this one's host: refuse
        emit("plan", targets=[], jobs=[], asked=[], missing=[])
        emit("error", message=mismatch)
        emit("done", duration_ms=(time.monotonic() - started) * 1000)
        return
    targets, asked, missing = choose_targets(plan, docker, me)
    try:
        request = build(targets=targets, checks=plan["checks"] or None, skip=plan["skip"] or None,
                        timeout=plan["timeout"], host_netns=engine_namespace(), peers=plan["peers"],
                        probes=plan["probes"], resolve=plan["resolve"], cwd=Path("/"))
        if plan.get("explicit") is not None:
            from dataclasses import replace

            request = replace(request, explicit=plan["explicit"])
        diagnosis = diagnose(request, tolerant=True)
    except NetdoctorError as exc:
        emit("plan", targets=[], jobs=[], asked=asked, missing=missing)
        emit("error", message=str(exc))
        emit("done", duration_ms=(time.monotonic() - started) * 1000)
        return
    with diagnosis:
        emit("plan", targets=[t.to_dict() for t in diagnosis.targets],
             jobs=[[info.id, target.label] for info, target in diagnosis.jobs], asked=asked, missing=missing)
        row: dict = {}
        matrix = None
        if plan.get("swarm") and me["id"]:
            matrix = threading.Thread(target=_measure, args=(plan, me, diagnosis.session, docker, task, row),
                                      name="node matrix", daemon=True)
            matrix.start()
        for finding in diagnosis:
            emit("finding", **finding.to_dict())
        if matrix is not None:
            matrix.join()
            emit("row", **row)
    emit("done", duration_ms=(time.monotonic() - started) * 1000, **cost())


def _knows_me(docker) -> bool | None:
    """Whether the engine behind our socket knows this agent's own container (None: we cannot tell which that is)."""
    from netdoctor.dockerapi import ContainerNotFound
    from netdoctor.targets import network_owner_id

    own = network_owner_id()
    if own is None:
        return None
    try:
        docker.container(own)
        return True
    except ContainerNotFound:
        return False


def foreign_socket(expected: dict, info: dict, knows_me: bool | None = None) -> str:
    """Why the engine behind our socket is not the one the plan names, or "" when it is: another Info.ID, or
    one that does not know the agent's own container (engines of one machine can share an ID: Docker 20.10
    derives it from /etc/docker/key.json, which every engine started with the same config dir reads)."""
    if not expected.get("id"):
        return ""  # a plan of a manager that names no engine
    other_id = info.get("ID") != expected["id"]
    if not other_id and knows_me is not False:
        return ""
    socket = expected.get("socket") or SOCKET
    which = (f"the engine {info.get('Name') or '?'} (ID {info.get('ID') or '?'})" if other_id else
             f"an engine with the same ID ({expected['id']}) that does not know the agent's own container")
    return (f"the Docker socket netdoctor's agent was given ({socket} on that machine) belongs to {which}, not to "
            f"{expected.get('name') or '?'} (ID {expected['id']}), the engine that started the agent: its containers "
            "and networks are another engine's, so nothing was diagnosed. The engine listens elsewhere than that "
            "path on its machine (it runs in a mount namespace of its own, or on another socket): give its own "
            "socket, -H unix:///PATH, from its machine")


def cost() -> dict:
    """What this process cost its node: peak memory and CPU time (the manager keeps them per node)."""
    import resource

    cpu = sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
    return {"peak_rss_kib": peak_rss_kib(), "cpu_s": round(cpu, 2)}  # children: the iptables-save it ran


def peak_rss_kib() -> int:
    """This process's peak memory (VmHWM: unlike ru_maxrss, not inherited across exec): what netdoctor costs a node."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return 0


def _measure(plan: dict, me: dict, session, docker, task: str | None, row: dict) -> None:
    from netdoctor.swarm.probe import measure

    swarm = plan["swarm"]
    try:
        overlay = None
        if task:
            task_pid = docker.container(task, fresh=True).pid
            overlay = session.view(f"/proc/{task_pid}/ns/net", "netdoctor task") if task_pid else None

        def endpoints() -> dict[str, str]:
            """{node address: our task's address on our overlay} as this node's engine knows them."""
            verbose = docker.network_verbose(swarm["network"])
            tasks = ((verbose.get("Services") or {}).get(swarm["service"]) or {}).get("Tasks") or ()
            return {t["Info"]["Host IP"]: t["EndpointIP"] for t in tasks if (t.get("Info") or {}).get("Host IP")}

        row.update(measure(swarm, me["id"], session.host, overlay, endpoints, plan["timeout"], swarm["window"]))
    except Exception as exc:  # the row says what failed; the node's findings still stand
        where = traceback.extract_tb(exc.__traceback__)[-1]
        row.update(node=me["id"], errors=[f"the node matrix could not be measured: {type(exc).__name__}: {exc} "
                                          f"(at {where.filename}:{where.lineno})"])


def main(plan_text: str, task: str | None) -> int:
    """`netdoctor agent node`: always exits 0 after `done`; what went wrong travels as records."""
    emit = Emitter(sys.stdout)
    plan = json.loads(plan_text)
    deadline = float(plan.get("node_deadline") or 0)
    if deadline:
        threading.Thread(target=_watchdog, args=(emit, deadline), name="node deadline", daemon=True).start()
    try:
        diagnose_node(plan, emit, task)
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        emit("error", message=f"the node agent failed: {type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})")
        emit("done", duration_ms=0)
    sys.stdout.flush()
    os._exit(0)  # probes abandoned by their checks may still wait on daemon threads: nothing to finish


def _watchdog(emit: Emitter, seconds: float) -> None:
    time.sleep(seconds)
    emit("error", message=f"the node's diagnosis did not finish within {seconds:g} s; its findings so far stand")
    emit("done", duration_ms=seconds * 1000)
    sys.stdout.flush()
    os._exit(0)
