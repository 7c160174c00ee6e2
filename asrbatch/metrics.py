"""Prometheus textfile-collector output (``monitoring.textfile``).

The figures are read from the ledger after every run, so the counters keep counting across
runs, processes (``run`` and ``watch`` side by side) and restarts, and a deleted file is
simply written again in full.  The file is replaced atomically: node_exporter never reads a
half-written one.  Every sample carries an ``output_dir`` label so that several jobs on one
host can each write their own file without clashing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from asrbatch.errors import ExitCode
from asrbatch.fsutil import atomic_write
from asrbatch.ledger import Ledger, RunRecord

log = logging.getLogger(__name__)

FILE_OUTCOMES = ("done", "empty", "failed")
"""Outcomes counted by asrbatch_files_total (each one an event in the ledger)."""
RUN_FILE_OUTCOMES = ("done", "empty", "failed", "reused", "pending", "skipped")
"""Outcomes of the last run's files (asrbatch_last_run_files)."""
RECORDING_STATES = ("done", "empty", "failed", "pending")


@dataclass(frozen=True)
class Figures:
    """Everything the textfile reports, read from the ledger."""

    runs_by_exit_code: dict[int, int] = field(default_factory=dict)
    files_by_outcome: dict[str, int] = field(default_factory=dict)
    audio_seconds: float = 0.0
    server_seconds: float = 0.0
    run_seconds: float = 0.0
    recordings: dict[str, int] = field(default_factory=dict)
    last_run: RunRecord | None = None
    last_run_seconds: float | None = None
    last_success_at: float | None = None
    runs_by_host: dict[str, int] = field(default_factory=dict)
    claims_by_worker: dict[str, int] = field(default_factory=dict)
    """Recordings being worked on right now (shared ledger), by worker ``<host>:<pid>``."""


def collect(ledger: Ledger) -> Figures:
    """Read the counters and the last run from *ledger*."""
    runs_by_code: dict[int, int] = {}
    run_seconds = 0.0
    last: RunRecord | None = None
    last_seconds: float | None = None
    last_success: float | None = None
    by_host: dict[str, int] = {}
    for run in ledger.runs():  # newest first
        if run.exit_code is None:
            continue  # still running, or killed before it could finish
        runs_by_code[run.exit_code] = runs_by_code.get(run.exit_code, 0) + 1
        by_host[run.host or "unknown"] = by_host.get(run.host or "unknown", 0) + 1
        seconds = _duration(run)
        run_seconds += seconds
        if last is None:
            last, last_seconds = run, seconds
        if last_success is None and run.exit_code == ExitCode.OK and run.finished_at:
            last_success = _epoch(run.finished_at)
    claims: dict[str, int] = {}
    for claim in ledger.claims():
        claims[claim.worker] = claims.get(claim.worker, 0) + 1
    files: dict[str, int] = {}
    audio = server = 0.0
    for day in ledger.daily(days=1_000_000):
        for outcome in FILE_OUTCOMES:
            files[outcome] = files.get(outcome, 0) + int(day[outcome] or 0)
        audio += float(day["audio_seconds"] or 0.0)
        server += float(day["server_seconds"] or 0.0)
    return Figures(
        runs_by_exit_code=runs_by_code,
        files_by_outcome=files,
        audio_seconds=audio,
        server_seconds=server,
        run_seconds=run_seconds,
        recordings=ledger.counts(),
        last_run=last,
        last_run_seconds=last_seconds,
        last_success_at=last_success,
        runs_by_host=by_host,
        claims_by_worker=claims,
    )


def render(figures: Figures, *, output_dir: Path | str) -> str:
    """The textfile in the Prometheus text exposition format (version 0.0.4)."""
    base = {"output_dir": str(output_dir)}
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{_labels({**base, **labels})} {_number(value)}")

    codes = sorted({int(code) for code in ExitCode if code != ExitCode.LOCKED} | set(figures.runs_by_exit_code))
    metric("asrbatch_runs_total", "counter", "Runs finished, by exit code (0 ok, 1 files failed, 2 usage, "
           "3 server unavailable, 70 internal error).",
           [({"exit_code": str(code)}, figures.runs_by_exit_code.get(code, 0)) for code in codes])
    metric("asrbatch_host_runs_total", "counter", "Runs finished, by the host that ran them (several hosts share a "
           "ledger on PostgreSQL).", [({"host": host}, count) for host, count in sorted(figures.runs_by_host.items())])
    metric("asrbatch_files_total", "counter", "Recordings processed, by outcome.",
           [({"outcome": outcome}, figures.files_by_outcome.get(outcome, 0)) for outcome in FILE_OUTCOMES])
    metric("asrbatch_audio_seconds_total", "counter", "Seconds of audio transcribed.",
           [({}, figures.audio_seconds)])
    metric("asrbatch_server_seconds_total", "counter", "Seconds the server spent recognising.",
           [({}, figures.server_seconds)])
    metric("asrbatch_run_seconds_total", "counter", "Wall-clock seconds spent in runs.",
           [({}, figures.run_seconds)])
    metric("asrbatch_claimed_recordings", "gauge", "Recordings being worked on right now, by worker (<host>:<pid>).",
           [({"worker": worker}, count) for worker, count in sorted(figures.claims_by_worker.items())])
    states = sorted(set(RECORDING_STATES) | set(figures.recordings))
    metric("asrbatch_recordings", "gauge", "Recordings in the ledger, by current state.",
           [({"outcome": state}, figures.recordings.get(state, 0)) for state in states])
    metric("asrbatch_last_success_timestamp_seconds", "gauge",
           "When the last run that exited 0 finished (Unix time; 0: never).",
           [({}, figures.last_success_at or 0.0)])
    last = figures.last_run
    if last is not None:
        finished = _epoch(last.finished_at) if last.finished_at else 0.0
        metric("asrbatch_last_run_timestamp_seconds", "gauge", "When the last run finished (Unix time).",
               [({}, finished)])
        metric("asrbatch_last_run_exit_code", "gauge", "Exit code of the last run.", [({}, last.exit_code or 0)])
        metric("asrbatch_last_run_duration_seconds", "gauge", "Wall-clock seconds of the last run.",
               [({}, figures.last_run_seconds or 0.0)])
        metric("asrbatch_last_run_files", "gauge", "Recordings of the last run, by outcome.",
               [({"outcome": outcome}, int(last.summary.get(outcome) or 0)) for outcome in RUN_FILE_OUTCOMES])
        metric("asrbatch_last_run_audio_seconds", "gauge", "Seconds of audio transcribed by the last run.",
               [({}, float(last.summary.get("audio_seconds") or 0.0))])
    return "\n".join(lines) + "\n"


def write_textfile(ledger: Ledger, path: Path, *, output_dir: Path | str) -> None:
    """Write the textfile for *ledger* to *path* atomically (temporary file, fsync, rename).

    Raises :class:`OSError` when the file cannot be written.
    """
    text = render(collect(ledger), output_dir=output_dir)
    # node_exporter reads only *.prom files; the temporary name never ends in .prom.
    atomic_write(path.expanduser(), text)


def _duration(run: RunRecord) -> float:
    wall = run.summary.get("wall_seconds")
    if isinstance(wall, (int, float)):
        return float(wall)
    if run.finished_at:
        return max(0.0, _epoch(run.finished_at) - _epoch(run.started_at))
    return 0.0


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
