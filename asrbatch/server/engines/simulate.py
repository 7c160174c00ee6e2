"""A stand-in engine for measuring clients: it waits as a real one would and recognises nothing.

It sleeps ``seconds_per_audio_second`` x the audio's duration and returns a fixed text, so a
client's throughput, timeouts and concurrency handling can be measured against a server whose
speed is known. The server's concurrency limit applies to it like to any engine, and the time it
spends is counted as the server's busy time (``Engine busy`` on the system-information tab), so a
client's utilisation of the server is measured, not assumed. Never a default.

``{seconds}`` in the text is replaced by the audio's duration (``12.34``), so tests can tell
which recording a transcript came from when many requests are in flight at once; ``{hotwords}``
by the hotwords the request carried, comma-separated, so a test sees what reached the engine
through each protocol.
"""

from __future__ import annotations

import time
import wave
from collections.abc import Callable
from pathlib import Path

from asrbatch.server.engines.base import EngineResult, EngineSettings, EngineUnavailable, Segment

SECONDS_PLACEHOLDER = "{seconds}"
HOTWORDS_PLACEHOLDER = "{hotwords}"


def wav_duration(wav_path: Path) -> float:
    """Length of a WAV file in seconds."""
    with wave.open(str(wav_path), "rb") as audio:
        return audio.getnframes() / audio.getframerate()


class SimulatedEngine:
    """Sleeps in proportion to the audio's length and returns a fixed text."""

    name = "simulate"
    supports_hotwords = False

    def __init__(
        self,
        seconds_per_audio_second: float,
        text: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if seconds_per_audio_second < 0:
            raise EngineUnavailable("--simulate-rtf must be 0 or more")
        self.model = f"simulated, {seconds_per_audio_second:g} s per audio second"
        self.device = "cpu"
        self.seconds_per_audio_second = seconds_per_audio_second
        self.text = text
        self._sleep = sleep

    @classmethod
    def load(cls, settings: EngineSettings) -> SimulatedEngine:
        """Build the engine from the ``--simulate-*`` settings."""
        return cls(settings.simulate_seconds_per_audio_second, settings.simulate_text)

    def transcribe(self, wav_path: Path, hotwords: list[str], batch_size: int) -> EngineResult:
        """Wait, then return the configured text (placeholders filled in) as one segment."""
        duration = wav_duration(wav_path)
        self._sleep(self.seconds_per_audio_second * duration)
        text = self.text.replace(SECONDS_PLACEHOLDER, f"{duration:.2f}")
        text = text.replace(HOTWORDS_PLACEHOLDER, ",".join(hotwords))
        return EngineResult(text=text, segments=(Segment(0.0, duration, text),))
