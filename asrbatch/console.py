"""What a person sees on stderr: lines of text and, on a terminal, one status line kept below them.

Cron, pipes and files get plain lines, one per message.  A terminal (the stream is a TTY and
``TERM`` is not ``dumb``) also gets a status line (a progress display), redrawn in place with a
carriage return and erase-line; before any message is printed the status line is erased, and it
is drawn again under the message, so that a message and the status line never share a line.
A process in the background of its terminal draws no status line.
The status line is cut to the terminal's width (wide characters count two columns) so that it
never wraps.  Colour only on a terminal, and never when ``NO_COLOR`` is set (https://no-color.org).

:class:`ConsoleHandler` is the logging handler of the console: it says the ``key=value`` events
of :mod:`asrbatch.log` in words, and leaves out what the end-of-run summary says anyway.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import threading
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from asrbatch.log import Event, console_level, printable

ERASE_LINE = "\r\x1b[K"
COLOURS = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}


SGR = re.compile(r"\x1b\[[0-9;]*m")
"""A colour code: takes no column."""


def _width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def cells(text: str) -> int:
    """Columns *text* takes on a terminal: wide (CJK) characters two, combining marks and colour codes none."""
    return sum(_width(char) for char in SGR.sub("", text))


def clip(text: str, width: int) -> str:
    """*text* cut to at most *width* columns (ending in ``...`` when cut), never inside a colour code."""
    if cells(text) <= width:
        return text
    out, used, coloured = [], 0, False
    for piece in re.split(f"({SGR.pattern})", text):
        if SGR.fullmatch(piece):
            out.append(piece)
            coloured = True
            continue
        for char in piece:
            size = _width(char)
            if used + size > width - 3:
                return "".join(out) + ("\x1b[0m" if coloured else "") + "..."
            out.append(char)
            used += size
    return "".join(out)


class Console:
    """Messages and a status line on one stream (stderr by default); thread-safe.

    *interactive* and *color* default to what the stream and the environment say.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interactive: bool | None = None,
        color: bool | None = None,
        environ: Mapping[str, str] | None = None,
        columns: Callable[[], int] | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        environ = os.environ if environ is None else environ
        tty = _isatty(self.stream) and environ.get("TERM", "") != "dumb"
        self.interactive = tty if interactive is None else interactive
        self.color = (self.interactive and not environ.get("NO_COLOR")) if color is None else color
        self._columns = columns or (lambda: shutil.get_terminal_size((80, 24)).columns)
        self._lock = threading.RLock()
        self._status = ""
        self._note = ""
        self._shown = False

    # -- text -------------------------------------------------------------------------------------

    def style(self, text: str, *names: str) -> str:
        """*text* in the named colours (``red``, ``bold``...) when colour is on."""
        if not self.color or not names:
            return text
        codes = ";".join(COLOURS[name] for name in names)
        return f"\x1b[{codes}m{text}\x1b[0m"

    def print(self, text: str = "") -> None:
        """Print *text* (one or more lines) above the status line."""
        with self._lock:
            out = ERASE_LINE if self._shown else ""
            out += text + "\n"
            out += self._drawn()
            self._write(out)

    # -- the status line --------------------------------------------------------------------------

    def status(self, text: str) -> None:
        """Show *text* as the status line (a terminal only; ``""`` removes it)."""
        with self._lock:
            self._status = text
            self._redraw()

    def note(self, text: str) -> None:
        """A passing remark shown after the status line (a retry, say) until the next status or note."""
        with self._lock:
            self._note = text
            self._redraw()

    def clear(self) -> None:
        """Remove the status line (and its note) from the screen."""
        with self._lock:
            self._status = self._note = ""
            self._redraw()

    def _drawn(self) -> str:
        line = self._status
        if self._note:
            line = f"{line}  {self._note}" if line else self._note
        # A job sent to the background (`&`, Ctrl-Z then bg) keeps its messages but draws no
        # status line over what the person types meanwhile.
        self._shown = bool(line) and self.interactive and _in_foreground(self.stream)
        if not self._shown:
            return ""
        return clip(line, max(10, self._columns() - 1))

    def _redraw(self) -> None:
        if not self.interactive:
            return
        was = self._shown
        line = self._drawn()
        if line or was:
            self._write(ERASE_LINE + line)

    def _write(self, text: str) -> None:
        if not text:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe must not fail the run
            pass


def _in_foreground(stream: Any) -> bool:
    """True unless the stream is a terminal whose foreground process group is not ours."""
    try:
        return os.tcgetpgrp(stream.fileno()) == os.getpgrp()
    except (AttributeError, ValueError, OSError):
        return True


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


# ------------------------------------------------------------------------------------------------
# The logging handler


Words = Callable[[Mapping[str, Any]], str]


def _field(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    return "-" if value is None else printable(str(value))


def _file_line(f: Mapping[str, Any]) -> str:
    outcome = str(f.get("outcome"))
    details = []
    if f.get("audio_s") not in (None, "-"):
        details.append(f"{f['audio_s']} s of audio")
    if f.get("server_s") not in (None, "-", "0.00"):
        details.append(f"{f['server_s']} s on the server")
    extra = f" ({', '.join(details)})" if details else ""
    return f"{outcome:7} {_field(f, 'path')}{extra}"


# How each event reads on the console, and when it shows:
#   "line"     a line (warnings and errors at every verbosity but -q; info lines with -v)
#   "terminal" a line on a terminal, or with -v
#   "chatter"  the status line's note on a terminal, a line with -v
#   absent     only with -vv, as the log file has it
# The events the end-of-run summary reports (server_unavailable, operator_error, the per-run
# error) are left out: the summary says them once.
EVENTS: dict[str, tuple[str, Words]] = {
    # warnings and errors
    "retry": ("chatter", lambda f: f"{_field(f, 'url')}: {_field(f, 'reason')}; trying again in "
                                   f"{_field(f, 'wait_s')} s (try {_field(f, 'attempt')})"),
    "failover": ("chatter", lambda f: f"{_field(f, 'url')}: {_field(f, 'reason')}; sent to another server"),
    "probe_failed": ("chatter", lambda f: f"{_field(f, 'url')} still does not answer: {_field(f, 'reason')}"),
    "health_check": ("chatter", lambda f: f"{_field(f, 'url')}: trying a known clip to tell the server's "
                                          "fault from the recording's"),
    "health_check_failed": ("chatter", lambda f: f"{_field(f, 'url')}: the known clip failed too: "
                                                 f"{_field(f, 'reason')}"),
    "health_check_passed": ("chatter", lambda f: f"{_field(f, 'url')}: the known clip works"),
    "server_down": ("line", lambda f: f"server {_field(f, 'url')} stopped answering ({_field(f, 'reason')}); "
                                      f"asked again in {_field(f, 'reprobe_s')} s, the other servers go on"),
    "server_unusable": ("line", lambda f: f"server {_field(f, 'url')} cannot be used: {_field(f, 'reason')}"),
    "monitoring_failed": ("line", lambda f: f"monitoring: the {_field(f, 'hook')} call to {_field(f, 'url')} "
                                            f"failed ({_field(f, 'reason')}); the run itself is not affected"),
    "metrics_failed": ("line", lambda f: f"cannot write the metrics file {_field(f, 'path')}: {_field(f, 'reason')}"),
    "housekeeping_failed": ("line", lambda f: f"{_field(f, 'path')}: not moved ({_field(f, 'reason')}); it stays "
                                              "in the input and the next run tries again"),
    "journal_failed": ("line", lambda f: f"cannot write the journal {_field(f, 'path')}: {_field(f, 'reason')}"),
    "journal_unreadable": ("line", lambda f: f"cannot read the journal {_field(f, 'path')}: {_field(f, 'reason')}"),
    "ledger_rebuilt": ("line", lambda f: f"the ledger {_field(f, 'path')} was rebuilt from "
                                         f"{_field(f, 'journal')}: {_field(f, 'recordings')} recording(s)"),
    "hotwords_unreadable": ("line", lambda f: f"cannot read the hotwords file {_field(f, 'file')} "
                                              f"({_field(f, 'reason')}); sent without it"),
    # informational
    "file": ("line", _file_line),
    "server": ("line", lambda f: f"server {_field(f, 'url')}: {_field(f, 'kind')} {_field(f, 'version')}, "
                                 f"protocol {_field(f, 'protocol')}, {_field(f, 'capacity')} request(s) at a time"),
    "skip": ("line", lambda f: f"{'skip':7} {_field(f, 'path')}: {_field(f, 'reason')}"),
    "cleanup": ("line", lambda f: f"{_field(f, 'path')}: removed {_field(f, 'removed_partial')} partial file(s) "
                                  "left by a run that was killed"),
    "moved": ("line", lambda f: f"{'moved':7} {_field(f, 'path')} -> {_field(f, 'to')}"),
    "server_up": ("line", lambda f: f"server {_field(f, 'url')} answers again"),
    "signal": ("terminal", lambda f: f"{_field(f, 'signal')}: finishing the recordings in flight "
                                     "(Ctrl-C again stops at once; they are redone next time)"),
    "watch_start": ("terminal", lambda f: f"watching {_field(f, 'input')} -> {_field(f, 'output')}: each "
                                          f"recording is sent once closed and unchanged for {_field(f, 'settle')} s,"
                                          f" with a full rescan every {_field(f, 'rescan_s')} s; Ctrl-C stops"),
    "watch_stop": ("terminal", lambda f: "watch stopped"),
    "watch_locked": ("chatter", lambda f: f"another run holds the lock; trying again in {_field(f, 'retry_s')} s"),
}
SAID_BY_THE_SUMMARY = frozenset({"server_unavailable", "operator_error", "internal_error", "error", "interrupted",
                                 "probe", "summary"})


class ConsoleHandler(logging.Handler):
    """Logging to a :class:`Console`, in words, at the detail of *verbosity* (-1 quiet ... 2 debug)."""

    def __init__(self, console: Console, verbosity: int = 0) -> None:
        super().__init__()
        self.console = console
        self.verbosity = verbosity
        # A terminal also hears of a signal and of watch starting (info lines).
        level = console_level(verbosity)
        if console.interactive and verbosity == 0:
            level = logging.INFO
        self.setLevel(level)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            shown = self.words(record)
            if shown is None:
                return
            kind, text = shown
            if kind == "note":
                self.console.note(text)
            else:
                self.console.print(text)
        except Exception:  # the console must never fail the run
            self.handleError(record)

    def words(self, record: logging.LogRecord) -> tuple[str, str] | None:
        """``("line" | "note", text)`` for *record*, or None when the console leaves it out."""
        quiet, verbose, debug = self.verbosity < 0, self.verbosity >= 1, self.verbosity >= 2
        level = record.levelno
        message = record.msg
        if isinstance(message, Event):
            how = EVENTS.get(message.name)
            if debug and (how is None or level < logging.INFO):
                return "line", self._prefixed(record, str(message))
            if how is None or message.name in SAID_BY_THE_SUMMARY:
                return None
            kind, say = how
            if message.name == "file" and str(message.fields.get("outcome")) == "failed":
                return None  # the error line of that file says it
            text = say(message.fields)
            if kind == "chatter":
                if verbose:
                    return "line", self._prefixed(record, text)
                if self.console.interactive and not quiet:
                    return "note", text
                return None
            if kind == "terminal" and not (verbose or self.console.interactive):
                return None
            if level < logging.WARNING and not verbose and kind != "terminal":
                return None
            return "line", self._prefixed(record, text)
        text = record.getMessage()
        if text.startswith("event="):  # a log line built without kv() (the run summary)
            return ("line", self._prefixed(record, text)) if debug else None
        if level < logging.WARNING and not verbose:
            return None
        if record.exc_info and debug:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        return "line", self._prefixed(record, printable_lines(text))

    def _prefixed(self, record: logging.LogRecord, text: str) -> str:
        if record.levelno >= logging.ERROR:
            return f"asrbatch: {self.console.style('error:', 'red', 'bold')} {text}"
        if record.levelno >= logging.WARNING:
            return f"asrbatch: {self.console.style('warning:', 'yellow', 'bold')} {text}"
        return text


def printable_lines(text: str) -> str:
    """*text* with control characters escaped in each of its lines (the lines themselves kept)."""
    return "\n".join(printable(line) for line in text.split("\n"))
