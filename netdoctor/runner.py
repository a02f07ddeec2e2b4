"""Run checks concurrently against targets and yield findings as they complete.

Each (check, target) job runs on its own daemon thread, at most MAX_PARALLEL at a time. A check that
raises becomes an `error` finding; one that outlives its deadline is reported as hung and abandoned
(threads cannot be killed; being daemons they do not hold the process open) and its slot goes to the
jobs still waiting, so hung checks never starve the rest.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from dataclasses import replace
from typing import Iterable, Iterator

from netdoctor.context import CheckContext, Session
from netdoctor.dockerapi import DockerUnavailable
from netdoctor.model import CheckInfo, Finding, Need, Scope, Status, about_run
from netdoctor.netns import NamespaceError
from netdoctor.registry import LoadError
from netdoctor.targets import Target

MAX_PARALLEL = 16


def plan(checks: Iterable[CheckInfo], targets: list[Target], host: Target, explicit: bool) -> list[tuple[CheckInfo, Target]]:
    """Which check runs on which target. HOST checks run once, on the host. CONTAINER checks run on
    container targets; on other targets only when the user asked for them by name, or when the target is
    a container netdoctor could not identify (both to say why they skip)."""
    jobs = []
    for info in checks:
        if info.scope is Scope.HOST:
            jobs.append((info, host))
            continue
        for target in targets:
            if info.scope is Scope.CONTAINER and target.container is None and not explicit and not target.unidentified:
                continue
            jobs.append((info, target))
    return jobs


def unmet_need(info: CheckInfo, target: Target, session: Session) -> str | None:
    """Why this check cannot run on this target, or None. The runner asks; checks never test privileges."""
    if info.scope is Scope.CONTAINER and target.container is None and target.unidentified:
        return target.unidentified
    for need in sorted(info.needs, key=lambda n: n.value):
        if need is Need.ROOT and not session.privileged:
            return "needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN): run netdoctor with sudo"
        if need is Need.DOCKER and target.container is None:
            return f"only applies to Docker containers; {target.label} is not one"
        if need is Need.NETNS:
            if target.netns_path is None:
                return target.unavailable or f"{target.label} has no network namespace"
            if not session.namespace_exists(target.netns_path):
                raise TargetVanished(f"{target.label} disappeared during the run ({target.netns_path} is gone)")
            try:
                session.view(target.netns_path, target.label)
            except (NamespaceError, OSError) as exc:
                return str(exc)
        if need is Need.HOST_NETNS:
            try:
                session.host  # noqa: B018  (entering is the test)
            except (NamespaceError, OSError) as exc:
                return f"cannot read the host's network namespace: {exc.strerror or exc}"
        if need is Need.IPTABLES and not session.has_tool("iptables-save"):
            return "iptables-save is not installed on this host"
    return None


class TargetVanished(Exception):
    """The target existed when named but is gone now (container removed, process exited)."""


def _run_one(info: CheckInfo, target: Target, session: Session) -> list[Finding]:
    ctx = CheckContext(info, target, session)
    try:
        reason = unmet_need(info, target, session)
    except TargetVanished as exc:
        return [ctx.finding(Status.ERROR, f"{info.title}: target vanished", detail=str(exc), key="target-vanished")]
    if reason:
        return [ctx.skip(f"{info.title}: skipped", detail=reason, key="skipped")]
    try:
        findings = list(info.func(ctx) or ())
    except DockerUnavailable as exc:
        return [ctx.finding(Status.ERROR, f"{info.title}: Docker not reachable", detail=str(exc), key="docker-unreachable")]
    except NamespaceError as exc:
        return [ctx.finding(Status.ERROR, f"{info.title}: could not enter a namespace", detail=str(exc), key="netns-unavailable")]
    except Exception as exc:  # a buggy check must not stop the others
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return [ctx.finding(Status.ERROR, f"{info.title}: the check crashed",
                            detail=f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})", key="crashed")]
    return findings or [ctx.finding(Status.ERROR, f"{info.title}: produced no finding",
                                    detail="a check must yield at least one finding", key="no-finding")]


def load_error_findings(errors: Iterable[LoadError]) -> list[Finding]:
    return [about_run(f"check plugin {e.source} failed to load", e.message, key=f"plugin-{e.source}") for e in errors]


def run(checks: list[CheckInfo], targets: list[Target], session: Session, explicit: bool = False) -> Iterator[Finding]:
    """Yield findings as checks complete, in completion order."""
    jobs = plan(checks, targets, session.host_target, explicit)
    results: queue.SimpleQueue = queue.SimpleQueue()
    slots = threading.Semaphore(MAX_PARALLEL)
    started: dict[int, float] = {}
    finished: set[int] = set()
    abandoned: set[int] = set()
    bookkeeping = threading.Lock()  # decides who gives a job's slot back: the job, or the runner abandoning it
    deadline = session.options.check_deadline

    def worker(number: int, info: CheckInfo, target: Target) -> None:
        slots.acquire()
        started[number] = time.monotonic()
        try:
            findings = _run_one(info, target, session)
            elapsed = (time.monotonic() - started[number]) * 1000
            results.put((number, [replace(f, duration_ms=elapsed) for f in findings]))
        finally:
            with bookkeeping:
                finished.add(number)
                if number not in abandoned:
                    slots.release()

    def abandon(number: int) -> bool:
        """Give a hung job's slot to the jobs still waiting; False when it finished meanwhile."""
        with bookkeeping:
            if number in finished:
                return False
            abandoned.add(number)
        slots.release()
        return True

    for number, (info, target) in enumerate(jobs):
        threading.Thread(target=worker, args=(number, info, target), name=f"check {info.id} {target.label}", daemon=True).start()

    pending = dict(enumerate(jobs))
    while pending:
        now = time.monotonic()
        hung = [n for n in pending if n in started and now - started[n] > deadline]
        for number in hung:
            if not abandon(number):
                continue  # its findings are in the queue
            info, target = pending.pop(number)
            ctx = CheckContext(info, target, session)
            yield replace(ctx.finding(Status.ERROR, f"{info.title}: did not finish",
                                      detail=f"the check ran longer than {deadline:g}s and was abandoned", key="hung"),
                          duration_ms=deadline * 1000)
        waits = [started[n] + deadline - now for n in pending if n in started]
        try:
            number, findings = results.get(timeout=max(0.05, min(waits, default=0.5)))
        except queue.Empty:
            continue
        if pending.pop(number, None) is not None:
            yield from findings
