"""The two ways a run can end before any check judged anything, each with its exit code.

Every module that refuses a request raises one of these (or a subclass naming its own case); the front
ends turn them into one sentence and the exit code, never a traceback.
"""

from __future__ import annotations

from netdoctor.model import ExitCode


class NetdoctorError(Exception):
    """A run that cannot go ahead; `str()` is one sentence for the user."""

    exit_code = ExitCode.CANNOT_RUN


class BadInput(NetdoctorError, ValueError):
    """What the user gave is wrong: an unknown target, flag value, check id or config entry (exit 2)."""

    exit_code = ExitCode.BAD_INPUT


class CannotCheck(NetdoctorError):
    """The input is fine but netdoctor cannot look: no Docker, no privilege, an output it cannot write (exit 3)."""

    exit_code = ExitCode.CANNOT_RUN
