"""What every recognition engine offers the server, and the settings it is built from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol


class Segment(NamedTuple):
    """One timed stretch of recognised text, in seconds from the start of the audio."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class EngineResult:
    """The text an engine heard, with its sentence timings and, where the engine has them, word timings."""

    text: str
    segments: tuple[Segment, ...] = ()
    """Sentences (or whole utterances), in order."""
    words: tuple[Segment, ...] = ()
    """Single words with their times, in order; empty when the engine gives none."""


class EngineUnavailable(Exception):
    """The engine cannot be loaded here (package missing, model not found, bad device)."""


class Engine(Protocol):
    """A speech recogniser the WebUI hands 16 kHz mono 16-bit WAV files to.

    Implementations may be called from several threads at once; the server limits how many
    calls run together (its concurrency setting), so an engine only has to be safe for that.
    """

    name: str
    model: str
    device: str
    supports_hotwords: bool

    def transcribe(self, wav_path: Path, hotwords: list[str], batch_size: int) -> EngineResult:
        """Recognise the speech in ``wav_path``.

        ``hotwords`` are words to favour (engines without hotword support ignore them);
        ``batch_size`` is the WebUI's 1..16 slider, which engines map to their own batching.
        """
        ...


@dataclass(frozen=True)
class EngineSettings:
    """Everything needed to build any engine; each engine reads the fields it uses."""

    name: str
    model: str | None = None
    device: str = "cpu"
    vad_model: str | None = None
    punc_model: str | None = None
    simulate_seconds_per_audio_second: float = 0.05
    simulate_text: str = "this is a simulated transcript"
