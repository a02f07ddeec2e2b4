"""How a node's netdoctor talks back to the netdoctor that started it: records, sent as short lines.

A node agent writes records (one JSON object each, `t` naming its type) to its standard output; the
manager reads them from the service's logs (`check --swarm`) or the container's attach stream (`-H`).
Docker's json-file logging cuts lines longer than 16 KiB, and Swarm's log stream hands such a line over in
pieces, so each record travels as lines of at most CHUNK characters:

    ND1 <record number> <part>/<parts> <part of the record's JSON text>

Anything else on the stream (a traceback on stderr, a Python warning) is kept as the node's own output,
to quote when the node fails. Records, in order:

    hello    {"node": {"id", "name", "addr", "engine"}}        who is speaking
    plan     {"targets": [...], "jobs": [[check, target]], "missing": [...]}   what it will diagnose
    finding  a Finding as `to_dict()` gives it                   as each check finishes
    row      the node's half of the node matrix (swarm/probe.py), --swarm only
    error    {"message"}                                       it could not go on (its findings so far stand)
    done     {"duration_ms"}
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Any

from netdoctor.facts.docker import container_from_attrs
from netdoctor.model import Finding, Fix, Severity, Status
from netdoctor.targets import Target

VERSION = 1
PREFIX = f"ND{VERSION}"
CHUNK = 8000          # characters of JSON per line: far below the 16 KiB where Docker's logging splits lines
NOISE_KEPT = 20       # lines of a node's other output kept to explain its failure


class Emitter:
    """Writes records to a stream (the agent's stdout), whole lines at a time, from any thread."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self._number = 0
        self._lock = threading.Lock()

    def __call__(self, kind: str, **fields: Any) -> None:
        text = json.dumps({"t": kind, **fields}, separators=(",", ":"), default=str)  # ASCII: safe to cut anywhere
        parts = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
        with self._lock:
            self._number += 1
            self.stream.write("".join(f"{PREFIX} {self._number} {i}/{len(parts)} {part}\n"
                                      for i, part in enumerate(parts, 1)))
            self.stream.flush()


@dataclass
class Decoder:
    """Turns one node's stream of lines back into records; keeps the last lines that were not records."""

    noise: deque = field(default_factory=lambda: deque(maxlen=NOISE_KEPT))
    _partial: str = ""
    _parts: dict[int, list[str]] = field(default_factory=dict)

    def feed(self, data: str) -> list[dict]:
        """Records completed by `data` (text that may end in the middle of a line)."""
        lines = (self._partial + data).split("\n")
        self._partial = lines.pop()
        return [record for line in lines if (record := self.line(line)) is not None]

    def line(self, line: str) -> dict | None:
        """One whole line: a record when it completes one, else None."""
        head, _, rest = line.partition(" ")
        if head != PREFIX:
            if line.strip():
                self.noise.append(line.rstrip())
            return None
        try:
            number_text, part_text, text = rest.split(" ", 2)
            number = int(number_text)
            part, parts = (int(n) for n in part_text.split("/"))
        except ValueError:
            self.noise.append(line.rstrip())
            return None
        pieces = self._parts.setdefault(number, [])
        pieces.append(text)
        if part < parts:
            return None
        del self._parts[number]
        try:
            return json.loads("".join(pieces))
        except ValueError:
            self.noise.append(f"(a record that did not arrive whole: {len(pieces)} of {parts} parts)")
            return None


# --- what a node reports, as the manager holds it ---------------------------------------------------------

def on_node(node: str, label: str) -> str:
    """A node's target label as the cluster's report shows it: `worker1/container:web`."""
    return f"{node}/{label}"


@dataclass(frozen=True)
class NodeTarget(Target):
    """A target diagnosed on another node (or engine): labelled with it, described as that node reported it."""

    node: str = ""
    reported: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self) -> str:
        return on_node(self.node, super().label)

    def to_dict(self) -> dict[str, Any]:
        return {**self.reported, "target": self.label, "node": self.node}


def target_from_dict(data: dict, node: str) -> NodeTarget:
    summary = data.get("container")
    container = None
    if summary:  # the engine's inspect shape, so that ContainerInfo stays the one parser of it
        container = container_from_attrs({
            "Id": summary.get("id", ""), "Name": summary.get("name", ""), "Config": {"Image": summary.get("image", "")},
            "State": {"Status": summary.get("status", ""), "Pid": summary.get("pid") or 0},
            "HostConfig": {"NetworkMode": summary.get("network_mode", "")},
            "NetworkSettings": {"Networks": {net: {"IPAddress": ip} for net, ip in (summary.get("networks") or {}).items()}},
        })
    return NodeTarget(kind=data.get("kind", ""), name=data.get("name", ""), netns_path=data.get("netns"),
                      container=container, unavailable=data.get("unavailable", ""), node=node, reported=data)


def _finding_id_on(node: str, finding_id: str | None) -> str | None:
    """`check/key@target` of a finding on `node`, as the cluster's report names it."""
    if not finding_id:
        return None
    head, at, target = finding_id.rpartition("@")
    return f"{head}@{on_node(node, target)}" if at else finding_id


def finding_from_dict(data: dict, node: str) -> Finding:
    fix = data.get("fix") or {}
    return Finding(
        check=data["check"], target=on_node(node, data["target"]), status=Status(data["status"]),
        severity=Severity(data["severity"]), title=data["title"], detail=data.get("detail", ""),
        evidence=data.get("evidence") or {},
        fix=Fix(fix.get("summary", ""), tuple(fix.get("commands") or ())) if fix.get("summary") or fix.get("commands") else None,
        duration_ms=float(data.get("duration_ms") or 0), key=data.get("key", ""),
        caused_by=_finding_id_on(node, data.get("caused_by")))
