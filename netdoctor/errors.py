"""How a run ends: its exit codes, the gate's thresholds, and the two ways it can end before any check
judged anything.

Every module that refuses a request raises one of these (or a subclass naming its own case); the front
ends turn them into one sentence and the exit code, never a traceback. (Kept free of heavier imports:
`netdoctor --help` loads this module and click only.)
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FINDINGS = 1
    BAD_INPUT = 2
    CANNOT_RUN = 3


# --fail-on: the least status that exits FINDINGS (netdoctor.gate applies it)
FAIL_ON = ("warn", "fail", "never")


class NetdoctorError(Exception):
    """A run that cannot go ahead; `str()` is one sentence for the user."""

    exit_code = ExitCode.CANNOT_RUN


class BadInput(NetdoctorError, ValueError):
    """What the user gave is wrong: an unknown target, flag value, check id or config entry (exit 2)."""

    exit_code = ExitCode.BAD_INPUT


class CannotCheck(NetdoctorError):
    """The input is fine but netdoctor cannot look: no Docker, no privilege, an output it cannot write (exit 3)."""

    exit_code = ExitCode.CANNOT_RUN
