"""Load: 200 running containers checked in one run (every container judged, memory bounded, no file
descriptor or thread left behind), and 20 netdoctor processes at once on the same host, all succeeding.

The containers are ours (a network of ours, `--dns` at our resolver, so every probe stays on our bridge);
`--all` is exercised with a check that sends nothing, since it also selects other runs' containers.
Bigger loads and timings: bench/load.py.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time

import docker.errors
import pytest

from netdoctor.registry import discover
from tests.conftest import ROOT, RUN_ID, TEST_LABEL, run_cli, unique

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CONTAINERS = 200
PROCESSES = 20
LOAD_LABEL = "netdoctor.test.load"
NETDOCTOR = [sys.executable, "-m", "netdoctor"]
PEAK_RSS_MIB = 160   # measured here: 63 MiB for 200 containers with every check, 61 MiB for 10


@pytest.fixture(scope="module")
def crowd(docker_client, test_image, resolver):
    """CONTAINERS idle busybox containers on a network of ours; their names."""
    network = docker_client.networks.create(unique("load"), labels={TEST_LABEL: RUN_ID})
    labels = {TEST_LABEL: RUN_ID, LOAD_LABEL: RUN_ID}

    def start(index: int):
        return docker_client.containers.run(test_image, "sleep 100000", name=unique(f"load{index}"), detach=True,
                                            network=network.name, dns=[resolver.address], labels=labels)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        started = list(pool.map(start, range(CONTAINERS)))
    try:
        yield [c.name for c in started]
    finally:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda c: c.remove(force=True), started))
        try:
            network.remove()
        except docker.errors.APIError:  # Docker 20.10 may leak an endpoint count under load: not ours to fix
            pass


def measured(argv: list[str]) -> tuple[int, str, str, float, float]:
    """Run netdoctor; (exit code, stdout, stderr, seconds, peak RSS in MiB of that process alone)."""
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    out, err = [], []
    readers = [threading.Thread(target=lambda s, sink: sink.append(s.read()), args=pair, daemon=True)
               for pair in ((process.stdout, out), (process.stderr, err))]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    for reader in readers:
        reader.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, out[0], err[0], time.monotonic() - started, usage.ru_maxrss / 1024


def judged_targets(doc: dict) -> set[str]:
    return {f["target"] for f in doc["findings"] if f["status"] not in ("skip", "error")}


def test_every_container_of_200_is_judged_in_bounded_memory(crowd, record_property):
    """Bounded: the peak for 200 containers is the peak for 10 plus a small constant per container (the
    jobs of all targets are queued, but at most MAX_PARALLEL run at once, and facts are read per namespace)."""
    few = measured([*NETDOCTOR, "check", "--format", "json", *crowd[:10]])
    code, out, err, seconds, rss = measured([*NETDOCTOR, "check", "--label", f"{LOAD_LABEL}={RUN_ID}", "--format", "json"])
    doc = json.loads(out)
    labels = {t["target"] for t in doc["targets"]}
    assert code in (0, 1), err
    assert labels == {f"container:{name}" for name in crowd}
    assert labels <= judged_targets(doc), labels - judged_targets(doc)
    assert not [f for f in doc["findings"] if f["status"] == "error"], err
    assert {f["check"] for f in doc["findings"]} >= set(discover().ids)
    per_container = (rss - few[4]) / (CONTAINERS - 10)
    for name, value in (("check_200_seconds", seconds), ("check_200_peak_rss_mib", rss),
                        ("check_10_peak_rss_mib", few[4]), ("rss_per_container_mib", per_container)):
        record_property(name, round(value, 3))
    print(f"\ncheck of {CONTAINERS} containers, every check: {seconds:.1f} s, {len(doc['findings'])} findings, "
          f"peak RSS {rss:.0f} MiB ({few[4]:.0f} MiB for 10 containers: {per_container * 1024:.0f} KiB per container)")
    assert rss < PEAK_RSS_MIB
    assert per_container < 0.25


def test_all_selects_every_running_container(crowd):
    """--all over more than 200 running containers (ours and whoever else's: a check that sends nothing)."""
    code, out, err = run_cli("check", "--all", "--checks", "ip_forward", "--format", "json", "--fail-on", "never")
    doc = json.loads(out)
    assert code == 0, err
    assert {f"container:{name}" for name in crowd} <= judged_targets(doc)


def test_no_file_descriptor_or_thread_is_left_behind(crowd):
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    cheap = ("--checks", "ip_forward,mtu,subnet_overlap,ports,icc")  # every namespace entered, no probe waits
    run_cli("check", *crowd[:5], "--format", "json", *cheap)  # imports and caches that stay for the process's life
    time.sleep(0.5)
    fds, threads = open_fds(), threading.active_count()
    for _ in range(2):
        code, _, err = run_cli("check", "--label", f"{LOAD_LABEL}={RUN_ID}", "--format", "json", *cheap)
        assert code in (0, 1), err
    time.sleep(0.5)  # namespace threads finish their last call after the run has closed them
    assert open_fds() == fds
    assert threading.active_count() == threads


def test_20_processes_at_once_all_succeed(crowd, record_property):
    share = CONTAINERS // PROCESSES
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(PROCESSES) as pool:
        runs = list(pool.map(lambda i: measured([*NETDOCTOR, "check", "--format", "json",
                                                 *crowd[i * share:(i + 1) * share]]), range(PROCESSES)))
    seconds = time.monotonic() - started
    record_property("processes_20_seconds", round(seconds, 1))
    print(f"\n{PROCESSES} processes at once, {share} containers each, every check: {seconds:.1f} s in all, "
          f"slowest {max(r[3] for r in runs):.1f} s, peak RSS {max(r[4] for r in runs):.0f} MiB each")
    for index, (code, out, err, _, _) in enumerate(runs):
        doc = json.loads(out)
        assert code in (0, 1), err
        errors = [(f["check"], f["target"], f["title"]) for f in doc["findings"] if f["status"] == "error"]
        assert not errors, errors
        assert {f"container:{n}" for n in crowd[index * share:(index + 1) * share]} <= judged_targets(doc)
