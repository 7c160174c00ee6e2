"""Compact payloads against real servers: every codec through every Gradio generation, the fallback
ladder when a server refuses one (for its size: a real server's upload limit; for its format: the
decode error a real server gives, answered by the fault proxy), and request slots that overlapped
uploads never exceed."""

from __future__ import annotations

import datetime
import itertools
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from asrbatch import audio
from asrbatch.config import AudioConfig, ServerConfig
from asrbatch.errors import FailsAloneError, InputRejectedError
from asrbatch.transport import CodecLadder, connect, send_audio
from asrbatch.transport.codecs import refusal_kind
from tests.support import speech
from tests.support.faultproxy import FaultProxy, respond
from tests.support.servers import ServerProcess, start_server
from tests.support.wer import wer

REPO = Path(__file__).resolve().parents[2]
FIRST, SECOND = speech.SENTENCES[0], speech.SENTENCES[3]
WER_BOUND = 0.15
PREDICT = r"/api/predict/?$"


@pytest.fixture(scope="module")
def recording() -> Path:
    """Two sentences with a pause, as a 44.1 kHz stereo MP3 (what recorders make)."""
    return speech.concat([speech.synthesize(FIRST), speech.synthesize(SECOND)], 0.8, fmt="mp3", rate=44100,
                         channels=2)


@contextmanager
def chunk_audio(path: Path, workdir: Path, **settings: Any) -> Iterator[audio.ChunkAudio]:
    """*path* prepared with *settings* (``AudioConfig`` fields) as the one chunk asrbatch would send."""
    config = AudioConfig(**settings)
    with audio.prepare(path, audio.probe(path), config, workdir) as prepared, \
            audio.ChunkAudio(prepared, prepared.chunks[0], config) as source:
        yield source


def ladder(settings: ServerConfig) -> CodecLadder:
    recognizer = connect(settings)
    assert isinstance(recognizer, CodecLadder)
    return recognizer


def system_info(server: ServerProcess) -> dict[str, str]:
    """The reference server's system-information facts (fn_index 3)."""
    prefix = "" if server.version.startswith("3.") else "/gradio_api"
    response = requests.post(f"{server.url}{prefix}/api/predict/", json={"data": [], "fn_index": 3}, timeout=30)
    response.raise_for_status()
    lines = response.json()["data"][0].splitlines()
    return dict(line[2:].split(": ", 1) for line in lines if line.startswith("- ") and ": " in line)


def real_decode_error(server: ServerProcess, tmp_path: Path) -> tuple[int, bytes]:
    """What a real Gradio 3.x reference server answers for an uploaded ``.ogg`` it cannot decode."""
    garbage = tmp_path / "audio.ogg"
    garbage.write_bytes(b"OggS" + bytes(range(256)) * 8)
    with garbage.open("rb") as handle:
        uploaded = requests.post(server.url + "/upload", files={"files": ("audio.ogg", handle, "audio/ogg")},
                                 timeout=30)
    uploaded.raise_for_status()
    slot = {"name": uploaded.json()[0], "data": None, "is_file": True, "orig_name": "audio.ogg"}
    response = requests.post(server.url + "/api/predict/", json={"data": [None, slot, 1, ""], "fn_index": 0},
                             timeout=30)
    assert response.status_code == 500 and b"cannot decode audio" in response.content, response.content
    return response.status_code, response.content


# -----------------------------------------------------------------------------------------------
# Every codec, every generation


@pytest.mark.parametrize("codec", audio.CODECS)
def test_every_codec_is_recognised_by_every_gradio_generation(
    gradio_server: ServerProcess, codec: str, recording: Path, tmp_path: Path,
    settings_for: Callable[..., ServerConfig],
) -> None:
    with ladder(settings_for(gradio_server.url)) as recognizer, \
            chunk_audio(recording, tmp_path, codec=codec) as source:
        encoded = source.encode(codec)
        recognition = send_audio(recognizer, source)
        assert recognizer.codec == codec  # taken as it was sent: no fallback
    assert wer(f"{FIRST} {SECOND}", recognition.text) <= WER_BOUND, recognition.text
    wav_bytes = 16000 * 2 * source.duration
    if codec in ("vorbis", "opus"):
        assert encoded.size < wav_bytes / 4  # about 32 kbit/s against 256, headers included  # 32 kbit/s against 256
    if codec == "original":
        assert encoded.path == recording and encoded.name == recording.name


@pytest.fixture(scope="module", params=["funasr-ws", "openai"])
def funasr_protocol_server(request: pytest.FixtureRequest,
                           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The reference server speaking one of FunASR's protocols: the runtime's WebSocket, or funasr-server's
    OpenAI-compatible API."""
    with start_server("3.50.2", protocol=request.param,
                      log_dir=tmp_path_factory.mktemp(f"codecs-{request.param}")) as server:
        yield server


@pytest.mark.parametrize("codec", [c for c in audio.CODECS if c != "original"])
def test_every_codec_is_recognised_over_funasrs_protocols(
    funasr_protocol_server: ServerProcess, codec: str, recording: Path, tmp_path: Path,
    settings_for: Callable[..., ServerConfig],
) -> None:
    """The runtime's WebSocket with ``send_format: file`` (the file goes as it is, ``wav_format`` its
    extension, as the C++ server takes it) and the OpenAI-style upload both carry every codec."""
    settings = settings_for(funasr_protocol_server.url, send_format="file")
    with ladder(settings) as recognizer, chunk_audio(recording, tmp_path, codec=codec) as source:
        recognition = send_audio(recognizer, source)
        assert recognizer.codec == codec  # taken as it was sent: no fallback
    assert wer(f"{FIRST} {SECOND}", recognition.text) <= WER_BOUND, recognition.text


# -----------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize("gradio_server", ["3.50.2"], indirect=True)
def test_a_format_the_server_cannot_decode_falls_back_and_is_remembered(
    gradio_server: ServerProcess, recording: Path, tmp_path: Path, settings_for: Callable[..., ServerConfig],
) -> None:
    status, body = real_decode_error(gradio_server, tmp_path)
    with FaultProxy(gradio_server.url) as proxy:
        # The server "cannot decode" Ogg: every call naming an uploaded .ogg gets its real answer.
        proxy.add("POST", PREDICT, respond(status, body, "application/json"), times=None,
                  when=lambda request: b'.ogg"' in request)
        with ladder(settings_for(proxy.url)) as recognizer:
            with chunk_audio(recording, tmp_path / "a") as source:  # vorbis, the default, then opus: both Ogg
                first = send_audio(recognizer, source)
            assert recognizer.codec == "flac"
            with chunk_audio(speech.synthesize(FIRST, fmt="m4a", rate=44100), tmp_path / "b") as source:
                second = send_audio(recognizer, source)
        refused = [hit for hit in proxy.hits if hit.action.startswith("respond")]
        assert len(refused) == 2  # the second recording went as FLAC straight away
        assert proxy.count("POST", r"/upload$") == 4
    assert first.attempts == 3 and second.attempts == 1
    assert wer(f"{FIRST} {SECOND}", first.text) <= WER_BOUND
    assert wer(FIRST, second.text) <= WER_BOUND


@pytest.mark.parametrize("gradio_server", ["3.50.2"], indirect=True)
def test_a_chunk_every_codec_fails_on_fails_with_the_first_reason_and_teaches_nothing(
    gradio_server: ServerProcess, recording: Path, tmp_path: Path, settings_for: Callable[..., ServerConfig],
) -> None:
    status, body = real_decode_error(gradio_server, tmp_path)
    with FaultProxy(gradio_server.url) as proxy:
        proxy.add("POST", PREDICT, respond(status, body, "application/json"), times=None)
        with ladder(settings_for(proxy.url)) as recognizer, chunk_audio(recording, tmp_path / "a") as source:
            with pytest.raises(InputRejectedError) as caught:
                send_audio(recognizer, source)
            assert recognizer.codec is None
        assert proxy.count("POST", PREDICT) == len(audio.CODECS)
    message = caught.value.message
    others = ", ".join(audio.codec_order(AudioConfig().codec)[1:])  # every other codec, in the ladder's order
    assert "cannot decode audio" in message and f"refused as {others} too" in message
    assert caught.value.permanent and caught.value.attempts == len(audio.CODECS)


@pytest.mark.parametrize("gradio_server", ["3.50.2"], indirect=True)
def test_a_chunk_the_server_fails_on_while_the_check_clip_passes_goes_again_as_wav(
    gradio_server: ServerProcess, recording: Path, tmp_path: Path, settings_for: Callable[..., ServerConfig],
) -> None:
    """A bare 500 for every chunk, none for the health check's clip: the chunk is sent once more as
    plain WAV (the clip's form); when that fails too, the failure stays the server's (transient),
    with the attempts of both, and the server is not taught a codec."""
    with FaultProxy(gradio_server.url) as proxy:
        proxy.add("POST", PREDICT, respond(500, b"Internal Server Error"), times=None,
                  when=lambda request: b"ping.wav" not in request)
        with ladder(settings_for(proxy.url)) as recognizer, chunk_audio(recording, tmp_path / "a") as source:
            with pytest.raises(FailsAloneError) as caught:
                send_audio(recognizer, source)
            assert recognizer.codec is None
        sent = [hit.size for hit in proxy.hits if hit.action.startswith("respond")]
    assert len(sent) == 6  # three tries as Vorbis, three as WAV
    error = caught.value
    assert not error.permanent and error.attempts == 6
    assert "HTTP 500" in error.message and error.message.endswith("(failed as wav too)")


def test_a_real_upload_limit_on_gradio_3_moves_to_a_smaller_codec(
    server_factory: Callable[..., ServerProcess], recording: Path, tmp_path: Path,
    settings_for: Callable[..., ServerConfig],
) -> None:
    server = server_factory("3.50.2", extra_args=["--max-file-size", "60kb"])
    with ladder(settings_for(server.url)) as recognizer:
        with chunk_audio(recording, tmp_path / "a", codec="wav") as source:
            sizes = {codec: source.encode(codec).size for codec in ("wav", "flac", "vorbis")}
            assert sizes["vorbis"] < 60 * 1024 < sizes["flac"] < sizes["wav"]
            first = send_audio(recognizer, source)
        assert recognizer.codec == "vorbis"
        refused = int(system_info(server)["Requests failed"])
        with chunk_audio(recording, tmp_path / "b", codec="wav") as source:
            second = send_audio(recognizer, source)
    info = system_info(server)
    assert refused == 2  # WAV, then FLAC: the real server said "too large" to both
    assert info["Requests failed"] == "2" and info["Files recognised"] == "2"  # the second went as Vorbis at once
    assert first.attempts == 3 and second.attempts == 1
    assert wer(f"{FIRST} {SECOND}", second.text) <= WER_BOUND


def test_an_announced_upload_limit_is_respected_without_sending_what_exceeds_it(
    server_factory: Callable[..., ServerProcess], recording: Path, tmp_path: Path,
    settings_for: Callable[..., ServerConfig],
) -> None:
    server = server_factory("6.31.0", extra_args=["--max-file-size", "60kb"])
    with FaultProxy(server.url) as proxy:
        with ladder(settings_for(proxy.url)) as recognizer, \
                chunk_audio(recording, tmp_path, codec="flac") as source:
            recognition = send_audio(recognizer, source)
            assert recognizer.codec == "opus"
        uploads = [hit.size for hit in proxy.hits if hit.path.endswith("/upload")]
    assert len(uploads) == 1 and uploads[0] < 60 * 1024  # FLAC was never sent: /config announces the limit
    assert wer(f"{FIRST} {SECOND}", recognition.text) <= WER_BOUND


@pytest.mark.parametrize("gradio_server", ["3.50.2"], indirect=True)
def test_a_gradio_3_server_without_upload_gets_data_urls(
    gradio_server: ServerProcess, recording: Path, tmp_path: Path, settings_for: Callable[..., ServerConfig],
) -> None:
    # 3.x releases before /upload answer it 404, as FastAPI does for any missing route; 3.50 has it.
    with FaultProxy(gradio_server.url) as proxy:
        proxy.add("POST", r"/upload$", respond(404, '{"detail": "Not Found"}', "application/json"), times=None)
        with ladder(settings_for(proxy.url)) as recognizer:
            for name in ("a", "b"):
                with chunk_audio(recording, tmp_path / name) as source:
                    sent_bytes = source.encode("vorbis").size
                    recognition = send_audio(recognizer, source)
                assert wer(f"{FIRST} {SECOND}", recognition.text) <= WER_BOUND
            assert recognizer.codec == "vorbis"
        predicts = [hit.size for hit in proxy.hits if re.search(PREDICT, hit.path)]
        assert proxy.count("POST", r"/upload$") == 1  # asked once, then data URLs only
    assert len(predicts) == 2 and all(size > sent_bytes * 4 / 3 for size in predicts)  # base64 inside the call


@pytest.mark.parametrize(("message", "kind"), [
    ("server rejected the file: cannot decode audio: Invalid data found when processing input", "format"),
    ("server rejected the file: audio file too large: 98304 bytes, the server accepts at most 61440 bytes", "size"),
    ("file larger than the server's max upload size of 61440 bytes (HTTP 413)", "size"),
    ("server rejected the request with HTTP 400 on POST /v1/audio/transcriptions: unsupported file format", "format"),
])
def test_refusals_are_told_apart_by_what_the_server_says(message: str, kind: str) -> None:
    assert refusal_kind(InputRejectedError(message)) == kind


# -----------------------------------------------------------------------------------------------
# Overlap within the server's slots


def test_overlapped_uploads_never_put_more_recognitions_on_the_server_than_its_slots(
    server_factory: Callable[..., ServerProcess], tmp_path: Path,
) -> None:
    slots = 2
    server = server_factory("3.50.2", engine="simulate",
                            extra_args=["--simulate-rtf", "0.1", "--simulate-text", "heard {seconds}",
                                        "--concurrency", str(slots)])
    source = tmp_path / "in"
    old = 1_600_000_000
    durations = {f"short {n}.wav": 1.0 + 0.5 * n for n in range(6)}
    for name, seconds in durations.items():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(speech.tone(seconds, frequency=300 + 50 * seconds).read_bytes())
        os.utime(target, (old, old))
    long = source / "long.mp3"
    long.write_bytes(speech.tone(24.0, fmt="mp3").read_bytes())  # no pause: four hard-cut chunks
    os.utime(long, (old, old))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASRBATCH_") or k == "ASRBATCH_TEST_CACHE"}
    env.update(ASRBATCH_AUDIO_SPLIT_ABOVE="10", ASRBATCH_AUDIO_MAX_CHUNK="6", ASRBATCH_AUDIO_OVERLAP="0")
    result = subprocess.run(
        [sys.executable, "-m", "asrbatch", "run", str(source), "-o", str(tmp_path / "out"), "--url", server.url,
         "--workers", str(slots), "--formats", "txt,json", "-v"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = system_info(server)
    assert info["Peak requests in progress"] == str(slots)  # both slots used, never more
    assert info["Requests served"] == str(len(durations) + 4) and info["Requests failed"] == "0"
    for name, seconds in durations.items():
        text = (tmp_path / "out" / name).with_suffix(".txt").read_text().strip()
        assert re.fullmatch(r"heard (\d+\.\d\d)", text) and abs(float(text.split()[1]) - seconds) < 0.1, text
    segments = json.loads((tmp_path / "out" / "long.json").read_text())["segments"]
    assert [(s["start"], s["end"]) for s in segments] == [(0.0, 6.0), (6.0, 12.0), (12.0, 18.0), (18.0, 24.0)]


def test_the_next_chunk_is_uploaded_while_the_one_before_is_recognised(
    server_factory: Callable[..., ServerProcess], tmp_path: Path,
) -> None:
    """One slot, three short recordings, then a long one in three chunks: a chunk whose turn comes is
    already on the server when the recognition ahead of it ends.  The run has two request permits for
    the slot; when the long recording starts, the last short one holds one and its first chunk takes
    the other.  Its second chunk takes the permit the short one frees, while the first chunk is
    recognised (it used to wait for its own first chunk to come back, and the slot waited for its
    upload)."""
    log_dir = tmp_path / "server"
    server = server_factory("3.50.2", engine="simulate", log_dir=log_dir,
                            extra_args=["--simulate-rtf", "0.3", "--concurrency", "1"])
    source = tmp_path / "in"
    source.mkdir()
    old = 1_600_000_000
    for index, name in enumerate(("a short.wav", "b short.wav", "c short.wav")):
        (source / name).write_bytes(speech.tone(3.0, frequency=300 + 50 * index).read_bytes())
    (source / "z long.mp3").write_bytes(speech.tone(18.0, fmt="mp3").read_bytes())  # no pause: three chunks
    for path in source.iterdir():
        os.utime(path, (old, old))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASRBATCH_") or k == "ASRBATCH_TEST_CACHE"}
    env.update(ASRBATCH_AUDIO_SPLIT_ABOVE="10", ASRBATCH_AUDIO_MAX_CHUNK="6", ASRBATCH_AUDIO_OVERLAP="0")
    result = subprocess.run(
        [sys.executable, "-m", "asrbatch", "run", str(source), "-o", str(tmp_path / "out"), "--url", server.url,
         "--workers", "1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Gradio 3.50 keeps each upload under its own name (and copies it again when it processes it: the
    # first copy is the upload); the reference server logs each recognition's end, in turn.
    uploaded: dict[str, float] = {}
    for path in (log_dir / "uploads").rglob("chunk-000?.ogg"):
        uploaded[path.stem] = min(uploaded.get(path.stem, math.inf), path.stat().st_mtime)
    ends = []
    for line in server.log_text().splitlines():
        found = re.match(r"(\S+ \S+) .*event=recognize file=(\S+?)-0-100\.wav .*status=ok", line)
        if found:
            ends.append((datetime.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp(),
                         found.group(2)))
    order = [name for _, name in sorted(ends)]
    assert sorted(order) == ["audio"] * 3 + ["chunk-0000", "chunk-0001", "chunk-0002"], order
    assert sorted(uploaded) == ["chunk-0000", "chunk-0001", "chunk-0002"], uploaded
    for (before, _), (_, name) in itertools.pairwise(sorted(ends)):
        if name in ("chunk-0001", "chunk-0002"):  # (the first chunk's upload races its recording's decode)
            assert uploaded[name] < before, (name, order, uploaded, ends)
