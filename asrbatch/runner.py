"""One pass over an input folder: scan -> plan -> pipelines (prepare -> transport -> write -> record).

:func:`run_batch` is the library entry point behind ``asrbatch run``.  It takes the lock,
scans, plans (:mod:`asrbatch.plan`), connects to the server(s) once something is to be
sent, and keeps the recognizer's slots busy: as many recordings are prepared ahead as
requests are in flight, each running through its :class:`~asrbatch.pipeline.Pipeline`,
which turns whatever happens to it into its outcome.  The loop owns the stop rules
(``run.max_files``, ``run.max_runtime``, a signal, a server gone, the operator's problem)
and the summary; the exit code follows from the summary.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from asrbatch import housekeeping, output
from asrbatch.claims import Claims, SoleClaims, claims_for
from asrbatch.config import Config, ServerConfig
from asrbatch.errors import OperatorError, ServerUnavailableError
from asrbatch.ledger import FAILED, FINISHED_OUTCOMES, Ledger, open_existing_ledger, open_ledger
from asrbatch.lock import run_lock
from asrbatch.log import kv, printable
from asrbatch.outcomes import PROCESSED, FileOutcome, Outcome, RunSummary, StopReason
from asrbatch.paths import JobPaths
from asrbatch.pipeline import Pipeline, StopControl, preflight
from asrbatch.plan import Action, Decision, decide
from asrbatch.scan import ScanResult, Skipped, scan_directory
from asrbatch.transport import Recognizer, ServerInfo, connect

log = logging.getLogger(__name__)

RecognizerFactory = Callable[[ServerConfig], Recognizer]
"""Builds the recognizer a run talks to from ``config.server`` (default: :func:`asrbatch.transport.connect`)."""


@dataclass(frozen=True)
class RunOptions:
    """What is truly per invocation; everything else is in the Config (``input.dir`` included)."""

    force: bool = False
    """Redo finished recordings and overwrite existing transcripts."""
    dry_run: bool = False
    """Decide and check locally, send nothing, change nothing."""
    exclude_keys: frozenset[str] = frozenset()
    """Recordings left alone in this pass (``asrbatch watch``: files still open or settling)."""


class ProgressListener(Protocol):
    def __call__(self, event: str, *, total: int = 0, outcome: FileOutcome | None = None) -> None: ...


def _no_progress(event: str, *, total: int = 0, outcome: FileOutcome | None = None) -> None:
    return None


def run_batch(
    config: Config,
    options: RunOptions | None = None,
    *,
    recognizer_factory: RecognizerFactory = connect,
    progress: ProgressListener = _no_progress,
    clock: Callable[[], float] = time.monotonic,
    stop: threading.Event | None = None,
    on_start: Callable[[], None] | None = None,
) -> RunSummary:
    """Run one pass over ``config.input.dir`` and return what happened.

    Raises :class:`~asrbatch.errors.ConfigError` for a bad input/output folder,
    :class:`~asrbatch.errors.OperatorError` when the output or state folder cannot be used
    or the ledger is damaged, :class:`~asrbatch.errors.LockedError` when another run holds
    the lock, :class:`~asrbatch.errors.EndpointError` when the server answers but the
    recognition function cannot be used.  An unreachable server does not raise: the summary
    says ``stopped=server_unavailable`` (exit code 3).

    *stop*, when set (e.g. from a signal handler), lets the recordings in flight finish and
    leaves the rest pending (``stopped=interrupted``).  *on_start* is called once the lock is
    held, before anything else (monitoring's start ping).
    """
    options = options or RunOptions()
    started = clock()
    paths = JobPaths.for_run(config)
    if options.dry_run:
        return _dry_run(config, options, paths, clock, started)
    paths.prepare()
    with run_lock(paths):
        if on_start is not None:
            on_start()
        with open_ledger(config, paths) as ledger:
            run = _Run(config, options, paths, ledger, recognizer_factory, progress, clock, StopControl(stop))
            return run.execute(started)


def _dry_run(config: Config, options: RunOptions, paths: JobPaths, clock: Callable[[], float],
             started: float) -> RunSummary:
    """What a run would do, with the local checks (probe, transcripts in the way) that need no server."""
    assert paths.input_dir is not None and paths.output_dir is not None
    ledger = open_existing_ledger(config, paths)
    try:
        scan = scan_directory(paths.input_dir, config.input, exclude=paths.excluded(config), report_ignored=True)
        decisions = decide(scan, ledger, force=options.force, max_runs=config.state.max_runs,
                           output_dir=paths.output_dir)
    finally:
        if ledger is not None:
            ledger.close()
    bases = output.output_bases(r.key for r in scan.recordings)
    planned = []
    for decision in decisions:
        failure = preflight(config, paths.output_dir, decision, bases, force=options.force)
        planned.append(decision if failure is None else dataclasses.replace(decision, failure=failure))
    outcomes = [Outcome.SKIPPED if d.action == Action.SKIP else Outcome.FAILED if d.failure else Outcome.PENDING
                for d in planned]
    skipped_files = [s for s in scan.skipped if s.recording]
    return RunSummary(
        input_dir=paths.input_dir,
        output_dir=paths.output_dir,
        state_dir=paths.state_dir,
        found=len(scan.recordings) + len(skipped_files),
        new=sum(d.new for d in planned),
        failed=outcomes.count(Outcome.FAILED),
        skipped=outcomes.count(Outcome.SKIPPED) + len(skipped_files),
        pending=outcomes.count(Outcome.PENDING),
        dry_run=True,
        plan=tuple(planned),
        skipped_by_scan=scan.skipped,
        wall_seconds=clock() - started,
    )


class _Run:
    """One pass, lock held and ledger open."""

    def __init__(
        self,
        config: Config,
        options: RunOptions,
        paths: JobPaths,
        ledger: Ledger,
        recognizer_factory: RecognizerFactory,
        progress: ProgressListener,
        clock: Callable[[], float],
        stop: StopControl,
    ) -> None:
        self.config = config
        self.options = options
        self.paths = paths
        self.ledger = ledger
        self.recognizer_factory = recognizer_factory
        self.progress = progress
        self.clock = clock
        self.stop = stop
        self.outcomes: list[FileOutcome] = []
        self.outcomes_lock = threading.Lock()
        self.recognizer: Recognizer | None = None
        self.server: ServerInfo | None = None
        self.run_id = 0
        self.claims: Claims = SoleClaims()

    def execute(self, started: float) -> RunSummary:
        assert self.paths.input_dir is not None and self.paths.output_dir is not None
        self.run_id = self.ledger.begin_run(self.paths.input_dir)
        self.claims = claims_for(self.ledger, self.config, output_dir=self.paths.output_dir, run_id=self.run_id)
        # Ours alone (the lock, or with a shared ledger a folder per worker): leftovers are a dead run's.
        shutil.rmtree(self.paths.tmp, ignore_errors=True)
        summary: RunSummary | None = None
        error: BaseException | None = None
        final: RunSummary | None = None
        try:
            scan = scan_directory(self.paths.input_dir, self.config.input, exclude=self.paths.excluded(self.config))
            scan = _hold_back(scan, self.options.exclude_keys)
            for skipped in scan.skipped:
                log.info(kv("skip", path=skipped.key, reason=skipped.reason))
            decisions = decide(scan, self.ledger, force=self.options.force, max_runs=self.config.state.max_runs,
                               output_dir=self.paths.output_dir)
            self._remember_touched(decisions)
            self._clean_leftovers(decisions)
            self._tidy(decisions)
            work = [d for d in decisions if d.action != Action.SKIP]
            for d in decisions:
                if d.action == Action.SKIP:
                    log.debug(kv("skip", path=d.recording.key, reason=d.reason))
            self.progress("start", total=len(work))
            bases = output.output_bases(r.key for r in scan.recordings)
            self._process(work, bases, started)
            summary = self._summary(scan, decisions, started)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.claims.close()
            shutil.rmtree(self.paths.tmp, ignore_errors=True)
            if self.recognizer is not None:
                self.recognizer.close()
            final = self._record_finish(summary, error)
            self.progress("end")
        assert final is not None
        return final

    # -- the loop -------------------------------------------------------------------------------

    def _process(self, work: list[Decision], bases: dict[str, str], started: float) -> None:
        limit = self.config.run.max_files
        if limit is not None and len(work) > limit:
            for d in work[limit:]:
                self._add(FileOutcome(d.recording.key, Outcome.PENDING, "left for the next run (run.max_files)"))
            work = work[:limit]
            self.stop.bound(StopReason.MAX_FILES, "run.max_files reached")
        if not work:
            return
        if any(d.action == Action.SEND for d in work):
            self._connect()
            if self.stop.reason == StopReason.SERVER_UNAVAILABLE:
                for d in work:
                    self._add(FileOutcome(d.recording.key, Outcome.PENDING, "left for the next run (server unavailable)"))
                return
        capacity = self.recognizer.capacity if self.recognizer is not None else 1
        pipeline = Pipeline(self.config, self.paths, self.ledger, self.stop, run_id=self.run_id, bases=bases,
                            force=self.options.force, recognizer=self.recognizer, server=self.server,
                            decoding=threading.BoundedSemaphore(os.cpu_count() or 1), claims=self.claims)
        # Twice as many recordings in the works as recognitions in flight: the next ones are
        # prepared (and, where the protocol allows, uploaded) while the current ones are on the
        # server, so a slot that frees never waits for a decode.  Disk, not memory, holds them.
        pool_size = 2 * capacity
        max_runtime = self.config.run.max_runtime
        deadline = started + max_runtime if max_runtime else None
        with concurrent.futures.ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="asrbatch") as pool:
            running: set[concurrent.futures.Future[FileOutcome]] = set()
            queue = list(work)
            while queue or running:
                while queue and len(running) < pool_size and not self._bounded_stop(deadline):
                    taken = self.claims.take(queue.pop(0))  # shared ledger: another worker may hold it
                    if isinstance(taken, FileOutcome):
                        self._add(taken)
                        continue
                    running.add(pool.submit(pipeline.process, taken))
                if self.stop.stopping and queue:
                    reason = self.stop.left_for_next_run()
                    for d in queue:
                        self._add(FileOutcome(d.recording.key, Outcome.PENDING, reason))
                    queue.clear()
                if not running:
                    break
                done, running = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    outcome = future.result()
                    self.claims.release(outcome.key)
                    self._add(outcome)
        if self.stop.fatal is not None:
            raise self.stop.fatal

    def _bounded_stop(self, deadline: float | None) -> bool:
        """True when the run must start nothing new (a stop, or ``run.max_runtime`` reached)."""
        if deadline is not None and not self.stop.stopping and self.clock() >= deadline:
            self.stop.request(StopReason.MAX_RUNTIME, "run.max_runtime reached")
        return self.stop.stopping

    def _connect(self) -> None:
        self.recognizer = self.recognizer_factory(self.config.server)
        try:
            self.server = self.recognizer.probe()
        except ServerUnavailableError as exc:
            self.stop.request(StopReason.SERVER_UNAVAILABLE, str(exc))
            log.error(kv("server_unavailable", url=self.config.server.url, reason=str(exc)))
        else:
            log.info(kv("server", url=self.server.url, kind=self.server.kind, version=self.server.version,
                        protocol=self.server.protocol, capacity=self.recognizer.capacity))

    def _add(self, outcome: FileOutcome) -> None:
        with self.outcomes_lock:
            self.outcomes.append(outcome)
        if outcome.outcome in PROCESSED:
            fields = {"path": outcome.key, "outcome": outcome.outcome, "audio_s": _fmt(outcome.audio_seconds),
                      "server_s": _fmt(outcome.server_seconds), "attempts": outcome.attempts,
                      "chunks": outcome.chunks}
            if outcome.outcome == Outcome.FAILED:
                fields["error"] = outcome.detail
            log.info(kv("file", **fields))
            if outcome.outcome == Outcome.FAILED:
                # An error for that file: shown even with -q, so cron's mail names it.
                log.error("%s: %s", printable(outcome.key), outcome.detail)
        self.progress("file", outcome=outcome)

    # -- before the loop ----------------------------------------------------------------------

    def _remember_touched(self, decisions: list[Decision]) -> None:
        """Recordings touched but unchanged: store their new stat so the next run need not hash them."""
        for d in decisions:
            if d.touched and d.action == Action.SKIP:
                self.ledger.update_stat(d.identity)

    def _clean_leftovers(self, decisions: list[Decision]) -> None:
        """Temporary files of a killed run's transcripts; never fails the run."""
        assert self.paths.output_dir is not None
        if self.claims.shared:
            return  # other workers may be writing them right now: a claim cleans up (asrbatch.claims)
        for d in decisions:
            if d.entry is not None and not d.entry.finished and d.entry.output_hashes:
                removed = output.remove_leftovers(self.paths.output_dir, d.entry.output_hashes)
                if removed:
                    log.info(kv("cleanup", path=d.recording.key, removed_partial=removed))

    def _tidy(self, decisions: list[Decision]) -> None:
        """Housekeeping for recordings finished (or failed for good) in an earlier run but still here:
        moved after a failed move, or from before ``housekeeping.mode: move`` was turned on."""
        settings = self.config.housekeeping
        if settings.mode != "move":
            return
        skipped = [d for d in decisions if d.action == Action.SKIP]
        if not skipped:
            return
        stats = self.ledger.stats_by_key()
        for d in skipped:
            outcome = stats.get(d.recording.key, (0, 0, ""))[2]
            if outcome in FINISHED_OUTCOMES:
                housekeeping.move_recording(d.recording.path, d.recording.key, settings, succeeded=True)
            elif outcome == FAILED and d.entry is not None and d.entry.permanent:
                housekeeping.move_recording(d.recording.path, d.recording.key, settings, succeeded=False)

    # -- after the loop -----------------------------------------------------------------------

    def _summary(self, scan: ScanResult, decisions: list[Decision], started: float) -> RunSummary:
        assert self.paths.input_dir is not None and self.paths.output_dir is not None
        counts: dict[str, int] = {}
        audio_seconds = server_seconds = 0.0
        for o in self.outcomes:
            counts[o.outcome] = counts.get(o.outcome, 0) + 1
            if o.outcome in FINISHED_OUTCOMES and o.audio_seconds:
                audio_seconds += o.audio_seconds
            server_seconds += o.server_seconds or 0.0
        skipped_files = sum(1 for s in scan.skipped if s.recording)
        return RunSummary(
            input_dir=self.paths.input_dir,
            output_dir=self.paths.output_dir,
            state_dir=self.paths.state_dir,
            found=len(scan.recordings) + skipped_files,
            new=sum(d.new for d in decisions),
            done=counts.get(Outcome.DONE, 0),
            empty=counts.get(Outcome.EMPTY, 0),
            failed=counts.get(Outcome.FAILED, 0),
            skipped=sum(d.action == Action.SKIP for d in decisions) + skipped_files + counts.get(Outcome.SKIPPED, 0),
            reused=counts.get(Outcome.REUSED, 0),
            pending=counts.get(Outcome.PENDING, 0),
            audio_seconds=audio_seconds,
            server_seconds=server_seconds,
            wall_seconds=self.clock() - started,
            stopped=self.stop.reason,
            stop_message=self.stop.message,
            outcomes=tuple(self.outcomes),
            plan=tuple(decisions),
            skipped_by_scan=scan.skipped,
            server=self.server,
        )

    def _record_finish(self, summary: RunSummary | None, error: BaseException | None) -> RunSummary | None:
        """Log the summary and record the run's end; a ledger that cannot take it (a full disk)
        turns the summary into an operator's stop instead of a crash."""
        try:
            if summary is not None:
                log.info(summary.line())
                status = "stopped" if summary.stopped else "finished"
                self.ledger.finish_run(self.run_id, status=status, exit_code=int(summary.exit_code),
                                       summary=summary.as_dict())
            else:
                code = getattr(error, "exit_code", 70)
                self.ledger.finish_run(self.run_id, status="error", exit_code=int(code),
                                       summary={"error": str(error)})
        except OperatorError as problem:
            log.error(kv("operator_error", reason=str(problem)))
            if summary is not None and summary.stopped != StopReason.OPERATOR_ERROR:
                summary = dataclasses.replace(summary, stopped=StopReason.OPERATOR_ERROR, stop_message=str(problem))
            elif summary is None and error is None:
                raise
        return summary


def _hold_back(scan: ScanResult, keys: frozenset[str]) -> ScanResult:
    """*scan* without the recordings named in *keys*, which are reported as skipped."""
    if not keys:
        return scan
    held = tuple(Skipped(r.key, "still being written (left for a later pass)") for r in scan.recordings
                 if r.key in keys)
    return dataclasses.replace(scan, recordings=tuple(r for r in scan.recordings if r.key not in keys),
                               skipped=scan.skipped + held)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
