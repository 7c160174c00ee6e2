"""asrbatch.audio on real audio made by festival and ffmpeg (tests/support/speech.py)."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import struct
import subprocess
import time
import tracemalloc
import wave
from collections.abc import Sequence
from pathlib import Path

import pytest

from asrbatch import audio
from asrbatch.config import AudioConfig
from asrbatch.errors import AudioError, FileError, TruncatedAudioError
from tests.support import speech
from tests.support.wer import normalise, wer

pytestmark = pytest.mark.unit

DEFAULTS = AudioConfig()
PAUSES = (0.4, 0.8, 1.5, 0.6, 1.0)
"""Pauses between sentences in the long recording: all longer than min_silence (0.3 s)."""


# --------------------------------------------------------------------------------------------
# Shared recordings (cached on disk by tests/support/speech.py, built once per session)


@pytest.fixture(scope="session")
def sentence_wav() -> Path:
    return speech.synthesize(speech.SENTENCES[0])


@pytest.fixture(scope="session")
def sentence_seconds(sentence_wav: Path) -> float:
    return speech.duration(sentence_wav)


@pytest.fixture(scope="session")
def long_mp3() -> Path:
    """About six minutes of speech with pauses, as a 44.1 kHz stereo MP3."""
    sentences = [speech.synthesize(text) for text in speech.SENTENCES]
    return speech.concat(sentences * 6, PAUSES, fmt="mp3", rate=44100, channels=2)


@pytest.fixture(scope="session")
def long_prepared(long_mp3: Path, tmp_path_factory: pytest.TempPathFactory) -> audio.PreparedAudio:
    workdir = tmp_path_factory.mktemp("long")
    return audio.prepare(long_mp3, audio.probe(long_mp3), DEFAULTS, workdir)


def read_wav(path: Path) -> tuple[int, int, int, float]:
    """(channels, sample width, rate, seconds) of a WAV file."""
    with wave.open(str(path), "rb") as reader:
        return (reader.getnchannels(), reader.getsampwidth(), reader.getframerate(),
                reader.getnframes() / reader.getframerate())


# --------------------------------------------------------------------------------------------
# Pure parts


def plan(duration: float, silences: Sequence[tuple[float, float]], **overrides: float) -> list[tuple[float, float]]:
    options = {"max_chunk": 60.0, "min_silence": 0.3, "overlap": 1.0} | overrides
    return audio.plan_chunks(duration, silences, **options)


def test_plan_short_recording_is_one_chunk() -> None:
    assert plan(42.5, []) == [(0.0, 42.5)]
    assert plan(60.0, []) == [(0.0, 60.0)]
    assert plan(0.0, []) == []


def test_plan_without_pauses_cuts_hard_with_overlap() -> None:
    assert plan(150.0, []) == [(0.0, 60.0), (59.0, 119.0), (118.0, 150.0)]
    assert plan(130.0, [], overlap=0.0) == [(0.0, 60.0), (60.0, 120.0), (120.0, 130.0)]


def test_plan_cuts_in_the_middle_of_the_longest_late_pause() -> None:
    silences = [(10.0, 14.0), (44.0, 44.5), (50.0, 51.0), (55.0, 55.4)]
    # (10, 14) is long but too early: only pauses after 0.7 * 60 = 42 s count.
    assert plan(100.0, silences) == [(0.0, 50.5), (50.5, 100.0)]


def test_plan_ignores_pauses_shorter_than_min_silence() -> None:
    assert plan(100.0, [(50.0, 50.2)]) == [(0.0, 60.0), (59.0, 100.0)]
    assert plan(100.0, [(50.0, 50.2)], min_silence=0.1) == [(0.0, 50.1), (50.1, 100.0)]


def test_plan_uses_only_the_part_of_a_pause_inside_the_window() -> None:
    # The pause runs past the window's end: cut in the middle of its part inside the window.
    assert plan(100.0, [(58.0, 70.0)]) == [(0.0, 59.0), (59.0, 100.0)]
    # It starts before the search region: only the part from 42 s on counts.
    assert plan(100.0, [(30.0, 44.0)]) == [(0.0, 43.0), (43.0, 100.0)]


def test_plan_covers_everything_in_order_and_is_deterministic() -> None:
    silences = [(t, t + 0.5) for t in range(3, 600, 7)]
    spans = plan(600.0, silences)
    assert spans == plan(600.0, silences)
    assert spans[0][0] == 0.0 and spans[-1][1] == 600.0
    for (start, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert end - start <= 60.0
        assert next_start == end
        assert any(a <= end <= b for a, b in silences)


def test_span_is_silent() -> None:
    silences = [(0.0, 2.0), (5.0, 9.5)]
    assert audio.span_is_silent(0.0, 2.0, silences)
    assert audio.span_is_silent(6.0, 9.0, silences)
    assert not audio.span_is_silent(1.0, 3.0, silences)
    assert not audio.span_is_silent(4.0, 6.0, silences)
    assert not audio.span_is_silent(0.0, 1.0, [])


def test_wer_and_normalise() -> None:
    assert normalise("Hello, World! It's 'fine'.") == ["hello", "world", "it's", "fine"]
    assert wer("The cat sat on the mat.", "the cat sat on the mat") == 0.0
    assert wer("the cat sat on the mat", "the cat sat on that") == pytest.approx(2 / 6)
    assert wer("", "") == 0.0
    assert wer("", "noise") == 1.0


# --------------------------------------------------------------------------------------------
# probe


@pytest.mark.parametrize(
    ("fmt", "rate", "channels", "codec", "container"),
    [
        ("wav", 16000, 1, "pcm_s16le", "wav"),
        ("wav", 44100, 2, "pcm_s16le", "wav"),
        ("wav", 8000, 1, "pcm_s16le", "wav"),
        ("mp3", 44100, 2, "mp3", "mp3"),
        ("mp3", 8000, 1, "mp3", "mp3"),
        ("flac", 48000, 1, "flac", "flac"),
        ("m4a", 44100, 2, "aac", "mov,mp4,m4a,3gp,3g2,mj2"),
        ("ogg", 16000, 1, "vorbis", "ogg"),
        ("aac", 16000, 1, "aac", "aac"),
        ("opus", 48000, 1, "opus", "ogg"),
        ("mp4", 44100, 2, "aac", "mov,mp4,m4a,3gp,3g2,mj2"),
    ],
)
def test_probe_formats(fmt: str, rate: int, channels: int, codec: str, container: str, sentence_seconds: float) -> None:
    path = speech.synthesize(speech.SENTENCES[0], fmt=fmt, rate=rate, channels=channels)
    info = audio.probe(path)
    assert (info.codec, info.container, info.sample_rate, info.channels) == (codec, container, rate, channels)
    assert info.duration == pytest.approx(sentence_seconds, abs=0.5 if fmt == "aac" else 0.25)
    assert info.size == path.stat().st_size
    assert info.estimated == (fmt == "aac")  # raw ADTS has no length header


def test_probe_is_fast_on_a_long_file(long_mp3: Path) -> None:
    started = time.perf_counter()
    info = audio.probe(long_mp3)
    assert time.perf_counter() - started < 2.0
    assert 330 < info.duration < 420


def test_probe_reads_duration_of_a_file_without_one_in_its_header(tmp_path: Path, sentence_wav: Path) -> None:
    # A WebM written to a pipe (as browsers' recorders do) carries no duration.
    target = tmp_path / "browser recording.webm"
    with target.open("wb") as sink:
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(sentence_wav), "-c:a", "libopus", "-f", "webm", "-"],
                       stdout=sink, check=True)
    info = audio.probe(target)
    assert info.estimated
    assert info.duration == pytest.approx(speech.duration(sentence_wav), abs=0.1)


def assert_audio_error(path: Path, *phrases: str) -> AudioError:
    with pytest.raises(AudioError) as caught:
        info = audio.probe(path)
        audio.prepare(path, info, DEFAULTS, path.parent / "work")
    error = caught.value
    text = str(error)
    assert str(path) in text, text
    for phrase in phrases:
        assert phrase in text, text
    assert error.hint, "every audio error says what to do"
    assert error.permanent and error.path == path
    return error


def test_error_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    assert_audio_error(path, "empty file", "complete")


def test_error_text_named_mp3(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp3"
    path.write_text("Meeting notes: this is a text file, not a recording.\n" * 3)
    assert_audio_error(path, "not audio", "re-export")


def test_error_picture_or_subtitles_named_mp3(tmp_path: Path) -> None:
    picture = tmp_path / "cover.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=32x32", "-frames:v", "1",
                    "-f", "image2", "-c:v", "png", str(picture)], check=True)
    assert_audio_error(picture, "not audio", "picture")
    subtitles = tmp_path / "captions.mp3"
    subtitles.write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n")
    assert_audio_error(subtitles, "not audio", "no audio stream")


def test_error_video_without_audio(tmp_path: Path) -> None:
    path = tmp_path / "screen.mp4"
    shutil.copy(speech.video_without_audio(), path)
    assert_audio_error(path, "contains no audio track")


def test_error_zero_duration(tmp_path: Path) -> None:
    path = tmp_path / "nothing.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
    assert_audio_error(path)


@pytest.mark.parametrize(("fmt", "fraction"), [("mp3", 0.5), ("flac", 0.5), ("m4a", 0.5), ("wav", 0.3001),
                                               ("wav", 0.5), ("wav", 0.98), ("wav", 0.01)])
def test_error_truncated(fmt: str, fraction: float, tmp_path: Path) -> None:
    """A cut file is "truncated or still being copied": worth another try while young, the file's
    fault for good once it has stayed that way for an hour."""
    sentences = [speech.synthesize(text) for text in speech.SENTENCES[:3]]
    whole = speech.concat(sentences, 0.5, fmt=fmt, rate=44100, channels=2)
    path = tmp_path / f"cut off.{fmt}"
    shutil.copy(speech.truncate(whole, fraction), path)
    with pytest.raises(AudioError) as caught:
        audio.prepare(path, audio.probe(path), DEFAULTS, tmp_path / "work")
    young = caught.value
    assert isinstance(young, TruncatedAudioError) and not young.permanent
    assert "or still being copied" in str(young) and "truncated" in str(young) and young.hint
    hours_ago = time.time() - 2 * 3600
    os.utime(path, (hours_ago, hours_ago))
    old = assert_audio_error(path, "truncated", "copy it again")
    assert "still being copied" not in str(old)
    assert isinstance(old, TruncatedAudioError)


def test_wav_header_promising_more_than_the_file_holds(tmp_path: Path) -> None:
    """A WAV whose data chunk announces 281,760 bytes but holds 2,922 (a copy cut short)."""
    path = tmp_path / "short.wav"
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + 281_760, b"WAVE", b"fmt ", 16, 1, 1, 16000, 32000, 2,
                         16, b"data", 281_760)
    path.write_bytes(header + bytes(2_922))
    assert audio.wav_shortfall(path) == pytest.approx((8.805, 0.0913), abs=1e-3)
    with pytest.raises(TruncatedAudioError, match=r"announces 8\.80 s of audio but the file holds 0\.09 s"):
        audio.probe(path)
    complete = tmp_path / "complete.wav"
    complete.write_bytes(struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + 3200, b"WAVE", b"fmt ", 16, 1, 1, 16000,
                                     32000, 2, 16, b"data", 3200) + bytes(3200))
    assert audio.wav_shortfall(complete) is None
    streamed = tmp_path / "streamed.wav"  # written to a pipe: the sizes are placeholders
    streamed.write_bytes(struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 0xFFFFFFFF, b"WAVE", b"fmt ", 16, 1, 1, 16000,
                                     32000, 2, 16, b"data", 0xFFFFFFFF) + bytes(3200))
    assert audio.wav_shortfall(streamed) is None


def test_missing_file_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(FileError, match="cannot read"):
        audio.probe(tmp_path / "gone.wav")


# --------------------------------------------------------------------------------------------
# prepare and export


def test_prepare_makes_16k_mono_16bit_and_shrinks_44k_stereo(tmp_path: Path, sentence_seconds: float) -> None:
    original = speech.synthesize(speech.SENTENCES[1], fmt="wav", rate=44100, channels=2)
    with audio.prepare(original, audio.probe(original), DEFAULTS, tmp_path) as prepared:
        assert len(prepared.chunks) == 1
        chunk = prepared.chunks[0]
        assert (chunk.index, chunk.channel, chunk.start, chunk.silent) == (0, None, 0.0, False)
        request = prepared.export(chunk)
        channels, width, rate, seconds = read_wav(request)
        assert (channels, width, rate) == (1, 2, 16000)
        assert seconds == pytest.approx(chunk.end, abs=0.01)
        assert original.stat().st_size >= 5 * request.stat().st_size
        directory = prepared.directory
        assert directory is not None and directory.parent == tmp_path
    assert not directory.exists(), "leaving the context removes the decoded files"
    assert original.exists()


@pytest.mark.parametrize(("fmt", "rate", "channels"), [("opus", 48000, 1), ("m4a", 44100, 2), ("mp4", 16000, 1),
                                                        ("mp3", 8000, 1), ("aac", 16000, 1)])
def test_prepare_decodes_each_format(fmt: str, rate: int, channels: int, tmp_path: Path,
                                     sentence_seconds: float) -> None:
    path = speech.synthesize(speech.SENTENCES[0], fmt=fmt, rate=rate, channels=channels)
    with audio.prepare(path, audio.probe(path), DEFAULTS, tmp_path) as prepared:
        assert [c.silent for c in prepared.chunks] == [False]
        assert read_wav(prepared.wav_paths[0])[:3] == (1, 2, 16000)
        assert prepared.duration == pytest.approx(sentence_seconds, abs=0.25)


def test_prepare_handles_names_with_spaces_colons_and_chinese(tmp_path: Path, sentence_wav: Path) -> None:
    folder = tmp_path / "会议 meeting"
    folder.mkdir()
    path = folder / "-weekly standup 10:30.mp3"
    shutil.copy(speech.convert(sentence_wav, fmt="mp3", rate=44100, channels=2), path)
    info = audio.probe(path)
    with audio.prepare(path, info, DEFAULTS, tmp_path / "work") as prepared:
        assert not prepared.is_silent


def test_send_original_mode_does_not_decode(tmp_path: Path, long_mp3: Path) -> None:
    settings = dataclasses.replace(DEFAULTS, convert=False)
    info = audio.probe(long_mp3)
    prepared = audio.prepare(long_mp3, info, settings, tmp_path)
    assert prepared.chunks == (audio.Chunk(0, None, 0.0, info.duration, False),)
    assert prepared.export(prepared.chunks[0]) == long_mp3
    assert prepared.wav_paths == () and not prepared.converted and not prepared.is_silent
    assert list(tmp_path.iterdir()) == []
    prepared.cleanup()
    assert long_mp3.exists()


def test_long_recording_is_cut_at_pauses(long_prepared: audio.PreparedAudio) -> None:
    prepared = long_prepared
    chunks = prepared.chunks
    assert prepared.duration > DEFAULTS.split_above
    assert len(chunks) >= prepared.duration / DEFAULTS.max_chunk
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].start == 0.0 and chunks[-1].end == prepared.duration
    wav = prepared.wav_paths[0]
    for chunk, following in zip(chunks, chunks[1:], strict=False):
        assert 0.7 * DEFAULTS.max_chunk <= chunk.duration <= DEFAULTS.max_chunk
        assert following.start == chunk.end, "cut at a pause: no overlap"
        # The cut lies inside a pause: quiet on both sides of it.
        assert speech.wav_level(wav, chunk.end - 0.12, chunk.end + 0.12) < DEFAULTS.silence_threshold
    assert chunks[-1].duration <= DEFAULTS.max_chunk
    assert not any(c.silent for c in chunks)
    assert not prepared.is_silent


def test_long_recording_plan_is_deterministic(long_prepared: audio.PreparedAudio, long_mp3: Path,
                                              tmp_path: Path) -> None:
    with audio.prepare(long_mp3, audio.probe(long_mp3), DEFAULTS, tmp_path) as again:
        assert again.chunks == long_prepared.chunks


def test_exported_chunks_match_their_spans(long_prepared: audio.PreparedAudio) -> None:
    total = 0.0
    for chunk in long_prepared.chunks:
        path = long_prepared.export(chunk)
        channels, width, rate, seconds = read_wav(path)
        assert (channels, width, rate) == (1, 2, 16000)
        assert seconds == pytest.approx(chunk.duration, abs=1 / 16000)
        assert path.parent == long_prepared.directory
        total += seconds
    assert total == pytest.approx(long_prepared.duration, abs=0.01)


def test_memory_stays_bounded_while_preparing_a_long_file(long_mp3: Path, tmp_path: Path) -> None:
    # Six minutes of 44.1 kHz stereo is 64 MB as PCM and 12 MB even at 16 kHz mono;
    # block-wise processing keeps Python's own allocations to a few hundred KB.
    tracemalloc.start()
    try:
        with audio.prepare(long_mp3, audio.probe(long_mp3), DEFAULTS, tmp_path) as prepared:
            for chunk in prepared.chunks:
                prepared.export(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000, f"peak Python allocation {peak / 1e6:.1f} MB"


def test_audio_without_pauses_is_cut_hard_with_overlap(tmp_path: Path) -> None:
    path = speech.noise(130.0, "mp3", 44100)
    settings = dataclasses.replace(DEFAULTS, split_above=60.0, max_chunk=50.0, overlap=2.0)
    with audio.prepare(path, audio.probe(path), settings, tmp_path) as prepared:
        spans = [(c.start, c.end) for c in prepared.chunks]
        assert spans == [(0.0, 50.0), (48.0, 98.0), (96.0, prepared.duration)]
        assert not any(c.silent for c in prepared.chunks)


def test_silent_recording_needs_no_request(tmp_path: Path) -> None:
    path = speech.silence(4.0, "mp3", 44100)
    with audio.prepare(path, audio.probe(path), DEFAULTS, tmp_path) as prepared:
        assert prepared.is_silent
        assert [c.silent for c in prepared.chunks] == [True]


def test_silent_stretches_are_marked(tmp_path: Path, sentence_wav: Path) -> None:
    # Speech, 100 s of silence, speech: the chunks inside the silence need no request.
    path = speech.concat([sentence_wav, sentence_wav], 100.0, fmt="ogg", rate=16000)
    settings = dataclasses.replace(DEFAULTS, split_above=30.0, max_chunk=20.0)
    with audio.prepare(path, audio.probe(path), settings, tmp_path) as prepared:
        flags = [c.silent for c in prepared.chunks]
        assert flags[0] is False and flags[-1] is False
        assert sum(flags) >= 3
        assert not prepared.is_silent
        for chunk in prepared.chunks:
            level = speech.wav_level(prepared.wav_paths[0], chunk.start, chunk.end)
            assert chunk.silent == (level < -60)


def test_find_silences_finds_the_pauses(tmp_path: Path) -> None:
    sentences = [speech.synthesize(text) for text in speech.SENTENCES[:4]]
    lengths = [speech.duration(path) for path in sentences]
    path = speech.concat(sentences, [0.5, 1.0, 2.0])
    silences, seconds = audio.find_silences(path, threshold_db=-40.0, min_silence=0.3)
    assert seconds == pytest.approx(sum(lengths) + 3.5, abs=0.01)
    position = 0.0
    for length, pause in zip(lengths[:3], [0.5, 1.0, 2.0], strict=True):
        position += length
        # Each inserted pause lies within one detected silence (festival adds a little of its own).
        assert any(a <= position + 0.01 and position + pause - 0.01 <= b for a, b in silences)
        position += pause
    assert all(b - a >= 0.3 for a, b in silences[:-1])


def test_split_mode_gives_one_mono_file_per_channel(tmp_path: Path, sentence_wav: Path) -> None:
    call = speech.stereo(sentence_wav, speech.silence(1.0), rate=8000)
    settings = dataclasses.replace(DEFAULTS, channels="split")
    info = audio.probe(call)
    assert (info.channels, info.sample_rate) == (2, 8000)
    with audio.prepare(call, info, settings, tmp_path) as prepared:
        assert len(prepared.wav_paths) == 2
        for wav_path in prepared.wav_paths:
            assert read_wav(wav_path)[:3] == (1, 2, 16000)
        assert [(c.index, c.channel, c.silent) for c in prepared.chunks] == [(0, 0, False), (1, 1, True)]
        assert prepared.export(prepared.chunks[1]) == prepared.wav_paths[1]
    with audio.prepare(call, info, DEFAULTS, tmp_path) as mixed:
        assert [(c.channel, c.silent) for c in mixed.chunks] == [(None, False)]
        assert len(mixed.wav_paths) == 1


def test_split_mode_plans_each_channel(tmp_path: Path) -> None:
    left = speech.concat([speech.synthesize(t) for t in speech.PHONE_SENTENCES[:8]], 0.8)
    right = speech.concat([speech.synthesize(t) for t in speech.PHONE_SENTENCES[8:]], 1.2)
    call = speech.stereo(left, right, rate=8000, fmt="mp3")
    settings = dataclasses.replace(DEFAULTS, channels="split", split_above=10.0, max_chunk=8.0)
    with audio.prepare(call, audio.probe(call), settings, tmp_path) as prepared:
        by_channel = {0: [c for c in prepared.chunks if c.channel == 0],
                      1: [c for c in prepared.chunks if c.channel == 1]}
        assert len(by_channel[0]) >= 3 and len(by_channel[1]) >= 3
        assert [c.index for c in prepared.chunks] == list(range(len(prepared.chunks)))
        for chunks in by_channel.values():
            assert chunks[0].start == 0.0 and chunks[-1].end == prepared.duration
            assert all(c.duration <= 8.0 for c in chunks)


def test_mono_input_in_split_mode_is_not_split(tmp_path: Path, sentence_wav: Path) -> None:
    settings = dataclasses.replace(DEFAULTS, channels="split")
    with audio.prepare(sentence_wav, audio.probe(sentence_wav), settings, tmp_path) as prepared:
        assert [c.channel for c in prepared.chunks] == [None]


# --------------------------------------------------------------------------------------------
# The shipped samples

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def sample_table() -> dict[str, str]:
    """File -> what it says, from the table in samples/README.md."""
    rows = {}
    for line in (SAMPLES / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[2]
    return rows


def test_samples_are_listed_small_and_decodable(tmp_path: Path) -> None:
    table = sample_table()
    recordings = sorted(str(p.relative_to(SAMPLES)) for p in SAMPLES.rglob("*")
                        if p.is_file() and p.suffix not in (".md", ".sh"))
    assert sorted(table) == recordings
    assert sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file()) < 400_000
    for name in recordings:
        path = SAMPLES / name
        with audio.prepare(path, audio.probe(path), DEFAULTS, tmp_path) as prepared:
            assert not prepared.is_silent and len(prepared.chunks) == 1


@pytest.mark.slow
def test_samples_say_what_the_readme_says() -> None:
    # pocketsphinx decodes at about half real time: some 16 s the first time, then cached.
    pytest.importorskip("pocketsphinx")
    for name, says in sample_table().items():
        # The call's row labels its channels: "Left channel (agent): ... Right channel (customer), ...: ..."
        says = re.sub(r"(Left|Right) channel \([^)]*\)[^:]*:", " ", says)
        assert wer(says, speech.recognise(SAMPLES / name)) == 0.0, name


# --------------------------------------------------------------------------------------------
# utterances (timed outputs)


def utterances(duration: float, silences: Sequence[tuple[float, float]], **overrides: float) -> list[tuple[float, float]]:
    options = {"pause": 0.5, "max_length": 10.0, "min_length": 1.0, "max_chunk": 60.0, "min_silence": 0.3,
               "overlap": 1.0} | overrides
    return audio.plan_utterances(duration, silences, **options)


def test_utterances_end_in_the_middle_of_every_long_enough_pause() -> None:
    silences = [(0.0, 0.2), (3.0, 4.5), (6.0, 6.2), (9.0, 10.0), (12.0, 12.4)]
    assert utterances(14.0, silences) == [(0.0, 3.75), (3.75, 9.5), (9.5, 14.0)]


def test_short_utterances_join_the_next_and_the_last_joins_the_one_before() -> None:
    silences = [(2.0, 3.0), (3.4, 4.4), (8.0, 9.0), (12.0, 13.0)]
    # 3.4-3.9 is a 0.5 s "utterance" (a cough): it joins what follows; the 12.5-13.0 tail joins too.
    assert utterances(13.2, silences) == [(0.0, 2.5), (2.5, 8.5), (8.5, 13.2)]


def test_long_utterances_are_cut_at_their_longest_inner_pause() -> None:
    silences = [(4.0, 4.3), (9.0, 9.4), (15.0, 15.35)]  # all shorter than the 0.5 s pause
    assert utterances(20.0, silences) == [(0.0, 9.2), (9.2, 15.18), (15.18, 20.0)]
    # No inner pause at all: a long utterance stays whole up to max_chunk, then is cut hard.
    assert utterances(25.0, [], max_chunk=10.0) == [(0.0, 10.0), (9.0, 19.0), (18.0, 25.0)]


def test_speech_extent_leaves_out_leading_and_trailing_pauses() -> None:
    silences = [(0.0, 0.4), (3.0, 4.0), (7.5, 8.0)]
    assert audio.speech_extent(0.0, 3.5, silences) == (0.4, 3.0)
    assert audio.speech_extent(3.5, 8.0, silences) == (4.0, 7.5)
    assert audio.speech_extent(3.2, 3.8, silences) == (3.2, 3.8)  # all silence: the span itself


def test_prepare_with_utterances_gives_one_chunk_per_sentence(tmp_path: Path) -> None:
    sentences = [speech.synthesize(s) for s in speech.SENTENCES[:4]]
    path = speech.concat(sentences, 1.5, fmt="mp3", rate=44100, channels=2)
    info = audio.probe(path)
    with audio.prepare(path, info, DEFAULTS, tmp_path / "work", utterances=True) as prepared:
        assert len(prepared.chunks) == 4
        starts, position = [], 0.0
        for sentence in sentences:
            starts.append(position)
            position += speech.duration(sentence) + 1.5
        for chunk, start in zip(prepared.chunks, starts, strict=True):
            speech_start, speech_end = chunk.speech
            assert abs(speech_start - start) < 0.5 and speech_end > speech_start + 1.0
