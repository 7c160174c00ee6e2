"""One scheduled job: a batch pass wrapped in its monitoring, metrics and notifications.

Direction: ``cli`` (run) and ``watch`` -> :func:`run_job` -> start ping ->
:func:`asrbatch.runner.run_batch` -> Prometheus textfile -> webhook and success/failure ping.

The hooks never change the outcome: a monitoring outage or an unwritable textfile logs a
warning and the run's own exit code stands.  A run that finds the lock taken does nothing
and reports nothing (the run holding the lock reports for both).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from types import FrameType
from typing import Any

from asrbatch import metrics, monitoring
from asrbatch.config import Config
from asrbatch.errors import AsrbatchError, ExitCode, LockedError
from asrbatch.fsutil import locked
from asrbatch.ledger import open_existing_ledger
from asrbatch.log import kv
from asrbatch.outcomes import RunSummary
from asrbatch.paths import JobPaths
from asrbatch.runner import ProgressListener, RecognizerFactory, RunOptions, run_batch

log = logging.getLogger(__name__)


def run_job(
    config: Config,
    options: RunOptions,
    *,
    progress: ProgressListener | None = None,
    recognizer_factory: RecognizerFactory | None = None,
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
    if recognizer_factory is not None:
        extra["recognizer_factory"] = recognizer_factory
    if options.dry_run:
        return run_batch(config, options, **extra)
    paths: JobPaths | None = None
    hooks = monitor or monitoring.Monitor(config.monitoring)
    started_at = _now()
    try:
        try:
            paths = JobPaths.for_run(config)
            summary = run_batch(config, options, stop=stop, on_start=hooks.start, **extra)
        except LockedError:
            raise
        except BaseException as exc:
            code = _exit_code(exc)
            message = str(exc) or type(exc).__name__
            # For the log file (and so the log tail); the console line comes from the CLI.
            log.info(kv("error", exit=code, reason=message))
            report = {"started_at": started_at, "finished_at": _now(),
                      "input_dir": str(paths.input_dir if paths else config.input.dir),
                      "output_dir": str(paths.output_dir if paths else config.output.dir),
                      "exit_code": code, "error": message}
            body = ""
            if paths is not None:
                _write_metrics(config, paths)
                body = _body(config, paths)
            if message not in body:
                body = f"{body}\nasrbatch: exit {code}: {message}".lstrip("\n")
            hooks.finish(code, body=body, summary=report)
            raise
        assert paths is not None
        _write_metrics(config, paths)
        report = {"started_at": started_at, "finished_at": _now(), **summary.as_dict(), "error": None}
        hooks.finish(int(summary.exit_code), body=_body(config, paths), summary=report)
        return summary
    finally:
        if monitor is None:
            hooks.close()


def _write_metrics(config: Config, paths: JobPaths) -> None:
    target = config.monitoring.textfile
    if target is None:
        return
    try:
        # One writer at a time (a watch pass and a cron run may end together), reading the ledger
        # under the lock: the file written last always holds the newest counts, never older ones.
        with locked(paths.metrics_lock):
            ledger = open_existing_ledger(config, paths)
            if ledger is None:
                return
            with ledger:
                metrics.write_textfile(ledger, target, output_dir=paths.output_dir or paths.state_dir)
    except Exception as exc:  # metrics must never fail the run
        log.warning(kv("metrics_failed", path=target, reason=str(exc)))


def _body(config: Config, paths: JobPaths) -> str:
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
        log.info(kv("signal", signal=signal.Signals(signum).name, action="stop_after_files_in_flight"))
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
