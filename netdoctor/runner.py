"""Run checks concurrently against targets and yield findings as they complete.

(check, target) jobs run on MAX_PARALLEL daemon worker threads. A check that raises becomes an `error`
finding; one that outlives its deadline while the run makes no progress (see Progress) is reported as
hung and abandoned (threads cannot be killed;
being daemons they do not hold the process open) and a new worker takes its place for the jobs still
waiting, so hung checks never starve the rest.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from dataclasses import replace
from typing import Iterable, Iterator

from netdoctor.context import CheckContext, Session, TargetPaused
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
        if need is Need.IPTABLES and not (session.has_tool("iptables-save") or session.has_tool("nft")):
            return "neither iptables nor nftables (nft) is installed on this host: its firewall cannot be read"
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
    findings: list[Finding] = []
    try:
        findings.extend(info.func(ctx) or ())  # one by one: what was found before a failure is kept
    except TargetPaused as exc:
        return findings + [ctx.skip(f"{info.title}: not probed, the container is paused", detail=str(exc), key="paused")]
    except Exception as exc:
        gone = _gone(target, session)
        if gone:  # removed or stopped mid-run: whatever the check tripped over, this is why
            return findings + [ctx.finding(Status.ERROR, f"{info.title}: target vanished", detail=gone, key="target-vanished")]
        return findings + [_failure(ctx, info, exc)]
    return findings or [ctx.finding(Status.ERROR, f"{info.title}: produced no finding",
                                    detail="a check must yield at least one finding", key="no-finding")]


def _failure(ctx: CheckContext, info: CheckInfo, exc: Exception) -> Finding:
    if isinstance(exc, DockerUnavailable):
        return ctx.finding(Status.ERROR, f"{info.title}: Docker not reachable", detail=str(exc), key="docker-unreachable")
    if isinstance(exc, NamespaceError):
        return ctx.finding(Status.ERROR, f"{info.title}: could not enter a namespace", detail=str(exc), key="netns-unavailable")
    # a buggy check must not stop the others
    where = traceback.extract_tb(exc.__traceback__)[-1]
    return ctx.finding(Status.ERROR, f"{info.title}: the check crashed",
                       detail=f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})", key="crashed")


def _gone(target: Target, session: Session) -> str:
    """Why the target is not there any more ("" while it is): its namespace file went with its process."""
    if target.netns_path is None or session.namespace_exists(target.netns_path):
        return ""
    what = f"container {target.container.name}" if target.container else target.label
    return f"{what} disappeared during the run ({target.netns_path} is gone): removed, stopped or restarted"


def load_error_findings(errors: Iterable[LoadError]) -> list[Finding]:
    return [about_run(f"check plugin {e.source} failed to load", e.message, key=f"plugin-{e.source}") for e in errors]


def run(checks: list[CheckInfo], targets: list[Target], session: Session, explicit: bool = False) -> Iterator[Finding]:
    """Yield findings as checks complete, in completion order."""
    for _, _, findings in run_jobs(checks, targets, session, explicit):
        yield from findings


class Progress:
    """Whether a run is moving, to tell a hung check from a slow one. Wall time alone cannot: with 20 runs
    on 2 cores, a check waiting its turn on a busy namespace thread sees nothing happen for longer than any
    deadline. The run moves when a job finishes or the process gets work done (CPU time). A job is hung
    after `deadline` seconds of neither, or after CAP deadlines whatever happens (a check spinning forever)."""

    CPU = 0.5   # seconds of CPU time that count as the run moving
    CAP = 4

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.moved()

    def moved(self) -> None:
        self._when, self._cpu = time.monotonic(), time.process_time()

    def look(self, now: float) -> None:
        """Note the work the process did since it last moved (once per look: reading CPU time costs)."""
        if time.process_time() - self._cpu >= self.CPU:
            self._when, self._cpu = now, time.process_time()

    def stalled(self, began: float, now: float) -> float:
        """How long the job started at `began` has gone without the run moving (everything past the cap)."""
        if now - began > self.CAP * self.deadline:
            return now - began
        return now - max(began, self._when)


def run_jobs(checks: list[CheckInfo], targets: list[Target], session: Session,
             explicit: bool = False) -> Iterator[tuple[CheckInfo, Target, list[Finding]]]:
    """Yield each (check, target) job with all its findings as it completes (root-cause linking needs to
    know when a check has said everything it will say)."""
    jobs = plan(checks, targets, session.host_target, explicit)
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for number in range(len(jobs)):
        todo.put(number)
    results: queue.SimpleQueue = queue.SimpleQueue()
    running: dict[int, float] = {}   # job number -> when it started, for the jobs on a worker now
    abandoned: set[int] = set()
    bookkeeping = threading.Lock()
    deadline = session.options.check_deadline
    progress = Progress(deadline)

    def worker() -> None:
        """Run queued jobs until none is left, or until the runner abandoned the one at hand (then the
        worker started in its place goes on with the queue)."""
        while True:
            try:
                number = todo.get_nowait()
            except queue.Empty:
                return
            info, target = jobs[number]
            threading.current_thread().name = f"check {info.id} {target.label}"
            with bookkeeping:
                running[number] = time.monotonic()
            findings = _run_one(info, target, session)
            with bookkeeping:
                elapsed = (time.monotonic() - running.pop(number)) * 1000
                given_up = number in abandoned
            results.put((number, [replace(f, duration_ms=elapsed) for f in findings]))
            if given_up:
                return

    def start_worker() -> None:
        # a few long-lived workers rather than a thread per job: starting hundreds of threads while the
        # first ones run costs more than the checks of 50 containers
        threading.Thread(target=worker, name="check", daemon=True).start()

    for _ in range(min(MAX_PARALLEL, len(jobs))):
        start_worker()

    pending = dict(enumerate(jobs))
    while pending:
        now = time.monotonic()
        progress.look(now)
        with bookkeeping:
            hung = [n for n, began in running.items() if progress.stalled(began, now) > deadline and n not in abandoned]
            abandoned.update(hung)
            waits = [deadline - progress.stalled(began, now) for n, began in running.items() if n not in abandoned]
        for number in hung:
            start_worker()  # the hung job keeps its worker: another one takes over the queue
            info, target = pending.pop(number)
            ctx = CheckContext(info, target, session)
            yield info, target, [replace(ctx.finding(Status.ERROR, f"{info.title}: did not finish",
                                                     detail=f"the check ran for more than {deadline:g}s while the run "
                                                            "made no progress, and was abandoned",
                                                     key="hung"), duration_ms=deadline * 1000)]
        try:
            number, findings = results.get(timeout=max(0.05, min(waits, default=0.5)))
        except queue.Empty:
            continue
        progress.moved()
        job = pending.pop(number, None)
        if job is not None:
            yield job[0], job[1], findings
