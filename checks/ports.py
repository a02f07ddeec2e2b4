from __future__ import annotations

import ipaddress
from dataclasses import replace
from functools import cached_property
from typing import Iterator

from netdoctor.checks import _published as published
from netdoctor.context import CheckContext
from netdoctor.facts.docker import ContainerInfo, PublishedPort
from netdoctor.facts.namespace import Listener
from netdoctor.facts.processes import Process, process, socket_holders
from netdoctor.fixes import recreate
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.registry import check

# Services that should not face the network unauthenticated; published on every interface they do.
DATABASE_PORTS = {1433: "SQL Server", 1521: "Oracle", 2379: "etcd", 3306: "MySQL/MariaDB", 5432: "PostgreSQL",
                  5984: "CouchDB", 6379: "Redis", 8086: "InfluxDB", 9042: "Cassandra", 9200: "Elasticsearch",
                  11211: "Memcached", 27017: "MongoDB"}
# What dockerd writes into State.Error when a published port could not be bound at start.
PORT_TAKEN_ERRORS = ("port is already allocated", "address already in use")
WILDCARDS = ("", "0.0.0.0", "::")


def _clashes(listener: Listener, host_ip: str) -> bool:
    """Would binding host_ip:port fail (or be shadowed) because of this listener on the same port?
    A wildcard clashes with every address of its family; an IPv6 wildcard is dual-stack by default."""
    if not host_ip:  # Docker binds the wildcard
        return True
    held, wanted = ipaddress.ip_address(listener.address), ipaddress.ip_address(host_ip)
    if held == wanted:
        return True
    return any(a.is_unspecified and (a.version == b.version or a.version == 6) for a, b in ((held, wanted), (wanted, held)))


def _distinct(published: tuple[PublishedPort, ...]) -> list[PublishedPort]:
    """One entry per mapping: Docker lists 0.0.0.0 and :: separately for the same -p HOST:CONTAINER."""
    return list(dict.fromkeys(replace(p, host_ip="") if p.host_ip in WILDCARDS else p for p in published))


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class _Holders:
    """Who holds host ports: sockets in the host namespace with their processes, and other containers."""

    def __init__(self, ctx: CheckContext, inside: list[Listener]):
        self.ctx = ctx
        self.listeners = ctx.host.facts.listeners
        self.inside = inside

    @cached_property
    def owners(self) -> dict[int, list[Process]]:
        """Processes of the host's and the container's sockets (from the run's one walk of /proc/*/fd)."""
        fact = self.ctx.session.fact
        holders = fact(socket_holders)
        owners = {inode: [p for p in (fact(process, pid) for pid in holders.get(inode, ())) if p is not None]
                  for inode in {s.inode for s in (*self.listeners, *self.inside)}}
        return {inode: found for inode, found in owners.items() if found}

    @cached_property
    def containers(self) -> list[ContainerInfo]:
        return [c for c in self.ctx.docker.containers() if c.id != self.ctx.container.id]

    def container_at(self, ip: str | None) -> ContainerInfo | None:
        return next((c for c in self.containers if any(a.ip == ip for a in c.attachments)), None)

    def of(self, port: PublishedPort) -> list[dict]:
        """Everything but the target itself that holds port.host_port on the host, described for evidence."""
        target = self.ctx.container
        own_ips = {ip for a in target.attachments for ip in (a.ip, a.ipv6) if ip}
        found: list[dict] = []
        for listener in self.listeners:
            if listener.proto != port.proto or listener.port != port.host_port or not _clashes(listener, port.host_ip):
                continue
            socket = _endpoint(listener.address, listener.port)
            owners = self.owners.get(listener.inode, [])
            if not owners:
                found.append({"socket": socket, "holder": "a process netdoctor cannot see (another PID namespace)"})
            for proc in owners:
                if proc.name == "dockerd":
                    continue  # Docker 28+ keeps published ports bound itself (without the userland proxy)
                if proc.is_docker_proxy:
                    if proc.arg("-container-ip") in own_ips and proc.arg("-container-port") == str(port.container_port):
                        continue  # docker-proxy serving this very container: its own binding
                    other = self.container_at(proc.arg("-container-ip"))
                    found.append({"socket": socket, "holder": f"container {other.name}" if other else
                                  f"docker-proxy for {proc.arg('-container-ip')}:{proc.arg('-container-port')}",
                                  "container": other.name if other else None, **proc.to_evidence()})
                else:
                    found.append({"socket": socket, "holder": f"{proc.name} (pid {proc.pid})", **proc.to_evidence()})
        if not found and not target.running:
            # Without docker-proxy (userland-proxy=false) a running container holds its port only in Docker's allocator.
            for other in self.containers:
                for theirs in other.published:
                    if (theirs.proto, theirs.host_port) == (port.proto, port.host_port) and \
                            (not theirs.host_ip or not port.host_ip or theirs.host_ip == port.host_ip):
                        found.append({"socket": theirs.label, "holder": f"container {other.name}", "container": other.name})
        return found

    def free_port_after(self, port: PublishedPort) -> int:
        """A host port near the wanted one that nothing holds now, to put in the fix."""
        taken = {sock.port for sock in self.listeners if sock.proto == port.proto}
        taken |= {p.host_port for c in self.containers for p in c.published if p.proto == port.proto}
        candidates = list(range(port.host_port + 1, 65536)) + list(range(1024, port.host_port))  # wrap at the top
        return next(p for p in candidates if p not in taken)


def _compose_hint(ctx: CheckContext, publish: str) -> str:
    service = ctx.container.labels.get("com.docker.compose.service")
    return f" In compose, service {service}: ports: [\"{publish}\"]." if service else ""


def _host_side(ctx: CheckContext, port: PublishedPort, holders: _Holders) -> Iterator[Finding]:
    c = ctx.container
    if port.host_port == 0:
        yield ctx.ok(f"{port.container_port}/{port.proto}: Docker picks a free host port at start",
                     evidence={"published": port.label})
        return
    taken = holders.of(port)
    start_failed = not c.running and any(marker in c.error for marker in PORT_TAKEN_ERRORS)
    evidence = {"published": port.label, "host_port": port.host_port, "proto": port.proto, "holders": taken,
                "container_status": c.status, **({"container_error": c.error} if c.error else {})}
    if not taken:
        if start_failed:
            yield ctx.info(f"Host port {port.host_port}/{port.proto} is free now; {c.name}'s last start failed on a taken port",
                           detail="Whatever held the port has let it go; starting the container again should work.",
                           evidence=evidence, fix=Fix(f"Start {c.name} again.", (f"docker start {c.name}",)))
        elif c.running:
            yield ctx.ok(f"Host port {port.host_port}/{port.proto} is {c.name}'s own binding", evidence=evidence)
        else:
            yield ctx.ok(f"Host port {port.host_port}/{port.proto} is free for {c.name} to start", evidence=evidence)
        return
    who = ", ".join(f"{h['holder']} on {h['socket']}" for h in taken)
    other_containers = [h["container"] for h in taken if h.get("container")]
    processes = [h for h in taken if h.get("pid") and not h.get("container")]
    spare = holders.free_port_after(port)
    publish = f"{port.host_ip + ':' if port.host_ip else ''}{spare}:{port.container_port}"
    commands = [ctx.on_host(f"ss -{'t' if port.proto == 'tcp' else 'u'}lnp 'sport = :{port.host_port}'")]
    commands += [f"docker stop {name}" for name in other_containers]
    commands += [ctx.on_host(f"kill {h['pid']}") + f"  # {h['name']}" for h in processes]
    commands += [f"docker start {c.name}" if not c.running else f"docker restart {c.name}"]
    fix = Fix(f"Free host port {port.host_port} (stop {who}) and start {c.name} again, or publish {c.name} on "
              f"free host port {spare} instead.{_compose_hint(ctx, publish)}",
              tuple(commands) + recreate(c, f"-p {publish}", alternative=True))
    if start_failed:
        yield ctx.fail(f"{c.name} could not start: host port {port.host_port}/{port.proto} is held by {who}",
                       detail=f"Docker could not bind {port.label} when starting {c.name} (\"{c.error}\"), so the "
                              "container stays down.", evidence=evidence, fix=fix)
    elif c.running:
        yield ctx.warn(f"Host port {port.host_port}/{port.proto} is also held by {who}",
                       detail=f"{c.name} publishes {port.label}, but another socket holds the same port: depending on "
                              "how clients connect they reach one or the other, and the port is lost if Docker restarts.",
                       evidence=evidence, fix=fix)
    else:
        yield ctx.warn(f"{c.name} will not start: host port {port.host_port}/{port.proto} is held by {who}",
                       detail=f"{c.name} is {c.status}; starting it will fail with \"port is already allocated\" or "
                              "\"address already in use\".", evidence=evidence, fix=fix)


def _describe(listener: Listener, owners: dict[int, list[Process]]) -> str:
    procs = ", ".join(f"{p.name} (pid {p.pid})" for p in owners.get(listener.inode, []))
    return f"{listener.proto} {_endpoint(listener.address, listener.port)}" + (f" by {procs}" if procs else "")


def _inside(ctx: CheckContext, port: PublishedPort, listeners: list[Listener],
            owners: dict[int, list[Process]]) -> Iterator[Finding]:
    c = ctx.container
    on_port = [sock for sock in listeners if sock.proto == port.proto and sock.port == port.container_port]
    evidence = {"published": port.label, "listening_on_port": [_describe(sock, owners) for sock in on_port],
                "all_listeners": [_describe(sock, owners) for sock in listeners]}
    look = ctx.in_target(f"ss -{'t' if port.proto == 'tcp' else 'u'}lnp")
    if not on_port:
        elsewhere = sorted({sock.port for sock in listeners if sock.proto == port.proto and not sock.loopback_only})
        hint = (f" Something listens on {', '.join(map(str, elsewhere))}/{port.proto}: if that is the service, "
                f"publish that port instead." if elsewhere else "")
        commands = [f"docker logs --tail 50 {c.name}", look]
        if len(elsewhere) == 1:
            commands += recreate(c, f"-p {port.host_ip + ':' if port.host_ip else ''}{port.host_port}:{elsewhere[0]}",
                                 alternative=True)
        yield ctx.fail(f"Nothing listens on {port.container_port}/{port.proto} inside {c.name}: {port.label} leads nowhere",
                       detail=f"The host publishes {port.label}, but no socket in the container listens on "
                              f"{port.container_port}/{port.proto}: connections to the published port are refused or reset.",
                       evidence=evidence,
                       fix=Fix(f"Start the service on port {port.container_port} in {c.name} (see why it is not "
                               f"running in its logs), or publish the port it really uses.{hint}", tuple(commands)))
        return
    if all(sock.loopback_only for sock in on_port):
        addresses = ", ".join(a.ip for a in c.attachments if a.ip)
        yield ctx.fail(f"The service in {c.name} listens on loopback only: {port.label} is reset",
                       detail=f"{', '.join(evidence['listening_on_port'])} accepts connections from inside the container "
                              f"only. Published traffic arrives on the container's own address ({addresses}), "
                              "where nothing listens, so clients get a reset.",
                       evidence=evidence,
                       fix=Fix(f"Make the service in {c.name} listen on 0.0.0.0:{port.container_port} (or [::]) instead of "
                               "loopback: its bind/listen/host setting, e.g. --bind 0.0.0.0, then recreate or restart it.",
                               (look, f"docker restart {c.name}")))
        return
    yield ctx.ok(f"{c.name} listens on {port.container_port}/{port.proto} behind {port.label}", evidence=evidence)


def _exposure(ctx: CheckContext, port: PublishedPort) -> Iterator[Finding]:
    service = DATABASE_PORTS.get(port.container_port)
    if not service or port.host_ip not in WILDCARDS:
        return
    publish = f"127.0.0.1:{port.host_port}:{port.container_port}"
    yield ctx.warn(f"{service} port {port.container_port} of {ctx.container.name} is published on every host interface",
                   detail=f"{port.label} binds all addresses, so anyone who can reach this host can reach {service}, "
                          "and Docker's NAT rules bypass host firewalls such as ufw. Publish it on loopback and let "
                          "other containers use a shared network instead.",
                   evidence={"published": port.label, "host_ip": port.host_ip or "0.0.0.0", "service": service},
                   fix=Fix(f"Publish {port.container_port} on 127.0.0.1 only (-p {publish}).{_compose_hint(ctx, publish)}",
                           recreate(ctx.container, f"-p {publish}")))


@check(id="ports", title="Published ports reach a listening service", scope=Scope.CONTAINER, severity=Severity.HIGH,
       needs={Need.ROOT, Need.DOCKER, Need.HOST_NETNS})
def ports(ctx: CheckContext) -> Iterator[Finding]:
    """Every published port must be free on the host, listened on inside, and not expose a database.

    For each `-p HOST:CONTAINER` mapping netdoctor looks at both ends:
    - host side: the sockets on that port in the host's namespace (sock_diag) and the processes holding
      them (/proc/PID/fd, /proc/PID/cmdline). docker-proxy serving this container is its own binding; any other
      process, or docker-proxy for another container, is a conflict. A created container whose start
      failed ("port is already allocated", "address already in use" in its last error) is diagnosed
      from the host side alone, naming who holds the port.
    - inside: the container's listening sockets (sock_diag in its namespace). Nothing on the container
      port means the published port is refused; a service bound to 127.0.0.1/::1 only gets the
      published traffic on the container's own address, where nothing listens, and resets it.
    - the firewall (every backend, IPv4 and IPv6): a request from outside to the host port must be DNATed to
      the container (Docker's rule) and then accepted on the way into its bridge. A DNAT rule gone (the nat
      table flushed by firewalld, `iptables -t nat -F`, ufw) while docker-proxy still serves the port warns
      (the port works, but the container sees every client as the host); with no docker-proxy either
      (userland-proxy: false) it fails; a rule that drops the requests (a DOCKER-USER rule, ufw, firewalld)
      fails with that rule named.
    - exposure: a well-known database port (3306, 5432, 6379, 27017, 9200, 11211, ...) published on
      0.0.0.0 is reachable by anyone who reaches the host, past ufw/firewalld (Docker's NAT runs first).

    Fix: stop the holder or publish another host port; make the service listen on 0.0.0.0 inside;
    publish databases as `-p 127.0.0.1:HOST:CONTAINER`.
    """
    c = ctx.container
    if c.network_mode == "host":
        yield ctx.info(f"{c.name} uses host networking: nothing is published, its services bind host ports directly")
        return
    if not c.published:
        yield ctx.ok(f"{c.name} publishes no port", evidence={"exposed": list(c.exposed)})
        return
    in_netns = ctx.target.netns_path is not None  # running, and its namespace visible to us
    if in_netns:  # who holds the sockets (one walk of /proc/*/fd per run) is read while the sockets are listed
        ctx.session.prefetch(lambda: ctx.session.fact(socket_holders))
    inside = list(ctx.netns.facts.listeners) if in_netns else []
    holders = _Holders(ctx, inside)
    for port in _distinct(c.published):
        yield from _host_side(ctx, port, holders)
        if in_netns:
            yield from _inside(ctx, port, inside, holders.owners)
            yield from published.dnat(ctx, port)
        yield from _exposure(ctx, port)
    if not in_netns:
        yield ctx.skip(f"Listeners inside {c.name} not checked",
                       detail=ctx.target.unavailable or f"{c.name} is {c.status}: it has no network namespace to look into.")
