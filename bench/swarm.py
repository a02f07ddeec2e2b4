"""How `check --swarm` scales: wall time and memory with N nodes, against one engine alone (`-H`).

    sudo .venv/bin/python bench/swarm.py --nodes 3 6 --runs 3 [--image netdoctor:latest]

For each size it brings up a lab Swarm of N nodes (netdoctor/lab/swarm.py, netdoctor's image copied into
every node), then runs, each --runs times, in a fresh Python process like the CLI's:
  - `check -H <worker1's engine>`: one engine, the same agent, no Swarm and no matrix (the baseline);
  - `check --swarm` on the manager: every node, every check, the node matrix.
It prints the medians: wall time, when the first and the last node had sent its plan and its last record,
the manager process's peak RSS, and each node's cost (its node agent's and its Swarm task's peak RSS and
CPU time: on this machine every node's agents share its cores, on a real cluster each node pays its own).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

RUN = r"""
import json, sys, time
from netdoctor.request import build
from netdoctor.core import diagnose
from netdoctor.swarm.node import peak_rss_kib
flags = json.loads(sys.argv[1])
started = time.monotonic()
with diagnose(build(**flags)) as run:
    findings = list(run)
wall = time.monotonic() - started
nodes = [{"name": s.name, "arrived": s.arrived, "cost": s.cost, "done": s.done} for s in run.nodes.values()]
print(json.dumps({"wall": wall, "findings": len(findings), "nodes": nodes,
                  "manager_rss_kib": peak_rss_kib()}))
"""


def measure(flags: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", RUN, json.dumps(flags)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"run failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def main() -> None:
    from netdoctor.lab.swarm import AGENT_IMAGE, SwarmScenario
    from netdoctor.lab.topology import exclusive

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", default=AGENT_IMAGE)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run it as root: it builds namespaces and engines")
    rows = []
    for size in args.nodes:
        lab = SwarmScenario(f"bench{size}", nodes=size, agent_image=args.image)
        with exclusive():
            started = time.monotonic()
            lab.up()
            up = time.monotonic() - started
            try:
                if not lab.has_agent_image:
                    raise SystemExit(f"{args.image} is not on this host: bash scripts/build-image.sh {args.image}")
                one = [measure({"host": lab.docker_host("worker1"), "image": args.image}) for _ in range(args.runs)]
                swarm = [measure({"swarm": True, "node": lab.node_name("manager"), "image": args.image})
                         for _ in range(args.runs)]
            finally:
                started = time.monotonic()
                lab.down()
                down = time.monotonic() - started
        nodes = [n for run in swarm for n in run["nodes"]]
        rows.append({
            "nodes": size, "lab up s": up, "lab down s": down,
            "one engine (-H) s": median(r["wall"] for r in one),
            "--swarm s": median(r["wall"] for r in swarm),
            "first plan s": median(min(n["arrived"].get("plan", 1e9) for n in r["nodes"]) for r in swarm),
            "last plan s": median(max(n["arrived"].get("plan", 0) for n in r["nodes"]) for r in swarm),
            "last done s": median(max(n["arrived"].get("done", 0) for n in r["nodes"]) for r in swarm),
            "findings": median(r["findings"] for r in swarm),
            "manager RSS MiB (-H)": median(r["manager_rss_kib"] for r in one) / 1024,
            "manager RSS MiB (--swarm)": median(r["manager_rss_kib"] for r in swarm) / 1024,
            "node agent RSS MiB": median(n["cost"].get("done", {}).get("peak_rss_kib") for n in nodes) / 1024,
            "task agent RSS MiB": median(n["cost"].get("relayed", {}).get("peak_rss_kib") for n in nodes) / 1024,
            "node agent CPU s": median(n["cost"].get("done", {}).get("cpu_s") for n in nodes),
            "task agent CPU s": median(n["cost"].get("relayed", {}).get("cpu_s") for n in nodes),
        })
        print(json.dumps(rows[-1]), flush=True)
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{row[k]:.1f}" if isinstance(row[k], float) else str(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
