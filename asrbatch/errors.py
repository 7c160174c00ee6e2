"""Exception hierarchy, exit codes and the fault model.

Every expected failure is an :class:`AsrbatchError`, and each belongs to exactly one party:

==================  ===========================================  ====================================
whose fault         examples                                     what happens
==================  ===========================================  ====================================
the recording       undecodable, not audio, truncated and        :class:`FileError` with
(:class:`FileError`  stable, rejected by the server for a        ``permanent=True``: failed, not
permanent)          reason about the audio (4xx, a decode        tried again until the file changes
                    error message)                               (or ``asrbatch retry``)
the recording,      truncated while still young (being           failed, tried again in the next
maybe               copied?)                                     ``state.max_runs`` runs
the server          5xx of any kind (CUDA out of memory,         retried with backoff; when the
                    internal errors, a message that cannot be    retries are spent and a known test
                    told apart), timeouts, resets, hangs,        clip fails too, the run stops (exit
                    429, 502/503/504, a closed stream, an app's  3) with the rest pending and no
                    error report instead of a transcript         file blamed; otherwise it goes
                                                                 once more as plain WAV, then that
                                                                 one recording fails transiently
                                                                 (:class:`FailsAloneError`)
the operator        a full disk, permissions, a read-only        :class:`OperatorError`: one line
(:class:`Operator-  folder, a file where a folder should be,     naming the path and what to do;
Error`)             a damaged or locked ledger, a missing        exit 2 before the run started, 3
                    ffmpeg                                       when a started run must stop;
                                                                 nothing written is lost
the configuration   bad keys, no such function, login refused    exit 2, nothing sent
asrbatch itself     any other exception inside one recording's   that recording fails with
                                                                 "internal error" (traceback in the
                                                                 log), counted against
                                                                 ``state.max_runs``; the run goes on
==================  ===========================================  ====================================

Errors that concern one recording derive from :class:`FileError`; the pipeline records them
against the file and carries on.  Errors that concern the whole run map to an
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
    """Usage, configuration or set-up error (the operator's to fix); nothing was sent."""
    SERVER_UNAVAILABLE = 3
    """The run stopped for a reason outside the recordings (server unavailable, disk full):
    no file was blamed, the rest is pending."""
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


class OperatorError(AsrbatchError):
    """The machine around asrbatch is in the way: disk, permissions, folders, the ledger.

    Never a bug and never a recording's fault.  Exit 2 when raised before the run
    started; a run that meets one stops with exit 3 and leaves the rest pending.
    """

    exit_code = ExitCode.USAGE


class LedgerDamagedError(OperatorError):
    """The ledger file is not a readable SQLite database; asrbatch never overwrites it."""


class LedgerUnavailableError(OperatorError):
    """The shared ledger's database server cannot be reached (down, or the network between):
    nothing is lost, the next run continues."""

    exit_code = ExitCode.SERVER_UNAVAILABLE


class EndpointError(AsrbatchError):
    """The server answers but the configured recognition function is missing or unusable
    (wrong fn_index/api_name, unexpected inputs, login refused)."""

    exit_code = ExitCode.USAGE


class ServerUnavailableError(AsrbatchError):
    """The server stayed unreachable after the configured retries, or stopped doing work."""

    exit_code = ExitCode.SERVER_UNAVAILABLE


class CancelledError(AsrbatchError):
    """A request withdrawn before the server started on it (the run is stopping)."""


class LockedError(AsrbatchError):
    """Another run holds the state folder's lock."""

    exit_code = ExitCode.LOCKED


class TransientError(AsrbatchError):
    """A failure worth retrying (connection reset, timeout, 429, 5xx).

    Raised inside the transport and retried there; callers normally see
    :class:`ServerUnavailableError` or :class:`RecognitionError` instead.
    """

    exit_code = ExitCode.SERVER_UNAVAILABLE

    def __init__(self, message: str, *, unreachable: bool = False, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.unreachable = unreachable
        """True when the server could not be reached at all (refused, connect timeout)."""
        self.attempts = 0
        """Tries made before giving up (set by the retry policy)."""


class FileError(AsrbatchError):
    """Something went wrong with one recording.

    ``permanent`` errors (undecodable audio, rejected input) are not retried
    until the file changes; the others are retried on later runs.
    """

    exit_code = ExitCode.FILES_FAILED
    permanent: bool = False

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        hint: str | None = None,
        attempts: int = 0,
        permanent: bool | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.attempts = attempts
        """Requests made for this recording before the error (0 when none was sent)."""
        if permanent is not None:
            self.permanent = permanent


class AudioError(FileError):
    """The recording cannot be decoded locally (empty, truncated, not audio, no audio track)."""

    permanent = True


class TruncatedAudioError(AudioError):
    """The file holds less audio than its container announces: cut off, or still being copied.

    Permanent once the file has been stable for a while; transient while it is young.
    """


class InputRejectedError(FileError):
    """The server attributed the failure to the input, with its message when it gave one."""

    permanent = True


class RecognitionError(FileError):
    """The server failed on this file (its fault, not the file's), or kept failing transiently."""

    permanent = False


class FailsAloneError(RecognitionError):
    """The server kept failing on this request while it recognised other audio (the known test clip,
    or other requests meanwhile): something about this payload, or the server's state while it ran.

    Still transient (a 500 says nothing certain about the recording), but a sign to send the same
    audio in the plain 16 kHz WAV the test clip travels in (:class:`asrbatch.transport.CodecLadder`).
    """
