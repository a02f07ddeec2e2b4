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
            return parse_stats(f.read())
    except OSError:
        return None


def parse_stats(text: str) -> dict[str, int]:
    """The file's header names the columns; a value that is not hexadecimal (a kernel format netdoctor does
    not know) is left out rather than guessed."""
    header, *rows = text.split("\n")
    names = header.split()
    totals = dict.fromkeys(names, 0)
    for row in filter(None, rows):
        for name, value in zip(names, row.split()):
            try:
                number = int(value, 16)
            except ValueError:
                continue
            totals[name] = number if name == "entries" else totals[name] + number
    return totals
