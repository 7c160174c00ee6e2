"""Recognition as the WebUI's tabs need it, without Gradio: checks, decoding, engine, counters.

The Gradio app (``app.py``) only adapts component values to these calls and turns InputError
into the ``gr.Error`` a client sees.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from asrbatch.server.audio import AudioDecodeError, decode_to_wav
from asrbatch.server.engines.base import Engine, EngineResult

log = logging.getLogger(__name__)

BATCH_SIZE_RANGE = (1, 16)
_HOTWORD_SEPARATORS = re.compile(r"[\s,，、;；]+")
T = TypeVar("T")


class InputError(Exception):
    """The request's fault (no audio, undecodable audio, too large...); shown to the client."""


@dataclass(frozen=True)
class Recognition:
    """One file's outcome."""

    name: str
    text: str
    audio_seconds: float
    processing_seconds: float
    hotword_count: int
    result: EngineResult

    @property
    def speed(self) -> float:
        """How many seconds of audio were recognised per second of processing."""
        return self.audio_seconds / self.processing_seconds if self.processing_seconds else 0.0


@dataclass(frozen=True)
class BatchItem:
    """One file of a batch: its recognition, or the reason it has none."""

    name: str
    recognition: Recognition | None
    error: str | None


@dataclass(frozen=True)
class Counters:
    """What the server has done since it started."""

    requests_served: int
    requests_failed: int
    files_recognised: int
    audio_seconds: float
    uptime_seconds: float
    busy_seconds: float = 0.0
    """Time recognitions held an engine slot (the GPU's busy time), summed over requests."""
    peak_running: int = 0
    """The most engine runs that were under way at one moment (never above the concurrency limit)."""
    peak_in_progress: int = 0
    """Most requests the recognition function was working on at once (decoding, waiting for an
    engine slot or recognising): what clients put on the server, whatever its web layer queues."""


def parse_hotwords(*texts: str) -> list[str]:
    """Hotwords from textbox and file contents: split on commas, spaces and newlines, deduplicated."""
    words: dict[str, None] = {}
    for text in texts:
        for word in _HOTWORD_SEPARATORS.split(text or ""):
            if word:
                words.setdefault(word, None)
    return list(words)


_UNSAFE_NAME_CHARACTERS = re.compile(r"[^\w.-]+")


def safe_file_name(name: str | None, default: str) -> str:
    """A client's file name fit to be a file in a scratch folder: no folders, no leading dot."""
    cleaned = _UNSAFE_NAME_CHARACTERS.sub("_", Path(name or "").name).lstrip(".")
    return cleaned[:120] or default


def hotword_list(hotwords: str | Sequence[str]) -> list[str]:
    """Hotwords as the engine gets them: a text is split like the WebUI's textbox; a list is
    taken entry by entry (phrases stay whole), stripped and deduplicated."""
    if isinstance(hotwords, str):
        return parse_hotwords(hotwords)
    words: dict[str, None] = {}
    for word in hotwords:
        if word.strip():
            words.setdefault(word.strip(), None)
    return list(words)


def clamp_batch_size(value: float | int | str | None) -> int:
    """The slider's value as an int within 1..16 (older Gradio passes out-of-range values on)."""
    try:
        number = round(float(value if value is not None else 1))
    except (TypeError, ValueError) as error:
        raise InputError(f"batch size must be a number, not {value!r}") from error
    low, high = BATCH_SIZE_RANGE
    return min(max(number, low), high)


class Recognizer:
    """Runs recognitions through one engine, at most ``concurrency`` at a time, and counts them.

    The limit holds on every Gradio generation, including Gradio 3's REST route that bypasses
    the queue, the way a single GPU serialises work whatever the web layer does.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        concurrency: int,
        work_dir: Path,
        max_file_size: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.concurrency = concurrency
        self.work_dir = work_dir
        self.max_file_size = max_file_size
        self._clock = clock
        self._started = clock()
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._served = 0
        self._failed = 0
        self._files = 0
        self._audio_seconds = 0.0
        self._busy_seconds = 0.0
        self._running = 0
        self._peak_running = 0
        self._in_progress = 0
        self._peak_in_progress = 0

    def check_size(self, path: Path, what: str = "file") -> None:
        """Refuse a file larger than the configured maximum."""
        if self.max_file_size is None:
            return
        try:
            size = path.stat().st_size
        except OSError as error:
            raise InputError(f"cannot read {what}: {error.strerror}") from error
        if size > self.max_file_size:
            raise InputError(
                f"{what} too large: {size} bytes, the server accepts at most {self.max_file_size} bytes"
            )

    def read_hotword_file(self, path: Path | None) -> str:
        """Text of an uploaded hotword file (UTF-8), or '' when none was given."""
        if path is None:
            return ""
        self.check_size(path, "hotword file")
        try:
            return path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as error:
            raise InputError(f"hotword file is not UTF-8 text: {error}") from error
        except OSError as error:
            raise InputError(f"cannot read hotword file: {error.strerror}") from error

    def recognize(
        self,
        audio: Path | None,
        hotwords: str | Sequence[str],
        batch_size: int,
        *,
        hotword_file: Path | None = None,
        check_size: bool = True,
        name: str | None = None,
    ) -> Recognition:
        """Recognise one file with the hotwords of ``hotwords`` and ``hotword_file``.

        ``hotwords`` is the WebUI's textbox text (split on commas, spaces and new lines) or a
        list of hotwords as a protocol delivers them; ``name`` is the file's name as the client
        gave it (logs and errors), default the file's own. Counts it as a served (or failed) request. ``check_size=False`` when the size was
        checked on the bytes as received: Gradio 3 and 4 hand audio inputs over re-encoded as
        WAV, often larger than what the client sent.
        """

        def run() -> Recognition:
            words = hotword_list(hotwords)
            for word in parse_hotwords(self.read_hotword_file(hotword_file)):
                if word not in words:
                    words.append(word)
            return self._recognize_file(audio, words, batch_size, name, check_size)

        return self._counted(run)

    def recognize_batch(self, files: list[Path], hotwords: str, batch_size: int) -> list[BatchItem]:
        """Recognise several files as one request; a file that fails does not stop the others."""

        def run() -> list[BatchItem]:
            if not files:
                raise InputError("no audio files given")
            words = parse_hotwords(hotwords)
            items = []
            for path in files:
                try:
                    recognition = self._recognize_file(path, words, batch_size, path.name, check_size=True)
                    items.append(BatchItem(path.name, recognition, None))
                except InputError as error:
                    items.append(BatchItem(path.name, None, str(error)))
            return items

        return self._counted(run)

    def record_rejection(self) -> None:
        """Count a request the web layer refused before it reached ``recognize``.

        Gradio 3 and 4 decode audio themselves before calling the handler; a file they cannot
        read still is a request served, and failed.
        """
        with self._lock:
            self._served += 1
            self._failed += 1

    def counters(self) -> Counters:
        """A consistent snapshot of the counters."""
        with self._lock:
            return Counters(
                requests_served=self._served,
                requests_failed=self._failed,
                files_recognised=self._files,
                audio_seconds=self._audio_seconds,
                uptime_seconds=self._clock() - self._started,
                busy_seconds=self._busy_seconds,
                peak_running=self._peak_running,
                peak_in_progress=self._peak_in_progress,
            )

    def _counted(self, work: Callable[[], T]) -> T:
        with self._lock:
            self._in_progress += 1
            self._peak_in_progress = max(self._peak_in_progress, self._in_progress)
        try:
            outcome = work()
        except BaseException:
            with self._lock:
                self._in_progress -= 1
                self._served += 1
                self._failed += 1
            raise
        with self._lock:
            self._in_progress -= 1
            self._served += 1
        return outcome

    def _recognize_file(
        self,
        audio: Path | None,
        hotwords: list[str],
        batch_size: int,
        name: str | None,
        check_size: bool,
    ) -> Recognition:
        if audio is None:
            raise InputError("no audio given: upload or record a file")
        display_name = name or audio.name
        if check_size:
            self.check_size(audio, "audio file")
        with tempfile.TemporaryDirectory(prefix="asrbatch-", dir=self.work_dir) as scratch:
            wav = Path(scratch) / "input.wav"
            decode_started = self._clock()
            try:
                audio_seconds = decode_to_wav(audio, wav)
            except AudioDecodeError as error:
                log.info("event=recognize file=%s status=undecodable", display_name)
                raise InputError(f"cannot decode audio: {error}") from error
            decode_seconds = self._clock() - decode_started
            # Time spent waiting for a slot is queueing, not processing.
            with self._slots:
                with self._lock:
                    self._running += 1
                    running = self._running
                    self._peak_running = max(self._peak_running, running)
                engine_started = self._clock()
                try:
                    result = self.engine.transcribe(wav, hotwords, batch_size)
                finally:
                    busy = self._clock() - engine_started
                    with self._lock:
                        self._busy_seconds += busy
                        self._running -= 1
                elapsed = decode_seconds + busy
        with self._lock:
            self._files += 1
            self._audio_seconds += audio_seconds
        # running: engine runs under way when this one started, itself included.
        log.info(
            "event=recognize file=%s audio_s=%.2f processing_s=%.3f hotwords=%d running=%d status=ok",
            display_name,
            audio_seconds,
            elapsed,
            len(hotwords),
            running,
        )
        log.debug("event=recognize file=%s text=%r", display_name, result.text)
        return Recognition(display_name, result.text, audio_seconds, elapsed, len(hotwords), result)
