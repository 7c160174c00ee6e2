"""``--protocol funasr-ws``: the FunASR runtime WebSocket protocol (offline), frame by frame.

A sphinx server per websockets generation (11 in Gradio 3.50's venv, 12 in 4.44's, 17 in
6.31's) answers the protocol checks; a simulate server with TLS, two engine slots and a small
size limit answers the rest. The client here is a few lines of the ``websockets`` library.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.server.conftest import MAX_WER, engine_runs_at_once
from tests.support.servers import ServerEnvironmentError, ServerProcess, start_server
from tests.support.speech import pcm
from tests.support.wer import wer

ANSWER_TIMEOUT = 60.0
SILENCE_TIMEOUT = 1.0
"""How long a test waits to see that no answer comes (the protocol never says 'no')."""
CHUNK_BYTES = 9600


def started(version: str, log_dir: Path, **kwargs: Any) -> ServerProcess:
    try:
        return start_server(version, protocol="funasr-ws", log_dir=log_dir, **kwargs)
    except ServerEnvironmentError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module", params=["3.50.2", "4.44.1", "6.31.0"], ids=lambda v: f"venv-{v}")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with started(request.param, tmp_path_factory.mktemp("ws")) as process:
        yield process


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, self_signed_certificate: tuple[Path, Path]
) -> Iterator[ServerProcess]:
    certificate, key = self_signed_certificate
    arguments = [
        "--simulate-text", "heard [{hotwords}] in {seconds}", "--simulate-rtf", "0.4",
        "--concurrency", "2", "--max-file-size", "300kb",
        "--certfile", str(certificate), "--keyfile", str(key),
    ]  # fmt: skip
    with started(
        "6.31.0", tmp_path_factory.mktemp("wss"), engine="simulate", extra_args=arguments
    ) as process:
        yield process


def unverified() -> ssl.SSLContext:
    """What FunASR's own clients do with the images' self-signed certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def start_message(**fields: Any) -> str:
    message = {
        "mode": "offline",
        "wav_name": "clip",
        "wav_format": "pcm",
        "audio_fs": 16000,
        "is_speaking": True,
    }
    message.update(fields)
    return json.dumps(message, ensure_ascii=False)


async def send_utterance(
    connection: Any, audio: bytes, timeout: float = ANSWER_TIMEOUT, **fields: Any
) -> dict[str, Any]:
    """One offline exchange on an open connection; the answer frame, parsed."""
    await connection.send(start_message(**fields))
    for start in range(0, len(audio), CHUNK_BYTES):
        await connection.send(audio[start : start + CHUNK_BYTES])
    await connection.send(json.dumps({"is_speaking": False}))
    frame = await asyncio.wait_for(connection.recv(), timeout)
    assert isinstance(frame, str)
    answer: dict[str, Any] = json.loads(frame)
    # Compact, keys sorted, as the C++ server's nlohmann::json writes it.
    assert frame == json.dumps(answer, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return answer


def exchange(url: str, audio: bytes, context: ssl.SSLContext | None = None, **fields: Any) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with websockets.connect(
            url, subprotocols=["binary"], ping_interval=None, ssl=context
        ) as connection:
            return await send_utterance(connection, audio, **fields)

    return asyncio.run(run())


def test_offline_pcm_answer(server: ServerProcess, speech_clips: list[tuple[str, Path]]) -> None:
    sentence, clip = speech_clips[0]
    answer = exchange(
        server.url, pcm(clip), wav_name="meeting-01", hotwords=json.dumps({"阿里巴巴": 20}), itn=True
    )
    assert set(answer) == {"is_final", "mode", "stamp_sents", "text", "timestamp", "wav_name"}
    assert answer["is_final"] is False  # the offline C++ server never sets it
    assert (answer["mode"], answer["wav_name"]) == ("offline", "meeting-01")
    assert wer(sentence, answer["text"]) <= MAX_WER
    assert isinstance(answer["timestamp"], str)  # a JSON list inside a string
    stamps = json.loads(answer["timestamp"])
    assert len(stamps) == len(answer["text"].split())
    assert all(isinstance(ms, int) for pair in stamps for ms in pair)
    assert all(start < end for start, end in stamps) and stamps == sorted(stamps)
    [sentence_stamp] = answer["stamp_sents"]
    assert set(sentence_stamp) == {"text_seg", "punc", "start", "end", "ts_list"}
    assert sentence_stamp["text_seg"] == answer["text"] and sentence_stamp["ts_list"] == stamps
    assert (sentence_stamp["start"], sentence_stamp["end"]) == (stamps[0][0], stamps[-1][1])
    assert 'weights={"阿里巴巴": 20}' in server.log_text()


def test_whole_files_rates_and_several_utterances_on_one_connection(
    server: ServerProcess, speech_clips: list[tuple[str, Path]]
) -> None:
    (first, mp3), (second, other) = speech_clips[:2]

    async def run() -> list[dict[str, Any]]:
        async with websockets.connect(server.url, subprotocols=["binary"], ping_interval=None) as connection:
            # The server picks no subprotocol, whatever the client offers (websocketpp does not).
            assert connection.subprotocol is None
            return [
                await send_utterance(connection, mp3.read_bytes(), wav_name="a.mp3", wav_format="mp3"),
                await send_utterance(connection, pcm(other, rate=44100), wav_name="b", audio_fs=44100),
                await send_utterance(connection, b"", wav_name="nothing"),
            ]

    by_file, by_rate, empty = asyncio.run(run())
    assert wer(first, by_file["text"]) <= MAX_WER and by_file["wav_name"] == "a.mp3"
    assert wer(second, by_rate["text"]) <= MAX_WER and by_rate["wav_name"] == "b"
    assert empty == {"is_final": False, "mode": "offline", "text": "", "wav_name": "nothing"}


def test_undecodable_audio_and_other_modes(
    server: ServerProcess, undecodable_file: Path, speech_clips: list[tuple[str, Path]]
) -> None:
    broken = exchange(server.url, undecodable_file.read_bytes(), wav_name="broken", wav_format="mp3")
    assert (broken["text"], broken["is_final"], broken["wav_name"]) == ("", False, "broken")
    assert broken["error"].startswith("cannot decode audio: broken.mp3")
    # The offline server answers offline whatever mode is asked for.
    asked = exchange(server.url, pcm(speech_clips[2][1]), mode="2pass", chunk_size=[5, 10, 5])
    assert asked["mode"] == "offline" and asked["text"]


def test_a_frame_that_is_not_json_silences_the_connection(
    server: ServerProcess, speech_clips: list[tuple[str, Path]]
) -> None:
    audio = pcm(speech_clips[0][1])

    async def run() -> None:
        async with websockets.connect(server.url, ping_interval=None) as connection:
            await connection.send("{not json")
            with pytest.raises(asyncio.TimeoutError):
                await send_utterance(connection, audio, SILENCE_TIMEOUT)

    recognitions = server.log_text().count("event=recognize")
    asyncio.run(run())
    assert "event=ws_bad_message" in server.log_text()
    assert server.log_text().count("event=recognize") == recognitions


def test_hotwords_reach_the_engine_once_per_connection(
    tls_server: ServerProcess, speech_clips: list[tuple[str, Path]]
) -> None:
    audio = pcm(speech_clips[0][1])

    async def run() -> list[str]:
        async with websockets.connect(tls_server.url, ping_interval=None, ssl=unverified()) as connection:
            weighted = await send_utterance(
                connection, audio, hotwords=json.dumps({"阿里巴巴": 20, "通义实验室": 30})
            )
            # Read from the first text frame only, as the C++ server does.
            later = await send_utterance(connection, audio, hotwords=json.dumps({"ignored": 10}))
            return [weighted["text"], later["text"]]

    weighted, later = asyncio.run(run())
    assert weighted.startswith("heard [阿里巴巴,通义实验室] in ")
    assert later.startswith("heard [阿里巴巴,通义实验室] in ")
    plain = exchange(tls_server.url, audio, unverified(), hotwords="达摩院 hello")
    assert plain["text"].startswith("heard [达摩院,hello] in ")
    # The simulate engine times no words: a sentence stamp, no timestamp string.
    assert "timestamp" not in plain and plain["stamp_sents"][0]["ts_list"] == []


def test_tls_concurrency_and_size_limits(
    tls_server: ServerProcess, speech_clips: list[tuple[str, Path]]
) -> None:
    assert tls_server.url.startswith("wss://")
    clips = [pcm(clip) for _, clip in speech_clips] * 2

    async def run() -> list[dict[str, Any]]:
        async def one(audio: bytes) -> dict[str, Any]:
            async with websockets.connect(tls_server.url, ping_interval=None, ssl=unverified()) as connection:
                return await send_utterance(connection, audio)

        return await asyncio.gather(*(one(audio) for audio in clips[:5]))

    before = len(engine_runs_at_once(tls_server.log_text()))
    answers = asyncio.run(run())
    assert all(answer["text"].startswith("heard [] in ") for answer in answers)
    runs = engine_runs_at_once(tls_server.log_text())[before:]
    assert len(runs) == 5 and max(runs) == 2

    too_large = exchange(tls_server.url, bytes(400 * 1024), unverified())
    assert too_large["text"] == "" and "at most 307200 bytes" in too_large["error"]
    # Plain ws to the TLS port fails at the handshake.
    with pytest.raises((websockets.InvalidHandshake, websockets.InvalidMessage, OSError, EOFError)):
        exchange(tls_server.url.replace("wss", "ws", 1), b"")
