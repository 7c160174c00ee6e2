"""What the reference server offers for measuring clients: busy time, identifying simulated text,
and no decoding of audio that already is what the engines read."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from asrbatch.server import reports
from asrbatch.server.audio import FfmpegMissing, decode_to_wav
from asrbatch.server.engines.simulate import SimulatedEngine
from asrbatch.server.service import Recognizer

pytestmark = pytest.mark.unit


class Clock:
    """Time that passes only when the engine 'works'."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def wav(path: Path, seconds: float, *options: str) -> Path:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"sine=duration={seconds}",
                    *options, str(path)], check=True)
    return path


def test_simulated_text_can_name_the_duration(tmp_path: Path) -> None:
    engine = SimulatedEngine(0.0, "heard {seconds} of audio", sleep=lambda seconds: None)
    result = engine.transcribe(wav(tmp_path / "a.wav", 2.5, "-ar", "16000"), [], 1)
    assert result.text == "heard 2.50 of audio"
    assert result.segments[0].text == result.text


def test_engine_busy_time_is_counted_and_reported(tmp_path: Path) -> None:
    clock = Clock()
    engine = SimulatedEngine(0.2, "x", sleep=clock.sleep)
    service = Recognizer(engine, concurrency=1, work_dir=tmp_path, max_file_size=None, clock=clock)
    for seconds in (1.0, 2.5):
        service.recognize(wav(tmp_path / f"{seconds}.flac", seconds), "", 1)
    counters = service.counters()
    assert counters.busy_seconds == pytest.approx(0.2 * 3.5)
    info = reports.system_info(reports.ServerFacts("simulate", "m", "cpu", "3.11", "6.31.0", 1, None), counters)
    assert "- Engine busy: 0.700 s" in info


def test_a_16k_mono_wav_is_taken_as_it_is(tmp_path: Path) -> None:
    ready = wav(tmp_path / "ready.wav", 1.5, "-ar", "16000", "-ac", "1")
    target = tmp_path / "out.wav"
    # No ffmpeg is needed (or run) for it: the bytes are copied.
    assert decode_to_wav(ready, target, ffmpeg="/nonexistent/ffmpeg") == pytest.approx(1.5)
    assert target.read_bytes() == ready.read_bytes()


@pytest.mark.parametrize("options", [("-ar", "44100"), ("-ar", "16000", "-ac", "2"), ("-ar", "16000", "-c:a", "pcm_f32le")])
def test_other_wavs_are_decoded(tmp_path: Path, options: tuple[str, ...]) -> None:
    source = wav(tmp_path / "other.wav", 1.0, *options)
    with pytest.raises(FfmpegMissing):
        decode_to_wav(source, tmp_path / "out.wav", ffmpeg="/nonexistent/ffmpeg")
    assert decode_to_wav(source, tmp_path / "out.wav") == pytest.approx(1.0, abs=0.01)


def test_a_truncated_16k_wav_is_left_to_ffmpeg(tmp_path: Path) -> None:
    whole = wav(tmp_path / "whole.wav", 2.0, "-ar", "16000", "-ac", "1").read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole[: len(whole) // 2])  # the header still promises two seconds
    with pytest.raises(FfmpegMissing):
        decode_to_wav(cut, tmp_path / "out.wav", ffmpeg="/nonexistent/ffmpeg")
    assert decode_to_wav(cut, tmp_path / "out.wav") == pytest.approx(1.0, abs=0.05)
