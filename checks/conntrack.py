from __future__ import annotations

from typing import Iterator

from netdoctor.context import CheckContext
from netdoctor.facts import conntrack
from netdoctor.model import Finding, Fix, Need, Scope, Severity, Status
from netdoctor.registry import check

WARN_RATIO = 0.80
FAIL_RATIO = 0.95
PERSIST_FILE = "/etc/sysctl.d/99-netdoctor-conntrack.conf"
DROP_COUNTERS = ("drop", "early_drop", "insert_failed")


def assess(count: int, maximum: int) -> Status:
    """How full the table is: fail above 95 %, warn above 80 %."""
    ratio = count / maximum if maximum else 1.0
    return Status.FAIL if ratio > FAIL_RATIO else Status.WARN if ratio > WARN_RATIO else Status.PASS


def _fix(ctx: CheckContext, maximum: int) -> Fix:
    bigger = maximum * 2
    return Fix(f"Raise the table size (global: set it in the initial namespace; ~300 bytes per entry, {bigger} entries "
               f"≈ {bigger * 300 // 2**20} MiB) and persist it; then find who opens so many connections (the third "
               "command lists the busiest sources) or shorten timeouts such as nf_conntrack_tcp_timeout_established.",
               (f"sudo sysctl -w net.netfilter.nf_conntrack_max={bigger}",
                f"echo 'net.netfilter.nf_conntrack_max = {bigger}' | sudo tee {PERSIST_FILE}",
                ctx.on_host("conntrack -L 2>/dev/null | grep -o 'src=[^ ]*' | sort | uniq -c | sort -rn | head"),
                ctx.on_host("conntrack -S")))


@check(id="conntrack", title="Connection-tracking table has room", scope=Scope.HOST, severity=Severity.HIGH,
       needs={Need.ROOT, Need.HOST_NETNS})
def conntrack_table(ctx: CheckContext) -> Iterator[Finding]:
    """The host's connection-tracking table must not be (nearly) full.

    Every NATed or stateful-filtered connection of a container (all bridge traffic, published ports)
    takes an entry in the host's nf_conntrack table. When nf_conntrack_count reaches nf_conntrack_max the
    kernel drops the first packet of new connections ("nf_conntrack: table full, dropping packet" in
    dmesg): containers see random connect timeouts and DNS failures while established connections go on,
    typically on busy proxies, scanners, or hosts flooded with short UDP flows.

    netdoctor reads net.netfilter.nf_conntrack_count and nf_conntrack_max in the host namespace
    (warn above 80 %, fail above 95 %) and the kernel's drop counters (drop, early_drop,
    insert_failed) from /proc/net/stat/nf_conntrack, which show whether the table has already overflowed.
    The count is per network namespace; the maximum is global (read-only outside the initial namespace).
    Without the nf_conntrack module nothing is tracked and the check only says so.

    Fix: `sysctl -w net.netfilter.nf_conntrack_max=N` (persist in /etc/sysctl.d/), and find the source
    of the connections (`conntrack -L`, `conntrack -S`) or shorten conntrack timeouts.
    """
    count, maximum = ctx.host.sysctl("net.netfilter.nf_conntrack_count"), ctx.host.sysctl("net.netfilter.nf_conntrack_max")
    if count is None or maximum is None:
        yield ctx.info("nf_conntrack is not loaded: the host tracks no connections, so its table cannot fill up",
                       evidence={"host_netns": ctx.host.path})
        return
    used, size = int(count), int(maximum)
    stats = ctx.host.read(conntrack.read_stats) or {}
    drops = {name: stats.get(name, 0) for name in DROP_COUNTERS}
    evidence = {"nf_conntrack_count": used, "nf_conntrack_max": size, "percent_used": round(100 * used / size, 1) if size else None,
                "nf_conntrack_buckets": ctx.host.sysctl("net.netfilter.nf_conntrack_buckets"), **drops,
                "host_netns": ctx.host.path}
    status = assess(used, size)
    dropped = sum(drops.values())
    history = (f" The kernel has already dropped or evicted {dropped} new connections for lack of room "
               f"({', '.join(f'{k} {v}' for k, v in drops.items() if v)}).") if dropped else ""
    if status is Status.PASS:
        if dropped:
            yield ctx.info(f"Conntrack table {evidence['percent_used']} % full now, but it has overflowed before",
                           detail=history.strip(), evidence=evidence, fix=_fix(ctx, size))
        else:
            yield ctx.ok(f"Conntrack table {used}/{size} ({evidence['percent_used']} %) has room", evidence=evidence)
        return
    yield ctx.finding(status, f"Conntrack table {evidence['percent_used']} % full ({used} of {size})",
                      detail=("New connections are being dropped: containers see connect timeouts and failed DNS lookups."
                              if status is Status.FAIL else
                              "A burst of new connections will fill it; then the kernel drops their first packets.")
                      + history, evidence=evidence, fix=_fix(ctx, size),
                      key="table-full" if status is Status.FAIL else "table-filling")
