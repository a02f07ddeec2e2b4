"""The only place that calls setns(2).

setns changes the calling *thread* only, and the thread stays there, so every namespace gets dedicated
threads that enter it once and then serve calls; a shared pool thread is never moved. Sockets created on
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
    """Threads living in one network namespace, running the callables they are given.

    The first thread enters at once (so a namespace that cannot be entered fails here); more are started,
    up to MAX_THREADS, when calls arrive while every thread is busy: a slow fact (iptables-save, a netlink
    dump of a busy host) does not hold up a sysctl read or the socket a probe needs. Each thread enters
    the namespace itself and stays there."""

    MAX_THREADS = 2

    def __init__(self, path: str):
        self.path = path
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._waiting = 0   # threads waiting for a call
        self._pending = 0   # calls queued, not yet taken by a thread
        self._closed = False
        ready = threading.Event()
        errors: list[NamespaceError] = []
        self._start(ready, errors)
        ready.wait()
        if errors:
            raise errors[0]

    def _start(self, ready: threading.Event | None = None, errors: list | None = None) -> None:
        self._threads += 1
        threading.Thread(target=self._serve, args=(ready, errors), name=f"netns {self.path}", daemon=True).start()

    def _serve(self, ready: threading.Event | None, errors: list | None) -> None:
        try:
            _enter(self.path)
        except NamespaceError as exc:
            with self._lock:
                self._threads -= 1
            if errors is not None:
                errors.append(exc)
            return  # a later thread that cannot enter (the namespace went away) leaves the calls to the others
        finally:
            if ready is not None:
                ready.set()
        while True:
            with self._lock:
                self._waiting += 1
            item = self._calls.get()
            with self._lock:
                self._waiting -= 1
                self._pending -= item is not None
            if item is None:
                return
            func, args, future = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func(*args))
                except BaseException as exc:  # handed to the caller, who decides
                    future.set_exception(exc)

    def submit(self, func: Callable[..., T], *args: Any) -> "Future[T]":
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise NamespaceError(0, f"the namespace thread of {self.path} was closed")
            self._pending += 1
            if self._pending > self._waiting and self._threads < self.MAX_THREADS:
                self._start()
            self._calls.put((func, args, future))
        return future

    def call(self, func: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        return self.submit(func, *args).result(timeout)

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
        """A socket that lives in this namespace (created on a namespace thread)."""
        return self.call(socket.socket, family, type, proto)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._calls.put(None)
