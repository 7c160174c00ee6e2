"""Logging: one ``key=value`` line per event, a log file shared safely by processes.

:func:`kv` builds every event line; values are quoted and escaped so that one event is
always one line, whatever a file name holds (spaces, quotes, ``=``, newlines).

:func:`setup_logging` (called once, from the CLI) sends everything at the configured level
to the log file and, on the console, warnings and errors only when stderr is not a terminal
(cron mails whatever is printed), informational lines too with ``-v``.  The console handler
is :class:`asrbatch.console.ConsoleHandler`: it words the events for people and keeps a
terminal's status line below what it prints.

The log file is written by :class:`SharedFileHandler`: ``run`` from cron and ``watch`` may
write one log at the same time.  Each line is appended under an ``flock``; the handler
reopens the file when it was rotated away (by another asrbatch process or by logrotate), and
rotates it itself, under the same lock, once it passes ``log.max_bytes``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import logging.handlers
import os
import re
import sys
from pathlib import Path
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_PLAIN = re.compile(r"^[^\s\"'=\\\x00-\x1f\x7f-\x9f\u2028\u2029]+$")


def quote(value: Any) -> str:
    """A value for a ``key=value`` line: as it is when plain, else a JSON string (escaped)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text and _PLAIN.match(text):
        return text
    return json.dumps(text, ensure_ascii=False)


class Event(str):
    """A ``key=value`` event line that remembers what it was made of.

    It is the log file's line (a ``str``); the console reads :attr:`name` and
    :attr:`fields` to say the same thing in words (:mod:`asrbatch.console`).
    """

    name: str
    fields: dict[str, Any]

    def __new__(cls, name: str, fields: dict[str, Any]) -> Event:
        line = " ".join([f"event={name}", *(f"{key}={quote(value)}" for key, value in fields.items())])
        event = super().__new__(cls, line)
        event.name = name
        event.fields = fields
        return event


def kv(event: str, **fields: Any) -> Event:
    """``event=<event> key=value ...`` with every value passed through :func:`quote`."""
    return Event(event, fields)


def printable(text: str) -> str:
    """*text* with control characters escaped, for the console (a name never breaks a line)."""
    if _PLAIN.match(text) or not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", text):
        return text
    return json.dumps(text, ensure_ascii=False)[1:-1]


class SharedFileHandler(logging.Handler):
    """Append to a log file that other processes write and rotate too.

    Every record is written with one ``write`` under an exclusive ``flock`` on
    ``<log>.lock``.  Before writing, the handler checks (under the lock) that its open
    file still is the one at the path, reopening it otherwise, and rotates the file
    (``log`` -> ``log.1`` ... ``log.<backups>``) when it has grown past *max_bytes*.
    A log that cannot be written (a full disk) costs one line on stderr, never the run.
    """

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        super().__init__()
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock_path = path.with_name(path.name + ".lock")
        self._stream: Any = None
        self._identity: tuple[int, int] | None = None
        self._complained = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            data = line.encode("utf-8", errors="replace")
            with open(self._lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    self._open_current()
                    if self.max_bytes and self._stream.tell() + len(data) > self.max_bytes and self._stream.tell():
                        self._rotate()
                    self._stream.write(data)
                    self._stream.flush()
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        except Exception as exc:  # the log must never fail the run
            self._close_stream()
            if not self._complained:
                self._complained = True
                sys.stderr.write(f"asrbatch: warning: cannot write the log {self.path}: {exc}\n")

    def _open_current(self) -> None:
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if self._stream is not None and current == self._identity:
            return
        self._close_stream()
        self._stream = open(self.path, "ab")  # noqa: SIM115 - kept open between records
        st = os.fstat(self._stream.fileno())
        self._identity = (st.st_dev, st.st_ino)

    def _rotate(self) -> None:
        self._close_stream()
        if self.backups > 0:
            for n in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._open_current()

    def _close_stream(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.close()
            self._stream = None
            self._identity = None

    def close(self) -> None:
        self._close_stream()
        super().close()


def setup_logging(
    *,
    log_file: Path | None,
    file_level: str = "info",
    verbosity: int = 0,
    max_bytes: int = 5_000_000,
    backups: int = 5,
    console: logging.Handler | None = None,
    stream: object = None,
) -> None:
    """Configure the ``asrbatch`` logger: the shared log file and the console.

    *verbosity*: -1 quiet (errors only), 0 default, 1 verbose, 2 debug.  *console*
    replaces the plain stderr handler (:class:`asrbatch.console.ConsoleHandler`, which keeps a
    terminal's status line and sets its own level).
    """
    root = logging.getLogger("asrbatch")
    close_logging()
    root.setLevel(logging.DEBUG)
    root.propagate = False

    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            log_file = None  # the folder cannot be made: the run itself says why, on the console
    if log_file is not None:
        handler: logging.Handler = SharedFileHandler(log_file, max_bytes=max_bytes, backups=backups)
        handler.setLevel(logging.DEBUG if verbosity >= 2 else getattr(logging, file_level.upper()))
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)

    if console is None:
        out = stream if stream is not None else sys.stderr
        console = logging.StreamHandler(out)  # type: ignore[arg-type]
        console.setFormatter(logging.Formatter("asrbatch: %(message)s"))
        console.setLevel(console_level(verbosity))
    root.addHandler(console)
    # The logger's own level is the most detailed any handler wants, so that debug lines
    # nobody will write (one per skipped file in a big archive) cost nothing.
    root.setLevel(min(h.level for h in root.handlers))


def console_level(verbosity: int) -> int:
    if verbosity < 0:
        return logging.ERROR
    if verbosity >= 2:
        return logging.DEBUG
    if verbosity == 1:
        return logging.INFO
    return logging.WARNING


def close_logging() -> None:
    root = logging.getLogger("asrbatch")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()

