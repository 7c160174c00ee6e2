"""Logging set-up, called once from the CLI.

The log file gets everything at the configured level, one ``key=value`` line
per event.  The console shows warnings and errors only when stderr is not a
terminal (cron mails whatever is printed), informational lines too on a TTY or
with ``-v``.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
CONSOLE_FORMAT = "asrbatch: %(message)s"


def setup_logging(
    *,
    log_file: Path | None,
    file_level: str = "info",
    verbosity: int = 0,
    max_bytes: int = 5_000_000,
    backups: int = 5,
    stream: object = None,
) -> None:
    """Configure the ``asrbatch`` logger: a rotating file and the console.

    *verbosity*: -1 quiet (errors only), 0 default, 1 verbose, 2 debug.
    """
    root = logging.getLogger("asrbatch")
    close_logging()
    root.setLevel(logging.DEBUG)
    root.propagate = False

    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        handler.setLevel(logging.DEBUG if verbosity >= 2 else getattr(logging, file_level.upper()))
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)

    out = stream if stream is not None else sys.stderr
    console = logging.StreamHandler(out)  # type: ignore[arg-type]
    if verbosity < 0:
        level = logging.ERROR
    elif verbosity >= 2:
        level = logging.DEBUG
    elif verbosity == 1:
        level = logging.INFO
    else:
        level = logging.WARNING
    console.setLevel(level)
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    root.addHandler(console)
    # The logger's own level is the most detailed any handler wants, so that debug lines
    # nobody will write (one per skipped file in a big archive) cost nothing.
    root.setLevel(min(h.level for h in root.handlers))


def close_logging() -> None:
    root = logging.getLogger("asrbatch")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
