"""Benchmark: how long `netdoctor --help`, `netdoctor check` on 1 container and on 20 containers take,
and how much memory they use at peak. Prints medians over --runs runs.

    sudo .venv/bin/python bench/bench.py [--runs 5] [--containers 20]

It starts its own busybox containers (labelled netdoctor.bench, removed at the end) with --dns pointing at
a resolver it runs itself, so every probe stays on this machine.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "netdoctor-test/busybox:latest"
LABEL = "netdoctor.bench"


def netdoctor_command() -> list[str]:
    return [sys.executable, "-m", "netdoctor"]


def measure(argv: list[str]) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MiB) of one child process."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} exited {code}")
    return elapsed, usage.ru_maxrss / 1024


def series(label: str, argv: list[str], runs: int) -> None:
    samples = [measure(argv) for _ in range(runs)]
    times = [s[0] for s in samples]
    peak = max(s[1] for s in samples)
    print(f"{label:<34} median {statistics.median(times):6.2f}s   min {min(times):6.2f}s   "
          f"max {max(times):6.2f}s   peak RSS {peak:6.1f} MiB   ({runs} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--containers", type=int, default=20)
    args = parser.parse_args()

    import docker

    from netdoctor.lab.resolver import Resolver

    subprocess.run(["bash", str(ROOT / "scripts/build-test-image.sh"), IMAGE], check=True)
    client = docker.from_env(version="auto")
    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    gateway = config.get("Gateway") or str(ipaddress.ip_network(config["Subnet"])[1])
    resolver = Resolver(gateway, 53, records={"bench.test": "192.0.2.99"}).start()
    containers = []
    try:
        for i in range(args.containers):
            containers.append(client.containers.run(IMAGE, "httpd -f -p 80", name=f"ndbench-{os.getpid()}-{i}",
                                                    detach=True, dns=[gateway], labels={LABEL: "1"},
                                                    ports={"80/tcp": None}))
        names = [c.name for c in containers]
        print(f"netdoctor benchmark: {os.cpu_count()} cores, {args.containers} busybox containers\n")
        series("netdoctor --help", netdoctor_command() + ["--help"], args.runs)
        series("netdoctor list", netdoctor_command() + ["list"], args.runs)
        series("netdoctor check (1 container)", netdoctor_command() + ["check", "--fail-on", "never", names[0]], args.runs)
        series(f"netdoctor check ({len(names)} containers)",
               netdoctor_command() + ["check", "--fail-on", "never", *names], args.runs)
    finally:
        for container in containers:
            container.remove(force=True)
        resolver.stop()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(benchmark driver itself: {own:.1f} MiB peak)")


if __name__ == "__main__":
    main()
