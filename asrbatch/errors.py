"""Exception hierarchy and exit codes.

Every expected failure is an :class:`AsrbatchError`.  Errors that concern one
recording derive from :class:`FileError`; the runner records them against the
file and carries on.  Errors that concern the whole run map to an
:class:`ExitCode` in one place (``asrbatch.cli``).
"""

from __future__ import annotations

import enum
from pathlib import Path


class ExitCode(enum.IntEnum):
    """Process exit status of every asrbatch command."""

    OK = 0
    """Nothing failed (including: nothing to do)."""
    FILES_FAILED = 1
    """The run finished and at least one file failed."""
    USAGE = 2
    """Usage or configuration error; nothing was sent."""
    SERVER_UNAVAILABLE = 3
    """The server could not be reached; the run stopped and no file was blamed."""
    LOCKED = 4
    """Another run holds the lock; nothing was done."""
    INTERNAL = 70
    """An unexpected internal error (a bug): the traceback is printed; please report it."""


class AsrbatchError(Exception):
    """Base class of every expected asrbatch error."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(AsrbatchError):
    """The configuration is invalid; carries every problem found, each with its key path."""

    exit_code = ExitCode.USAGE

    def __init__(self, problems: list[str] | str, *, hint: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems), hint=hint)


class EndpointError(AsrbatchError):
    """The server answers but the configured recognition function is missing or unusable
    (wrong fn_index/api_name, unexpected inputs, login refused)."""

    exit_code = ExitCode.USAGE


class ServerUnavailableError(AsrbatchError):
    """The server stayed unreachable after the configured retries."""

    exit_code = ExitCode.SERVER_UNAVAILABLE


class LockedError(AsrbatchError):
    """Another run holds the state folder's lock."""

    exit_code = ExitCode.LOCKED


class TransientError(AsrbatchError):
    """A failure worth retrying (connection reset, timeout, 429, 502/503/504).

    Raised inside the transport and retried there; callers normally see
    :class:`ServerUnavailableError` or :class:`RecognitionError` instead.
    """

    exit_code = ExitCode.SERVER_UNAVAILABLE

    def __init__(self, message: str, *, unreachable: bool = False, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.unreachable = unreachable
        """True when the server could not be reached at all (refused, connect timeout)."""


class FileError(AsrbatchError):
    """Something is wrong with one recording.

    ``permanent`` errors (undecodable audio, rejected input) are not retried
    until the file changes; the others are retried on later runs.
    """

    exit_code = ExitCode.FILES_FAILED
    permanent: bool = False

    def __init__(self, message: str, *, path: Path | str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class AudioError(FileError):
    """The recording cannot be decoded locally (empty, truncated, not audio, no audio track)."""

    permanent = True


class InputRejectedError(FileError):
    """The server attributed the failure to the input, with its message when it gave one."""

    permanent = True


class RecognitionError(FileError):
    """The server failed on this file without saying why, or kept failing transiently."""

    permanent = False
