"""Real test speech: festival speaks, ffmpeg encodes; results are cached on disk.

Every helper returns the path of a cached file named by a hash of everything
that went into it, under ``$ASRBATCH_TEST_CACHE/speech`` (default
``<repo>/.cache/test-speech``).  Files are written to a temporary name and
renamed into place, so parallel test processes can share the cache.

The voice is festival's ``cmu_us_slt_arctic_hts`` (Debian package
festvox-us-slt-hts); :data:`SENTENCES` are ones the pocketsphinx engine of the
reference server transcribes without error at 16 kHz.  Run this file as a
script to measure that again::

    .venv/bin/python tests/support/speech.py
"""

from __future__ import annotations

import array
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CACHE_ENV = "ASRBATCH_TEST_CACHE"
VOICE = "voice_cmu_us_slt_arctic_hts"
VOICE_DIR = Path("/usr/share/festival/voices/us/cmu_us_slt_arctic_hts")

SENTENCES = (
    "I would like a cup of coffee please.",
    "We will meet at the office tomorrow morning.",
    "The weather is very nice today.",
    "Please call me back when you get home.",
    "She went to the store to buy some bread.",
    "The children are playing in the park.",
    "He has a new car and a small house.",
    "I think we should start the meeting now.",
    "The train leaves at nine in the morning.",
    "My brother lives in a big city.",
    "Thank you very much for your help.",
    "We need to finish this work by Friday.",
    "It is going to rain this afternoon.",
    "The dog ran across the road.",
    "Let me know if you have any questions.",
    "The price of the house is too high.",
    "Turn left at the next corner.",
    "We had a good time at the party.",
    "The phone number is on the back of the card.",
    "Good morning everyone and welcome to the meeting.",
)
"""Plain English sentences that pocketsphinx (en-us) gets word for word from this voice
(WAV 16 kHz, MP3/M4A 44.1 kHz stereo, Ogg Vorbis, Ogg Opus)."""

PHONE_SENTENCES = (
    "The weather is very nice today.",
    "The children are playing in the park.",
    "I think we should start the meeting now.",
    "The train leaves at nine in the morning.",
    "Thank you very much for your help.",
    "The dog ran across the road.",
    "Let me know if you have any questions.",
    "Turn left at the next corner.",
    "Good morning everyone and welcome to the meeting.",
    "We had a good time at the party.",
    "I do not know the answer to that question.",
    "I want to go to the market.",
    "The children went to bed early.",
)
"""Sentences pocketsphinx also gets word for word at 8 kHz (telephone band, call-style stereo);
the others lose words there."""

# Extension and ffmpeg output options per format.  Opus only runs at 8/12/16/24/48 kHz,
# so other rates are encoded at 48 kHz (see _rate_for).
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "wav": ("wav", ("-c:a", "pcm_s16le")),
    "mp3": ("mp3", ("-c:a", "libmp3lame", "-b:a", "64k")),
    "flac": ("flac", ("-c:a", "flac")),
    "m4a": ("m4a", ("-c:a", "aac", "-b:a", "64k", "-f", "mp4")),
    "ogg": ("ogg", ("-c:a", "libvorbis", "-q:a", "3")),
    "aac": ("aac", ("-c:a", "aac", "-b:a", "64k", "-f", "adts")),
    "opus": ("opus", ("-c:a", "libopus", "-b:a", "32k", "-f", "ogg")),
    "mp4": ("mp4", ("-c:a", "aac", "-b:a", "64k", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-shortest", "-f", "mp4")),
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


# --------------------------------------------------------------------------------------------
# Cache


def cache_root(cache_dir: Path | None = None) -> Path:
    """The folder cached speech goes into (created if needed)."""
    if cache_dir is None:
        base = os.environ.get(CACHE_ENV)
        cache_dir = Path(base) / "speech" if base else REPO / ".cache" / "test-speech"
    cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, ensure_ascii=False).encode()).hexdigest()[:20]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached(name: str, suffix: str, cache_dir: Path | None, build: Callable[[Path], None]) -> Path:
    """Return ``<cache>/<name>.<suffix>``, building it through a temporary file when missing."""
    root = cache_root(cache_dir)
    target = root / f"{name}.{suffix}"
    if target.exists():
        return target
    handle, temporary = tempfile.mkstemp(prefix=f".{name}-", suffix=f".{suffix}", dir=root)
    os.close(handle)
    try:
        build(Path(temporary))
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def _ffmpeg(*arguments: str) -> None:
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({' '.join(command)}): {result.stderr.strip()}")


def _rate_for(fmt: str, rate: int) -> int:
    if fmt == "opus" and rate not in OPUS_RATES:
        return 48000
    return rate


def _encode(source: Path, target: Path, fmt: str, rate: int, channels: int) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    _, options = FORMATS[fmt]
    inputs = ["-i", str(source)]
    if fmt == "mp4":
        inputs = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=5", *inputs]
    audio = ["-map", "1:a", "-map", "0:v"] if fmt == "mp4" else []
    _ffmpeg(*inputs, *audio, "-ar", str(_rate_for(fmt, rate)), "-ac", str(channels), *options, str(target))


# --------------------------------------------------------------------------------------------
# Speech


def voice_available() -> bool:
    """True when festival and its slt voice are installed."""
    return VOICE_DIR.is_dir() and any(
        (Path(directory) / "text2wave").exists() for directory in os.environ.get("PATH", "").split(os.pathsep)
    )


def _speak(text: str, cache_dir: Path | None) -> Path:
    """Festival's own output (mono WAV at the voice's rate), cached."""

    def build(target: Path) -> None:
        command = ["text2wave", "-eval", f"({VOICE})", "-o", str(target)]
        subprocess.run(command, input=text.encode("utf-8"), capture_output=True, check=True)

    return _cached("voice-" + _key("festival", VOICE, text), "wav", cache_dir, build)


def synthesize(
    text: str, *, fmt: str = "wav", rate: int = 16000, channels: int = 1, cache_dir: Path | None = None
) -> Path:
    """*text* spoken by festival, encoded as *fmt* at *rate* Hz with *channels* (1 or 2).

    Formats: wav, mp3, flac, m4a (AAC in MP4), ogg (Vorbis), aac (ADTS), opus
    (Ogg Opus; rates other than 8/12/16/24/48 kHz become 48 kHz) and mp4 (a
    test-pattern video with the speech as its audio track).
    """
    spoken = _speak(text, cache_dir)
    return convert(spoken, fmt=fmt, rate=rate, channels=channels, cache_dir=cache_dir)


def convert(
    source: Path, *, fmt: str = "wav", rate: int = 16000, channels: int = 1, cache_dir: Path | None = None
) -> Path:
    """*source* re-encoded as *fmt* at *rate* Hz with *channels*, cached by its content."""
    extension = FORMATS[fmt][0] if fmt in FORMATS else fmt
    name = f"{fmt}-{rate}-{channels}ch-" + _key("convert", _file_digest(source), fmt, rate, channels)
    return _cached(name, extension, cache_dir, lambda target: _encode(source, target, fmt, rate, channels))


def concat(
    paths: Sequence[Path],
    pause_seconds: float | Sequence[float] = 1.0,
    *,
    fmt: str = "wav",
    rate: int = 16000,
    channels: int = 1,
    cache_dir: Path | None = None,
) -> Path:
    """The recordings in *paths* one after another with digital silence between them.

    *pause_seconds* is one length or a sequence cycled through (pause i follows
    recording i), so long files get pauses of varied length.  The result is
    encoded as *fmt* at *rate* with *channels*; every channel carries the same speech.
    """
    pauses = [float(pause_seconds)] if isinstance(pause_seconds, (int, float)) else [float(p) for p in pause_seconds]
    digests = [_file_digest(Path(p)) for p in paths]
    extension = FORMATS[fmt][0]
    name = f"concat-{fmt}-{rate}-{channels}ch-" + _key("concat", digests, pauses, fmt, rate, channels)

    def build(target: Path) -> None:
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            joined = Path(scratch) / "joined.wav"
            work_rate = _rate_for(fmt, rate)
            decoded: dict[Path, bytes] = {}  # a long file repeats the same few sentences
            with wave.open(str(joined), "wb") as writer:
                writer.setnchannels(1)
                writer.setsampwidth(2)
                writer.setframerate(work_rate)
                for i, path in enumerate(paths):
                    if Path(path) not in decoded:
                        decoded[Path(path)] = pcm(Path(path), rate=work_rate)
                    writer.writeframes(decoded[Path(path)])
                    if i < len(paths) - 1:
                        pause = pauses[i % len(pauses)]
                        writer.writeframes(b"\0\0" * round(pause * work_rate))
            if fmt == "wav" and channels == 1 and work_rate == rate:
                os.replace(joined, target)
            else:
                _encode(joined, target, fmt, rate, channels)

    return _cached(name, extension, cache_dir, build)


def stereo(
    left: Path, right: Path, *, rate: int = 8000, fmt: str = "wav", cache_dir: Path | None = None
) -> Path:
    """A two-channel recording with *left* on channel 0 and *right* on channel 1 (call style).

    The shorter side is padded with silence.
    """
    extension = FORMATS[fmt][0]
    name = f"stereo-{fmt}-{rate}-" + _key("stereo", _file_digest(left), _file_digest(right), fmt, rate)

    def build(target: Path) -> None:
        work_rate = _rate_for(fmt, rate)
        sides = [array.array("h", pcm(left, rate=work_rate)), array.array("h", pcm(right, rate=work_rate))]
        length = max(len(side) for side in sides)
        for side in sides:
            side.extend([0] * (length - len(side)))
        interleaved = array.array("h", bytes(4 * length))
        interleaved[0::2] = sides[0]
        interleaved[1::2] = sides[1]
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            joined = Path(scratch) / "stereo.wav"
            with wave.open(str(joined), "wb") as writer:
                writer.setnchannels(2)
                writer.setsampwidth(2)
                writer.setframerate(work_rate)
                writer.writeframes(interleaved.tobytes())
            _encode(joined, target, fmt, rate, 2)

    return _cached(name, extension, cache_dir, build)


def silence(
    seconds: float, fmt: str = "wav", rate: int = 16000, *, channels: int = 1, cache_dir: Path | None = None
) -> Path:
    """*seconds* of digital silence."""
    return _generated(f"anullsrc=r={_rate_for(fmt, rate)}:cl=mono", seconds, fmt, rate, channels, cache_dir)


def noise(
    seconds: float,
    fmt: str = "wav",
    rate: int = 16000,
    *,
    channels: int = 1,
    amplitude: float = 0.3,
    cache_dir: Path | None = None,
) -> Path:
    """*seconds* of white noise (never below -40 dBFS at the default amplitude): audio without pauses."""
    source = f"anoisesrc=r={_rate_for(fmt, rate)}:a={amplitude}:c=white:seed=7"
    return _generated(source, seconds, fmt, rate, channels, cache_dir)


def tone(
    seconds: float, fmt: str = "wav", rate: int = 16000, *, frequency: float = 440.0, channels: int = 1,
    cache_dir: Path | None = None,
) -> Path:
    """*seconds* of a steady sine tone."""
    source = f"sine=frequency={frequency}:sample_rate={_rate_for(fmt, rate)}"
    return _generated(source, seconds, fmt, rate, channels, cache_dir)


def _generated(
    source: str, seconds: float, fmt: str, rate: int, channels: int, cache_dir: Path | None
) -> Path:
    extension, options = FORMATS[fmt]
    name = f"lavfi-{fmt}-{rate}-{channels}ch-" + _key("lavfi", source, seconds, fmt, rate, channels)

    def build(target: Path) -> None:
        inputs = ["-f", "lavfi", "-i", source, "-t", str(seconds)]
        if fmt == "mp4":
            inputs = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=5", *inputs]
        _ffmpeg(*inputs, "-ar", str(_rate_for(fmt, rate)), "-ac", str(channels), *options, str(target))

    return _cached(name, extension, cache_dir, build)


def video_without_audio(seconds: float = 2.0, *, cache_dir: Path | None = None) -> Path:
    """An MP4 holding a test-pattern video track and no audio track."""

    def build(target: Path) -> None:
        _ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=5", "-t", str(seconds), "-c:v", "libx264",
                "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-an", "-f", "mp4", str(target))

    return _cached("video-only-" + _key("video", seconds), "mp4", cache_dir, build)


def truncate(path: Path, fraction: float, *, cache_dir: Path | None = None) -> Path:
    """A copy of *path* cut after *fraction* of its bytes (same extension): a half-copied file."""
    path = Path(path)
    size = path.stat().st_size
    keep = int(size * fraction)
    suffix = path.suffix.lstrip(".") or "bin"
    name = "truncated-" + _key("truncate", _file_digest(path), fraction)

    def build(target: Path) -> None:
        with path.open("rb") as source, target.open("wb") as sink:
            sink.write(source.read(keep))

    return _cached(name, suffix, cache_dir, build)


# --------------------------------------------------------------------------------------------
# Measuring


def pcm(path: Path, *, rate: int = 16000, start: float | None = None, end: float | None = None) -> bytes:
    """*path* (or ``[start, end)`` seconds of it) decoded to 16-bit mono PCM at *rate* Hz."""
    window = []
    if start is not None:
        window += ["-ss", f"{start:.6f}"]
    if end is not None:
        window += ["-to", f"{end:.6f}"]
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), *window, "-vn", "-ac", "1",
               "-ar", str(rate), "-f", "s16le", "-"]
    return subprocess.run(command, capture_output=True, check=True).stdout


def duration(path: Path) -> float:
    """Duration in seconds according to ffprobe."""
    command = ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)]
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip())


def level_dbfs(samples: bytes | array.array) -> float:
    """RMS level of 16-bit PCM in dBFS (``-inf`` for digital silence)."""
    values = samples if isinstance(samples, array.array) else array.array("h", samples)
    if not values:
        return -math.inf
    rms = math.sqrt(sum(v * v for v in values) / len(values))
    return 20 * math.log10(rms / 32768) if rms > 0 else -math.inf


def wav_level(path: Path, start: float, end: float) -> float:
    """RMS level in dBFS of ``[start, end)`` seconds of a 16-bit mono WAV."""
    with wave.open(str(path), "rb") as reader:
        rate = reader.getframerate()
        first = max(0, round(start * rate))
        reader.setpos(min(first, reader.getnframes()))
        data = reader.readframes(max(0, round(end * rate) - first))
    return level_dbfs(data)


def recognise(path: Path, *, cache_dir: Path | None = None) -> str:
    """Transcribe *path* with pocketsphinx's default US English model (the reference engine's).

    Results are cached by the file's content: decoding runs at about half real time.
    """
    import pocketsphinx  # imported here: only measurement needs it

    version = getattr(pocketsphinx, "__version__", "")
    name = "sphinx-" + _key("recognise", _file_digest(Path(path)), version)
    cached = cache_root(cache_dir) / f"{name}.txt"
    if cached.exists():
        return cached.read_text(encoding="utf-8")
    decoder = _decoder_cache.get("decoder")
    if decoder is None:
        decoder = _decoder_cache["decoder"] = pocketsphinx.Decoder(loglevel="FATAL")
    decoder.start_utt()
    decoder.process_raw(pcm(path, rate=16000), full_utt=True)
    decoder.end_utt()
    hypothesis = decoder.hyp()
    text = hypothesis.hypstr if hypothesis is not None else ""
    def build(target: Path) -> None:
        target.write_text(text, encoding="utf-8")

    _cached(name, "txt", cache_dir, build)
    return text


_decoder_cache: dict[str, Any] = {}


def _measure(sentences: Iterable[str], variants: Sequence[tuple[str, int, int]]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from wer import wer  # this file runs as a script here, beside wer.py

    totals = {variant: 0.0 for variant in variants}
    header = "\t".join(f"{fmt}/{rate}/{ch}ch" for fmt, rate, ch in variants)
    print(f"{header}\tsentence")
    count = 0
    for sentence in sentences:
        scores = []
        for variant in variants:
            fmt, rate, channels = variant
            score = wer(sentence, recognise(synthesize(sentence, fmt=fmt, rate=rate, channels=channels)))
            totals[variant] += score
            scores.append(f"{score:.2f}")
        count += 1
        print("\t".join(scores) + f"\t{sentence}", flush=True)
    print("\t".join(f"{totals[v] / count:.3f}" for v in variants) + "\tmean WER")


if __name__ == "__main__":
    _measure(
        dict.fromkeys(SENTENCES + PHONE_SENTENCES),
        [("wav", 16000, 1), ("mp3", 44100, 2), ("ogg", 16000, 1), ("opus", 48000, 1), ("wav", 8000, 1),
         ("m4a", 44100, 2)],
    )
