"""Turn whatever audio a client sent into the 16 kHz mono 16-bit WAV every engine reads."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

SAMPLE_RATE = 16000
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

    Raises AudioDecodeError when ffmpeg cannot read the input or finds no audio in it.
    """
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
