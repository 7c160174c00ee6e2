"""Subtitles people can watch, from a server that returns only text: every utterance is timed by the audio.

The recording is built from festival sentences placed at known times (each starts where the previous
one and its pause end), so the test knows where every cue should start.  The SRT and VTT files are
read with real subtitle parsers (``srt``, ``webvtt-py``).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
import srt
import webvtt

from tests.support import speech
from tests.support.jobs import cli, ledger_rows, place
from tests.support.servers import ServerProcess, start_server
from tests.support.wer import wer

PAUSES = [1.5, 1.0, 1.5, 0.8]
CHINESE = "我们今天开会讨论下一季度的工作计划，请各位同事提前准备好相关的材料和数据。"


@pytest.fixture(scope="module")
def sphinx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start_server("6.31.0", log_dir=tmp_path_factory.mktemp("timing-sphinx")) as process:
        yield process


@pytest.fixture(scope="module")
def chinese(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that answers the same Chinese sentence for every request (line width by characters)."""
    with start_server("3.50.2", engine="simulate", log_dir=tmp_path_factory.mktemp("timing-zh"),
                      extra_args=["--simulate-rtf", "0", "--simulate-text", CHINESE]) as process:
        yield process


def meeting(count: int) -> tuple[Path, list[str], list[float]]:
    """A 44.1 kHz stereo MP3 of *count* sentences, and where each one starts."""
    sentences = [speech.SENTENCES[i % len(speech.SENTENCES)] for i in range(count)]
    clips = [speech.synthesize(s) for s in sentences]
    starts, position = [], 0.0
    for i, clip in enumerate(clips):
        starts.append(position)
        position += speech.duration(clip) + PAUSES[i % len(PAUSES)]
    return speech.concat(clips, PAUSES, fmt="mp3", rate=44100, channels=2), sentences, starts


def test_cues_start_with_the_sentences_and_follow_the_subtitle_rules(sphinx: ServerProcess, tmp_path: Path) -> None:
    recording, sentences, starts = meeting(24)
    inp = tmp_path / "in"
    place(inp, "weekly meeting.mp3", recording)
    timed, chunked = tmp_path / "timed", tmp_path / "chunked"
    result = cli("run", str(inp), "-o", str(timed), "--url", sphinx.url, "--formats", "txt,json,srt,vtt")
    assert result.returncode == 0, result.stderr

    cues = list(srt.parse((timed / "weekly meeting.srt").read_text(encoding="utf-8")))
    captions = webvtt.read(str(timed / "weekly meeting.vtt")).captions
    assert [(c.start.total_seconds(), c.end.total_seconds(), c.content) for c in cues] == [
        (_seconds(c.start), _seconds(c.end), c.text) for c in captions]
    cue_starts = [c.start.total_seconds() for c in cues]
    hits = sum(any(abs(cue - start) <= 0.5 for cue in cue_starts) for start in starts)
    assert hits >= 0.9 * len(starts), (hits, len(starts))
    for cue, following in zip(cues, cues[1:], strict=False):
        assert cue.end <= following.start and cue.start < following.start
    for cue in cues:
        assert 0 < (cue.end - cue.start).total_seconds() <= 7.0
        lines = cue.content.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines), cue.content

    # Sentence-level requests lose nothing against chunk-level ones.
    said = " ".join(sentences)
    assert cli("run", str(inp), "-o", str(chunked), "--url", sphinx.url, "-c",
               str(_config(tmp_path, "audio:\n  utterances: never\n"))).returncode == 0
    timed_text = (timed / "weekly meeting.txt").read_text(encoding="utf-8")
    chunked_text = (chunked / "weekly meeting.txt").read_text(encoding="utf-8")
    assert wer(said, timed_text) <= min(0.25, wer(said, chunked_text) + 0.05)
    data = json.loads((timed / "weekly meeting.json").read_text(encoding="utf-8"))
    assert len(data["segments"]) >= 0.9 * len(sentences)
    assert all(s["end"] > s["start"] for s in data["segments"])


def test_chinese_lines_are_counted_in_characters(chinese: ServerProcess, tmp_path: Path) -> None:
    recording, _, starts = meeting(6)
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "会议.mp3", recording)
    result = cli("run", str(inp), "-o", str(out), "--url", chinese.url, "--formats", "srt,vtt")
    assert result.returncode == 0, result.stderr
    assert ledger_rows(out / ".asrbatch")["会议.mp3"]["outcome"] == "done"
    cues = list(srt.parse((out / "会议.srt").read_text(encoding="utf-8")))
    assert len(cues) >= 2 * len(starts)  # each utterance's long sentence is several cues
    for cue in cues:
        lines = cue.content.split("\n")
        assert len(lines) <= 2
        assert all(sum(unicodedata.east_asian_width(ch) in "WF" for ch in line) <= 16 for line in lines), lines
        assert (cue.end - cue.start).total_seconds() <= 7.0
    joined = "".join(c.content.replace("\n", "") for c in cues)
    assert joined == CHINESE * len(starts)


def _seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("protocol", ["openai", "funasr-ws"])
def test_timings_the_server_returns_are_kept_and_time_the_cues(protocol: str, tmp_path: Path) -> None:
    """FunASR's servers return sentence and word timings: one request for the recording, and the cues
    still start with the sentences (the words' timings place them)."""
    recording, sentences, starts = meeting(12)
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "standup.mp3", recording)
    with start_server("6.31.0", protocol=protocol, log_dir=tmp_path / "server") as server:
        result = cli("run", str(inp), "-o", str(out), "--url", server.url, "--formats", "txt,json,srt")
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "standup.json").read_text(encoding="utf-8"))
    words = [w for s in data["segments"] for w in s.get("words", [])]
    assert len(words) >= 0.9 * len(" ".join(sentences).split())
    assert all(0 <= w["start"] < w["end"] <= data["audio_seconds"] + 0.5 for w in words)
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)
    cues = list(srt.parse((out / "standup.srt").read_text(encoding="utf-8")))
    cue_starts = [c.start.total_seconds() for c in cues]
    hits = sum(any(abs(cue - start) <= 0.5 for cue in cue_starts) for start in starts)
    assert hits >= 0.9 * len(starts), (hits, cue_starts, starts)
    assert all((c.end - c.start).total_seconds() <= 7.0 for c in cues)
    assert wer(" ".join(sentences), (out / "standup.txt").read_text(encoding="utf-8")) <= 0.25
