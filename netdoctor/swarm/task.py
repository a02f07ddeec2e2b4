"""The Swarm task of `check --swarm`: one per node, started by Swarm itself (a global service).

A service's task cannot have --pid host or the capabilities a diagnosis needs, but it can have the node's
Docker socket: through it, the task starts the node agent (netdoctor/swarm/node.py) on its own node, relays
what the agent says to its own stdout (which the manager reads as the service's logs), and exits when the
agent is done. The task itself sits on netdoctor's own overlay network, so that the agent can send and
receive the node matrix's hellos from the task's namespace.

Stopped (the manager removes the service when the run ends, is interrupted or gives up), it removes the
agent at once: Swarm removes the task's own container with the service.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

from netdoctor.swarm.node import SOCKET
from netdoctor.swarm.protocol import Emitter

NODE_ENV = "NETDOCTOR_NODE"  # the service's template {{.Node.ID}}: the node Swarm runs this task on


def _stop(signum, frame):
    raise KeyboardInterrupt


def main(plan_text: str) -> int:
    import docker

    from netdoctor.swarm import node
    from netdoctor.targets import network_owner_id

    signal.signal(signal.SIGTERM, _stop)  # SIGINT (the image's STOPSIGNAL) already raises KeyboardInterrupt
    emit = Emitter(sys.stdout)
    plan = json.loads(plan_text)
    engine = docker.DockerClient(base_url=f"unix://{SOCKET}", version="auto", timeout=60)
    agent = None
    try:
        info = engine.info()
        mismatch = wrong_node(os.environ.get(NODE_ENV, ""), info)
        if mismatch:  # another engine would diagnose its own containers against this node's host: refuse
            emit("error", message=mismatch)
            emit("done", duration_ms=0)
            return 0
        plan = {**plan, "engine": node.engine_plan(info)}  # the agent, started through this socket, checks it too
        me = network_owner_id() or socket.gethostname()
        image = engine.containers.get(me).attrs["Image"]  # exactly the task's image, whatever its tag says now
        agent, stream = node.start(engine, image, plan, task=me)
        for out, err in stream:  # records already cut into short lines by the agent; anything else is kept
            for data, to in ((out, sys.stdout), (err, sys.stderr)):  # by the manager to explain a failure
                if data:
                    to.write(data.decode(errors="replace"))
                    to.flush()
        emit("relayed", **node.cost())
    except docker.errors.DockerException as exc:
        emit("error", message=f"could not start netdoctor's node agent through this node's engine: {exc}")
        emit("done", duration_ms=0)
    except KeyboardInterrupt:
        pass
    finally:
        if agent is not None:
            try:
                agent.remove(force=True)
            except docker.errors.DockerException:
                pass  # already gone (auto-remove)
    return 0


def wrong_node(node_id: str, info: dict) -> str:
    """Why the engine behind the task's socket is not the engine of the node Swarm runs the task on, or ""."""
    here = (info.get("Swarm") or {}).get("NodeID", "")
    if not node_id or here == node_id:
        return ""
    return (f"the Docker socket mounted into netdoctor's task ({SOCKET} on that node) belongs to the engine "
            f"{info.get('Name') or '?'} (swarm node {here or 'none'}), not to this node's engine ({node_id}): its "
            "containers and networks are another engine's, so nothing was diagnosed here. The node's dockerd "
            f"listens elsewhere (in a mount namespace of its own, or on another socket): make its socket {SOCKET} "
            "on the node")
