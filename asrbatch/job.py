"""One scheduled job: a batch pass wrapped in its monitoring, metrics and notifications.

Direction: ``cli`` (run) and ``watch`` -> :func:`run_job` -> start ping ->
:func:`asrbatch.runner.run_batch` -> Prometheus textfile -> webhook and success/failure ping.

The hooks never change the outcome: a monitoring outage or an unwritable textfile logs a
warning and the run's own exit code stands.  A run that finds the lock taken does nothing
and reports nothing (the run holding the lock reports for both).
"""

from __future__ import annotations

import fcntl
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

from asrbatch import metrics, monitoring
from asrbatch.config import Config
from asrbatch.errors import AsrbatchError, ExitCode, LockedError
from asrbatch.ledger import Ledger
from asrbatch.runner import ClientFactory, ProgressListener, RunOptions, RunSummary, run_batch

log = logging.getLogger(__name__)


def run_job(
    config: Config,
    options: RunOptions,
    *,
    progress: ProgressListener | None = None,
    client_factory: ClientFactory | None = None,
    stop: threading.Event | None = None,
    monitor: monitoring.Monitor | None = None,
) -> RunSummary:
    """Run one batch pass with its hooks and return its summary.

    Raises what :func:`~asrbatch.runner.run_batch` raises (after reporting it to the
    monitoring service, except :class:`~asrbatch.errors.LockedError`).  A ``--dry-run``
    goes straight to the runner: it changes nothing and reports nothing.
    """
    extra: dict[str, Any] = {}
    if progress is not None:
        extra["progress"] = progress
    if client_factory is not None:
        extra["client_factory"] = client_factory
    if options.dry_run:
        return run_batch(config, options, **extra)
    paths = _Paths.of(config, options)
    hooks = monitor or monitoring.Monitor(config.monitoring)
    started_at = _now()
    try:
        try:
            summary = run_batch(config, options, stop=stop, on_start=hooks.start, **extra)
        except LockedError:
            raise
        except BaseException as exc:
            code = _exit_code(exc)
            message = str(exc) or type(exc).__name__
            # For the log file (and so the log tail); the console line comes from the CLI.
            log.info("event=error exit=%d reason=%r", code, message)
            _write_metrics(config, paths)
            report = {"started_at": started_at, "finished_at": _now(), "input_dir": str(paths.input_dir),
                      "output_dir": str(paths.output_dir), "exit_code": code, "error": message}
            body = _body(config, paths)
            if message not in body:
                body = f"{body}\nasrbatch: exit {code}: {message}".lstrip("\n")
            hooks.finish(code, body=body, summary=report)
            raise
        _write_metrics(config, paths)
        report = {"started_at": started_at, "finished_at": _now(), **summary.as_dict(), "error": None}
        hooks.finish(int(summary.exit_code), body=_body(config, paths), summary=report)
        return summary
    finally:
        if monitor is None:
            hooks.close()


@dataclass(frozen=True)
class _Paths:
    input_dir: Path
    output_dir: Path
    state_dir: Path
    log_file: Path

    @classmethod
    def of(cls, config: Config, options: RunOptions) -> _Paths:
        input_dir = options.input_dir.expanduser().resolve()
        output_dir = (options.output_dir or config.output_dir_for(input_dir)).expanduser().resolve()
        state_dir = config.state_dir_for(output_dir).expanduser().resolve()
        return cls(input_dir, output_dir, state_dir, config.log_file_for(state_dir).expanduser())


def _write_metrics(config: Config, paths: _Paths) -> None:
    target = config.monitoring.textfile
    ledger_path = paths.state_dir / "ledger.sqlite3"
    if target is None or not ledger_path.exists():
        return
    try:
        # One writer at a time (a watch pass and a cron run may end together), reading the ledger
        # under the lock: the file written last always holds the newest counts, never older ones.
        with open(paths.state_dir / "metrics.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with Ledger.open(ledger_path) as ledger:
                metrics.write_textfile(ledger, target, output_dir=paths.output_dir)
    except Exception as exc:  # metrics must never fail the run
        log.warning("event=metrics_failed path=%s reason=%r", target, str(exc))


def _body(config: Config, paths: _Paths) -> str:
    return monitoring.log_tail(paths.log_file, config.monitoring.log_tail_lines)


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, AsrbatchError):
        return int(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return int(ExitCode.INTERNAL)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by the first SIGTERM or SIGINT; a second one interrupts at once."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("event=signal signal=%s action=stop_after_files_in_flight", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
