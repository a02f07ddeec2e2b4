"""The library core: from a Request to a stream of findings. The `check` and `tui` commands, the demo and
Python users all call `diagnose()`; none of them plans or runs checks itself.

    from netdoctor import Request, diagnose
    with diagnose(Request(targets=("web",), checks=("dns", "mtu"))) as run:
        for finding in run:
            print(finding.status.value, finding.check, finding.title)

`diagnose` checks the request against what exists (check ids, targets, selectors, privileges) and raises
BadInput or CannotCheck before anything runs; iterating the returned Diagnosis runs the checks and yields
findings as they complete, with the config's acceptances applied and root causes linked (a finding that
another check may still explain waits for that check, then comes with `caused_by` set: netdoctor/causes.py),
then one finding per container that changed while it was being diagnosed.
"""

from __future__ import annotations

import time
from typing import Iterator

from netdoctor.causes import Linker
from netdoctor.context import Session
from netdoctor.dockerapi import ContainerNotFound, DockerSession, DockerUnavailable
from netdoctor.errors import BadInput, CannotCheck
from netdoctor.gate import Gate
from netdoctor.model import CheckInfo, Finding, Fix, Need, Status, about_run
from netdoctor.registry import Catalogue, discover
from netdoctor.request import Request
from netdoctor.runner import load_error_findings, plan, run_jobs
from netdoctor.targets import Target, TargetError, container_target, resolve

TARGET_HINT = "name a target (a container, pid:PID, netns:NAME, host, self) or select containers with --all, " \
              "--label, --compose-project or --network"


def select_checks(catalogue: Catalogue, request: Request) -> list[CheckInfo]:
    unknown = [i for i in request.checks + request.skip if catalogue.get(i) is None]
    if unknown:
        raise BadInput(f"unknown check id(s): {', '.join(unknown)} (see `netdoctor list`)")
    chosen = [catalogue.get(i) for i in dict.fromkeys(request.checks)] if request.checks else list(catalogue.checks)
    chosen = [c for c in chosen if c.id not in request.skip]
    if not chosen:
        raise BadInput("no check left to run: --skip removes every check selected"
                       + (f" ({', '.join(request.checks)})" if request.checks else ""))
    unaccepted = sorted({a.check for a in request.config.accept if catalogue.get(a.check) is None})
    if unaccepted:
        raise BadInput(f"{request.config.path}: accept names unknown check id(s) {', '.join(unaccepted)} "
                       "(see `netdoctor list`)")
    return chosen


class Diagnosis:
    """A planned run: `targets` resolved, `jobs` (check, target) planned. Iterate it once for the findings;
    close it (or use it as a context manager) to release the namespace threads."""

    def __init__(self, request: Request, catalogue: Catalogue, checks: list[CheckInfo], session: Session,
                 targets: list[Target], troubles: list[Finding]):
        self.request = request
        self.catalogue = catalogue
        self.checks = checks
        self.session = session
        self.targets = targets
        self.jobs = plan(checks, targets, session.host_target, request.checks_named) if targets else []
        self.gate = Gate(request.fail_on, request.config.path)
        self.duration_ms = 0.0
        self._troubles = troubles  # targets named but not diagnosable (tolerant mode)

    def __iter__(self) -> Iterator[Finding]:
        started = time.monotonic()
        try:
            yield from load_error_findings(self.catalogue.errors)
            yield from self._troubles
            yield from container_states(self.targets)
            if self.targets:
                # root causes (netdoctor/causes.py): a finding another check may still explain waits for it
                linker = Linker((info.id, target.label) for info, target in self.jobs)
                for info, target, findings in run_jobs(self.checks, self.targets, self.session, self.request.checks_named):
                    yield from linker.add(info.id, target.label, [self.request.config.apply(f) for f in findings])
                yield from linker.finish()
                yield from vanished(self.targets, self.session)
        finally:
            self.duration_ms = (time.monotonic() - started) * 1000

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "Diagnosis":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def diagnose(request: Request, session: Session | None = None, tolerant: bool = False,
             catalogue: Catalogue | None = None) -> Diagnosis:
    """Plan the diagnosis `request` asks for. Raises BadInput (unknown check, target or selector) or
    CannotCheck (no privilege, Docker unreachable while it is needed). With `tolerant`, a named target that
    cannot be diagnosed becomes an `error` finding instead (the TUI keeps going). `session` replaces the
    machine: tests hand in one answering from constructed facts. `catalogue`: the checks to choose from
    (default: the built-in ones and the plugins installed). A --swarm or -H/--context request returns a
    netdoctor.swarm.cluster.Gathering instead: the same interface, its findings made by netdoctor's image on
    each engine and labelled with it."""
    catalogue = catalogue or discover()
    checks = select_checks(catalogue, request)
    if request.swarm or request.remote:  # netdoctor's image diagnoses each engine where it runs; gathered here
        from netdoctor.swarm.cluster import gather

        return gather(request, catalogue, checks)
    if not request.targets and not request.selector.active and not tolerant:
        raise BadInput(TARGET_HINT)
    session = session or Session(request.options, DockerSession(request.docker_host))
    try:
        if not session.privileged:
            raise CannotCheck("netdoctor needs root to enter network namespaces and read the firewall: run it with sudo")
        if any(Need.IPTABLES in info.needs for info in checks):
            # the host's firewall programs run on the other core while targets are resolved and checks start
            session.prefetch(lambda: session.host.firewall)
        targets, troubles = _resolve(request, session, tolerant)
    except BaseException:
        session.close()
        raise
    return Diagnosis(request, catalogue, checks, session, targets, troubles)


def _resolve(request: Request, session: Session, tolerant: bool) -> tuple[list[Target], list[Finding]]:
    targets, troubles = [], []
    for spec in request.targets:
        try:
            targets.append(resolve(spec, session.docker, session.host_target))
        except (TargetError, ContainerNotFound) as exc:
            if not tolerant:
                raise
            troubles.append(about_run(f"{spec} cannot be diagnosed: it does not exist (any more)", str(exc), target=spec,
                                      key="unresolved"))
        except DockerUnavailable as exc:
            if not tolerant:
                raise DockerUnavailable(f"cannot check containers: {exc}") from None
            troubles.append(about_run(f"{spec} cannot be diagnosed: Docker is not reachable", str(exc), target=spec,
                                      key="unresolved"))
    if request.selector.active:
        from netdoctor.selection import select

        try:
            targets += [container_target(c, session.docker) for c in select(session.docker, request.selector)]
        except DockerUnavailable as exc:
            raise DockerUnavailable(f"cannot select containers: {exc}") from None
    return list({t.label: t for t in targets}.values()), troubles  # named and selected too: checked once


def container_states(targets: list[Target]) -> Iterator[Finding]:
    """A container named but not running normally is itself the finding: paused (frozen, it answers
    nothing), restarting (a crash loop), exited with an error, dead, or never started because its start
    failed. One that exited cleanly or was only created is not a fault: its checks say why they skip."""
    for target in targets:
        c = target.container
        if c is None or c.running:
            continue
        logs = f"docker logs --tail 50 {c.name}"
        if c.paused:
            fix = Fix(f"Unpause {c.name} (paused by `docker pause`, or by a tool that froze it).", (f"docker unpause {c.name}",))
            detail = ("Its network namespace is there and was read, but nothing in the container runs: connections "
                      "to it hang, it sends nothing. Checks that need traffic say so and skip.")
        elif c.status == "restarting":
            fix = Fix(f"Find out why {c.name} stops: its last output and exit code.", (logs,))
            detail = "Between restarts it has no network namespace; while it runs, only briefly."
        elif c.status == "dead" or (c.status == "exited" and c.exit_code) or (c.status == "created" and c.error):
            fix = Fix(f"Find out why {c.name} stopped, then start it.", (logs, f"docker start {c.name}"))
            detail = "A stopped container has no network namespace: only its configuration and the host were checked."
        else:
            continue
        yield about_run(c.state_text, detail, target=target.label, status=Status.FAIL, key=c.status, fix=fix)


def vanished(targets: list[Target], session: Session) -> Iterator[Finding]:
    """An error finding for each container that was removed, stopped or restarted while its checks ran:
    what the checks saw is then a snapshot of something that no longer exists. One Engine API call for
    all of them; one still running is the one diagnosed while the namespace of the process it had is there."""
    watched = [t for t in targets if t.container is not None and t.container.has_namespace]
    if not watched:
        return
    try:
        states = session.docker.states([t.container.id for t in watched])
    except DockerUnavailable:
        return  # cannot tell; the checks that needed Docker already said so
    for target in watched:
        before = target.container
        state = states.get(before.id)
        if state is None:
            change = "was removed"
        elif state not in ("running", "paused"):
            change = f"stopped ({state})"
        elif target.pid == before.pid and not session.namespace_exists(target.netns_path):
            change = "restarted"  # the process whose namespace was read is gone, and another one runs
        else:
            continue
        yield about_run(f"container {before.name} {change} during the diagnosis",
                        "The other findings describe it as it was when the checks ran; diagnose it again.",
                        target=target.label, key="vanished")
