"""One recording's way through a run: prepare -> transport -> write -> record, isolated.

:meth:`Pipeline.process` takes one :class:`~asrbatch.plan.Decision` and always returns
that recording's :class:`~asrbatch.outcomes.FileOutcome`; whatever goes wrong becomes the
outcome, following the fault model of :mod:`asrbatch.errors`:

- the recording's fault (:class:`~asrbatch.errors.FileError`) -> ``failed`` with the reason,
  recorded in the ledger (permanent or counted against ``state.max_runs``);
- the server's unavailability, the operator's problem (disk, permissions, ledger) or a
  configuration error -> the run is asked to stop and the recording is left ``pending``,
  unblamed;
- any other exception (a bug) -> ``failed`` with "internal error", its traceback in the log,
  counted against ``state.max_runs``; the run goes on.

Long recordings are sent chunk by chunk; every finished chunk is kept in the ledger, so a
run killed in the middle resumes with the chunks that are left.  The transcript files are
written before the success is recorded.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from asrbatch import audio, housekeeping, output
from asrbatch.claims import Claims, SoleClaims
from asrbatch.config import Config
from asrbatch.errors import (
    AsrbatchError,
    CancelledError,
    EndpointError,
    FileError,
    OperatorError,
    ServerUnavailableError,
)
from asrbatch.fsutil import operator_error
from asrbatch.ledger import ChunkResult, Identity, Ledger, file_sha256
from asrbatch.log import kv
from asrbatch.outcomes import FileOutcome, Outcome, StopReason
from asrbatch.output import Segment, Transcript
from asrbatch.paths import JobPaths
from asrbatch.plan import Action, Decision
from asrbatch.scan import Recording, is_unchanged, read_hotwords_file
from asrbatch.transport import Recognition, Recognizer, ServerInfo, send_audio

log = logging.getLogger(__name__)

PAYLOAD_SETTINGS = ("codec", "bitrate")
"""``audio`` settings that change how chunks are sent, not how they are cut."""
INTERNAL_ERROR_HINT = "an error inside asrbatch (the traceback is in the log); it is tried again in the next runs"


class Pending(Exception):
    """Internal: leave this recording for a later run (the run stops, or the file moved under us)."""


class StopControl:
    """Whether, and why, the run stops: set by the loop, the pipelines and signals; thread-safe.

    *interrupt* is an event set from outside (a signal handler): once set, the run stops
    after the recordings in flight.
    """

    def __init__(self, interrupt: threading.Event | None = None) -> None:
        self._interrupt = interrupt
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.reason: StopReason | None = None
        self.message: str | None = None
        self.fatal: AsrbatchError | None = None
        """An error the run must end with once the recordings in flight are done."""

    def bound(self, reason: StopReason, message: str) -> None:
        """Note that a bound cut the run's work short (``run.max_files``): what was taken still runs."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
                self.message = message

    def request(self, reason: StopReason, message: str, *, fatal: AsrbatchError | None = None) -> None:
        """Stop the run; the first reason wins, except that a bound gives way to a real problem."""
        with self._lock:
            if self.reason is None or (self.reason.bounded and not reason.bounded):
                self.reason = reason
                self.message = message
            if fatal is not None and self.fatal is None:
                self.fatal = fatal
        self._event.set()

    @property
    def stopping(self) -> bool:
        if self._interrupt is not None and self._interrupt.is_set() and not self._event.is_set():
            self.request(StopReason.INTERRUPTED, "stopped by a signal")
            log.info(kv("interrupted", action="finish_in_flight"))
        return self._event.is_set()

    def left_for_next_run(self) -> str:
        return f"left for the next run ({self.message or self.reason or 'stopped'})"


@dataclass
class _Work:
    """What one recording has cost so far in this run (real fields, carried to its outcome)."""

    attempts: int = 0
    audio_seconds: float | None = None
    server_seconds: float = 0.0


HARVEST_SECONDS = 0.2
"""While a recording waits for a request permit, how often it saves the chunks that came back."""


class Pipeline:
    """Processes recordings one at a time per thread; shared by the run's worker threads."""

    def __init__(
        self,
        config: Config,
        paths: JobPaths,
        ledger: Ledger,
        stop: StopControl,
        *,
        run_id: int,
        bases: dict[str, str],
        force: bool = False,
        recognizer: Recognizer | None = None,
        server: ServerInfo | None = None,
        decoding: threading.Semaphore | None = None,
        claims: Claims | None = None,
    ) -> None:
        assert paths.output_dir is not None
        self.config = config
        self.paths = paths
        self.output_dir: Path = paths.output_dir
        self.ledger = ledger
        self.stop = stop
        self.run_id = run_id
        self.bases = bases
        self.force = force
        self.recognizer = recognizer
        self.server = server
        # Decoding is CPU work: one recording per core at a time.
        self.decoding = decoding or threading.BoundedSemaphore(1)
        self.utterances = wants_utterances(config, server)
        self.plan_signature = plan_signature(config, utterances=self.utterances)
        # Requests handed to the transport at once, over all recordings: twice what the server(s)
        # recognise at once, so one waits uploaded for each slot and none piles up beyond that.
        self._requests = threading.Semaphore(2 * max(1, recognizer.capacity if recognizer is not None else 1))
        self.subtitles = output.subtitle_rules(config)
        self.claims: Claims = claims or SoleClaims()

    # -- the entry point ----------------------------------------------------------------------

    def process(self, decision: Decision) -> FileOutcome:
        """Run *decision* to its outcome; never raises for anything that concerns one recording."""
        key = decision.recording.key
        if self.stop.stopping:
            return FileOutcome(key, Outcome.PENDING, self.stop.left_for_next_run())
        work = _Work()
        try:
            try:
                if decision.action in (Action.REUSE, Action.REWRITE):
                    return self._reuse(decision)
                return self._transcribe(decision, work)
            except FileError as exc:
                if not is_unchanged(decision.recording):
                    # Whatever went wrong, the file moved under us: it is still being written.
                    raise Pending("file changed while being processed; left for the next run") from None
                return self._failed(decision, exc, work)
            except OSError as exc:
                problem = operator_error(exc, exc.filename or key, "cannot process the recording")
                if problem is not None:
                    raise problem from None
                return self._failed(decision, FileError(f"cannot process the recording: {exc.strerror or exc}",
                                                        hint="it is tried again on the next run"), work)
        except Pending as left:
            return FileOutcome(key, Outcome.PENDING, str(left), attempts=work.attempts)
        except CancelledError:
            return FileOutcome(key, Outcome.PENDING, self.stop.left_for_next_run(), attempts=work.attempts)
        except OperatorError as exc:
            self.stop.request(StopReason.OPERATOR_ERROR, str(exc))
            log.error(kv("operator_error", path=key, reason=str(exc)))
            return FileOutcome(key, Outcome.PENDING, f"left for the next run ({exc})", attempts=work.attempts)
        except ServerUnavailableError as exc:
            self._server_unavailable(exc)
            return FileOutcome(key, Outcome.PENDING, "left for the next run (server unavailable)",
                               attempts=work.attempts)
        except EndpointError as exc:
            self.stop.request(StopReason.ENDPOINT_ERROR, str(exc), fatal=exc)
            return FileOutcome(key, Outcome.PENDING, str(exc))
        except AsrbatchError as exc:
            self.stop.request(StopReason.ERROR, str(exc), fatal=exc)
            return FileOutcome(key, Outcome.PENDING, str(exc))
        except Exception as exc:  # a bug: this recording fails, the run goes on
            log.error(kv("internal_error", path=key, error=f"{type(exc).__name__}: {exc}"), exc_info=True)
            error = FileError(f"internal error: {type(exc).__name__}: {exc}", hint=INTERNAL_ERROR_HINT)
            try:
                return self._failed(decision, error, work)
            except OperatorError as problem:
                self.stop.request(StopReason.OPERATOR_ERROR, str(problem))
                return FileOutcome(key, Outcome.PENDING, f"left for the next run ({problem})")

    # -- failures -----------------------------------------------------------------------------

    def _failed(self, decision: Decision, exc: FileError, work: _Work) -> FileOutcome:
        recording = decision.recording
        message = _reason(exc)
        attempts = work.attempts + exc.attempts
        self.ledger.record_failure(
            self._identity(decision),
            error=message,
            permanent=exc.permanent,
            attempts=attempts,
            audio_seconds=work.audio_seconds,
            run_id=self.run_id,
        )
        if exc.permanent:
            housekeeping.move_recording(recording.path, recording.key, self.config.housekeeping, succeeded=False)
        return FileOutcome(recording.key, Outcome.FAILED, message, audio_seconds=work.audio_seconds,
                           attempts=attempts)

    def _server_unavailable(self, exc: ServerUnavailableError) -> None:
        if not self.stop.stopping:
            log.error(kv("server_unavailable", url=self.config.server.url, reason=str(exc)))
        self.stop.request(StopReason.SERVER_UNAVAILABLE, str(exc))

    # -- reuse ----------------------------------------------------------------------------------

    def _reuse(self, decision: Decision) -> FileOutcome:
        recording = decision.recording
        source = decision.source or decision.entry
        assert source is not None and source.result is not None
        transcript = dataclasses.replace(Transcript.from_dict(source.result), source=recording.key)
        written = self._finish(decision, transcript, server_seconds=0.0, attempts=0)
        return FileOutcome(recording.key, Outcome.REUSED, decision.reason, audio_seconds=transcript.audio_seconds,
                           outputs=tuple(written))

    # -- transcription ------------------------------------------------------------------------

    def _transcribe(self, decision: Decision, work: _Work) -> FileOutcome:
        recording = decision.recording
        if decision.sha256 is None:
            decision = dataclasses.replace(decision, sha256=file_sha256(recording.path))
        sha = decision.sha256
        assert sha is not None
        self.ledger.record_pending(self._identity(decision), changed=decision.changed or decision.entry is None)
        with self.decoding:
            info = audio.probe(recording.path)
        work.audio_seconds = info.duration
        hotwords = self._hotwords(recording)
        workdir = self.paths.tmp / hashlib.sha1(recording.key.encode()).hexdigest()[:16]
        try:
            with self.decoding:
                prepared = audio.prepare(recording.path, info, self.config.audio, workdir,
                                         utterances=self.utterances)
            with prepared:
                results = self._recognise_chunks(recording, sha, prepared, hotwords, work)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if not is_unchanged(recording):
            raise Pending("file changed while being transcribed; left for the next run")
        attempts = sum(r.attempts for r in results.values())
        server_seconds = sum(r.server_seconds for r in results.values())
        transcript = assemble(recording.key, results, info.duration, server_seconds, attempts, self.server, hotwords)
        written = self._finish(decision, transcript, server_seconds=server_seconds, attempts=attempts)
        outcome = Outcome.EMPTY if transcript.empty else Outcome.DONE
        return FileOutcome(recording.key, outcome, "", audio_seconds=info.duration, server_seconds=server_seconds,
                           attempts=attempts, chunks=len(prepared.chunks), outputs=tuple(written))

    def _recognise_chunks(
        self, recording: Recording, sha: str, prepared: audio.PreparedAudio, hotwords: tuple[str, ...], work: _Work,
    ) -> dict[tuple[int, int], ChunkResult]:
        """Every chunk's result: those finished in an earlier run from the ledger, the others from the
        server, several at once (up to the recognizer's capacity), each saved as soon as it is back."""
        done = self.ledger.load_chunks(recording.key, sha, self.plan_signature)
        results: dict[tuple[int, int], ChunkResult] = {}
        to_send: list[audio.Chunk] = []
        for chunk in prepared.chunks:
            ident = _ident(chunk)
            if ident in done:
                results[ident] = done[ident]
            elif chunk.silent:
                speech_start, speech_end = chunk.speech
                result = ChunkResult(ident[0], chunk.index, speech_start, speech_end, "", 0.0, 0)
                self.ledger.save_chunk(recording.key, sha, self.plan_signature, result)
                results[ident] = result
            else:
                to_send.append(chunk)
        # The chunks of one recording go out as request slots allow: the next one is encoded and
        # uploaded while the server recognises the current one.  Each finished chunk is saved as it comes
        # back (within HARVEST_SECONDS).
        in_flight: set[concurrent.futures.Future[ChunkResult]] = set()
        failure: BaseException | None = None

        def harvest(finished: set[concurrent.futures.Future[ChunkResult]]) -> None:
            nonlocal failure
            for future in finished:
                try:
                    result = future.result()
                except BaseException as exc:  # the first failure is the recording's; the rest still land
                    failure = failure or exc
                    continue
                work.attempts += result.attempts
                work.server_seconds += result.server_seconds
                self.ledger.save_chunk(recording.key, sha, self.plan_signature, result)
                results[(result.channel, result.index)] = result

        workers = min(len(to_send), 2 * max(1, self.recognizer.capacity if self.recognizer else 1))
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers),
                                                   thread_name_prefix="asrbatch-chunk") as chunk_pool:
            for chunk in to_send:
                if failure is None and self.stop.stopping:
                    failure = Pending(self.stop.left_for_next_run())
                if failure is not None:
                    break
                # A permit frees when any request of the run ends, this recording's or another's: take
                # it at once (the next chunk is then encoded and uploaded while this one is recognised),
                # and meanwhile save what has come back.
                acquired = False
                while failure is None:
                    acquired = self._requests.acquire(timeout=HARVEST_SECONDS if in_flight else None)
                    finished = {future for future in in_flight if future.done()}
                    in_flight -= finished
                    harvest(finished)
                    if acquired:
                        break
                if failure is not None:
                    if acquired:
                        self._requests.release()
                    break
                try:
                    self._keep_claim(recording)
                except BaseException:
                    self._requests.release()
                    raise
                in_flight.add(chunk_pool.submit(self._send_chunk, recording, prepared, chunk, hotwords))
            harvest(set(concurrent.futures.wait(in_flight).done))
        if failure is not None:
            raise failure
        return results

    def _send_chunk(self, recording: Recording, prepared: audio.PreparedAudio, chunk: audio.Chunk,
                    hotwords: tuple[str, ...]) -> ChunkResult:
        """Send one chunk (holding one of the run's request permits, released here) and return its result."""
        try:
            with audio.ChunkAudio(prepared, chunk, self.config.audio, cpu=self.decoding) as source:
                recognition = self._send(source, hotwords)
        finally:
            self._requests.release()
        # The server's timings are relative to what was sent: the chunk starts at chunk.start.
        placed = tuple(s.shifted(chunk.start) for s in recognition.segments if s.text.strip())
        speech_start, speech_end = chunk.speech
        return ChunkResult(_ident(chunk)[0], chunk.index, speech_start, speech_end, recognition.text.strip(),
                           recognition.server_seconds, recognition.attempts, placed)

    def _send(self, source: audio.ChunkAudio, hotwords: tuple[str, ...]) -> Recognition:
        assert self.recognizer is not None
        return send_audio(self.recognizer, source, hotwords=hotwords, proceed=lambda: not self.stop.stopping)

    def _hotwords(self, recording: Recording) -> tuple[str, ...]:
        words: list[str] = []
        for source in (self.config.hotwords,
                       read_hotwords_file(recording.path.parent, self.config.input.hotwords_file)):
            for word in source:
                word = word.strip()
                if word and word not in words:
                    words.append(word)
        return tuple(words)

    # -- writing --------------------------------------------------------------------------------

    def _finish(self, decision: Decision, transcript: Transcript, *, server_seconds: float,
                attempts: int) -> dict[str, str]:
        """Write the outputs, then record the success, then (optionally) move the recording away."""
        recording = decision.recording
        self._keep_claim(recording)
        base = self._base_for(decision)
        written = self._write(decision, transcript, base)
        self.ledger.record_success(
            self._identity(decision),
            outcome=Outcome.EMPTY.value if transcript.empty else Outcome.DONE.value,
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

    def _write(self, decision: Decision, transcript: Transcript, base: str) -> dict[str, str]:
        files = output.render(transcript, base, self.config.output.formats, self.subtitles)
        owned = dict(decision.entry.output_hashes) if decision.entry else {}
        output.check_targets(self.output_dir, files, owned, force=self.force, source=decision.recording.key)
        hashes = {rel: output.content_hash(content) for rel, content in files.items()}
        self.ledger.record_intent(decision.recording.key, {rel: rel for rel in files}, hashes)
        return output.write_files(self.output_dir, files, source=decision.recording.key)

    def _keep_claim(self, recording: Recording) -> None:
        """Shared ledger: renew this worker's claim; another worker that took the recording over keeps it."""
        lost = self.claims.keep(recording.key)
        if lost is not None:
            raise Pending(lost)

    def _base_for(self, decision: Decision) -> str:
        return base_for(decision, self.bases)

    @staticmethod
    def _identity(decision: Decision) -> Identity:
        return decision.identity


def base_for(decision: Decision, bases: dict[str, str]) -> str:
    """The output base path of a recording: the one it was given before, else the run's."""
    entry = decision.entry
    if entry is not None and isinstance(entry.outputs.get("base"), str):
        return entry.outputs["base"]
    return bases[decision.recording.key]


def preflight(config: Config, output_dir: Path, decision: Decision, bases: dict[str, str], *,
              force: bool = False) -> str | None:
    """The local checks a run makes before sending (no server needed): why *decision* would
    fail, or None.  Used by ``--dry-run``."""
    if decision.action != Action.SEND:
        return None
    try:
        info = audio.probe(decision.recording.path)
        empty = Transcript(source=decision.recording.key, text="", audio_seconds=info.duration)
        files = output.render(empty, base_for(decision, bases), config.output.formats, output.subtitle_rules(config))
        owned = dict(decision.entry.output_hashes) if decision.entry else {}
        output.check_targets(output_dir, files, owned, force=force, source=decision.recording.key,
                             any_content=True)
    except FileError as exc:
        return _reason(exc)
    return None


def assemble(
    key: str,
    results: dict[tuple[int, int], ChunkResult],
    duration: float,
    server_seconds: float,
    attempts: int,
    server: ServerInfo | None,
    hotwords: tuple[str, ...],
) -> Transcript:
    """The transcript of a recording from its chunks' results (in order)."""
    ordered = sorted(results.values(), key=lambda r: (r.channel, r.index))
    split = any(r.channel >= 0 for r in ordered)
    segments: list[Segment] = []
    for r in ordered:
        channel = r.channel if split else None
        if r.segments:  # the server's own sentence (or word) timings
            segments.extend(dataclasses.replace(s, channel=channel) for s in r.segments)
        else:  # the chunk (an utterance, when timed outputs asked for them) is the segment
            segments.append(Segment(r.start, r.end, r.text, channel))
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
        segments=tuple(segments),
        channels=channels,
        audio_seconds=duration,
        server_seconds=server_seconds,
        attempts=attempts,
        server_version=server.gradio_version or server.label if server else None,
        hotwords=hotwords,
    )


TIMED_FORMATS = frozenset({"json", "srt", "vtt"})


def wants_utterances(config: Config, server: ServerInfo | None) -> bool:
    """Whether recordings are sent utterance by utterance (``audio.utterances``): always, never, or
    (auto) when timed outputs are written and the server returns no timings of its own."""
    mode = config.audio.utterances
    if mode != "auto":
        return mode == "always"
    timed = bool(TIMED_FORMATS & set(config.output.formats))
    return timed and config.audio.convert and not (server is not None and server.timings)


def _ident(chunk: audio.Chunk) -> tuple[int, int]:
    """A chunk's key in the ledger: (channel, -1 when mixed; index)."""
    return (chunk.channel if chunk.channel is not None else -1, chunk.index)


def plan_signature(config: Config, *, utterances: bool = False) -> str:
    """A short hash of the settings that decide how a recording is chunked (finished chunks are
    reused only under the same signature).  How chunks travel (``audio.codec``, ``audio.bitrate``)
    is not part of it: a chunk's text does not depend on it."""
    settings: dict[str, object] = dataclasses.asdict(config.audio)
    for key in PAYLOAD_SETTINGS:
        settings.pop(key)
    settings["utterances"] = utterances  # the decision, not the setting ("auto" may go either way)
    for key in ("utterance_pause", "utterance_min", "utterance_max"):
        if not utterances:
            settings.pop(key)
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _reason(exc: FileError) -> str:
    """The one-line reason recorded for a failure: the message, then what to do (``message; hint``)."""
    message = exc.message
    path = str(exc.path) if exc.path is not None else None
    if path and message.startswith(path + ": "):
        message = message[len(path) + 2:]
    return f"{message}; {exc.hint}" if exc.hint else message

