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
import signal
import socket
import sys

from netdoctor.swarm.node import SOCKET
from netdoctor.swarm.protocol import Emitter


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
