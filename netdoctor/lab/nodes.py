"""Named nodes of multi-node labs: `netdoctor check --node NAME` looks a node up here to pick its Docker engine
and its network namespace together (instead of DOCKER_HOST=... plus --host-netns ...).

The registry is one small JSON file, /run/netdoctor-lab/nodes.json: {name: {docker_host, netns, address}}.
Labs add their nodes when they come up and remove them when they go down; the file disappears when empty.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from netdoctor.errors import BadInput

NODES_FILE = Path(os.environ.get("NETDOCTOR_LAB_STATE", "/run/netdoctor-lab")) / "nodes.json"


class UnknownNode(BadInput, LookupError):
    """--node names no lab node (exit 2)."""


def load() -> dict[str, dict[str, str]]:
    try:
        return json.loads(NODES_FILE.read_text())
    except (OSError, ValueError):
        return {}


def node(name: str) -> dict[str, str]:
    nodes = load()
    if name not in nodes:
        known = ", ".join(sorted(nodes)) or "none: bring a multi-node lab up with `netdoctor lab up swarm`"
        raise UnknownNode(f"no lab node named {name!r} (known nodes: {known})")
    return nodes[name]


@contextmanager
def _editing() -> Iterator[dict[str, dict[str, str]]]:
    """Read-modify-write under a lock: two labs may come up at the same time."""
    NODES_FILE.parent.mkdir(parents=True, exist_ok=True)
    directory = os.open(NODES_FILE.parent, os.O_RDONLY)  # lock the directory: no lock file to leave behind
    try:
        fcntl.flock(directory, fcntl.LOCK_EX)
        nodes = load()
        yield nodes
        if nodes:
            tmp = NODES_FILE.with_suffix(".tmp")
            tmp.write_text(json.dumps(nodes, indent=1, sort_keys=True))
            tmp.replace(NODES_FILE)
        else:
            NODES_FILE.unlink(missing_ok=True)
    finally:
        os.close(directory)


def register(name: str, docker_host: str, netns: str, address: str) -> None:
    with _editing() as nodes:
        nodes[name] = {"docker_host": docker_host, "netns": netns, "address": address}


def unregister(names: list[str]) -> None:
    if not NODES_FILE.exists():
        return
    with _editing() as nodes:
        for name in names:
            nodes.pop(name, None)
