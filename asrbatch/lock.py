"""One run at a time per state folder, unless the ledger is shared.

``flock`` on ``<state>/lock`` (:func:`asrbatch.fsutil.locked`): the kernel drops the lock
when the process dies, so a crashed or killed run never blocks the next one.  With a shared
ledger (``state.ledger`` a database URL) no lock is taken: several workers run at once and
split the work through claims (:mod:`asrbatch.claims`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType

from asrbatch.errors import LockedError
from asrbatch.fsutil import locked
from asrbatch.paths import JobPaths


def run_lock(paths: JobPaths) -> contextlib.AbstractContextManager[object]:
    """The lock a run of *paths* holds: :class:`RunLock` on its state folder, or none with a shared ledger."""
    return contextlib.nullcontext() if paths.shared else RunLock(paths.lock)


class RunLock:
    """Non-blocking exclusive lock on *path*; raises :class:`LockedError` when another run holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._held: contextlib.ExitStack | None = None

    def acquire(self) -> RunLock:
        stack = contextlib.ExitStack()
        fd = stack.enter_context(locked(self.path, blocking=False))
        if fd is None:
            stack.close()
            holder = _holder(self.path)
            raise LockedError(
                f"another asrbatch run holds {self.path}{f' (pid {holder})' if holder else ''}",
                hint="nothing was done; this run will happen next time",
            )
        try:  # who holds it, for the next run's message; the lock itself needs no disk space
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self._held = stack
        return self

    def release(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _holder(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()[:32]
    except OSError:
        return ""
