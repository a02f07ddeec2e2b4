from __future__ import annotations

import ipaddress
from typing import Iterator

from netdoctor.checks import _layers as layers
from netdoctor.context import CheckContext
from netdoctor.dockerapi import ContainerNotFound
from netdoctor.facts import resolvconf
from netdoctor.fixes import merge_daemon_json, recreate
from netdoctor.facts.docker import NetworkInfo
from netdoctor.model import Finding, Fix, Need, Scope, Severity
from netdoctor.netns import NamespaceError
from netdoctor.probes import concurrently
from netdoctor.probes.dns import QueryResult
from netdoctor.probes.tcp import ConnectResult
from netdoctor.registry import check

EMBEDDED_DNS = "127.0.0.11"
LIBC_FALLBACK = "127.0.0.1"    # what glibc and musl query when resolv.conf names no nameserver
LIVENESS_QUERY = (".", "NS")   # the root zone's NS set: every recursive server answers it, and it names nobody
# ndots at or above this with at least SEARCH_WARN search domains: a name like api.example.com (2 dots) is
# first tried with every search domain, each a failed round trip, before the real lookup.
NDOTS_WARN, SEARCH_WARN = 3, 3
# Layers where the host or the target itself lost the query: their fix is the fix, not another nameserver.
HOST_SIDE_LAYERS = ("no_route", "gateway", "forwarding", "host_route", "firewall", "nat")


def _has_embedded_dns(networks: list[NetworkInfo]) -> bool:
    """Docker answers on 127.0.0.11 on user-defined networks only, never on the default bridge."""
    return any(not n.is_default_bridge and n.driver not in ("host", "null") for n in networks)


def _local_resolver(ctx: CheckContext, server: str) -> bool:
    """Something in the target's own namespace listens on server:53/udp (a resolver run in the container)."""
    wanted = ipaddress.ip_address(server.split("%")[0])
    return any(sock.proto == "udp" and sock.port == 53 and (sock.wildcard or ipaddress.ip_address(sock.address) == wanted)
               for sock in ctx.netns.facts.listeners)


def _dns_fix(ctx: CheckContext, server: str, networks: list[NetworkInfo]) -> Fix:
    """Recreate the container (a namespace: rewrite its resolv.conf) with a nameserver it can reach: the host's
    upstream resolver when the host's resolv.conf names one (printed here, never queried)."""
    c = ctx.container
    upstream = ctx.session.fact(resolvconf.host_upstream)
    use = upstream or "ADDRESS-OF-YOUR-RESOLVER"
    which = "the host's upstream resolver" if upstream else "a resolver reachable from its network"
    if c is None:
        path = resolvconf.path_of(ctx.target)
        return Fix(f"Point {ctx.target_name} at {which} in {path}.",
                   (f"printf 'nameserver %s\\n' {use} | sudo tee {path}",))
    user_net = next((n.name for n in networks if not n.is_default_bridge), None)
    rerun = recreate(c, f"{f'--network {user_net} ' if user_net else ''}--dns {use}")
    look = f"grep nameserver {' '.join(resolvconf.HOST_RESOLV_CONFS)}"
    # 127.0.0.11 forwards to the container's --dns servers, so those are what to change for it too
    if c.dns and (server in c.dns or server == EMBEDDED_DNS):
        given = " ".join(f"--dns {s}" for s in c.dns)
        return Fix(f"{c.name} was created with {given}: recreate it with --dns {use} ({which}) instead.",
                   (look, *rerun))
    return Fix(f"{server} came from the daemon's \"dns\" setting or from a resolv.conf mounted into {c.name}: set "
               f"{which} in /etc/docker/daemon.json, restart Docker and recreate {c.name} (or pass --dns {use}).",
               (look, merge_daemon_json({"dns": [use]}),
                "sudo systemctl restart docker", *rerun))


def _misplaced_loopback(ctx: CheckContext, server: str, networks: list[NetworkInfo], embedded: bool) -> str | None:
    """Why a loopback nameserver cannot work here, or None when it can."""
    ip = ipaddress.ip_address(server.split("%")[0])
    if not ip.is_loopback:
        return None
    names = ", ".join(n.name for n in networks) or "no network"
    if server == EMBEDDED_DNS:
        return None if embedded else (f"{server} is Docker's embedded DNS, which Docker provides only on user-defined "
                                      f"networks; {ctx.target_name} is on {names}")
    if ctx.target.netns_path is not None and _local_resolver(ctx, server):
        return None
    return (f"{server} is loopback inside {ctx.target_name}'s own network namespace, where no resolver listens "
            f"(typically systemd-resolved's 127.0.0.53 copied from the host)")


def _search_findings(ctx: CheckContext, conf: resolvconf.ResolvConf) -> Iterator[Finding]:
    if conf.ndots <= 1 or not conf.search:
        return
    extra = len(conf.search)
    detail = (f"With ndots:{conf.ndots}, a name with fewer than {conf.ndots} dots is tried with each of the {extra} "
              f"search domain(s) first: resolving a name like api.example.com costs {extra} failed lookup(s) per "
              f"address family (A and AAAA) before the real one, multiplying latency and upstream load.")
    fix = Fix("Lower ndots (or write names with a trailing dot, e.g. api.example.com.), and keep the search list short.",
              (f"docker run --dns-opt ndots:1 ...  # recreate {ctx.target_name} with it; compose: dns_opt: [\"ndots:1\"]",)
              if ctx.container else (ctx.in_target("cat /etc/resolv.conf"),))
    if conf.ndots >= NDOTS_WARN and extra >= SEARCH_WARN:
        yield ctx.warn(f"ndots:{conf.ndots} with {extra} search domains: most lookups go through {extra} failed attempts first",
                       detail=detail, evidence=conf.to_evidence(), fix=fix, key="search-ndots")
    else:
        yield ctx.info(f"ndots:{conf.ndots} with search domains: some names take extra lookups",
                       detail=detail, evidence=conf.to_evidence(), fix=fix, key="search-ndots")


def _query_all(ctx: CheckContext, servers: list[str], names: list[str]) -> dict[tuple[str, str], QueryResult]:
    """Every (server, name) pair at once from inside the target's namespace, each bounded by --timeout."""
    questions = [(s, n) for s in servers for n in names] if names else [(s, LIVENESS_QUERY[0]) for s in servers]
    rdtype = "A" if names else LIVENESS_QUERY[1]
    view, timeout = ctx.netns, ctx.options.timeout
    answers = concurrently(lambda q: view.query(q[0], q[1], timeout, rdtype), questions, 16)
    return dict(zip(questions, answers))


def _describe(result: QueryResult) -> str:
    label = "root NS" if result.name == LIVENESS_QUERY[0] else result.name
    return f"{label}: {result.outcome} after {result.latency_ms:.0f} ms"


def _embedded_upstreams(ctx: CheckContext) -> str:
    """Why Docker's embedded DNS may not answer: it forwards what it does not know to the container's --dns
    servers (else the host's), from inside the container's namespace."""
    upstreams = ctx.container.dns
    if not upstreams:
        return " It forwards names it does not know to the host's resolvers, from inside the container's namespace."
    loopback = [s for s in upstreams if ipaddress.ip_address(s.split("%")[0]).is_loopback]
    text = f" It forwards names it does not know to {', '.join(upstreams)} (--dns), from inside the container's namespace"
    return text + (f", where {', '.join(loopback)} is the container's own loopback and nothing answers." if loopback else ".")


def _upstream(ctx: CheckContext, server: str) -> str | None:
    """Where a query to `server` really goes: itself, or for Docker's embedded DNS the first upstream it forwards to
    from inside the container (its --dns servers that are not loopback, else the host's resolver)."""
    if not ipaddress.ip_address(server.split("%")[0]).is_loopback:
        return server
    if ctx.container is None or server != EMBEDDED_DNS:
        return None
    given = [s for s in ctx.container.dns if not ipaddress.ip_address(s.split("%")[0]).is_loopback]
    if ctx.container.dns:
        return given[0] if given else None
    return ctx.session.fact(resolvconf.host_upstream)


def _path_layer(ctx: CheckContext, server: str, outcome: str, watch, queries: int) -> layers.Layer | None:
    """Where a query that got no answer was lost, walked like a failed probe (checks/_layers.py) for UDP 53, out
    and back: the target's route, its gateway, the host's forwarding, firewall and NAT. 127.0.0.11 forwards from
    inside the container to its upstreams, so their path is the one walked. None: nothing to walk."""
    upstream = _upstream(ctx, server)
    if upstream is None or ctx.is_host_namespace:
        return None
    try:
        return layers.explain_failure(ctx, ConnectResult(upstream, 53, outcome, 0.0), proto="udp", watch=watch,
                                      packets=queries)
    except (NamespaceError, OSError):  # the host's namespace cannot be read: the query's outcome stands alone
        return None


def _server_findings(ctx: CheckContext, server: str, results: list[QueryResult], wrong: str | None,
                     networks: list[NetworkInfo], watch) -> Iterator[Finding]:
    c = ctx.container
    evidence = {"nameserver": server, "queries": [r.to_evidence() for r in results]}
    seen = "; ".join(_describe(r) for r in results)
    if wrong:
        yield ctx.fail(f"Nameserver {server} cannot answer for {ctx.target_name}",
                       detail=f"{wrong}. Queries from the target's namespace: {seen}.",
                       evidence={**evidence, "reason": wrong}, fix=_dns_fix(ctx, server, networks),
                       key=f"nameserver-misplaced:{server}")
        return
    failed = [r for r in results if not r.server_answered]
    if not failed:
        worst = max(r.latency_ms for r in results)
        yield ctx.ok(f"Nameserver {server} answers ({worst:.0f} ms)", evidence=evidence, key=f"nameserver:{server}")
        return
    outcomes = "/".join(sorted({r.outcome for r in failed}))
    embedded = (" 127.0.0.11 is Docker's embedded DNS." + _embedded_upstreams(ctx)) if server == EMBEDDED_DNS else ""
    if server == EMBEDDED_DNS:
        evidence["embedded_dns_upstreams"] = list(c.dns) or "the host's resolvers"
    silent = next((r.outcome for r in failed if r.outcome in ("timeout", "unreachable")), None)
    layer = _path_layer(ctx, server, silent, watch, len(results)) if silent else None
    if layer is None and server == EMBEDDED_DNS and any(r.outcome == "servfail" for r in failed):
        # the embedded DNS answers SERVFAIL at once when its upstream is rejected: walk the way to that upstream,
        # and keep what it finds only where the host stops it (an upstream's own failure is not the host's doing)
        walked = _path_layer(ctx, server, "servfail", watch, len(results))
        layer = walked if walked is not None and walked.name in HOST_SIDE_LAYERS else None
    lost = ""
    if layer is not None:
        evidence.update(layer=layer.name, **layer.evidence)
        lost = f" Where it is lost: {layer.summary}."
    detail = (f"Queried from inside {ctx.target_name} with a {ctx.options.timeout:g}s timeout: {seen}.{embedded}{lost} "
              "Every lookup waits for this server before trying the next one (5 s per try by default).")
    if layer is not None and layer.name in HOST_SIDE_LAYERS and layer.fix_summary:
        fix = Fix(layer.fix_summary, layer.fix_commands)
    else:
        other = _dns_fix(ctx, server, networks)
        fix = Fix(f"Check that the resolver at {server} is up and answers from {ctx.target_name}'s network "
                  f"(first command); otherwise: {other.summary}", (ctx.in_target(f"nslookup . {server}"),) + other.commands)
    yield ctx.fail(f"Nameserver {server} does not answer properly: {outcomes}"
                   + (f". Broken at: {layer.name}" if layer is not None and layer.name in HOST_SIDE_LAYERS else ""),
                   detail=detail, evidence=evidence, fix=fix, key=f"nameserver-silent:{server}")


def _resolves(results: list[QueryResult]) -> QueryResult | None:
    """What libc would get: the first server (in resolv.conf order) that answered at all decides."""
    return next((r for r in results if r.server_answered), None)


def _name_findings(ctx: CheckContext, name: str, results: list[QueryResult], embedded: bool,
                   networks: list[NetworkInfo]) -> Iterator[Finding]:
    c = ctx.container
    decisive = _resolves(results)
    evidence = {"name": name, "queries": [r.to_evidence() for r in results]}
    if decisive is None:
        return  # no server answered: the nameserver findings say why
    if decisive.addresses:
        yield ctx.ok(f"{name} resolves to {', '.join(decisive.addresses)} (from {decisive.server})", evidence=evidence,
                     key=f"name:{name}")
        return
    if name not in ctx.options.peer_names or c is None:
        yield ctx.fail(f"{name} does not resolve in {ctx.target_name}: {decisive.outcome} from {decisive.server}",
                       detail=f"{decisive.server} answered {decisive.outcome} for {name} (no address).", evidence=evidence,
                       fix=Fix(f"Check the spelling of {name} and the zone it belongs to, or point {ctx.target_name} at "
                               "a nameserver that knows it.", (ctx.in_target(f"nslookup {name} {decisive.server}"),)),
                       key=f"name-unresolved:{name}")
        return
    try:
        peer_networks = {a.network for a in ctx.docker.container(name).attachments}
    except ContainerNotFound:
        yield ctx.warn(f"Peer {name} does not resolve: there is no container named {name}", evidence=evidence,
                       fix=Fix("Name a container that exists (docker ps).", ("docker ps --format '{{.Names}}'",)),
                       key=f"peer-name:{name}")
        return
    if not embedded:
        net = f"{c.name}-{name}"
        yield ctx.warn(f"Peer {name} does not resolve: {c.name} is on the default bridge, which has no embedded DNS",
                       detail="Containers find each other by name only through Docker's embedded DNS (127.0.0.11), "
                              "which exists on user-defined networks. On the default bridge a peer is reachable by IP only.",
                       evidence={**evidence, "networks": [n.name for n in networks], "peer_networks": sorted(peer_networks),
                                 "embedded_dns": False},
                       fix=Fix(f"Put {c.name} and {name} on a user-defined network (Docker rewrites {c.name}'s resolv.conf "
                               f"to 127.0.0.11 when it joins).",
                               (f"docker network create {net}", f"docker network connect {net} {c.name}",
                                f"docker network connect {net} {name}")), key=f"peer-name:{name}")
        return
    shared = sorted(peer_networks & {n.name for n in networks})
    user_net = next(n.name for n in networks if not n.is_default_bridge)
    yield ctx.warn(f"Peer {name} does not resolve from {c.name}" + ("" if shared else ": they share no user-defined network"),
                   detail=f"Docker's embedded DNS answers only for containers on a network {c.name} is on; "
                          f"{name} is on {', '.join(sorted(peer_networks)) or 'no network'}.",
                   evidence={**evidence, "networks": [n.name for n in networks], "peer_networks": sorted(peer_networks),
                             "embedded_dns": True},
                   fix=Fix(f"Attach {name} to {user_net}.", (f"docker network connect {user_net} {name}",)),
                   key=f"peer-name:{name}")


@check(id="dns", title="Target resolves names", scope=Scope.NAMESPACE, severity=Severity.HIGH, needs={Need.ROOT})
def dns(ctx: CheckContext) -> Iterator[Finding]:
    """The target's nameservers must be reachable from its network and answer in time.

    netdoctor reads the container's resolv.conf from the host side: through /proc/PID/root (the container's
    own mount namespace) while it runs, from the ResolvConfPath Docker reports when it is stopped (then the
    live queries are skipped). A `netns:NAME` target's is /etc/netns/NAME/resolv.conf, the file
    `ip netns exec NAME` puts in place of /etc/resolv.conf; a namespace without one, the host and other
    processes are not checked (what they use is the host's own resolver configuration). It then:
    - fails a loopback nameserver outside host networking: 127.0.0.53 (systemd-resolved) or 127.0.0.1
      copied from the host point at the container's own loopback, where nothing answers. 127.0.0.11 is
      Docker's embedded DNS (a loopback address Docker NATs inside the namespace): expected on user-defined
      networks, wrong on the default bridge, which has no embedded DNS.
    - queries every nameserver from inside the target's namespace (bounded by --timeout, all at once) and
      fails on timeout, refusal or SERVFAIL, with the latency seen. A query that got no answer is walked
      like a failed probe (the target's route, its gateway, the host's forwarding, firewall and NAT), so
      the finding names where it was lost and, when that is on the host, fixes that. When 127.0.0.11 fails, the cause is
      upstream: the embedded DNS forwards to the container's --dns servers from inside its namespace, so a
      loopback --dns breaks it there too.
    - resolves the names you name: --peer containers (on the default bridge peers do not resolve by name:
      warn, with the user-defined network fix) and --resolve names. It never makes up a name to query.
      Without names, a server's liveness is tested with a query for the root zone's NS records: every
      recursive resolver answers it, and unlike a made-up name or the container's hostname it tells the
      upstream nothing about the user.
    - explains search/ndots settings that multiply lookups (ndots > 1 with search domains).

    Fix: --dns with a reachable server (daemon.json "dns" for all containers), or a user-defined network
    (`docker network create`, `docker network connect`) for embedded DNS and name resolution between peers.
    """
    c = ctx.container
    if c is None and ctx.target.unidentified:  # a container's namespace, but not which container: its file is unknown
        yield ctx.skip(f"{ctx.target.label}'s resolv.conf cannot be found", detail=ctx.target.unidentified,
                       key="no-resolv-conf")
        return
    path = resolvconf.path_of(ctx.target)
    own = f"{ctx.target.label} has no resolv.conf of its own: not checked"
    if path is None:
        yield ctx.skip(f"{c.name} has no resolv.conf yet: it has never started" if c else own,
                       detail="" if c else resolvconf.NO_OWN_RESOLV_CONF, key="no-resolv-conf")
        return
    try:
        conf = ctx.session.fact(resolvconf.read, path)
    except resolvconf.ResolvConfUnavailable as exc:
        yield ctx.skip(f"Cannot read {c.name}'s resolv.conf" if c else own,
                       detail=str(exc) if c else f"{exc}. {resolvconf.NO_OWN_RESOLV_CONF}", key="no-resolv-conf")
        return
    if c and c.network_mode == "none":
        yield ctx.info(f"{c.name} has no network (--network none): it cannot resolve names by design",
                       evidence=conf.to_evidence(), key="no-network")
        return
    if conf.invalid:
        yield ctx.fail(f"{ctx.target_name}'s resolv.conf has a nameserver line that is not an address",
                       detail=conf.invalid, evidence=conf.to_evidence(),
                       fix=Fix("Use IP addresses" + (" with --dns." if c else "."), (f"cat {path}",)),
                       key="invalid-nameserver")
        return
    host_mode = bool(c) and c.network_mode == "host"
    networks = [] if host_mode else [n for _, n in ctx.networks()]
    embedded = _has_embedded_dns(networks)
    servers = list(conf.nameservers[:resolvconf.LIBC_MAXNS]) or [LIBC_FALLBACK]
    if not conf.nameservers:
        yield ctx.info(f"{ctx.target_name}'s resolv.conf names no nameserver: libc falls back to {LIBC_FALLBACK}",
                       evidence=conf.to_evidence(), key="no-nameserver")
    if len(conf.nameservers) > resolvconf.LIBC_MAXNS:
        yield ctx.info(f"{ctx.target_name}'s resolv.conf lists {len(conf.nameservers)} nameservers; libc uses the first "
                       f"{resolvconf.LIBC_MAXNS} only", evidence=conf.to_evidence(), key="too-many-nameservers")
    yield from _search_findings(ctx, conf)
    wrong = {} if host_mode else {s: why for s in servers if (why := _misplaced_loopback(ctx, s, networks, embedded))}
    if ctx.target.netns_path is None:  # a stopped container, or its namespace not visible from here
        for server, why in wrong.items():
            yield ctx.fail(f"Nameserver {server} cannot answer for {c.name}", detail=why + ".",
                           evidence={**conf.to_evidence(), "reason": why}, fix=_dns_fix(ctx, server, networks),
                           key=f"nameserver-misplaced:{server}")
        yield ctx.skip(f"Nameservers not queried: {c.name} is {c.status}" if not c.running
                       else f"Nameservers not queried: {c.name}'s namespace is not visible",
                       detail=f"resolv.conf read from {path}; live queries need the container's network namespace."
                              + (f" {ctx.target.unavailable}" if ctx.target.unavailable else ""),
                       evidence=conf.to_evidence(), key="not-queried")
        return
    names = list(dict.fromkeys(ctx.options.peer_names + ctx.options.resolve))
    # the host firewall's counters right before the queries (a lost one is walked on the host's side only)
    try:
        watch = None if ctx.is_host_namespace else layers.watch_drops(ctx)
    except NamespaceError:  # the host's namespace is out of reach (netdoctor in a container without --pid host)
        watch = None
    results = _query_all(ctx, servers, names)
    for server in servers:
        yield from _server_findings(ctx, server, [r for (s, _), r in results.items() if s == server], wrong.get(server),
                                    networks, watch)
    for name in names:
        yield from _name_findings(ctx, name, [results[(s, name)] for s in servers], embedded, networks)
