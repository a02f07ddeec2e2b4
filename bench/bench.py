"""Benchmark: netdoctor against the raw dump a user would otherwise take, side by side in one run.

    sudo .venv/bin/python bench/bench.py [--runs 7] [--containers 50] [--python PATH ...] [--image IMAGE]

It makes its own user-defined bridge network and starts --containers busybox web servers on it (each
publishes port 80), with --dns pointing at a resolver the benchmark runs itself on the network's gateway,
so every probe and every lookup stays on this machine. Then, interleaved run by run so that load on the
machine hits every series alike, it times:

- `netdoctor --help`;
- `netdoctor check` (every check) on the first container, and a netshoot-style sidecar on the same
  container: `docker run --rm --network container:web` of the busybox test image printing resolv.conf,
  `ip route`, `ip addr`, one ping of the gateway and an nslookup against the container's nameserver;
- `netdoctor check --label netdoctor.bench=ID` over all the containers (the selection code path of
  `--all`, restricted to the benchmark's own containers: the engine is shared), and the same sidecar run
  once per container, one after the other.

It prints medians, min, max and peak RSS, the ratios against the targets, and the image's size. The
containers and the network are removed at the end. `--python` (repeatable) times the netdoctor installed
in each interpreter's environment, e.g. a venv with an older version, in the same run: a before/after
table under the same conditions.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "netdoctor-test/busybox:latest"
LABEL = "netdoctor.bench"
NAME = "bench.test"
# The raw dump: what a user pastes into a netshoot sidecar to look at a container's network by hand.
DUMP = ("cat /etc/resolv.conf; ip route; ip addr; ping -c 1 -W 1 {gateway}; "
        "nslookup " + NAME + " $(awk '/^nameserver/ {{print $2; exit}}' /etc/resolv.conf)")
TARGETS = {"check_1": 1.0, "check_n": 0.1, "help_ms": 100, "rss_mib": 60, "image_mb": 120}


@dataclass
class Series:
    label: str
    times: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def line(self, with_rss: bool = True) -> str:
        memory = f"   peak RSS {max(self.rss):6.1f} MiB" if with_rss else ""
        return (f"{self.label:<46} median {self.median:6.3f}s   min {min(self.times):6.3f}s   "
                f"max {max(self.times):6.3f}s{memory}   ({len(self.times)} runs)")


def measure(argv: list[str], env: dict | None = None, allowed: tuple[int, ...] = (0, 1)) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MiB) of one child process (its largest process, children included)."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in allowed:
        raise SystemExit(f"{' '.join(argv)} exited {code}: {stderr.decode(errors='replace').strip()[-500:]}")
    return elapsed, usage.ru_maxrss / 1024


def sequence(argvs: list[list[str]]) -> tuple[float, float]:
    """Wall time of running the commands one after the other (a user taking one dump per container)."""
    started = time.perf_counter()
    peak = max(measure(argv, allowed=(0,))[1] for argv in argvs)
    return time.perf_counter() - started, peak


def image_size_mb(image: str) -> float | None:
    done = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image], capture_output=True, text=True)
    return int(done.stdout) / 1e6 if done.returncode == 0 else None


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "OVER"


def report(python: str, runs: dict[str, Series], count: int) -> None:
    """The series of one netdoctor install and its ratios to the sidecar's."""
    print(f"\nnetdoctor from {python}:")
    for key in ("help", "check_1", "check_n"):
        print("  " + runs[key].line())
    one = runs["check_1"].median / runs["sidecar_1"].median
    many = runs["check_n"].median / runs["sidecar_n"].median
    help_ms = runs["help"].median * 1000
    rss = max(max(runs["check_1"].rss), max(runs["check_n"].rss))
    print(f"  check 1 container / 1 sidecar            {one:6.2f}x  (<= {TARGETS['check_1']}x)  {verdict(one, TARGETS['check_1'])}")
    print(f"  check {count} containers / {count} sidecars        {many:6.3f}x  (<= {TARGETS['check_n']}x)  "
          f"{verdict(many, TARGETS['check_n'])}")
    print(f"  netdoctor --help                         {help_ms:6.0f} ms (<= {TARGETS['help_ms']} ms) "
          f"{verdict(help_ms, TARGETS['help_ms'])}")
    print(f"  peak RSS (1 and {count} containers)          {rss:6.1f} MiB (<= {TARGETS['rss_mib']} MiB) "
          f"{verdict(rss, TARGETS['rss_mib'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--python", action="append", help="interpreter whose installed netdoctor is timed "
                                                          "(repeatable; default: this one)")
    parser.add_argument("--image", default="netdoctor:latest", help="netdoctor image whose size is reported")
    args = parser.parse_args()
    pythons = args.python or [sys.executable]

    import docker

    from netdoctor.lab.resolver import Resolver

    subprocess.run(["bash", str(ROOT / "scripts/build-test-image.sh"), IMAGE], check=True, stdout=subprocess.DEVNULL)
    client = docker.from_env(version="auto")
    run_id = uuid.uuid4().hex[:8]
    network = client.networks.create(f"ndbench-{run_id}", driver="bridge", labels={LABEL: run_id})
    containers = []
    resolver = None
    try:
        network.reload()
        gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
        resolver = Resolver(gateway, 53, records={NAME: "192.0.2.99"}).start()  # ours: nothing leaves the machine
        for i in range(args.containers):
            containers.append(client.containers.run(IMAGE, "httpd -f -p 80", name=f"ndbench-{run_id}-{i}", detach=True,
                                                    network=network.name, dns=[gateway], labels={LABEL: run_id},
                                                    ports={"80/tcp": None}))
        names = [c.name for c in containers]
        env = {**os.environ, "NO_COLOR": "1"}

        def sidecar(name: str) -> list[str]:
            return ["docker", "run", "--rm", "--network", f"container:{name}", IMAGE, "sh", "-c", DUMP.format(gateway=gateway)]

        sidecars = {"sidecar_1": Series("sidecar raw dump of web"),
                    "sidecar_n": Series(f"{len(names)} sidecar raw dumps, one after the other")}
        series = {python: {"help": Series("netdoctor --help"), "check_1": Series("netdoctor check web (all checks)"),
                           "check_n": Series(f"netdoctor check --label ({len(names)} containers)"), **sidecars}
                  for python in pythons}
        print(f"netdoctor benchmark: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, {len(names)} busybox "
              f"containers on {network.name}", flush=True)
        for _ in range(args.runs):  # interleaved: a load spike hits every install and the sidecar alike
            commands = [(sidecars["sidecar_1"], lambda: measure(sidecar(names[0]), allowed=(0,))),
                        (sidecars["sidecar_n"], lambda: sequence([sidecar(n) for n in names]))]
            for python in pythons:
                netdoctor = [python, "-m", "netdoctor"]
                commands += [
                    (series[python]["help"], lambda nd=netdoctor: measure(nd + ["--help"], env)),
                    (series[python]["check_1"], lambda nd=netdoctor: measure(nd + ["check", "--fail-on", "never", names[0]], env)),
                    (series[python]["check_n"], lambda nd=netdoctor: measure(
                        nd + ["check", "--fail-on", "never", "--label", f"{LABEL}={run_id}"], env))]
            for into, measured in commands:
                elapsed, rss = measured()
                into.times.append(elapsed)
                into.rss.append(rss)
        for sidecar_series in sidecars.values():
            print("  " + sidecar_series.line(with_rss=False))
        for python in pythons:
            report(python, series[python], len(names))
        size = image_size_mb(args.image)
        if size is None:
            print(f"\nimage {args.image}: not built (bash scripts/build-image.sh)")
        else:
            print(f"\nimage {args.image}: {size:.0f} MB (<= {TARGETS['image_mb']} MB) {verdict(size, TARGETS['image_mb'])}")
    finally:
        for container in containers:
            container.remove(force=True)
        if resolver:
            resolver.stop()
        network.remove()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(benchmark driver itself: {own:.1f} MiB peak; load now {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
