"""The only place that calls setns(2).

setns changes the calling *thread* only, and the thread stays there, so every namespace gets a dedicated
thread that enters it once and then serves calls; a shared pool thread is never moved. Sockets created on
such a thread belong to that namespace and may then be used from any thread, which is how probes keep
their blocking waits off the namespace thread.
"""

from __future__ import annotations

import ctypes
import os
import queue
import socket
import threading
from concurrent.futures import Future
from typing import Any, Callable, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NamespaceError(OSError):
    """The namespace could not be entered (gone, or not enough privilege)."""


def _enter(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NamespaceError(exc.errno, f"cannot open network namespace {path}: {exc.strerror}") from None
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            hint = " (needs CAP_SYS_ADMIN: run netdoctor as root; in a container, add --cap-add SYS_ADMIN)" if err == 1 else ""
            raise NamespaceError(err, f"cannot enter network namespace {path}: {os.strerror(err)}{hint}")
    finally:
        os.close(fd)


def namespace_inode(path: str) -> int:
    """Identity of a namespace: two paths with the same inode are the same namespace."""
    return os.stat(path).st_ino


class NamespaceWorker:
    """A thread living in one network namespace, running the callables it is given, one at a time."""

    def __init__(self, path: str):
        self.path = path
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._ready = threading.Event()
        self._error: NamespaceError | None = None
        self._thread = threading.Thread(target=self._serve, name=f"netns {path}", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error:
            raise self._error

    def _serve(self) -> None:
        try:
            _enter(self.path)
        except NamespaceError as exc:
            self._error = exc
            return
        finally:
            self._ready.set()
        while (item := self._calls.get()) is not None:
            func, args, future = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func(*args))
                except BaseException as exc:  # handed to the caller, who decides
                    future.set_exception(exc)

    def submit(self, func: Callable[..., T], *args: Any) -> "Future[T]":
        future: Future = Future()
        self._calls.put((func, args, future))
        return future

    def call(self, func: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        return self.submit(func, *args).result(timeout)

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
        """A socket that lives in this namespace (created on the namespace thread)."""
        return self.call(socket.socket, family, type, proto)

    def close(self) -> None:
        self._calls.put(None)
