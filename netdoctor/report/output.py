"""Where reports go: standard output, or files that are written whole or not at all.

A report file is written to a temporary file next to it and renamed over the old one only once the run
is complete, so an interrupted run (Ctrl-C, SIGTERM, a full disk) leaves the previous report as it was.
Paths that are not regular files (/dev/stdout, a FIFO, /dev/null) are written directly: renaming over a
device would replace it. Standard output may be closed (`>&-`) or stop reading (`| head -1`); both are
told apart from netdoctor's own failures.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from typing import IO

from netdoctor.errors import BadInput, CannotCheck

STDOUT = "standard output"


class OutputFailed(CannotCheck):
    """A report could not be written (no space, no permission, a read-only filesystem): exit 3."""


class Sink:
    """One output's stream for a reporter: `write`/`flush` turn OS errors into OutputFailed (EPIPE on
    standard output instead marks the reader as gone and drops the rest)."""

    def __init__(self, where: str, stream: IO[str]):
        self.where = where
        self.stream = stream
        self.reader_gone = False

    def isatty(self) -> bool:
        return self.stream.isatty()

    def write(self, text: str) -> None:
        if not self.reader_gone:
            self._guard(self.stream.write, text)

    def flush(self) -> None:
        if not self.reader_gone:
            self._guard(self.stream.flush)

    def _guard(self, operation, *args) -> None:
        try:
            operation(*args)
        except BrokenPipeError:
            if self.where != STDOUT:
                raise OutputFailed(f"cannot write the report to {self.where}: its reader went away") from None
            self.reader_gone = True
            silence_stdout()
        except OSError as exc:
            if self.where == STDOUT:
                self.reader_gone = True
                silence_stdout()  # what is still buffered must not fail again when the interpreter exits
            raise OutputFailed(f"cannot write the report to {self.where}: {exc.strerror or exc}") from None

    def commit(self) -> None:
        self.flush()

    def discard(self) -> None:
        pass


class FileSink(Sink):
    """A regular file, written through a temporary file in the same directory and renamed at commit."""

    def __init__(self, path: str):
        self.final = os.path.realpath(_anchored(path))  # a symlink stays a symlink: the file it points at is replaced
        directory, name = os.path.split(self.final)
        try:
            os.makedirs(directory, exist_ok=True)
            mode = stat.S_IMODE(os.stat(self.final).st_mode) if os.path.exists(self.final) else None
            fd, self.temporary = _create_beside(directory, name)
        except OSError as exc:
            raise OutputFailed(f"cannot write the report {path}: {exc.strerror or exc}") from None
        if mode is not None:
            os.chmod(self.temporary, mode)  # the new report keeps the old one's permissions
        super().__init__(path, os.fdopen(fd, "w", encoding="utf-8"))

    def commit(self) -> None:
        self._guard(self.stream.flush)
        self._guard(os.fsync, self.stream.fileno())
        self.stream.close()
        self._guard(os.replace, self.temporary, self.final)

    def discard(self) -> None:
        try:
            self.stream.close()
        except OSError:
            pass  # e.g. ENOSPC on the last flush: the file is being thrown away anyway
        try:
            os.unlink(self.temporary)
        except FileNotFoundError:
            pass


def _create_beside(directory: str, name: str) -> tuple[int, str]:
    """A new file `.NAME.RANDOM.tmp` in `directory`, with the permissions a plain `open(path, "w")` would
    give (0666 less the umask; mkstemp would make it 0600)."""
    for _ in range(100):
        temporary = os.path.join(directory, f".{name}.{os.urandom(4).hex()}.tmp")
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), temporary
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free temporary file name")


def _anchored(path: str) -> str:
    """`path` itself, or OutputFailed when it is relative to a working directory that was deleted."""
    if not os.path.isabs(path):
        try:
            os.getcwd()
        except FileNotFoundError:
            raise OutputFailed(f"cannot write the report {path}: the working directory no longer exists "
                               "(give an absolute path)") from None
    return path


def _identity(path: str | None) -> object:
    """What an output really writes to, so that two spellings of one file are caught: (device, inode)
    when it exists (symlinks, hard links, /dev/stdout), else its absolute real path."""
    try:
        st = os.fstat(1) if path is None else os.stat(path)
        return st.st_dev, st.st_ino
    except OSError:
        pass
    if path is None:
        return STDOUT
    try:
        return os.path.realpath(path)
    except OSError:  # relative to a deleted working directory: opening it will say so
        return path


class Outputs:
    """Every destination of one run, opened before the checks run (so a bad path costs nothing), committed
    together at the end, or discarded together on any failure or interruption."""

    def __init__(self, destinations: list[tuple[str, str | None]]):
        """`destinations`: (format, path) pairs, path None for standard output."""
        self.destinations = destinations
        self.sinks: list[Sink] = []
        validate_destinations(destinations)
        try:
            for _, path in destinations:
                self.sinks.append(self._open(path))
        except BaseException:
            self.discard()
            raise

    @staticmethod
    def _open(path: str | None) -> Sink:
        if path is None:
            if sys.stdout is None:
                raise OutputFailed("standard output is closed, so the report has nowhere to go: "
                                   "write it to a file with -o FILE")
            return Sink(STDOUT, sys.stdout)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise OutputFailed(f"cannot write the report {path}: {exc.strerror}") from None
        if st is not None and not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
            try:  # a device or FIFO (/dev/stdout, /dev/null, a process substitution): written in place
                return Sink(path, open(path, "w", encoding="utf-8"))
            except OSError as exc:
                raise OutputFailed(f"cannot write the report {path}: {exc.strerror}") from None
        return FileSink(path)

    @property
    def reader_gone(self) -> bool:
        """Standard output's reader stopped reading (`| head -1`) before the report was complete."""
        return any(sink.reader_gone for sink in self.sinks)

    def commit(self) -> None:
        try:
            for sink in self.sinks:
                sink.commit()
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        for sink in self.sinks:
            sink.discard()


def validate_destinations(destinations: list[tuple[str, str | None]]) -> None:
    """BadInput for a report path that is a directory, or two reports bound for the same file (also when
    spelt differently: a symlink, a hard link, ./x and x, /dev/stdout beside standard output)."""
    seen: dict[object, str] = {}
    for fmt, path in destinations:
        if path is not None and os.path.isdir(path):
            raise BadInput(f"the report path {path} is a directory: name a file")
        if path is not None and os.path.exists(path) and os.path.samefile(path, os.devnull):
            continue  # any number of reports may be thrown away
        identity = _identity(path)
        where = path or STDOUT
        if identity in seen:
            raise BadInput(f"two reports would be written to the same place: {seen[identity]} and {fmt} to {where}; "
                           "give each --output/--report its own path")
        seen[identity] = f"{fmt} to {where}"


def silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so that the interpreter's last flush of a pipe nobody reads
    any more neither fails nor prints an error at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass
