"""What a run produces: each recording's outcome and the run's summary (pure data).

Every recording a run finds ends the run with exactly one :class:`Outcome`, so the
summary's counts always add up: ``found = done + empty + failed + reused + pending +
skipped``.
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asrbatch.errors import ExitCode

if TYPE_CHECKING:
    from asrbatch.plan import Decision
    from asrbatch.scan import Skipped
    from asrbatch.transport import ServerInfo

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, enum.Enum):
        def __str__(self) -> str:
            return str(self.value)


class Outcome(StrEnum):
    """What happened to one recording in one run."""

    DONE = "done"
    """Transcribed; the transcript has text."""
    EMPTY = "empty"
    """Transcribed; nothing was said (an empty transcript)."""
    FAILED = "failed"
    """Not transcribed, for the reason given."""
    REUSED = "reused"
    """Same content as a finished recording (or a transcript rewritten): no request."""
    PENDING = "pending"
    """Left for a later run (stopped, bounded, server unavailable)."""
    SKIPPED = "skipped"
    """Nothing to do: finished and unchanged, failed for good, or not ready yet."""


FINISHED = (Outcome.DONE, Outcome.EMPTY)
PROCESSED = (Outcome.DONE, Outcome.EMPTY, Outcome.FAILED, Outcome.REUSED)
"""Outcomes that mean the run did something with the recording (logged one line each)."""


class StopReason(StrEnum):
    """Why a run stopped before going through everything it found."""

    SERVER_UNAVAILABLE = "server_unavailable"
    OPERATOR_ERROR = "operator_error"
    """The machine is in the way (disk full, permissions, the ledger): see the message."""
    MAX_FILES = "max_files"
    MAX_RUNTIME = "max_runtime"
    INTERRUPTED = "interrupted"
    ENDPOINT_ERROR = "endpoint_error"
    ERROR = "error"

    @property
    def bounded(self) -> bool:
        """A bound the operator set was reached (not a problem)."""
        return self in (StopReason.MAX_FILES, StopReason.MAX_RUNTIME)


@dataclass(frozen=True)
class FileOutcome:
    key: str
    outcome: Outcome
    detail: str = ""
    audio_seconds: float | None = None
    server_seconds: float | None = None
    attempts: int = 0
    chunks: int = 0
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSummary:
    input_dir: Path
    output_dir: Path
    state_dir: Path
    found: int = 0
    new: int = 0
    done: int = 0
    empty: int = 0
    failed: int = 0
    skipped: int = 0
    reused: int = 0
    pending: int = 0
    audio_seconds: float = 0.0
    server_seconds: float = 0.0
    wall_seconds: float = 0.0
    stopped: StopReason | None = None
    """Why the run stopped early."""
    stop_message: str | None = None
    dry_run: bool = False
    outcomes: tuple[FileOutcome, ...] = ()
    plan: tuple[Decision, ...] = ()
    skipped_by_scan: tuple[Skipped, ...] = ()
    """What the scan left out, with the reason; those with ``recording`` set are counted in
    ``found`` and ``skipped``."""
    server: ServerInfo | None = None

    @property
    def exit_code(self) -> ExitCode:
        if self.stopped in (StopReason.SERVER_UNAVAILABLE, StopReason.OPERATOR_ERROR):
            return ExitCode.SERVER_UNAVAILABLE
        if self.failed:
            return ExitCode.FILES_FAILED
        return ExitCode.OK

    @property
    def speed(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def failures(self) -> tuple[FileOutcome, ...]:
        return tuple(o for o in self.outcomes if o.outcome == Outcome.FAILED)

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_dir": str(self.input_dir),
            "output_dir": str(self.output_dir),
            "found": self.found,
            "new": self.new,
            "done": self.done,
            "empty": self.empty,
            "failed": self.failed,
            "skipped": self.skipped,
            "reused": self.reused,
            "pending": self.pending,
            "audio_seconds": round(self.audio_seconds, 3),
            "audio_hours": round(self.audio_seconds / 3600, 4),
            "server_seconds": round(self.server_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "speed_x": round(self.speed, 2),
            "stopped": str(self.stopped) if self.stopped else None,
            "exit_code": int(self.exit_code),
            "failures": [{"path": o.key, "error": o.detail} for o in self.failures],
        }

    def line(self) -> str:
        """The one-line run summary written to the log."""
        parts = [
            "event=summary",
            f"found={self.found}",
            f"new={self.new}",
            f"done={self.done}",
            f"empty={self.empty}",
            f"failed={self.failed}",
            f"skipped={self.skipped}",
            f"reused={self.reused}",
            f"pending={self.pending}",
            f"audio_h={self.audio_seconds / 3600:.3f}",
            f"wall_s={self.wall_seconds:.1f}",
            f"speed_x={self.speed:.1f}",
            f"exit={int(self.exit_code)}",
        ]
        if self.stopped:
            parts.append(f"stopped={self.stopped}")
        return " ".join(parts)
