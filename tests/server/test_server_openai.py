"""``--protocol openai``: funasr-server's HTTP API, checked route by route with plain requests.

A sphinx server per venv generation of FastAPI/uvicorn (Gradio 3.50's oldest, 6.31's newest)
answers the protocol checks; one simulate server with an API key, TLS, two engine slots and a
small size limit answers the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.server.conftest import MAX_WER, engine_runs_at_once
from tests.support.servers import ServerEnvironmentError, ServerProcess, start_server
from tests.support.speech import duration
from tests.support.wer import wer

TIMEOUT = (5, 60)
API_KEY = "sk-test-0123456789"
MODELS = ["fun-asr-nano", "sensevoice", "paraformer", "custom"]


def started(version: str, log_dir: Path, **kwargs: Any) -> ServerProcess:
    try:
        return start_server(version, protocol="openai", log_dir=log_dir, **kwargs)
    except ServerEnvironmentError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module", params=["3.50.2", "6.31.0"], ids=lambda v: f"venv-{v}")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with started(request.param, tmp_path_factory.mktemp("openai")) as process:
        yield process


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, self_signed_certificate: tuple[Path, Path]
) -> Iterator[ServerProcess]:
    """Simulate engine; key, TLS, two slots, 300 KiB limit."""
    certificate, key = self_signed_certificate
    arguments = [
        "--simulate-text", "heard [{hotwords}] in {seconds}", "--simulate-rtf", "0.4",
        "--concurrency", "2", "--max-file-size", "300kb",
        "--certfile", str(certificate), "--keyfile", str(key),
    ]  # fmt: skip
    process = started(
        "6.31.0",
        tmp_path_factory.mktemp("openai-guarded"),
        engine="simulate",
        extra_args=arguments,
        env={"ASRBATCH_SERVE_API_KEY": API_KEY},
    )
    with process:
        yield process


def transcribe(
    server: ServerProcess, clip: Path, options: dict[str, Any] | None = None, **fields: Any
) -> requests.Response:
    """POST /v1/audio/transcriptions with ``fields``; ``options`` go to requests (headers, verify)."""
    with clip.open("rb") as audio:
        return requests.post(
            server.url + "/v1/audio/transcriptions",
            files={"file": (clip.name, audio)},
            data=fields,
            timeout=TIMEOUT,
            **(options or {}),
        )


def test_json_text_and_verbose_json(server: ServerProcess, speech_clips: list[tuple[str, Path]]) -> None:
    sentence, clip = speech_clips[0]
    plain = transcribe(server, clip, model="paraformer")
    assert plain.status_code == 200, plain.text
    text = plain.json()["text"]
    assert list(plain.json()) == ["text"]
    assert wer(sentence, text) <= MAX_WER

    quoted = transcribe(server, clip, response_format="text")
    assert quoted.headers["content-type"] == "application/json"
    assert quoted.text == json.dumps(text)  # a JSON string, quotes included, as funasr-server sends

    # Formats funasr-server does not know come back as json.
    assert transcribe(server, clip, response_format="srt").json() == {"text": text}

    verbose = transcribe(server, clip, response_format="verbose_json", language="en").json()
    assert (verbose["task"], verbose["language"], verbose["text"]) == ("transcribe", "en", text)
    assert verbose["duration"] == pytest.approx(duration(clip), abs=0.1)
    [segment] = verbose["segments"]  # sphinx: one utterance
    assert set(segment) == {"id", "start", "end", "text", "words"}
    assert segment["id"] == 0 and segment["text"] == text
    assert [w["word"] for w in segment["words"]] == text.split()
    times = [(w["start"], w["end"]) for w in segment["words"]]
    assert all(start < end for start, end in times)
    assert times == sorted(times) and segment["start"] <= times[0][0] and times[-1][1] <= segment["end"]
    assert transcribe(server, clip, response_format="verbose_json").json()["language"] == "unknown"


def test_asr_route(server: ServerProcess, speech_clips: list[tuple[str, Path]]) -> None:
    sentence, clip = speech_clips[1]
    with clip.open("rb") as audio:
        response = requests.post(
            server.url + "/asr",
            files={"file": (clip.name, audio)},
            data={"hotwords": "report, office", "language": "en", "spk": "false"},
            timeout=TIMEOUT,
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"text", "segments", "duration", "processing_time", "rtf"}
    assert wer(sentence, body["text"]) <= MAX_WER
    assert body["segments"][0]["text"] == body["text"]
    assert [w["word"] for w in body["segments"][0]["words"]] == body["text"].split()
    assert body["rtf"] == pytest.approx(body["processing_time"] / body["duration"], abs=1e-3)
    assert "hotwords=2" in server.log_text()


def test_models_health_and_errors(
    server: ServerProcess, undecodable_file: Path, speech_clips: list[tuple[str, Path]]
) -> None:
    models = requests.get(server.url + "/v1/models", timeout=TIMEOUT).json()
    assert models == {"object": "list", "data": [{"id": name, "object": "model"} for name in MODELS]}
    health = requests.get(server.url + "/health", timeout=TIMEOUT).json()
    assert health == {"status": "ok", "device": "cpu", "models_loaded": ["sphinx"]}

    unknown = transcribe(server, speech_clips[0][1], model="whisper-1")
    assert unknown.status_code == 400
    assert unknown.json() == {
        "detail": "Unknown model 'whisper-1'. Available: fun-asr-nano, custom, sensevoice, paraformer"
    }
    broken = transcribe(server, undecodable_file)
    assert broken.status_code == 400
    assert broken.json()["detail"].startswith("cannot decode audio: broken.wav")
    missing = requests.post(
        server.url + "/v1/audio/transcriptions", data={"model": "sensevoice"}, timeout=TIMEOUT
    )
    assert missing.status_code == 422  # FastAPI names the missing field
    assert missing.json()["detail"][0]["loc"] == ["body", "file"]


def test_api_key_is_required_except_for_health(
    guarded: ServerProcess, self_signed_certificate: tuple[Path, Path], speech_clips: list[tuple[str, Path]]
) -> None:
    certificate, _ = self_signed_certificate
    url = guarded.url
    assert url.startswith("https://")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        response = requests.get(url + "/v1/models", headers=headers, verify=str(certificate), timeout=TIMEOUT)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    assert requests.get(url + "/health", verify=str(certificate), timeout=TIMEOUT).status_code == 200
    allowed = transcribe(guarded, speech_clips[0][1], authorised(certificate))
    assert allowed.status_code == 200, allowed.text
    # Plain HTTP to the TLS port gets no answer a client could take for one.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url.replace("https", "http") + "/health", timeout=TIMEOUT)


def authorised(certificate: Path) -> dict[str, Any]:
    return {"headers": {"Authorization": f"Bearer {API_KEY}"}, "verify": str(certificate)}


def test_hotwords_and_prompt_reach_the_engine(
    guarded: ServerProcess, self_signed_certificate: tuple[Path, Path], speech_clips: list[tuple[str, Path]]
) -> None:
    clip = speech_clips[0][1]
    options = authorised(self_signed_certificate[0])
    answer = transcribe(guarded, clip, options, hotwords="阿里巴巴, hello world", prompt="Kubernetes")
    assert answer.json()["text"].startswith("heard [阿里巴巴,hello world,Kubernetes] in ")
    with clip.open("rb") as audio:
        asr = requests.post(
            guarded.url + "/asr",
            files={"file": ("a.mp3", audio)},
            data={"hotwords": "达摩院,通义"},
            timeout=TIMEOUT,
            **options,
        )
    body = asr.json()
    assert body["text"].startswith("heard [达摩院,通义] in ")
    # The simulate engine times no words: one segment spanning the audio, no words.
    assert body["segments"] == [{"text": body["text"], "start": 0.0, "end": body["duration"]}]


def test_concurrency_limit_and_size_limit(
    guarded: ServerProcess,
    self_signed_certificate: tuple[Path, Path],
    speech_clips: list[tuple[str, Path]],
    tmp_path: Path,
) -> None:
    options = authorised(self_signed_certificate[0])
    clips = [clip for _, clip in speech_clips]
    before = len(engine_runs_at_once(guarded.log_text()))
    with ThreadPoolExecutor(max_workers=5) as pool:
        answers = list(pool.map(lambda clip: transcribe(guarded, clip, options), clips + clips[:2]))
    assert [a.status_code for a in answers] == [200] * 5
    runs = engine_runs_at_once(guarded.log_text())[before:]
    assert len(runs) == 5
    assert max(runs) == 2  # five at once, two engine slots: never more, and both used

    large = tmp_path / "large.wav"
    large.write_bytes(b"RIFF" + bytes(400 * 1024))
    too_large = transcribe(guarded, large, options)
    assert too_large.status_code == 413
    assert "at most 307200 bytes" in too_large.json()["detail"]
