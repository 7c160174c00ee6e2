"""Turn whatever audio a client sent into the 16 kHz mono 16-bit WAV every engine reads."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

SAMPLE_RATE = 16000
WAV_HEADER_BYTES = 44
"""The smallest WAV header; a file shorter than it plus the samples it promises is truncated."""
# Decoding a multi-hour recording takes seconds; a stuck ffmpeg should not hold a worker forever.
DECODE_TIMEOUT_SECONDS = 600


class AudioDecodeError(Exception):
    """The input is not audio ffmpeg can read (the file's fault, not the server's)."""


class FfmpegMissing(Exception):
    """ffmpeg is not installed where the server can run it (the server's fault)."""


def find_ffmpeg() -> str:
    """Path of the ffmpeg executable; raises FfmpegMissing with the install hint."""
    path = shutil.which("ffmpeg")
    if path is None:
        raise FfmpegMissing("ffmpeg not found on PATH: install it (apt-get install ffmpeg)")
    return path


def last_error_line(stderr: str) -> str:
    """The line of ffmpeg's error output that says what went wrong (its last non-empty one)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "ffmpeg failed without a message"


def decode_to_wav(source: Path, target: Path, ffmpeg: str = "ffmpeg") -> float:
    """Decode ``source`` to a 16 kHz mono 16-bit WAV at ``target``; return its duration in s.

    A source that already is such a WAV (what asrbatch sends) is copied without running ffmpeg:
    starting ffmpeg costs about 0.1 s of CPU per request, time the engine would sit idle.
    Raises AudioDecodeError when ffmpeg cannot read the input or finds no audio in it.
    """
    frames = _plain_wav_frames(source)
    if frames:
        shutil.copyfile(source, target)
        return frames / SAMPLE_RATE
    command = [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-i", str(source),
        "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-sample_fmt", "s16", "-f", "wav",
        str(target),
    ]  # fmt: skip
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, errors="replace",
            timeout=DECODE_TIMEOUT_SECONDS, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as error:
        raise AudioDecodeError(f"ffmpeg took over {DECODE_TIMEOUT_SECONDS} s") from error
    except FileNotFoundError as error:
        raise FfmpegMissing(f"cannot run {ffmpeg}: install ffmpeg") from error
    if completed.returncode != 0:
        # Name the file as the client knows it, not by the server's temporary path.
        raise AudioDecodeError(last_error_line(completed.stderr).replace(str(source), source.name))
    try:
        with wave.open(str(target), "rb") as decoded:
            frames = decoded.getnframes()
    except (wave.Error, EOFError, FileNotFoundError) as error:
        raise AudioDecodeError(f"ffmpeg produced no readable audio ({error})") from error
    if frames == 0:
        raise AudioDecodeError("no audio samples in the input")
    return frames / SAMPLE_RATE


def _plain_wav_frames(source: Path) -> int | None:
    """Frames of ``source`` when it is a complete 16 kHz mono 16-bit PCM WAV, else None.

    Anything else (other formats or rates, a header that promises more data than the file
    holds, an extensible header) is left to ffmpeg.
    """
    try:
        with wave.open(str(source), "rb") as audio:
            if (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) != (SAMPLE_RATE, 1, 2):
                return None
            frames = audio.getnframes()
        size = source.stat().st_size
    except (wave.Error, EOFError, OSError):
        return None
    if frames <= 0 or WAV_HEADER_BYTES + frames * 2 > size:
        return None
    return frames
