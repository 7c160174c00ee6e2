"""Long recordings, channels, video and output formats, end to end through the runner.

Real reference server (Gradio 6.x, sphinx engine), real speech from festival, requests watched
by the fault proxy (which here only forwards and measures).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from asrbatch.config import load_config
from asrbatch.runner import run_batch
from tests.support import speech
from tests.support.faultproxy import FaultProxy, forward, hang
from tests.support.jobs import on_folders
from tests.support.servers import ServerProcess, start_server
from tests.support.wer import wer

REPO = Path(__file__).resolve().parent.parent
RECOGNITION = r"/api/predict|/call/"
UPLOAD = r"/upload$"
OLD = time.time() - 3600
WAV_BYTES_PER_SECOND = 16000 * 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Two requests at once: the long recording's chunks are transcribed side by side.
    with start_server("6.31.0", log_dir=tmp_path_factory.mktemp("long-server"),
                      extra_args=["--concurrency", "2"]) as process:
        yield process


def place(root: Path, key: str, source: Path) -> Path:
    target = root / key
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    os.utime(target, (OLD, OLD))
    return target


def config_for(url: str, **audio: object):
    config = load_config(None, env={}, overrides={"server.url": url})
    return dataclasses.replace(config, audio=dataclasses.replace(config.audio, **audio))


def long_recording(rounds: int, *, fmt: str = "mp3", rate: int = 44100, channels: int = 2) -> tuple[Path, str]:
    """Real speech with pauses of varied length: every sentence, *rounds* times over."""
    sentences = list(speech.SENTENCES) * rounds
    parts = [speech.synthesize(s) for s in sentences]
    path = speech.concat(parts, [0.7, 1.1, 1.5, 0.9], fmt=fmt, rate=rate, channels=channels)
    return path, " ".join(sentences)


def cue_times(text: str, separator: str) -> list[tuple[float, float]]:
    stamp = r"(\d\d):(\d\d):(\d\d)" + re.escape(separator) + r"(\d\d\d)"
    times = []
    for match in re.finditer(stamp + r" --> " + stamp, text):
        g = [int(x) for x in match.groups()]
        times.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000))
    return times


def test_six_minute_stereo_mp3_goes_in_chunks_with_timed_outputs(server: ServerProcess, tmp_path: Path) -> None:
    source, said = long_recording(5)
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "lecture.mp3", source)
    max_chunk = 30.0
    config = config_for(server.url, split_above=60.0, max_chunk=max_chunk)
    config = dataclasses.replace(config, output=dataclasses.replace(config.output, formats=("txt", "json", "srt", "vtt")))
    with FaultProxy(server.url) as proxy:
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, url=proxy.url))
        summary = run_batch(on_folders(config, inp, out, server__concurrency=2))
        uploads = [hit.size for hit in proxy.hits if hit.method == "POST" and re.search(UPLOAD, hit.path)]
    assert summary.exit_code == 0 and summary.done == 1
    duration = summary.audio_seconds
    assert 330 <= duration <= 420
    # Several requests, none longer than the maximum (a 16 kHz mono 16-bit WAV per chunk).
    assert len(uploads) >= duration / max_chunk
    assert max(uploads) <= max_chunk * WAV_BYTES_PER_SECOND + 4096

    data = json.loads((out / "lecture.json").read_text(encoding="utf-8"))
    segments = data["segments"]
    # Timed outputs asked for: one request per utterance, each segment the speech it holds.
    assert len(segments) == len(uploads) >= len(said.split(".")) - 1 - 5
    assert segments[0]["start"] < 0.5
    assert abs(segments[-1]["end"] - duration) < 1.0
    for before, after in zip(segments, segments[1:], strict=False):
        assert before["start"] < before["end"] <= after["start"]
        assert before["end"] - before["start"] <= max_chunk + 0.01
    assert data["audio_seconds"] == pytest.approx(duration, abs=0.5)
    assert data["server_version"] == "6.31.0"

    joined = (out / "lecture.txt").read_text(encoding="utf-8")
    assert data["text"] == joined.strip()
    # The chunked transcript is about as good as transcribing each sentence on its own.
    per_sentence = [wer(s, t) for s, t in _sentence_transcripts(server)]
    assert wer(said, joined) <= sum(per_sentence) / len(per_sentence) + 0.1

    for name, separator in (("lecture.srt", ","), ("lecture.vtt", ".")):
        text = (out / name).read_text(encoding="utf-8")
        times = cue_times(text, separator)
        # Cues people can read: chunks are split into cues of at most 7 s and 2 lines of 42 columns.
        assert len(times) >= len(segments)
        assert all(start < end <= start + 7.0 for start, end in times)
        assert all(end <= following for (_, end), (following, _) in zip(times, times[1:], strict=False))
        assert all(len(line) <= 42 for line in text.splitlines() if "-->" not in line)
        assert [t[0] for t in times] == sorted(t[0] for t in times)
        assert times[0][0] == 0 and abs(times[-1][1] - duration) < 0.5
    assert (out / "lecture.vtt").read_text().startswith("WEBVTT\n\n")
    assert (out / "lecture.srt").read_text().startswith("1\n00:00:00,000 --> ")


def _sentence_transcripts(server: ServerProcess) -> list[tuple[str, str]]:
    from asrbatch.config import ServerConfig
    from asrbatch.transport import Client

    pairs = []
    with Client(ServerConfig(url=server.url)) as client:
        for sentence in speech.SENTENCES:
            path = speech.synthesize(sentence)
            pairs.append((sentence, client.transcribe(path, name=path.name, duration=3.0).text))
    return pairs


def test_killed_in_the_middle_of_a_long_recording_resumes_with_the_remaining_chunks(
    server: ServerProcess, tmp_path: Path
) -> None:
    source, said = long_recording(1, fmt="flac", rate=16000, channels=1)
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "talk.flac", source)
    settings = {"audio": {"split_above": 20.0, "max_chunk": 10.0}}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(settings))
    with FaultProxy(server.url) as proxy:
        proxy.add("POST", RECOGNITION, forward(), forward(), forward(), hang(), times=None)
        process = subprocess.Popen(
            [sys.executable, "-m", "asrbatch", "run", str(inp), "-o", str(out), "-c", str(config_file),
             "--url", proxy.url, "--formats", "txt,json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
        )
        try:
            deadline = time.monotonic() + 90
            while _chunks_saved(out) < 3 or proxy.count("POST", RECOGNITION) < 4:
                assert time.monotonic() < deadline and process.poll() is None, "run did not progress"
                time.sleep(0.02)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    assert not (out / "talk.txt").exists()
    with FaultProxy(server.url) as proxy:
        rerun = subprocess.run(
            [sys.executable, "-m", "asrbatch", "run", str(inp), "-o", str(out), "-c", str(config_file),
             "--url", proxy.url, "--formats", "txt,json"],
            capture_output=True, text=True, cwd=REPO, timeout=300,
        )
        sent_again = proxy.count("POST", RECOGNITION)
    assert rerun.returncode == 0, rerun.stderr
    segments = json.loads((out / "talk.json").read_text())["segments"]
    assert sent_again == len(segments) - 3
    assert [s["start"] for s in segments] == sorted(s["start"] for s in segments)
    assert wer(said, (out / "talk.txt").read_text()) <= 0.25
    assert not list(out.rglob("*.part"))


def _chunks_saved(out: Path) -> int:
    path = out / ".asrbatch" / "ledger.sqlite3"
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
        finally:
            db.close()
    except sqlite3.OperationalError:
        return 0


def test_stereo_call_per_channel(server: ServerProcess, tmp_path: Path) -> None:
    agent, caller = speech.SENTENCES[14], speech.SENTENCES[7]
    call = speech.stereo(speech.synthesize(agent, rate=8000), speech.synthesize(caller, rate=8000), rate=8000)
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "call.wav", call)
    config = config_for(server.url, channels="split")
    config = dataclasses.replace(config, output=dataclasses.replace(config.output, formats=("txt", "json", "srt")))
    summary = run_batch(on_folders(config, inp, out))
    assert summary.exit_code == 0
    first = (out / "call.ch1.txt").read_text()
    second = (out / "call.ch2.txt").read_text()
    assert wer(agent, first) <= 0.3 and wer(caller, second) <= 0.3
    assert wer(agent, second) > 0.6 and wer(caller, first) > 0.6
    data = json.loads((out / "call.json").read_text())
    assert [c["channel"] for c in data["channels"]] == [1, 2]
    assert "[ch1]" in (out / "call.srt").read_text() and "[ch2]" in (out / "call.srt").read_text()


def test_video_with_and_without_audio(server: ServerProcess, tmp_path: Path) -> None:
    said = speech.SENTENCES[19]
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "lecture.mp4", speech.synthesize(said, fmt="mp4"))
    place(inp, "screencast.mp4", speech.video_without_audio())
    config = config_for(server.url)
    summary = run_batch(on_folders(config, inp, out))
    assert summary.exit_code == 1
    assert wer(said, (out / "lecture.txt").read_text()) <= 0.25
    failure = next(o for o in summary.outcomes if o.key == "screencast.mp4")
    assert failure.outcome == "failed" and "no audio" in failure.detail
    assert not (out / "screencast.txt").exists()


def test_request_for_44k_stereo_wav_is_five_times_smaller(server: ServerProcess, tmp_path: Path) -> None:
    original = speech.synthesize(speech.SENTENCES[5], fmt="wav", rate=44100, channels=2)
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "a.wav", original)
    with FaultProxy(server.url) as proxy:
        summary = run_batch(on_folders(config_for(proxy.url), inp, out))
        sent = sum(hit.size for hit in proxy.hits if hit.method == "POST")
    assert summary.exit_code == 0
    assert original.stat().st_size / sent >= 5


def test_silent_recording_needs_no_request(server: ServerProcess, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "room tone.flac", speech.silence(20.0, "flac"))
    with FaultProxy(server.url) as proxy:
        summary = run_batch(on_folders(config_for(proxy.url), inp, out))
        assert proxy.count("POST", RECOGNITION) == 0
    assert (summary.empty, summary.exit_code) == (1, 0)
    assert (out / "room tone.txt").read_bytes() == b""
