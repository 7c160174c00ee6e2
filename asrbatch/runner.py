"""One pass over an input folder: scan -> ledger filter -> prepare -> transport -> write -> record.

:func:`run_batch` is the library entry point behind ``asrbatch run``.  It takes
the lock, scans, decides per recording (send, skip, reuse), prepares audio and
sends chunks with a bounded number of requests in flight while the next
recordings are being prepared, writes the outputs atomically and records each
outcome as it completes.  It returns a :class:`RunSummary`; the exit code is
derived from it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from asrbatch import audio, housekeeping, output
from asrbatch.config import Config
from asrbatch.errors import (
    AsrbatchError,
    ConfigError,
    EndpointError,
    ExitCode,
    FileError,
    ServerUnavailableError,
)
from asrbatch.ledger import FAILED, FINISHED_OUTCOMES, ChunkResult, Entry, Ledger, file_sha256
from asrbatch.lock import RunLock
from asrbatch.output import Segment, Transcript
from asrbatch.scan import Recording, ScanResult, Skipped, is_unchanged, read_hotwords_file, scan_directory
from asrbatch.transport import Client, Recognition, ServerInfo, ServerPool

log = logging.getLogger(__name__)

# What happens to a recording in this run.
SEND = "send"
REUSE = "reuse"
REWRITE = "rewrite"
SKIP = "skip"


@dataclass(frozen=True)
class RunOptions:
    """What one ``asrbatch run`` is asked to do, beyond the Config."""

    input_dir: Path
    output_dir: Path | None = None
    force: bool = False
    dry_run: bool = False
    min_age: float | None = None
    hotwords: tuple[str, ...] = ()
    max_files: int | None = None
    max_runtime: float | None = None
    workers: int | None = None
    exclude_keys: frozenset[str] = frozenset()
    """Recordings left alone in this pass (``asrbatch watch``: files still open or settling)."""


@dataclass(frozen=True)
class Decision:
    recording: Recording
    action: str
    reason: str
    new: bool = False
    changed: bool = False
    sha256: str | None = None
    entry: Entry | None = None
    source: Entry | None = None
    """For REUSE: the finished recording with the same content."""


@dataclass(frozen=True)
class FileOutcome:
    key: str
    outcome: str
    """done, empty, failed, reused, pending (left for a later run) or skipped."""
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
    stopped: str | None = None
    """Why the run stopped early: server_unavailable, max_files, max_runtime, interrupted."""
    stop_message: str | None = None
    dry_run: bool = False
    outcomes: tuple[FileOutcome, ...] = ()
    plan: tuple[Decision, ...] = ()
    skipped_by_scan: tuple[tuple[str, str], ...] = ()
    server: ServerInfo | None = None

    @property
    def exit_code(self) -> ExitCode:
        if self.stopped == "server_unavailable":
            return ExitCode.SERVER_UNAVAILABLE
        if self.failed:
            return ExitCode.FILES_FAILED
        return ExitCode.OK

    @property
    def speed(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

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
            "stopped": self.stopped,
            "exit_code": int(self.exit_code),
            "failures": [
                {"path": o.key, "error": o.detail} for o in self.outcomes if o.outcome == FAILED
            ],
        }

    def line(self) -> str:
        """The one-line run summary written to the log (and printed by the CLI)."""
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


class ProgressListener(Protocol):
    def __call__(self, event: str, *, total: int = 0, outcome: FileOutcome | None = None) -> None: ...


def _no_progress(event: str, *, total: int = 0, outcome: FileOutcome | None = None) -> None:
    return None


ClientFactory = Callable[[Config], Client]


def _default_client(config: Config) -> Client:
    """One server (``server.url``), or a pool sharing the work between ``server.urls``."""
    if config.server.urls:
        # Same interface as Client for everything the run uses (probe, transcribe, capacity, close).
        return cast(Client, ServerPool(config.server))
    return Client(config.server)


# ----------------------------------------------------------------------------------------------
# Deciding what to do with each recording (pure apart from hashing)


def decide(
    scan: ScanResult,
    ledger: Ledger | None,
    *,
    force: bool,
    max_runs: int,
    output_dir: Path,
    hasher: Callable[[Path], str] = file_sha256,
) -> list[Decision]:
    """Decide for every scanned recording whether to send, reuse, rewrite or skip it.

    The cheap stat comparison comes first; a file is hashed only when it is new
    or its size/mtime moved.
    """
    stats = ledger.stats_by_key() if ledger is not None else {}
    decisions: list[Decision] = []
    entries: dict[str, Entry] = {}
    # Only rows that are not plainly "finished and unchanged" need their full record.
    interesting = [
        r.key
        for r in scan.recordings
        if r.key in stats
        and (force or stats[r.key][2] not in FINISHED_OUTCOMES or stats[r.key][:2] != (r.size, r.mtime_ns))
    ]
    if ledger is not None and interesting:
        entries = ledger.entries(interesting)
    for recording in scan.recordings:
        known = stats.get(recording.key)
        if known is None:
            sha = hasher(recording.path)
            decisions.append(_decide_new(recording, sha, ledger, force=force))
            continue
        size, mtime_ns, outcome = known
        same_stat = (size, mtime_ns) == (recording.size, recording.mtime_ns)
        if same_stat and outcome in FINISHED_OUTCOMES and not force:
            decisions.append(Decision(recording, SKIP, "done, unchanged"))
            continue
        entry = entries.get(recording.key) or (ledger.get(recording.key) if ledger else None)
        assert entry is not None
        sha = entry.sha256 if same_stat and entry.sha256 else hasher(recording.path)
        changed = sha != entry.sha256
        if changed:
            decision = _decide_new(recording, sha, ledger, force=force)
            decisions.append(dataclasses.replace(decision, new=True, changed=True, entry=entry,
                                                 reason="content changed since last run"))
            continue
        if force:
            decisions.append(Decision(recording, SEND, "--force", sha256=sha, entry=entry))
        elif entry.finished:
            missing = [rel for rel in entry.output_hashes if not (output_dir / rel).exists()]
            if missing and entry.result is not None:
                decisions.append(Decision(recording, REWRITE, "transcript missing, rewritten from the ledger",
                                          sha256=sha, entry=entry))
            else:
                decisions.append(Decision(recording, SKIP, "done, unchanged (touched)", sha256=sha, entry=entry))
        elif entry.outcome == FAILED and entry.permanent:
            decisions.append(Decision(recording, SKIP, f"failed: {entry.error} (fix the file, or `asrbatch retry`)",
                                      sha256=sha, entry=entry))
        elif entry.outcome == FAILED and entry.failed_runs >= max_runs:
            decisions.append(Decision(recording, SKIP,
                                      f"gave up after {entry.failed_runs} runs: {entry.error} (`asrbatch retry`)",
                                      sha256=sha, entry=entry))
        elif entry.outcome == FAILED:
            decisions.append(Decision(recording, SEND, f"retry {entry.failed_runs + 1}/{max_runs} after: {entry.error}",
                                      sha256=sha, entry=entry))
        else:
            decisions.append(Decision(recording, SEND, "pending from an earlier run", sha256=sha, entry=entry))
    return decisions


def _decide_new(recording: Recording, sha: str, ledger: Ledger | None, *, force: bool) -> Decision:
    if not force and ledger is not None:
        source = ledger.find_by_hash(sha, exclude_key=recording.key)
        if source is not None:
            return Decision(recording, REUSE, f"same content as {source.key}, transcript reused",
                            new=True, sha256=sha, source=source)
    return Decision(recording, SEND, "new", new=True, sha256=sha)


# ----------------------------------------------------------------------------------------------
# The run


def run_batch(
    config: Config,
    options: RunOptions,
    *,
    client_factory: ClientFactory = _default_client,
    progress: ProgressListener = _no_progress,
    clock: Callable[[], float] = time.monotonic,
    stop: threading.Event | None = None,
    on_start: Callable[[], None] | None = None,
) -> RunSummary:
    """Run one pass over ``options.input_dir`` and return what happened.

    Raises :class:`ConfigError` for a bad input/output folder, :class:`LockedError`
    when another run holds the lock, :class:`EndpointError` when the server answers
    but the recognition function cannot be used.  An unreachable server does not
    raise: the summary says ``stopped="server_unavailable"`` (exit code 3).

    *stop*, when set (e.g. from a signal handler), lets the recordings in flight finish
    and leaves the rest pending (``stopped="interrupted"``).  *on_start* is called once
    the lock is held, before anything else (monitoring's start ping).
    """
    started = clock()
    input_dir = options.input_dir.expanduser()
    if not input_dir.is_dir():
        raise ConfigError(f"input folder {input_dir} does not exist or is not a folder",
                          hint="check the path given to `asrbatch run`")
    input_dir = input_dir.resolve()
    output_dir = (options.output_dir or config.output_dir_for(input_dir)).expanduser().resolve()
    if output_dir == input_dir or output_dir in input_dir.parents:
        raise ConfigError(f"output folder {output_dir} contains the input folder {input_dir}",
                          hint="choose an output folder outside the recordings, e.g. -o "
                               f"{input_dir.with_name(input_dir.name + '_transcripts')}")
    state_dir = config.state_dir_for(output_dir).expanduser().resolve()
    exclude = (output_dir, state_dir, *housekeeping.folders(config.housekeeping))
    min_age = options.min_age

    if options.dry_run:
        ledger_path = state_dir / "ledger.sqlite3"
        ledger = Ledger.open(ledger_path) if ledger_path.exists() else None
        try:
            scan = scan_directory(input_dir, config.input, exclude=exclude, min_age=min_age, report_ignored=True)
            decisions = decide(scan, ledger, force=options.force, max_runs=config.state.max_runs,
                               output_dir=output_dir)
        finally:
            if ledger is not None:
                ledger.close()
        return RunSummary(
            input_dir=input_dir,
            output_dir=output_dir,
            state_dir=state_dir,
            found=len(scan.recordings),
            new=sum(d.new for d in decisions),
            skipped=sum(d.action == SKIP for d in decisions) + len(scan.skipped),
            pending=sum(d.action in (SEND, REUSE, REWRITE) for d in decisions),
            dry_run=True,
            plan=tuple(decisions),
            skipped_by_scan=tuple((s.key, s.reason) for s in scan.skipped),
            wall_seconds=clock() - started,
        )

    with RunLock(state_dir):
        if on_start is not None:
            on_start()
        with Ledger.open(state_dir / "ledger.sqlite3") as ledger:
            run = _Run(config, options, ledger, input_dir, output_dir, state_dir, client_factory, progress, clock,
                       exclude, stop)
            return run.execute(started)


class _Stop(Exception):
    """Internal: the run must stop (server gone, bounds reached)."""


class _Run:
    def __init__(
        self,
        config: Config,
        options: RunOptions,
        ledger: Ledger,
        input_dir: Path,
        output_dir: Path,
        state_dir: Path,
        client_factory: ClientFactory,
        progress: ProgressListener,
        clock: Callable[[], float],
        exclude: tuple[Path, ...],
        interrupt: threading.Event | None,
    ) -> None:
        self.config = config
        self.options = options
        self.ledger = ledger
        self.input_dir = input_dir
        self.output_dir = output_dir
        self.state_dir = state_dir
        self.client_factory = client_factory
        self.progress = progress
        self.clock = clock
        self.exclude = exclude
        self.interrupt = interrupt
        self.stop_event = threading.Event()
        self.stopped: str | None = None
        self.stop_message: str | None = None
        self.fatal: BaseException | None = None
        self.outcomes: list[FileOutcome] = []
        self.outcomes_lock = threading.Lock()
        self.client: Client | None = None
        self.server: ServerInfo | None = None
        self.plan_signature = _plan_signature(config)
        self.run_id = 0
        # Decoding is CPU work: one recording per core at a time, so that with many recordings
        # prepared ahead the first ones are ready (and sent) soon instead of all at once, late.
        self.decoding = threading.BoundedSemaphore(os.cpu_count() or 1)

    def execute(self, started: float) -> RunSummary:
        self.run_id = self.ledger.begin_run(self.input_dir)
        tmp_root = self.state_dir / "tmp"
        shutil.rmtree(tmp_root, ignore_errors=True)  # we hold the lock: leftovers are a dead run's
        summary: RunSummary | None = None
        try:
            scan = scan_directory(self.input_dir, self.config.input, exclude=self.exclude,
                                  min_age=self.options.min_age)
            scan = _hold_back(scan, self.options.exclude_keys)
            for skipped in scan.skipped:
                log.info("event=skip path=%s reason=%r", skipped.key, skipped.reason)
            decisions = decide(scan, self.ledger, force=self.options.force, max_runs=self.config.state.max_runs,
                               output_dir=self.output_dir)
            self._clean_leftovers(decisions)
            self._tidy(decisions)
            bases = output.output_bases(r.key for r in scan.recordings)
            work = [d for d in decisions if d.action != SKIP]
            for d in decisions:
                if d.action == SKIP:
                    log.debug("event=skip path=%s reason=%r", d.recording.key, d.reason)
            self.progress("start", total=len(work))
            self._process(work, bases, tmp_root, started)
            summary = self._summary(scan, decisions, started)
            return summary
        except BaseException as exc:
            self.fatal = exc
            raise
        finally:
            shutil.rmtree(tmp_root, ignore_errors=True)
            if self.client is not None:
                self.client.close()
            if summary is not None:
                log.info(summary.line())
                status = "stopped" if summary.stopped else "finished"
                self.ledger.finish_run(self.run_id, status=status, exit_code=int(summary.exit_code),
                                       summary=summary.as_dict())
            else:
                code = getattr(self.fatal, "exit_code", 70)
                self.ledger.finish_run(self.run_id, status="error", exit_code=int(code),
                                       summary={"error": str(self.fatal)})
            self.progress("end")

    # -- orchestration ------------------------------------------------------------------------

    def _process(self, work: list[Decision], bases: dict[str, str], tmp_root: Path, started: float) -> None:
        limit = self.options.max_files or self.config.run.max_files
        if limit is not None and len(work) > limit:
            for d in work[limit:]:
                self._add(FileOutcome(d.recording.key, "pending", "left for the next run (--max-files)"))
            work = work[:limit]
            self.stopped = "max_files"
        if not work:
            return
        if any(d.action == SEND for d in work):
            self._connect()  # raises EndpointError; unreachable -> stopped
            if self.stopped == "server_unavailable":
                for d in work:
                    self._add(FileOutcome(d.recording.key, "pending", "server unavailable"))
                return
        workers = self._capacity()
        in_flight = threading.BoundedSemaphore(workers)
        # Twice as many tasks as requests in flight: the next recordings are prepared while the
        # current ones are on the server, one ready for each slot, so requests finishing together
        # never leave a slot waiting for a decode.  Memory stays bounded by 2 x workers chunks.
        pool_size = 2 * workers
        max_runtime = self.options.max_runtime or self.config.run.max_runtime
        deadline = started + max_runtime if max_runtime else None
        with concurrent.futures.ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="asrbatch") as pool:
            pending: set[concurrent.futures.Future[FileOutcome]] = set()
            queue = list(work)
            while queue or pending:
                while queue and len(pending) < pool_size and not self._stopping():
                    if deadline is not None and self.clock() >= deadline:
                        self._request_stop("max_runtime", "--max-runtime reached")
                        break
                    decision = queue.pop(0)
                    pending.add(pool.submit(self._one, decision, bases, tmp_root, in_flight))
                if self._stopping() and queue:
                    reason = self.stop_message or self.stopped or "stopped"
                    for d in queue:
                        self._add(FileOutcome(d.recording.key, "pending", f"left for the next run ({reason})"))
                    queue.clear()
                if not pending:
                    break
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    self._add(future.result())
        if self.fatal is not None:
            raise self.fatal

    def _capacity(self) -> int:
        """Requests in flight at once, over all servers.

        ``--workers N`` means N per server, like ``server.concurrency``; without either, what each
        server reports, else 1 per server.
        """
        if isinstance(self.client, ServerPool):
            if self.options.workers:
                self.client.set_concurrency(self.options.workers)
            return self.client.capacity
        if self.options.workers:
            return self.options.workers
        capacity = getattr(self.client, "capacity", None)
        if isinstance(capacity, int) and capacity > 0:
            return capacity
        if self.config.server.concurrency:
            return self.config.server.concurrency
        if self.server is not None and self.server.concurrency_limit:
            return max(1, self.server.concurrency_limit)
        return 1

    def _connect(self) -> None:
        self.client = self.client_factory(self.config)
        try:
            self.server = self.client.probe()
        except ServerUnavailableError as exc:
            self._request_stop("server_unavailable", str(exc))
            log.error("event=server_unavailable url=%s reason=%r", self.config.server.url, str(exc))
        else:
            log.info("event=server url=%s gradio=%s protocol=%s", self.server.url, self.server.gradio_version,
                     self.server.protocol)

    def _stopping(self) -> bool:
        """True once the run must stop; a set *interrupt* event (a signal) stops it here."""
        if self.interrupt is not None and self.interrupt.is_set() and not self.stop_event.is_set():
            self._request_stop("interrupted", "stopped by a signal")
            log.info("event=interrupted action=finish_in_flight")
        return self.stop_event.is_set()

    def _request_stop(self, why: str, message: str) -> None:
        if self.stopped is None or self.stopped in ("max_files",):
            self.stopped = why
            self.stop_message = message
        self.stop_event.set()

    def _add(self, outcome: FileOutcome) -> None:
        with self.outcomes_lock:
            self.outcomes.append(outcome)
        if outcome.outcome in ("done", "empty", "failed", "reused"):
            log.info(
                "event=file path=%s outcome=%s audio_s=%s server_s=%s attempts=%d chunks=%d%s",
                outcome.key,
                outcome.outcome,
                _fmt(outcome.audio_seconds),
                _fmt(outcome.server_seconds),
                outcome.attempts,
                outcome.chunks,
                f" error={outcome.detail!r}" if outcome.outcome == FAILED else "",
            )
            if outcome.outcome == FAILED:
                # An error for that file: shown even with -q, so cron's mail names it.
                log.error("%s: %s", outcome.key, outcome.detail)
        self.progress("file", outcome=outcome)

    # -- one recording ------------------------------------------------------------------------

    def _one(
        self, decision: Decision, bases: dict[str, str], tmp_root: Path, in_flight: threading.BoundedSemaphore
    ) -> FileOutcome:
        recording = decision.recording
        if self._stopping():
            return FileOutcome(recording.key, "pending", f"left for the next run ({self.stop_message})")
        try:
            if decision.action in (REUSE, REWRITE):
                return self._reuse(decision, bases)
            return self._transcribe(decision, bases, tmp_root, in_flight)
        except _Stop as stop:
            return FileOutcome(recording.key, "pending", f"left for the next run ({stop})")
        except FileError as exc:
            message = exc.message + (f" ({exc.hint})" if exc.hint else "")
            attempts = getattr(exc, "attempts", 0)
            self.ledger.record_failure(
                recording.key,
                size=recording.size,
                mtime_ns=recording.mtime_ns,
                sha256=decision.sha256,
                error=message,
                permanent=exc.permanent,
                attempts=attempts,
                audio_seconds=getattr(exc, "audio_seconds", None),
                run_id=self.run_id,
            )
            if exc.permanent:
                housekeeping.move_recording(recording.path, recording.key, self.config.housekeeping, succeeded=False)
            return FileOutcome(recording.key, FAILED, message, attempts=attempts)
        except EndpointError as exc:
            self.fatal = exc
            self._request_stop("endpoint_error", str(exc))
            return FileOutcome(recording.key, "pending", str(exc))
        except AsrbatchError as exc:
            self.fatal = exc
            self._request_stop("error", str(exc))
            return FileOutcome(recording.key, "pending", str(exc))

    def _reuse(self, decision: Decision, bases: dict[str, str]) -> FileOutcome:
        recording = decision.recording
        source = decision.source or decision.entry
        assert source is not None and source.result is not None
        transcript = Transcript.from_dict(source.result)
        transcript = dataclasses.replace(transcript, source=recording.key)
        written = self._finish(decision, transcript, bases, sha256=decision.sha256, server_seconds=0.0, attempts=0)
        return FileOutcome(recording.key, "reused", decision.reason, audio_seconds=transcript.audio_seconds,
                           outputs=tuple(written))

    def _finish(
        self, decision: Decision, transcript: Transcript, bases: dict[str, str], *, sha256: str | None,
        server_seconds: float, attempts: int,
    ) -> dict[str, str]:
        """Write the outputs, then record the success, then (optionally) move the recording away."""
        recording = decision.recording
        base = self._base_for(decision, bases)
        written = self._write(decision, transcript, base)
        self.ledger.record_success(
            recording.key,
            size=recording.size,
            mtime_ns=recording.mtime_ns,
            sha256=sha256,
            outcome="empty" if transcript.empty else "done",
            outputs={"base": base, **{rel: rel.rsplit(".", 1)[-1] for rel in written}},
            output_hashes=written,
            result=transcript.to_dict(),
            audio_seconds=transcript.audio_seconds,
            server_seconds=server_seconds,
            attempts=attempts,
            run_id=self.run_id,
        )
        housekeeping.move_recording(recording.path, recording.key, self.config.housekeeping, succeeded=True)
        return written

    def _base_for(self, decision: Decision, bases: dict[str, str]) -> str:
        entry = decision.entry
        if entry is not None and isinstance(entry.outputs.get("base"), str):
            return entry.outputs["base"]
        return bases[decision.recording.key]

    def _transcribe(
        self, decision: Decision, bases: dict[str, str], tmp_root: Path, in_flight: threading.BoundedSemaphore
    ) -> FileOutcome:
        recording = decision.recording
        sha = decision.sha256 or file_sha256(recording.path)
        self.ledger.record_pending(recording.key, size=recording.size, mtime_ns=recording.mtime_ns, sha256=sha,
                                   changed=decision.changed or decision.entry is None)
        with self.decoding:
            info = audio.probe(recording.path)
        hotwords = self._hotwords(recording)
        workdir = tmp_root / hashlib.sha1(recording.key.encode()).hexdigest()[:16]
        workdir.mkdir(parents=True, exist_ok=True)
        attempts = 0
        server_seconds = 0.0
        try:
            with self.decoding:
                prepared = audio.prepare(recording.path, info, self.config.audio, workdir)
            done = self.ledger.load_chunks(recording.key, sha, self.plan_signature)
            results: dict[tuple[int, int], ChunkResult] = {}
            for chunk in prepared.chunks:
                channel = chunk.channel if chunk.channel is not None else -1
                ident = (channel, chunk.index)
                if ident in done:
                    results[ident] = done[ident]
                    continue
                if self._stopping():
                    raise _Stop(self.stop_message or "stopped")
                if chunk.silent:
                    result = ChunkResult(channel, chunk.index, chunk.start, chunk.end, "", 0.0, 0)
                else:
                    path = prepared.export(chunk)
                    recognition = self._send(path, recording, chunk.end - chunk.start, hotwords, in_flight)
                    result = ChunkResult(channel, chunk.index, chunk.start, chunk.end, recognition.text.strip(),
                                         recognition.server_seconds, recognition.attempts)
                    if path != recording.path:
                        path.unlink(missing_ok=True)
                self.ledger.save_chunk(recording.key, sha, self.plan_signature, result)
                results[ident] = result
            for result in results.values():
                attempts += result.attempts
                server_seconds += result.server_seconds
        except FileError as exc:
            exc.attempts = attempts  # type: ignore[attr-defined]
            exc.audio_seconds = info.duration  # type: ignore[attr-defined]
            if exc.path is None:
                exc.path = recording.key
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if not is_unchanged(recording):
            raise _Stop("file changed while being transcribed")
        transcript = _assemble(recording.key, prepared, results, info.duration, server_seconds, attempts,
                               self.server, hotwords)
        written = self._finish(decision, transcript, bases, sha256=sha, server_seconds=server_seconds,
                               attempts=attempts)
        outcome = "empty" if transcript.empty else "done"
        return FileOutcome(recording.key, outcome, "", audio_seconds=info.duration, server_seconds=server_seconds,
                           attempts=attempts, chunks=len(prepared.chunks), outputs=tuple(written))

    def _send(
        self, path: Path, recording: Recording, duration: float, hotwords: tuple[str, ...],
        in_flight: threading.BoundedSemaphore,
    ) -> Recognition:
        assert self.client is not None
        separator = self.config.server.hotword_separator
        with in_flight:
            if self._stopping():
                raise _Stop(self.stop_message or "stopped")
            try:
                return self.client.transcribe(
                    path,
                    name=recording.path.name if path == recording.path else path.name,
                    mime=audio.mime_type(path),
                    duration=duration,
                    hotwords=separator.join(hotwords),
                )
            except ServerUnavailableError as exc:
                self._request_stop("server_unavailable", str(exc))
                log.error("event=server_unavailable url=%s reason=%r", self.config.server.url, str(exc))
                raise _Stop("server unavailable") from exc

    def _hotwords(self, recording: Recording) -> tuple[str, ...]:
        words: list[str] = []
        for source in (self.config.hotwords, self.options.hotwords,
                       read_hotwords_file(recording.path.parent, self.config.input.hotwords_file)):
            for word in source:
                word = word.strip()
                if word and word not in words:
                    words.append(word)
        return tuple(words)

    def _write(self, decision: Decision, transcript: Transcript, base: str) -> dict[str, str]:
        files = output.render(transcript, base, self.config.output.formats)
        owned = dict(decision.entry.output_hashes) if decision.entry else {}
        output.check_targets(self.output_dir, files, owned, force=self.options.force, source=decision.recording.key)
        hashes = {rel: output.content_hash(content) for rel, content in files.items()}
        self.ledger.record_intent(decision.recording.key, {rel: rel for rel in files}, hashes)
        return output.write_files(self.output_dir, files, source=decision.recording.key)

    def _tidy(self, decisions: list[Decision]) -> None:
        """Housekeeping for recordings finished (or failed for good) in an earlier run but still here:
        moved after a failed move, or from before ``housekeeping.mode: move`` was turned on."""
        settings = self.config.housekeeping
        if settings.mode != "move":
            return
        skipped = [d for d in decisions if d.action == SKIP]
        if not skipped:
            return
        stats = self.ledger.stats_by_key()
        for d in skipped:
            outcome = stats.get(d.recording.key, (0, 0, ""))[2]
            if outcome in FINISHED_OUTCOMES:
                housekeeping.move_recording(d.recording.path, d.recording.key, settings, succeeded=True)
            elif outcome == FAILED and d.entry is not None and d.entry.permanent:
                housekeeping.move_recording(d.recording.path, d.recording.key, settings, succeeded=False)

    def _clean_leftovers(self, decisions: list[Decision]) -> None:
        for d in decisions:
            if d.entry is not None and not d.entry.finished and d.entry.output_hashes:
                removed = output.remove_leftovers(self.output_dir, d.entry.output_hashes)
                if removed:
                    log.info("event=cleanup path=%s removed_partial=%d", d.recording.key, removed)

    def _summary(self, scan: ScanResult, decisions: list[Decision], started: float) -> RunSummary:
        counts: dict[str, int] = {}
        audio_seconds = server_seconds = 0.0
        for o in self.outcomes:
            counts[o.outcome] = counts.get(o.outcome, 0) + 1
            if o.outcome in ("done", "empty") and o.audio_seconds:
                audio_seconds += o.audio_seconds
            server_seconds += o.server_seconds or 0.0
        return RunSummary(
            input_dir=self.input_dir,
            output_dir=self.output_dir,
            state_dir=self.state_dir,
            found=len(scan.recordings),
            new=sum(d.new for d in decisions),
            done=counts.get("done", 0),
            empty=counts.get("empty", 0),
            failed=counts.get(FAILED, 0),
            skipped=sum(d.action == SKIP for d in decisions) + len(scan.skipped),
            reused=counts.get("reused", 0),
            pending=counts.get("pending", 0),
            audio_seconds=audio_seconds,
            server_seconds=server_seconds,
            wall_seconds=self.clock() - started,
            stopped=self.stopped,
            stop_message=self.stop_message,
            outcomes=tuple(self.outcomes),
            plan=tuple(decisions),
            skipped_by_scan=tuple((s.key, s.reason) for s in scan.skipped),
            server=self.server,
        )


def _hold_back(scan: ScanResult, keys: frozenset[str]) -> ScanResult:
    """*scan* without the recordings named in *keys*, which are reported as skipped."""
    if not keys:
        return scan
    held = tuple(Skipped(r.key, "still being written (left for a later pass)") for r in scan.recordings
                 if r.key in keys)
    return dataclasses.replace(scan, recordings=tuple(r for r in scan.recordings if r.key not in keys),
                               skipped=scan.skipped + held)


def _assemble(
    key: str,
    prepared: audio.PreparedAudio,
    results: dict[tuple[int, int], ChunkResult],
    duration: float,
    server_seconds: float,
    attempts: int,
    server: ServerInfo | None,
    hotwords: tuple[str, ...],
) -> Transcript:
    ordered = sorted(results.values(), key=lambda r: (r.channel, r.index))
    split = any(r.channel >= 0 for r in ordered)
    segments = tuple(
        Segment(r.start, r.end, r.text, r.channel if split else None) for r in ordered
    )
    if split:
        channels = tuple(sorted({r.channel for r in ordered}))
        text = "\n".join(
            f"[ch{c + 1}] {output.join_texts(r.text for r in ordered if r.channel == c)}" for c in channels
        )
        if all(not r.text.strip() for r in ordered):
            text = ""
    else:
        channels = ()
        text = output.join_texts(r.text for r in ordered)
    return Transcript(
        source=key,
        text=text,
        segments=segments,
        channels=channels,
        audio_seconds=duration,
        server_seconds=server_seconds,
        attempts=attempts,
        server_version=server.gradio_version if server else None,
        hotwords=hotwords,
    )


def _plan_signature(config: Config) -> str:
    settings = dataclasses.asdict(config.audio)
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"

