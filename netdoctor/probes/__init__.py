"""Active probes: time-bounded, run from inside a target's namespace, aimed only at addresses that belong
to the target's own configuration (gateway, nameservers, peers) or that the user named."""

from __future__ import annotations

import threading
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def concurrently(func: Callable[[T], R], items: Iterable[T], limit: int = 8) -> list[R]:
    """`[func(item) for item in items]`, at most `limit` at a time, results in input order.

    Daemon threads rather than a ThreadPoolExecutor: the interpreter joins executor threads at exit, so a
    probe still waiting out its timeout would hold up Ctrl-C or the end of a run. Each probe bounds itself.
    """
    items = list(items)
    results: list = [None] * len(items)
    errors: list[BaseException] = []
    slots = threading.Semaphore(max(1, limit))

    def one(index: int, item: T) -> None:
        with slots:
            try:
                results[index] = func(item)
            except BaseException as exc:  # re-raised in the caller's thread below
                errors.append(exc)

    threads = [threading.Thread(target=one, args=(i, item), daemon=True) for i, item in enumerate(items)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
