"""Probe, decode, split and export recordings.

Data flows one way: :func:`probe` (ffprobe, no decoding) -> :func:`prepare`
(ffmpeg decodes straight to 16-bit PCM WAV on disk, one file per channel in
``split`` mode; the WAV is then read block by block to find pauses and plan
chunks) -> :meth:`PreparedAudio.export` (one WAV per chunk, copied block by
block).  Python holds one block of audio at a time (and the list of pauses),
so memory does not grow with the length of the recording; the decoded WAV
takes about 115 MB of disk per hour at 16 kHz.

Chunks end in the middle of the longest pause found in the last 30 % of each
``max_chunk`` window, or, when there is none, are cut hard at ``max_chunk``
with the next chunk starting ``overlap`` seconds earlier.  The same file and
settings always give the same chunks, so an interrupted file resumes chunk by
chunk.  A chunk whose every 10 ms frame is below ``silence_threshold`` is
marked silent and needs no request.

What travels is a :class:`ChunkAudio`: the chunk exported on demand in the codec the
server is sent (``audio.codec``: Ogg Vorbis or Ogg Opus at about ``audio.bitrate``, FLAC, 16-bit WAV, or the
recording's own bytes when it is sent whole), each codec encoded at most once.  The
decoded WAV stays the working copy: pauses, silence and chunk boundaries never depend
on the codec.

With ``audio.convert: false`` nothing is decoded, split or checked beyond the
probe: the original file is sent whole, as one chunk.

This is the only module that runs ffmpeg/ffprobe or imports pydub.  The pure
parts -- :func:`plan_chunks`, :func:`choose_cut` and :func:`span_is_silent` --
do no I/O and are unit-tested on their own.

Every :class:`~asrbatch.errors.AudioError` names the file, says what is wrong
and what to do about it; it is the file's permanent fault.  A file holding less
audio than its container announces (a WAV whose ``data`` chunk promises more
bytes than follow it, or a decode shorter than ffprobe's duration) is
:class:`~asrbatch.errors.TruncatedAudioError`: "truncated or still being copied",
transient while the file is younger than :data:`TRUNCATED_SETTLE_SECONDS`,
permanent once it has been stable that long.  A full disk, a missing ffmpeg or an
unwritable work folder are :class:`~asrbatch.errors.OperatorError`, never the
recording's fault.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import os
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import warnings
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from asrbatch import fsutil
from asrbatch.config import AudioConfig
from asrbatch.errors import AudioError, FileError, OperatorError, TruncatedAudioError
from asrbatch.media import mime_type

with warnings.catch_warnings():
    # pydub imports the deprecated audioop module and warns when ffmpeg is not on PATH;
    # neither is worth a line in a cron mail (a missing ffmpeg is reported by probe()).
    warnings.simplefilter("ignore")
    from pydub import AudioSegment

log = logging.getLogger(__name__)

FRAME_SECONDS = 0.01
"""Length of the frames whose RMS level decides silence."""
SEARCH_FRACTION = 0.3
"""A chunk may end at a pause in the last this-fraction of ``max_chunk``."""
RESOLUTION = 0.01
"""Chunk boundaries are multiples of this many seconds."""
BLOCK_SECONDS = 10.0
"""Audio read into memory at once while analysing or exporting."""
SAMPLE_WIDTH = 2
"""Bytes per sample of the decoded WAV (16-bit PCM)."""

PROBE_TIMEOUT = 120.0
"""Seconds allowed for ffprobe (it reads headers only)."""
DECODE_TIMEOUT_BASE = 300.0
DECODE_TIMEOUT_PER_SECOND = 1.0
"""Decoding gets DECODE_TIMEOUT_BASE + this many seconds per second of audio."""
SHORT_DECODE_TOLERANCE = (1.0, 0.02)
"""A decode shorter than the probed duration by more than max(seconds, fraction) is truncated."""
STDERR_LIMIT = 4000
"""Characters of ffmpeg's error output kept for messages."""
TRUNCATED_SETTLE_SECONDS = 3600.0
"""A truncated file changed less than this long ago may still be being copied: tried again later."""
WAV_SHORTFALL_SECONDS = 0.05
"""A WAV missing less than this much of the audio its header announces counts as complete."""
LOW_DISK_BYTES = 16 * 1024 * 1024
"""Free space below which a failing decode is blamed on the disk, not the recording."""
_DISK_MESSAGES = ("no space left on device", "disk quota exceeded", "read-only file system")

CODECS = ("vorbis", "opus", "flac", "wav", "original")
"""Ways a chunk can travel, in the order a server that refuses one is offered the next."""
CODEC_SUFFIXES = {"vorbis": ".ogg", "opus": ".ogg", "flac": ".flac", "wav": ".wav"}
"""File name endings of the encoded chunks as the server sees them: Ogg Vorbis and Ogg Opus as
``.ogg``, the name every server generation and the OpenAI-style APIs know."""
VORBIS_QUALITY_KBITS = ((0, 16), (1, 18), (2, 21), (3, 24), (4, 27), (5, 30), (6, 33), (7, 37), (8, 42),
                        (9, 46), (10, 50))
"""libvorbis's VBR qualities 0-10 and what each takes on festival speech at 16 kHz mono, in kbit/s
(two minutes of the network benchmark's lecture, ffmpeg 5.1).  Vorbis is encoded at the quality
nearest ``audio.bitrate``: libvorbis's bitrate mode refuses many rates at 16 kHz (below 16 kbit/s,
above about 100), its quality mode none."""
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
"""Input rates libopus takes; other sample rates are encoded at 48 kHz."""
OPUS_COMPLEXITY = 0
"""libopus's encoder complexity (0-10): 0 takes a fifth of the CPU of 10 (about 8 s instead of 40 s
per audio hour) for files some 15 % larger and, for speech, the same word error rate (bench/codecs.py)."""
ENCODE_TIMEOUT_BASE = 60.0
ENCODE_TIMEOUT_PER_SECOND = 0.5
"""Encoding a chunk gets ENCODE_TIMEOUT_BASE + this many seconds per second of audio."""

_CHECK_COMPLETE = "check that the file is complete (copy it again) or re-export it"
_NOT_AUDIO_HINT = "check that it is an audio or video recording; re-export it as WAV, MP3 or FLAC"

# --------------------------------------------------------------------------------------------
# Data passed to the rest of asrbatch


@dataclass(frozen=True)
class AudioInfo:
    """What ffprobe says about a recording (its first audio stream)."""

    duration: float
    """Seconds of audio (the audio stream's own duration when the container gives one)."""
    sample_rate: int
    channels: int
    codec: str
    """ffprobe's codec name, e.g. ``mp3``, ``pcm_s16le``, ``aac``."""
    container: str
    """ffprobe's format name, e.g. ``wav``, ``mp3``, ``mov,mp4,m4a,3gp,3g2,mj2``."""
    size: int
    """File size in bytes."""
    estimated: bool = False
    """The duration is only an estimate (from the bit rate, a demux pass, or a container whose
    video track may be longer); it is then too rough to detect truncation."""


@dataclass(frozen=True)
class Chunk:
    """A stretch of one channel sent as one request."""

    index: int
    """Position in :attr:`PreparedAudio.chunks`; stable for the same file and settings."""
    channel: int | None
    """Channel number in ``split`` mode, ``None`` when the channels are mixed or not decoded."""
    start: float
    """Seconds from the start of the recording."""
    end: float
    silent: bool
    """No frame rises above the silence threshold: there is no speech to recognise."""
    speech_start: float | None = None
    """Where the speech inside the chunk begins (its leading pause left out); None: at ``start``."""
    speech_end: float | None = None
    """Where the speech inside the chunk ends (its trailing pause left out); None: at ``end``."""

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def speech(self) -> tuple[float, float]:
        """The stretch of the chunk that holds speech, for timing what was said in it."""
        start = self.start if self.speech_start is None else self.speech_start
        end = self.end if self.speech_end is None else self.speech_end
        return (start, end) if end > start else (self.start, self.end)


@dataclass(frozen=True)
class PreparedAudio:
    """A recording ready to send: decoded WAV file(s) and the chunk plan.

    Use it as a context manager (or call :meth:`cleanup`) to delete the decoded
    files.  When ``converted`` is false (``audio.convert: false``) nothing was
    decoded: there is one chunk covering the whole file and :meth:`export`
    returns the original path.
    """

    source: Path
    info: AudioInfo
    chunks: tuple[Chunk, ...]
    wav_paths: tuple[Path, ...]
    """Decoded mono WAV per channel (one entry when mixed, none when not converted)."""
    sample_rate: int
    """Sample rate of the decoded WAV(s); the original's when not converted."""
    duration: float
    """Decoded duration in seconds (the probed one when not converted)."""
    directory: Path | None
    """Private folder holding the decoded and exported files, removed by :meth:`cleanup`."""

    @property
    def converted(self) -> bool:
        return bool(self.wav_paths)

    @property
    def is_silent(self) -> bool:
        """True when every chunk is silent: the recording needs no request at all."""
        return bool(self.chunks) and all(chunk.silent for chunk in self.chunks)

    def export(self, chunk: Chunk) -> Path:
        """Write *chunk* as its own 16-bit mono WAV and return its path.

        A chunk that covers a whole channel returns that channel's decoded WAV
        without copying; unconverted audio returns the original file.  Memory
        use is one block, whatever the chunk's length.  The caller may delete
        the returned file once sent, unless it is :attr:`source`.
        """
        if not self.converted:
            return self.source
        wav_path = self.wav_paths[chunk.channel or 0]
        if chunk.start <= 0 and chunk.end >= self.duration:
            return wav_path
        assert self.directory is not None
        target = self.directory / f"chunk-{chunk.index:04d}.wav"
        try:
            _copy_wav_span(wav_path, target, chunk.start, chunk.end)
        except OSError as exc:
            raise _work_folder_problem(exc, self.directory) from None
        return target

    def cleanup(self) -> None:
        """Delete the decoded and exported files (never the original)."""
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PreparedAudio:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cleanup()


@dataclass(frozen=True)
class Encoded:
    """One chunk in one codec, ready to send."""

    path: Path
    name: str
    """The file name the server sees: ``audio.ogg``, ``chunk-0003.flac``...; the recording's own name
    for ``original``."""
    mime: str
    codec: str
    size: int
    """Bytes in the file."""


def codec_order(preferred: str) -> tuple[str, ...]:
    """Every codec, *preferred* first, then the ones after it in :data:`CODECS`, then the ones
    before it, nearest first: the order a server that refuses a codec is offered the others."""
    index = CODECS.index(preferred)
    return (*CODECS[index:], *reversed(CODECS[:index]))


class ChunkAudio:
    """One chunk of a prepared recording, exported on demand in any codec (each at most once).

    *cpu* bounds the encodes running at once (they are CPU work, like decoding).  Call
    :meth:`cleanup` (or use it as a context manager) once the chunk is sent: it deletes what
    it encoded, never the recording nor the decoded WAV.
    """

    def __init__(self, prepared: PreparedAudio, chunk: Chunk, settings: AudioConfig, *,
                 cpu: threading.Semaphore | None = None) -> None:
        self.prepared = prepared
        self.chunk = chunk
        self.bitrate = settings.bitrate
        self.complexity = OPUS_COMPLEXITY
        self._cpu = cpu
        self._lock = threading.Lock()
        self._encoded: dict[str, Encoded] = {}
        self._temporary: list[Path] = []
        whole = (not prepared.converted) or (chunk.channel is None and len(prepared.chunks) == 1)
        if not prepared.converted:
            self.codecs: tuple[str, ...] = ("original",)
        else:
            self.codecs = tuple(c for c in codec_order(settings.codec) if c != "original" or whole)
        """The codecs this chunk can travel in, the configured one first (``original`` only when the
        recording is sent whole; only ``original`` when nothing was decoded)."""

    @property
    def duration(self) -> float:
        return self.chunk.duration

    @property
    def name(self) -> str:
        """The recording's file name (for logs)."""
        return self.prepared.source.name

    def estimated_size(self, codec: str) -> int:
        """About how many bytes *codec* takes for this chunk (exact once encoded)."""
        if codec in self._encoded:
            return self._encoded[codec].size
        seconds = max(self.chunk.duration, 0.0)
        if codec == "original":
            return self.prepared.info.size
        if codec in ("opus", "vorbis"):
            return int(seconds * self.bitrate * 1000 / 8 * 1.03) + 4096
        wav = int(seconds * self.prepared.sample_rate) * SAMPLE_WIDTH + 44
        return wav if codec == "wav" else wav * 6 // 10

    def encode(self, codec: str) -> Encoded:
        """This chunk as *codec* (encoded on the first call, the same file after).

        Raises :class:`OperatorError` for a disk or work-folder problem and :class:`FileError`
        when ffmpeg fails on audio it decoded itself.
        """
        with self._lock:
            found = self._encoded.get(codec)
            if found is None:
                found = self._encode(codec)
                self._encoded[codec] = found
            return found

    def _encode(self, codec: str) -> Encoded:
        if codec not in self.codecs:
            raise ValueError(f"codec {codec!r} does not apply to this chunk (only {', '.join(self.codecs)})")
        prepared, chunk = self.prepared, self.chunk
        if codec == "original":
            path = prepared.source
            return Encoded(path, path.name, mime_type(path.name), codec, path.stat().st_size)
        wav = prepared.export(chunk)
        if wav != prepared.wav_paths[chunk.channel or 0]:
            self._temporary.append(wav)
        if codec == "wav":
            return Encoded(wav, wav.name, mime_type(wav.name), codec, wav.stat().st_size)
        assert prepared.directory is not None
        # Vorbis and Opus both end in .ogg on the wire; on disk each has a name of its own.
        target = prepared.directory / f"{wav.stem}.{codec}{CODEC_SUFFIXES[codec]}"
        if self._cpu is not None:
            with self._cpu:
                _encode_wav(wav, target, codec, self.bitrate, self.complexity, prepared.sample_rate, chunk.duration)
        else:
            _encode_wav(wav, target, codec, self.bitrate, self.complexity, prepared.sample_rate, chunk.duration)
        self._temporary.append(target)
        name = f"{wav.stem}{CODEC_SUFFIXES[codec]}"
        return Encoded(target, name, mime_type(name), codec, target.stat().st_size)

    def cleanup(self) -> None:
        """Delete the files this chunk's encodes wrote."""
        with self._lock:
            for path in self._temporary:
                path.unlink(missing_ok=True)
            self._temporary.clear()
            self._encoded.clear()

    def __enter__(self) -> ChunkAudio:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.cleanup()


def vorbis_quality(kbits: int) -> int:
    """The libvorbis quality whose speech bitrate is nearest *kbits* (:data:`VORBIS_QUALITY_KBITS`)."""
    return min(VORBIS_QUALITY_KBITS, key=lambda pair: (abs(pair[1] - kbits), pair[0]))[0]


def _encode_wav(wav: Path, target: Path, codec: str, bitrate: int, complexity: int, sample_rate: int,
                seconds: float) -> None:
    """Encode the 16-bit mono *wav* as *codec* into *target* (atomically) with ffmpeg."""
    if codec == "vorbis":
        # At the decoded rate: servers decode it straight to the 16 kHz their engines take.
        options = ["-c:a", "libvorbis", "-q:a", str(vorbis_quality(bitrate)), "-f", "ogg"]
    elif codec == "opus":
        rate = sample_rate if sample_rate in OPUS_RATES else 48000
        options = ["-ar", str(rate), "-c:a", "libopus", "-b:a", f"{bitrate}k", "-compression_level", str(complexity),
                   "-f", "ogg"]
    elif codec == "flac":
        options = ["-c:a", "flac", "-f", "flac"]
    else:  # pragma: no cover - the callers pass vorbis, opus or flac
        raise ValueError(f"not an encoded codec: {codec}")
    partial = target.with_name(target.name + ".part")
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-i", _ff_path(wav), "-map_metadata", "-1",
               *options, "-y", _ff_path(partial)]
    timeout = ENCODE_TIMEOUT_BASE + ENCODE_TIMEOUT_PER_SECOND * seconds
    result = _run(command, timeout=timeout, path=wav)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        messages = _message_lines(result.stderr)
        if any(m in line.lower() for line in messages for m in _DISK_MESSAGES) or _disk_is_low(target.parent):
            raise _disk_full(target.parent)
        detail = "; ".join(messages[:3]) or f"ffmpeg exited with status {result.returncode}"
        raise FileError(f"cannot encode the audio as {codec}: {detail}",
                        hint="set audio.codec to another codec (wav always works); it is tried again on the next run")
    os.replace(partial, target)


# --------------------------------------------------------------------------------------------
# Pure parts


def _snap_down(seconds: float, resolution: float) -> float:
    return round(math.floor(seconds / resolution + 1e-9) * resolution, 6)


def _snap(seconds: float, resolution: float) -> float:
    return round(round(seconds / resolution) * resolution, 6)


def choose_cut(
    start: float,
    silences: Sequence[tuple[float, float]],
    *,
    max_chunk: float,
    min_silence: float,
    search_fraction: float = SEARCH_FRACTION,
    resolution: float = RESOLUTION,
) -> float | None:
    """Where a chunk beginning at *start* should end, or ``None`` when there is no pause.

    Looks at the pauses (sorted, non-overlapping ``(start, end)`` seconds) inside
    the last *search_fraction* of the window ``[start, start + max_chunk]``, takes
    the longest part of a pause lying there that lasts at least *min_silence*
    (the later one on a tie) and returns its middle, snapped to *resolution*.
    """
    region_start = start + (1.0 - search_fraction) * max_chunk
    region_end = start + max_chunk
    ends = _EndView(silences)
    best: tuple[float, float] | None = None
    best_length = 0.0
    for i in range(bisect.bisect_right(ends, region_start), len(silences)):
        pause_start, pause_end = silences[i]
        if pause_start >= region_end:
            break
        a = max(pause_start, region_start)
        b = min(pause_end, region_end)
        length = b - a
        if length + 1e-9 >= min_silence and length + 1e-9 >= best_length:
            best, best_length = (a, b), length
    if best is None:
        return None
    cut = _snap((best[0] + best[1]) / 2, resolution)
    return min(max(cut, _snap(best[0], resolution)), _snap_down(region_end, resolution))


def plan_chunks(
    duration: float,
    silences: Sequence[tuple[float, float]],
    *,
    max_chunk: float,
    min_silence: float,
    overlap: float,
    search_fraction: float = SEARCH_FRACTION,
    resolution: float = RESOLUTION,
) -> list[tuple[float, float]]:
    """Split ``[0, duration]`` into ``(start, end)`` spans no longer than *max_chunk*.

    Each span ends in the middle of a pause chosen by :func:`choose_cut` and
    the next one starts there.  Where a window holds no pause the span is cut
    hard at *max_chunk* and the next one starts *overlap* seconds earlier, so
    no word is lost at the seam.  The same input always gives the same spans.
    """
    if duration <= 0:
        return []
    spans: list[tuple[float, float]] = []
    start = 0.0
    while duration - start > max_chunk + 1e-9:
        cut = choose_cut(
            start,
            silences,
            max_chunk=max_chunk,
            min_silence=min_silence,
            search_fraction=search_fraction,
            resolution=resolution,
        )
        if cut is not None and cut > start:
            spans.append((start, cut))
            start = cut
        else:
            end = _snap_down(start + max_chunk, resolution)
            spans.append((start, end))
            start = _snap_down(end - overlap, resolution)
    spans.append((start, round(duration, 6)))
    return spans


def span_is_silent(start: float, end: float, silences: Sequence[tuple[float, float]]) -> bool:
    """True when ``[start, end]`` lies inside one of the (sorted) silent intervals."""
    ends = _EndView(silences)
    i = bisect.bisect_left(ends, end - 1e-6)
    return i < len(silences) and silences[i][0] <= start + 1e-6


def plan_utterances(
    duration: float,
    silences: Sequence[tuple[float, float]],
    *,
    pause: float,
    max_length: float,
    min_length: float,
    max_chunk: float,
    min_silence: float,
    overlap: float,
    resolution: float = RESOLUTION,
) -> list[tuple[float, float]]:
    """Split ``[0, duration]`` into utterances: one span per stretch of speech between pauses.

    Every pause of at least *pause* seconds (leading and trailing silence aside) is a
    boundary, in its middle.  A span holding less than *min_length* seconds of speech joins
    the next one (the last joins the one before); a span longer than *max_length* is cut again at its longest inner
    pause of at least *min_silence*, until it fits or has none left; a span still longer than
    *max_chunk* is cut as :func:`plan_chunks` cuts.  The same input gives the same spans.
    """
    if duration <= 0:
        return []
    inner = [(a, b) for a, b in silences if a > 1e-6 and b < duration - 1e-6]
    cuts = [_snap((a + b) / 2, resolution) for a, b in inner if b - a + 1e-9 >= pause]
    spans = _spans(0.0, round(duration, 6), cuts)

    def spoken(span: tuple[float, float]) -> float:
        speech_start, speech_end = speech_extent(span[0], span[1], silences)
        return speech_end - speech_start

    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and spoken(merged[-1]) < min_length:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    if len(merged) > 1 and spoken(merged[-1]) < min_length:
        last = merged.pop()
        merged[-1] = (merged[-1][0], last[1])
    result: list[tuple[float, float]] = []
    for start, end in merged:
        for a, b in _split_long(start, end, inner, max_length=max_length, min_silence=min_silence,
                                resolution=resolution):
            if b - a > max_chunk + 1e-9:
                pieces = plan_chunks(b - a, [(x - a, y - a) for x, y in inner if a <= x and y <= b],
                                     max_chunk=max_chunk, min_silence=min_silence, overlap=overlap,
                                     resolution=resolution)
                result.extend((round(a + x, 6), round(a + y, 6)) for x, y in pieces)
            else:
                result.append((a, b))
    return result


def _spans(start: float, end: float, cuts: Sequence[float]) -> list[tuple[float, float]]:
    points = [start, *(c for c in cuts if start < c < end), end]
    return [(a, b) for a, b in zip(points, points[1:], strict=False) if b > a]


def _split_long(start: float, end: float, silences: Sequence[tuple[float, float]], *, max_length: float,
                min_silence: float, resolution: float) -> list[tuple[float, float]]:
    if end - start <= max_length:
        return [(start, end)]
    candidates = [(b - a, (a + b) / 2) for a, b in silences
                  if b - a + 1e-9 >= min_silence and start + 1.0 < (a + b) / 2 < end - 1.0]
    if not candidates:
        return [(start, end)]
    _, middle = max(candidates)
    cut = _snap(middle, resolution)
    return (_split_long(start, cut, silences, max_length=max_length, min_silence=min_silence, resolution=resolution)
            + _split_long(cut, end, silences, max_length=max_length, min_silence=min_silence,
                          resolution=resolution))


def speech_extent(start: float, end: float, silences: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """``[start, end]`` without the pauses it begins and ends with (itself when all of it is speech)."""
    speech_start, speech_end = start, end
    for a, b in silences:
        if a <= speech_start + 1e-6 < b:
            speech_start = min(b, end)
        if a < speech_end - 1e-6 <= b:
            speech_end = max(a, start)
    if speech_end <= speech_start:
        return start, end
    return round(speech_start, 6), round(speech_end, 6)


class _EndView(Sequence[float]):
    """The end times of a sorted interval list, for bisect without copying."""

    def __init__(self, intervals: Sequence[tuple[float, float]]) -> None:
        self._intervals = intervals

    def __len__(self) -> int:
        return len(self._intervals)

    def __getitem__(self, index: Any) -> Any:
        return self._intervals[index][1]


# --------------------------------------------------------------------------------------------
# Probing


def probe(path: Path) -> AudioInfo:
    """Read *path*'s container and first audio stream with ffprobe (no decoding).

    Raises :class:`AudioError` for an empty file, a file that is not audio, one
    without an audio track, or one of zero duration.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FileError(
            f"{path}: cannot read file: {exc.strerror or exc}", path=path, hint="check it exists and is readable"
        ) from exc
    if size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)", path=path, hint=_CHECK_COMPLETE)

    result = _run(
        ["ffprobe", "-v", "warning", "-print_format", "json", "-show_format", "-show_streams", _ff_path(path)],
        timeout=PROBE_TIMEOUT,
        path=path,
    )
    messages = _message_lines(result.stderr)
    if result.returncode != 0:
        raise _unreadable(path, messages)
    try:
        data = json.loads(result.stdout or "{}")
    except json.JSONDecodeError as exc:  # pragma: no cover - ffprobe always writes JSON with -of json
        raise AudioError(f"{path}: not a readable audio file (ffprobe gave no answer)", path=path,
                         hint=_NOT_AUDIO_HINT) from exc
    streams = data.get("streams") or []
    fmt = data.get("format") or {}
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if audio is None:
        container = str(fmt.get("format_name") or "")
        if container == "image2" or container.endswith("_pipe"):
            raise AudioError(f"{path}: not audio: it is a picture ({container.removesuffix('_pipe')})",
                             path=path, hint=_NOT_AUDIO_HINT)
        if any(s.get("codec_type") == "video" for s in streams):
            raise AudioError(
                f"{path}: contains no audio track (video only)",
                path=path,
                hint="export the recording with its sound, or remove the file from the input folder",
            )
        raise AudioError(f"{path}: not audio: no audio stream found", path=path, hint=_NOT_AUDIO_HINT)

    has_video = any(
        s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
        for s in streams
    )
    estimated = any("estimating duration" in line.lower() for line in messages)
    duration = _number(audio.get("duration"))
    if duration is None:
        duration = _number(fmt.get("duration"))
        estimated = estimated or has_video
    if duration is None:
        duration = _demux_duration(path)
        estimated = True
    if duration is None or duration <= 0:
        raise AudioError(f"{path}: zero or unknown duration: the audio track holds no sound",
                         path=path, hint=_CHECK_COMPLETE)
    if "wav" in str(fmt.get("format_name") or "").split(","):
        shortfall = wav_shortfall(path)
        if shortfall is not None:
            announced, present = shortfall
            raise truncated(path, f"the WAV header announces {announced:.2f} s of audio but the file holds "
                                  f"{present:.2f} s")
    return AudioInfo(
        duration=duration,
        sample_rate=int(_number(audio.get("sample_rate")) or 0),
        channels=int(audio.get("channels") or 0),
        codec=str(audio.get("codec_name") or "unknown"),
        container=str(fmt.get("format_name") or "unknown"),
        size=size,
        estimated=estimated,
    )


def wav_shortfall(path: Path) -> tuple[float, float] | None:
    """``(announced, present)`` seconds when a RIFF/WAVE file's ``data`` chunk announces more audio
    than the file holds, else None (complete, not a RIFF WAV, or a streaming header of unknown size)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None  # RF64/W64 and others: their sizes live elsewhere; ffmpeg checks them
            position = 12
            byte_rate = 0
            while position + 8 <= size:
                handle.seek(position)
                chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
                if chunk_id == b"fmt " and chunk_size >= 16:
                    byte_rate = struct.unpack("<I", handle.read(16)[8:12])[0]
                elif chunk_id == b"data":
                    present = size - position - 8
                    if chunk_size in (0, 0xFFFFFFFF) or byte_rate <= 0 or present >= chunk_size:
                        return None
                    if (chunk_size - present) / byte_rate < WAV_SHORTFALL_SECONDS:
                        return None
                    return chunk_size / byte_rate, present / byte_rate
                position += 8 + chunk_size + (chunk_size & 1)
    except (OSError, struct.error):
        return None
    return None


def truncated(path: Path, detail: str, *, corrupt: bool = False, now: float | None = None) -> TruncatedAudioError:
    """The error for a file holding less audio than it announces (or, with *corrupt*, whose audio
    stops decoding part-way); transient while the file is young, permanent once it is stable."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except OSError:
        age = 0.0
    what = "truncated or corrupt audio" if corrupt else "truncated"
    if age < TRUNCATED_SETTLE_SECONDS:
        return TruncatedAudioError(
            f"{path}: {what}, or still being copied: {detail}", path=path, permanent=False,
            hint="it is tried again on the next run; if the copy is finished, copy or export it again",
        )
    return TruncatedAudioError(f"{path}: {what}: {detail}", path=path, permanent=True,
                               hint="the file was cut off or damaged: copy it again or re-export it")


def _unreadable(path: Path, messages: list[str]) -> AudioError:
    # ffprobe's last line is "<input>: <reason>"; the input may itself contain ": ".
    detail = messages[-1].rsplit(": ", 1)[-1] if messages else "ffprobe failed"
    if any("moov atom not found" in line for line in messages):
        return truncated(path, "the MP4/M4A index (moov atom) is missing, so the file was cut off while being "
                               "written or copied")
    return AudioError(f"{path}: not audio, or not a format ffmpeg can read (ffprobe: {detail})", path=path,
                      hint=_NOT_AUDIO_HINT)


def _demux_duration(path: Path) -> float | None:
    """Duration found by reading the audio packets without decoding (files whose header lacks it)."""
    result = _run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", _ff_path(path), "-map", "0:a:0", "-c", "copy",
         "-f", "null", "-", "-progress", "pipe:1"],
        timeout=PROBE_TIMEOUT,
        path=path,
    )
    if result.returncode != 0:
        return None
    value = None
    for line in (result.stdout or "").splitlines():
        if line.startswith("out_time_us="):
            value = _number(line.partition("=")[2])
    return value / 1_000_000 if value is not None else None


# --------------------------------------------------------------------------------------------
# Decoding and planning


def prepare(path: Path, info: AudioInfo, settings: AudioConfig, workdir: Path, *,
            utterances: bool = False) -> PreparedAudio:
    """Decode *path* to 16-bit mono WAV at ``settings.sample_rate`` and plan its chunks.

    With *utterances*, every stretch of speech between pauses of ``audio.utterance_pause``
    seconds is a chunk of its own (:func:`plan_utterances`), so that what the server says for
    it can be timed; chunks also know where their speech begins and ends.

    The decoded files go into a new private folder under *workdir* (removed by
    :meth:`PreparedAudio.cleanup`).  ``channels: split`` with a multi-channel
    input gives one WAV and one chunk list per channel; otherwise channels are
    mixed to mono.  Recordings up to ``split_above`` seconds are one chunk;
    longer ones are cut at pauses into chunks of at most ``max_chunk`` seconds.

    With ``convert: false`` nothing is decoded or split: the result has a single
    chunk covering the whole file and exporting it returns the original file.

    Raises :class:`AudioError` when ffmpeg cannot decode the file or the decoded
    audio is far shorter than *info* says (truncated or corrupt).
    """
    path = Path(path)
    if not settings.convert:
        chunk = Chunk(index=0, channel=None, start=0.0, end=info.duration, silent=False)
        return PreparedAudio(
            source=path, info=info, chunks=(chunk,), wav_paths=(), sample_rate=info.sample_rate,
            duration=info.duration, directory=None,
        )

    try:
        workdir.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix="audio-", dir=workdir))
    except OSError as exc:
        raise _work_folder_problem(exc, workdir) from None
    try:
        split = settings.channels == "split" and info.channels >= 2
        wav_paths = _decode(path, info, settings.sample_rate, info.channels if split else None, directory)
        try:
            duration = max(_wav_duration(wav_path) for wav_path in wav_paths)
        except (wave.Error, EOFError, OSError) as exc:
            if _disk_is_low(directory):
                raise _disk_full(directory) from None
            raise FileError(f"{path}: the decoded audio could not be read back ({exc})", path=path,
                            hint="it is tried again on the next run") from None
        _check_complete(path, info, duration)
        chunks: list[Chunk] = []
        for number, wav_path in enumerate(wav_paths):
            silences, channel_duration = find_silences(
                wav_path, threshold_db=settings.silence_threshold, min_silence=settings.min_silence
            )
            if utterances:
                spans = plan_utterances(
                    channel_duration, silences, pause=settings.utterance_pause,
                    max_length=min(settings.utterance_max, settings.max_chunk), min_length=settings.utterance_min,
                    max_chunk=settings.max_chunk, min_silence=settings.min_silence, overlap=settings.overlap,
                )
            elif channel_duration <= settings.split_above:
                spans = [(0.0, channel_duration)]
            else:
                spans = plan_chunks(
                    channel_duration, silences, max_chunk=settings.max_chunk,
                    min_silence=settings.min_silence, overlap=settings.overlap,
                )
            for start, end in spans:
                speech_start, speech_end = speech_extent(start, end, silences)
                chunks.append(
                    Chunk(
                        index=len(chunks),
                        channel=number if split else None,
                        start=start,
                        end=end,
                        silent=span_is_silent(start, end, silences),
                        speech_start=speech_start,
                        speech_end=speech_end,
                    )
                )
    except OSError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise _work_folder_problem(exc, directory) from None
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    log.debug(
        "prepared file=%s duration=%.2f channels=%s chunks=%d silent=%d",
        path, duration, len(wav_paths), len(chunks), sum(c.silent for c in chunks),
    )
    return PreparedAudio(
        source=path, info=info, chunks=tuple(chunks), wav_paths=tuple(wav_paths),
        sample_rate=settings.sample_rate, duration=duration, directory=directory,
    )


def _decode(path: Path, info: AudioInfo, sample_rate: int, channels: int | None, directory: Path) -> list[Path]:
    """Run ffmpeg once, writing mono 16-bit WAV(s) into *directory*; streams to disk."""
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-i", _ff_path(path), "-vn", "-sn", "-dn"]
    outputs: list[Path] = []
    if channels is None:
        target = directory / "audio.wav"
        command += ["-map", "0:a:0", "-ac", "1", *_wav_output(sample_rate, target)]
        outputs.append(target)
    else:
        # One decode feeding one mono output per channel.
        labels = "".join(f"[s{n}]" for n in range(channels))
        graph = [f"[0:a:0]asplit={channels}{labels}"]
        graph += [f"[s{n}]pan=mono|c0=c{n}[c{n}]" for n in range(channels)]
        command += ["-filter_complex", ";".join(graph)]
        for n in range(channels):
            target = directory / f"channel-{n}.wav"
            command += ["-map", f"[c{n}]", *_wav_output(sample_rate, target)]
            outputs.append(target)
    timeout = DECODE_TIMEOUT_BASE + DECODE_TIMEOUT_PER_SECOND * info.duration
    error_file = directory / "ffmpeg-errors.txt"
    with error_file.open("w+", encoding="utf-8", errors="replace") as errors:
        try:
            completed = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, timeout=timeout,
                check=False, start_new_session=True,  # Ctrl-C in a terminal stops asrbatch, not the decode
            )
        except FileNotFoundError as exc:
            raise _missing_tool("ffmpeg") from exc
        except subprocess.TimeoutExpired as exc:
            raise FileError(
                f"{path}: decoding took longer than {timeout:.0f} s", path=path,
                hint="the machine may be overloaded; it is tried again on the next run",
            ) from exc
        errors.seek(0)
        messages = _message_lines(errors.read(STDERR_LIMIT))
    if completed.returncode != 0 or messages:
        if any(m in line.lower() for line in messages for m in _DISK_MESSAGES) or _disk_is_low(directory):
            raise _disk_full(directory)
        detail = "; ".join(messages[:3]) or f"ffmpeg exited with status {completed.returncode}"
        raise truncated(path, detail, corrupt=True)
    return outputs


def _wav_duration(wav_path: Path) -> float:
    with wave.open(str(wav_path), "rb") as reader:
        return reader.getnframes() / reader.getframerate()


def _wav_output(sample_rate: int, target: Path) -> list[str]:
    return ["-ar", str(sample_rate), "-c:a", "pcm_s16le", "-f", "wav", "-y", _ff_path(target)]


def _check_complete(path: Path, info: AudioInfo, decoded: float) -> None:
    if info.estimated:
        return
    seconds, fraction = SHORT_DECODE_TOLERANCE
    if decoded < info.duration - max(seconds, fraction * info.duration):
        raise truncated(path, f"only {decoded:.1f} s of the {info.duration:.1f} s the file announces could be "
                              "decoded")


def find_silences(
    wav_path: Path, *, threshold_db: float, min_silence: float, frame_seconds: float = FRAME_SECONDS
) -> tuple[list[tuple[float, float]], float]:
    """Pauses in a 16-bit mono WAV, and its duration in seconds.

    A frame (``frame_seconds`` long) is silent when its RMS level is below
    *threshold_db* dBFS.  Returns the runs of silent frames lasting at least
    *min_silence*, plus a silent run at the very end whatever its length, as
    sorted ``(start, end)`` seconds.  Reads the file one block at a time.
    """
    with wave.open(str(wav_path), "rb") as reader:
        if reader.getsampwidth() != SAMPLE_WIDTH or reader.getnchannels() != 1:
            raise ValueError(f"{wav_path}: expected 16-bit mono WAV")
        rate = reader.getframerate()
        total = reader.getnframes()
        frame = max(1, round(rate * frame_seconds))
        block = frame * max(1, int(BLOCK_SECONDS / frame_seconds))
        limit = 10 ** (threshold_db / 20) * float(1 << (8 * SAMPLE_WIDTH - 1))
        silences: list[tuple[float, float]] = []
        run_start: int | None = None  # first sample of the current silent run
        position = 0
        while position < total:
            data = reader.readframes(block)
            if not data:
                break
            segment = AudioSegment(data=data, sample_width=SAMPLE_WIDTH, frame_rate=rate, channels=1)
            count = len(data) // SAMPLE_WIDTH
            for offset in range(0, count, frame):
                quiet = segment.get_sample_slice(offset, min(offset + frame, count)).rms < limit
                if quiet and run_start is None:
                    run_start = position + offset
                elif not quiet and run_start is not None:
                    if (position + offset - run_start) / rate + 1e-9 >= min_silence:
                        silences.append((run_start / rate, (position + offset) / rate))
                    run_start = None
            position += count
    if run_start is not None:
        silences.append((run_start / rate, position / rate))
    return silences, position / rate


def _copy_wav_span(source: Path, target: Path, start: float, end: float) -> None:
    """Copy ``[start, end)`` seconds of a WAV into a new WAV, block by block, atomically."""
    partial = target.with_name(target.name + ".part")
    with wave.open(str(source), "rb") as reader:
        rate = reader.getframerate()
        first = min(round(start * rate), reader.getnframes())
        last = min(round(end * rate), reader.getnframes())
        reader.setpos(first)
        block = int(rate * BLOCK_SECONDS)
        with wave.open(str(partial), "wb") as writer:
            writer.setnchannels(reader.getnchannels())
            writer.setsampwidth(reader.getsampwidth())
            writer.setframerate(rate)
            remaining = last - first
            while remaining > 0:
                data = reader.readframes(min(block, remaining))
                if not data:
                    break
                writer.writeframesraw(data)
                remaining -= len(data) // (reader.getsampwidth() * reader.getnchannels())
    os.replace(partial, target)


# --------------------------------------------------------------------------------------------
# Running the tools


def _ff_path(path: Path) -> str:
    # The file: prefix stops ffmpeg from reading "name:with colon.mp3" as a protocol
    # and a leading "-" as an option.
    return "file:" + str(Path(path).resolve())


def _run(command: list[str], *, timeout: float, path: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
            # Its own session: Ctrl-C in a terminal reaches asrbatch (which finishes what is in
            # flight), never ffprobe, whose death would read as a broken recording.
            timeout=timeout, check=False, start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise _missing_tool(command[0]) from exc
    except subprocess.TimeoutExpired as exc:
        raise FileError(
            f"{path}: {command[0]} did not finish within {timeout:.0f} s", path=path,
            hint="the machine may be overloaded; it is tried again on the next run",
        ) from exc


def _missing_tool(name: str) -> OperatorError:
    return OperatorError(f"{name} not found", hint="install ffmpeg (it provides ffmpeg and ffprobe) and put it on PATH")


def _disk_is_low(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < LOW_DISK_BYTES
    except OSError:
        return False


def _disk_full(folder: Path) -> OperatorError:
    return OperatorError(f"cannot decode into {folder}: no space left on the device",
                         hint="free some space in the state folder's filesystem (or set state.dir elsewhere)")


def _work_folder_problem(exc: OSError, folder: Path) -> OperatorError:
    return fsutil.operator_error(exc, folder, "cannot use the work folder") or OperatorError(
        f"cannot use the work folder {folder}: {exc.strerror or exc}", hint="check the state folder")


_CONTEXT = re.compile(r"^\[([\w,]+) @ 0x[0-9a-f]+\]\s*")


def _message_lines(text: str | None) -> list[str]:
    """ffmpeg's message lines, with "[mp3 @ 0x55d0...]" shortened to "mp3:"."""
    lines = (_CONTEXT.sub(r"\1: ", line.strip()) for line in (text or "").splitlines())
    return [line for line in lines if line]


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None

