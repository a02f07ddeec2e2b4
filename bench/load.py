"""Load benchmark: how netdoctor scales with the number of containers and of concurrent runs.

    sudo .venv/bin/python bench/load.py [--containers 200 500] [--processes 20] [--per-process 10]

For each size in --containers (cumulative: the containers of a smaller size are reused), it times one
`netdoctor check --label` over all of them with every check (the selection path of `--all`, restricted
to the benchmark's own containers: the engine is shared) and reports wall time, peak RSS and findings; then
--processes `netdoctor check` processes at once, each on --per-process containers. The containers are idle
busybox on a network of the benchmark's own, with --dns at a resolver it runs on that network's gateway, so
no probe leaves the machine. Everything is removed at the end (also on Ctrl-C).

tests/test_load.py runs the CI-sized version (200 containers, 20 processes) with assertions.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "netdoctor-test/busybox:latest"
LABEL = "netdoctor.bench.load"


def timed(argv: list[str]) -> dict:
    """One netdoctor run: seconds, peak RSS of that process (wait4), exit code and the JSON report."""
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    with concurrent.futures.ThreadPoolExecutor(1) as reader:
        output = reader.submit(process.stdout.read)
        _, status, usage = os.wait4(process.pid, 0)
        report = json.loads(output.result())
    return {"seconds": time.monotonic() - started, "rss_mib": usage.ru_maxrss / 1024,
            "code": os.waitstatus_to_exitcode(status), "report": report}


def judged(report: dict) -> int:
    return len({f["target"] for f in report["findings"] if f["status"] not in ("skip", "error")}
               & {t["target"] for t in report["targets"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, nargs="+", default=[200])
    parser.add_argument("--processes", type=int, default=20)
    parser.add_argument("--per-process", type=int, default=10)
    parser.add_argument("--workers", type=int, default=6, help="containers started in parallel")
    args = parser.parse_args()

    import docker

    from netdoctor.lab.resolver import Resolver

    run_id = uuid.uuid4().hex[:6]
    client = docker.from_env(timeout=120)
    network = client.networks.create(f"ndbench-load-{run_id}", labels={LABEL: run_id})
    gateway = client.api.inspect_network(network.id)["IPAM"]["Config"][0]["Gateway"]
    resolver = Resolver(gateway, 53).start()
    containers: list = []
    netdoctor = [sys.executable, "-m", "netdoctor", "check", "--format", "json"]
    try:
        for size in sorted(args.containers):
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
                containers += pool.map(lambda i: client.containers.run(
                    IMAGE, "sleep 100000", name=f"ndbench-load-{run_id}-{i}", detach=True, network=network.name,
                    dns=[gateway], labels={LABEL: run_id}), range(len(containers), size))
            print(f"{size} containers running ({time.monotonic() - started:.0f} s to start)", flush=True)
            one = timed([*netdoctor, "--label", f"{LABEL}={run_id}", "--fail-on", "never"])
            errors = sum(1 for f in one["report"]["findings"] if f["status"] == "error")
            print(f"  check --label over {size}, every check: {one['seconds']:.1f} s, peak RSS {one['rss_mib']:.0f} MiB, "
                  f"{len(one['report']['findings'])} findings, {judged(one['report'])}/{size} judged, {errors} errors",
                  flush=True)
        names = [c.name for c in containers]
        share = args.per_process
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(args.processes) as pool:
            runs = list(pool.map(lambda i: timed([*netdoctor, "--fail-on", "never",
                                                  *[names[(i * share + k) % len(names)] for k in range(share)]]),
                                 range(args.processes)))
        errors = sorted({f"{f['check']}: {f['title']}" for r in runs for f in r["report"]["findings"] if f["status"] == "error"})
        failed = [r for r in runs if r["code"] != 0 or any(f["status"] == "error" for f in r["report"]["findings"])]
        print(f"  {args.processes} processes at once, {share} containers each: {time.monotonic() - started:.1f} s in all, "
              f"slowest {max(r['seconds'] for r in runs):.1f} s, peak RSS {max(r['rss_mib'] for r in runs):.0f} MiB, "
              f"{len(runs) - len(failed)}/{len(runs)} succeeded" + "".join(f"\n    error: {e}" for e in errors[:10]),
              flush=True)
    finally:
        with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(lambda c: c.remove(force=True), containers))
        resolver.stop()
        try:
            network.remove()
        except docker.errors.APIError as exc:  # Docker 20.10 may leak an endpoint count under load
            print(f"network {network.name} left behind: {exc.explanation}", file=sys.stderr)


if __name__ == "__main__":
    main()
