"""What a chunk travels as: each codec's file (ffprobe reads it back), which codecs apply to which
chunk, the fallback order, and a chunk plan that does not depend on the codec."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from asrbatch import audio
from asrbatch.config import AudioConfig, Config, load_config
from asrbatch.errors import ConfigError
from asrbatch.pipeline import plan_signature
from tests.support import speech


def ffprobe(path: Path) -> dict[str, str]:
    command = ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels:format=format_name",
               "-of", "json", str(path)]
    found = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    return {**found["streams"][0], "format": found["format"]["format_name"]}


@pytest.fixture(scope="module")
def long_recording() -> Path:
    """About 40 s of speech with pauses (44.1 kHz stereo MP3): chunked with split_above 20, max_chunk 15."""
    sentences = [speech.synthesize(s) for s in speech.SENTENCES[:14]]
    return speech.concat(sentences, [0.8, 1.1, 0.6], fmt="mp3", rate=44100, channels=2)


def test_each_codec_writes_the_file_its_name_says(tmp_path: Path) -> None:
    recording = speech.synthesize(speech.SENTENCES[2], fmt="m4a", rate=48000, channels=2)
    settings = AudioConfig(bitrate=24)
    prepared = audio.prepare(recording, audio.probe(recording), settings, tmp_path)
    with prepared, audio.ChunkAudio(prepared, prepared.chunks[0], settings) as chunk:
        seconds = chunk.duration
        assert chunk.codecs == ("vorbis", "opus", "flac", "wav", "original")
        vorbis, opus, flac, wav, original = (chunk.encode(codec) for codec in chunk.codecs)
        assert chunk.encode("opus") is opus  # encoded once
        assert (opus.name, opus.mime) == ("audio.ogg", "audio/ogg")
        assert ffprobe(opus.path) == {"codec_name": "opus", "sample_rate": "48000", "channels": 1, "format": "ogg"}
        # Both travel as .ogg; on disk each has its own file.
        assert (vorbis.name, vorbis.mime) == ("audio.ogg", "audio/ogg") and vorbis.path != opus.path
        assert ffprobe(vorbis.path) == {"codec_name": "vorbis", "sample_rate": "16000", "channels": 1,
                                        "format": "ogg"}
        assert vorbis.size < 24_000 / 8 * seconds * 1.3 + 8192  # quality 3 (about 24 kbit/s), codebooks included
        assert ffprobe(flac.path)["codec_name"] == "flac" and flac.name == "audio.flac"
        assert ffprobe(wav.path) == {"codec_name": "pcm_s16le", "sample_rate": "16000", "channels": 1,
                                     "format": "wav"}
        assert original.path == recording and original.name == recording.name and original.mime == "audio/mp4"
        assert opus.size < 24_000 / 8 * seconds * 1.3 + 4096  # 24 kbit/s, container included
        assert opus.size < flac.size < wav.size
        for encoded in (opus, vorbis, flac, wav):
            assert encoded.size == encoded.path.stat().st_size == chunk.estimated_size(encoded.codec)
            assert abs(speech.duration(encoded.path) - seconds) < 0.05
        written = [opus.path, vorbis.path, flac.path]
        chunk.cleanup()
        assert not any(path.exists() for path in written)  # deleted with the chunk
        assert wav.path.exists() and recording.exists()  # the working copy stays until the recording is done
    assert not wav.path.exists() and recording.exists()


def test_chunks_of_a_long_recording_never_travel_as_the_original(long_recording: Path, tmp_path: Path) -> None:
    settings = AudioConfig(split_above=20.0, max_chunk=15.0, codec="original")
    with audio.prepare(long_recording, audio.probe(long_recording), settings, tmp_path) as prepared:
        assert len(prepared.chunks) >= 3
        chunk = audio.ChunkAudio(prepared, prepared.chunks[1], settings)
        assert chunk.codecs == ("wav", "flac", "opus", "vorbis")
        with chunk:
            encoded = chunk.encode("wav")
            assert encoded.name == "chunk-0001.wav"
            assert abs(speech.duration(encoded.path) - prepared.chunks[1].duration) < 0.01
            with pytest.raises(ValueError, match="does not apply"):
                chunk.encode("original")
        assert not encoded.path.exists()


def test_unconverted_recordings_travel_as_they_are(tmp_path: Path) -> None:
    recording = speech.synthesize(speech.SENTENCES[0], fmt="mp3", rate=44100)
    settings = AudioConfig(convert=False)
    prepared = audio.prepare(recording, audio.probe(recording), settings, tmp_path)
    with audio.ChunkAudio(prepared, prepared.chunks[0], settings) as chunk:
        assert chunk.codecs == ("original",)
        assert chunk.encode("original").path == recording
    assert recording.exists()


@pytest.mark.parametrize(("preferred", "order"), [
    ("vorbis", ("vorbis", "opus", "flac", "wav", "original")),
    ("opus", ("opus", "flac", "wav", "original", "vorbis")),
    ("flac", ("flac", "wav", "original", "opus", "vorbis")),
    ("wav", ("wav", "original", "flac", "opus", "vorbis")),
    ("original", ("original", "wav", "flac", "opus", "vorbis")),
])
def test_codecs_are_offered_in_the_fallback_order(preferred: str, order: tuple[str, ...]) -> None:
    assert audio.codec_order(preferred) == order


def test_the_codec_does_not_change_the_chunk_plan() -> None:
    base = Config()
    signature = plan_signature(base)
    for changes in ({"codec": "flac"}, {"codec": "original"}, {"bitrate": 16}):
        assert plan_signature(dataclasses.replace(base, audio=dataclasses.replace(base.audio, **changes))) == signature
    assert plan_signature(dataclasses.replace(base, audio=dataclasses.replace(base.audio, max_chunk=30.0))) != signature


def test_codec_settings_are_checked(tmp_path: Path) -> None:
    config = load_config(env={"ASRBATCH_AUDIO_CODEC": "flac", "ASRBATCH_AUDIO_BITRATE": "24"})
    assert (config.audio.codec, config.audio.bitrate) == ("flac", 24)
    with pytest.raises(ConfigError) as caught:
        load_config(env={"ASRBATCH_AUDIO_CODEC": "mp3", "ASRBATCH_AUDIO_BITRATE": "500"})
    assert "audio.codec: must be one of vorbis, opus, flac, wav, original, not 'mp3'" in caught.value.problems
    assert "audio.bitrate: must be between 6 and 256 (kbit/s)" in caught.value.problems


@pytest.mark.parametrize("kbits", [16, 24, 32, 48])
def test_vorbis_comes_out_at_about_the_bitrate_asked(long_recording: Path, tmp_path: Path, kbits: int) -> None:
    """libvorbis has no bitrate mode at 16 kHz for many rates; the quality chosen lands near it."""
    settings = AudioConfig(codec="vorbis", bitrate=kbits)
    with audio.prepare(long_recording, audio.probe(long_recording), settings, tmp_path) as prepared, \
            audio.ChunkAudio(prepared, prepared.chunks[0], settings) as chunk:
        encoded = chunk.encode("vorbis")
        measured = encoded.size * 8 / chunk.duration / 1000
    assert 0.7 * kbits <= measured <= 1.3 * kbits, f"{measured:.1f} kbit/s for {kbits}"
