"""Connection-tracking counters of a namespace, from /proc/thread-self/net/stat/nf_conntrack.

Must run on the namespace's thread (NamespaceView.read): /proc/self/net follows the main thread's
namespace, /proc/thread-self/net the calling thread's. One row per CPU, hexadecimal; "entries" is the
namespace's table size repeated on every row, the other columns are per-CPU event counters to sum.
"""

from __future__ import annotations

STAT_FILE = "/proc/thread-self/net/stat/nf_conntrack"


def read_stats() -> dict[str, int] | None:
    """Summed counters such as drop, early_drop and insert_failed; None when nf_conntrack is not loaded."""
    try:
        with open(STAT_FILE) as f:
            header, *rows = f.read().split("\n")
    except OSError:
        return None
    names = header.split()
    totals = dict.fromkeys(names, 0)
    for row in filter(None, rows):
        for name, value in zip(names, row.split()):
            totals[name] = int(value, 16) if name == "entries" else totals[name] + int(value, 16)
    return totals
