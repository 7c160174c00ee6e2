"""OpenAI-compatible servers (funasr-server's API) through the client, against the reference server.

Two servers for the module: a sphinx one behind TLS with a self-signed certificate (what is heard,
and when), and a simulate one with an API key whose transcript names the hotwords the engine got.
Answers a real funasr-server or another OpenAI-style server gives and the reference server does
not (a refused answer format, another ``/health``, 5xx, hangs) come from the fault proxy.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from asrbatch.config import RetryConfig, ServerConfig
from asrbatch.errors import EndpointError, InputRejectedError, RecognitionError, ServerUnavailableError
from asrbatch.transport import OpenAIClient, client_for, connect_one, ping
from tests.support import speech
from tests.support.faultproxy import FaultProxy, close_mid_response, hang, respond
from tests.support.servers import ServerEnvironmentError, ServerProcess, free_port, start_server
from tests.support.tls import self_signed_certificate
from tests.support.wer import wer
from tests.transport.conftest import SleepRecorder

VERSION = "6.31.0"
API_KEY = "sk-test-4711-secret"
MODELS = "fun-asr-nano,sensevoice,paraformer,custom"
TRANSCRIPTIONS = r"^/v1/audio/transcriptions$"
MAX_WER = 0.25
FUNASR_HEALTH_ON_GPU = '{"status": "ok", "device": "cuda:0", "models_loaded": ["fun-asr-nano (vLLM)"]}'


def started(log_dir: Path, **kwargs: object) -> ServerProcess:
    try:
        return start_server(VERSION, protocol="openai", log_dir=log_dir, **kwargs)  # type: ignore[arg-type]
    except ServerEnvironmentError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def sphinx(tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]) -> Iterator[ServerProcess]:
    cert, key = certificate
    with started(tmp_path_factory.mktemp("openai-sphinx"),
                 extra_args=["--certfile", str(cert), "--keyfile", str(key)]) as server:
        yield server


@pytest.fixture(scope="module")
def simulate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    arguments = ["--simulate-text", "heard [{hotwords}] in {seconds}", "--simulate-rtf", "0.02",
                 "--concurrency", "4"]
    with started(tmp_path_factory.mktemp("openai-simulate"), engine="simulate", extra_args=arguments,
                 env={"ASRBATCH_SERVE_API_KEY": API_KEY}) as server:
        yield server


@pytest.fixture(scope="module")
def clips() -> list[tuple[str, Path]]:
    return [(sentence, speech.synthesize(sentence, fmt="wav", rate=16000)) for sentence in speech.SENTENCES[:4]]


@pytest.fixture(scope="module")
def tone() -> Path:
    return speech.tone(1.0)


@pytest.fixture
def proxy(simulate: ServerProcess) -> Iterator[FaultProxy]:
    with FaultProxy(simulate.url) as running:
        yield running


def keyed(settings: ServerConfig) -> ServerConfig:
    return dataclasses.replace(settings, api_key=API_KEY)


# -- what is heard, and when --------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/v1"])
def test_ping_names_the_protocol_the_server_and_its_models(sphinx: ServerProcess, suffix: str,
                                                           settings_for: Callable[..., ServerConfig]) -> None:
    url = sphinx.url + suffix
    line = ping(settings_for(url, verify_tls=False)).line()
    assert re.fullmatch(rf"ok url={re.escape(url)} protocol=openai server=funasr-server models={MODELS} "
                        r"model=paraformer latency_ms=\d+", line), line


def test_sentences_come_back_with_sentence_and_word_timings(sphinx: ServerProcess, clips: list[tuple[str, Path]],
                                                            settings_for: Callable[..., ServerConfig]) -> None:
    with client_for(settings_for(sphinx.url, verify_tls=False)) as client:
        for sentence, clip in clips:
            recognition = client.transcribe(clip, duration=speech.duration(clip))
            assert wer(sentence, recognition.text) <= MAX_WER, recognition.text
            assert recognition.attempts == 1 and recognition.server_seconds > 0
            assert recognition.segments, "verbose_json segments were asked for and given"
            length = speech.duration(clip)
            previous_end = 0.0
            for segment in recognition.segments:
                assert previous_end <= segment.start < segment.end <= length + 0.05
                previous_end = segment.end
                assert segment.words and " ".join(w.text for w in segment.words) == segment.text
                assert all(segment.start <= w.start <= w.end <= segment.end for w in segment.words)
            assert " ".join(s.text for s in recognition.segments) == recognition.text


def test_a_certificate_that_is_not_trusted_is_refused_clearly_and_its_file_trusts_it(
        sphinx: ServerProcess, certificate: tuple[Path, Path], clips: list[tuple[str, Path]],
        settings_for: Callable[..., ServerConfig], sleep: SleepRecorder) -> None:
    with pytest.raises(EndpointError) as caught:
        ping(settings_for(sphinx.url), sleep=sleep)
    assert str(caught.value).startswith("TLS failure on GET /config: ")
    assert "server.verify_tls" in str(caught.value) and sleep.waits == []
    sentence, clip = clips[0]
    with client_for(settings_for(sphinx.url, verify_tls=str(certificate[0]))) as client:
        assert wer(sentence, client.transcribe(clip).text) <= MAX_WER


def test_verify_tls_holds_whatever_the_ca_bundle_variables_say(sphinx: ServerProcess, certificate: tuple[Path, Path],
                                                               settings_for: Callable[..., ServerConfig],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these variables replace a session's verify=False or CA file; server.verify_tls wins here.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", requests.certs.where())
    for verify in (False, str(certificate[0])):
        assert ping(settings_for(sphinx.url, verify_tls=verify)).server.kind == "funasr-server"


def test_undecodable_audio_is_the_files_fault(sphinx: ServerProcess, tmp_path: Path,
                                              settings_for: Callable[..., ServerConfig], sleep: SleepRecorder) -> None:
    junk = tmp_path / "notes.wav"
    junk.write_bytes(b"these are meeting notes, not audio\n" * 50)
    with client_for(settings_for(sphinx.url, verify_tls=False), sleep=sleep) as client, \
            pytest.raises(InputRejectedError) as caught:
        client.transcribe(junk)
    assert caught.value.permanent and caught.value.path == junk
    assert "HTTP 400 on POST /v1/audio/transcriptions: cannot decode audio" in str(caught.value)
    assert sleep.waits == []


# -- hotwords, models, keys -----------------------------------------------------------------------


def test_hotwords_reach_the_engine_on_each_route(simulate: ServerProcess, proxy: FaultProxy, tone: Path,
                                                 settings_for: Callable[..., ServerConfig]) -> None:
    words = ["alpha", "beta gamma"]
    # funasr-server, model paraformer: the hotwords field of /v1/audio/transcriptions.
    with client_for(keyed(settings_for(proxy.url))) as client:
        assert client.probe().model == "paraformer"
        assert client.transcribe(tone, hotwords=words).text.startswith("heard [alpha,beta gamma] in 1.0")
    assert proxy.count("POST", TRANSCRIPTIONS) == 1
    # fun-asr-nano: /asr, where funasr-server applies them.
    with client_for(keyed(settings_for(proxy.url, model="fun-asr-nano"))) as client:
        recognition = client.transcribe(tone, hotwords="alpha,beta gamma")
    assert recognition.text.startswith("heard [alpha,beta gamma] in 1.0")
    assert proxy.count("POST", "^/asr$") == 1 and "processing_time" in recognition.outputs[0]
    # Another OpenAI-compatible server (no funasr-server /health): the standard prompt field.
    proxy.add("GET", "^/health$", respond(404, '{"detail": "Not Found"}', "application/json"), times=None)
    with client_for(keyed(settings_for(proxy.url))) as client:
        assert client.probe().kind == "openai"
        assert client.transcribe(tone, hotwords=words).text.startswith("heard [alpha,beta,gamma] in 1.0")
    assert proxy.count("POST", TRANSCRIPTIONS) == 2


def test_the_model_funasr_server_has_loaded_is_preferred(proxy: FaultProxy, tone: Path,
                                                         settings_for: Callable[..., ServerConfig]) -> None:
    proxy.add("GET", "^/health$", respond(200, FUNASR_HEALTH_ON_GPU, "application/json"), times=None)
    result = ping(keyed(settings_for(proxy.url)))
    assert result.server.kind == "funasr-server" and result.server.model == "fun-asr-nano"
    assert " model=fun-asr-nano " in result.line()
    with client_for(keyed(settings_for(proxy.url))) as client:
        assert client.transcribe(tone, hotwords=["alpha"]).text.startswith("heard [alpha]")
    assert proxy.count("POST", "^/asr$") == 1


def test_a_model_the_server_does_not_serve_is_a_configuration_error(
        proxy: FaultProxy, tone: Path, settings_for: Callable[..., ServerConfig], sleep: SleepRecorder,
        caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(EndpointError) as caught:
        ping(keyed(settings_for(proxy.url, model="whisper-1")), sleep=sleep)
    assert str(caught.value).startswith(f"server.model 'whisper-1' is not served by {proxy.url} (it lists {MODELS.replace(',', ', ')})")
    # Another server may serve names it does not list; its refusal is still the configuration's.
    proxy.add("GET", "^/health$", respond(404), times=None)
    caplog.set_level(logging.WARNING)
    with client_for(keyed(settings_for(proxy.url, model="whisper-1")), sleep=sleep) as client, \
            pytest.raises(EndpointError) as refused:
        client.transcribe(tone)
    assert "event=model_not_listed" in caplog.text
    assert f"{proxy.url} refused model 'whisper-1' (POST /v1/audio/transcriptions: HTTP 400: Unknown model" \
        in str(refused.value)
    assert sleep.waits == [] and proxy.count("POST", TRANSCRIPTIONS) == 1


def test_the_api_key_is_needed_and_never_shown(simulate: ServerProcess, tone: Path,
                                               settings_for: Callable[..., ServerConfig],
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(EndpointError) as missing:
        ping(settings_for(simulate.url))
    assert str(missing.value) == (
        f"the server at {simulate.url} requires an API key and none is set (GET /v1/models: HTTP 401) "
        "(put the key in the environment variable ASRBATCH_SERVER_API_KEY (server.api_key_env names it))")
    wrong = dataclasses.replace(settings_for(simulate.url, api_key_env="OTHER_API_KEY"), api_key="sk-wrong")
    with pytest.raises(EndpointError) as refused:
        ping(wrong)
    assert "refused the API key from OTHER_API_KEY (GET /v1/models: HTTP 401: Incorrect API key provided.)" \
        in str(refused.value)
    with client_for(keyed(settings_for(simulate.url))) as client:
        assert client.transcribe(tone).text.startswith("heard [] in 1.0")
        assert API_KEY not in repr(client) and API_KEY not in repr(client.settings)
    assert API_KEY not in caplog.text and "sk-wrong" not in str(refused.value)


def test_a_refused_answer_format_falls_back_and_is_remembered(proxy: FaultProxy, tone: Path,
                                                              settings_for: Callable[..., ServerConfig]) -> None:
    proxy.add("POST", TRANSCRIPTIONS, respond(400, '{"detail": "response_format verbose_json is not supported"}',
                                              "application/json"))
    with client_for(keyed(settings_for(proxy.url))) as client:
        first = client.transcribe(tone)
        second = client.transcribe(tone)
    for recognition in (first, second):
        assert recognition.text.startswith("heard [] in 1.0") and recognition.attempts == 1
        assert recognition.outputs[0] == {"text": recognition.text} and recognition.segments == ()
    assert proxy.count("POST", TRANSCRIPTIONS) == 3  # verbose_json once, then json for both


# -- faults ---------------------------------------------------------------------------------------


def test_503_twice_then_success(proxy: FaultProxy, tone: Path, settings_for: Callable[..., ServerConfig],
                                sleep: SleepRecorder) -> None:
    proxy.add("POST", TRANSCRIPTIONS, respond(503, "busy"), respond(503, "busy"))
    with client_for(keyed(settings_for(proxy.url)), sleep=sleep) as client:
        recognition = client.transcribe(tone)
    assert recognition.attempts == 3 and recognition.text.startswith("heard")
    assert sleep.waits == [1.0, 2.0]


def test_hangs_and_cut_answers_are_retried(proxy: FaultProxy, tone: Path, settings_for: Callable[..., ServerConfig],
                                           sleep: SleepRecorder) -> None:
    proxy.add("POST", TRANSCRIPTIONS, hang(), close_mid_response())
    settings = keyed(settings_for(proxy.url, read_timeout=0.5, read_timeout_per_audio_second=0.0))
    started = time.monotonic()
    with client_for(settings, sleep=sleep) as client:
        recognition = client.transcribe(tone, duration=1.0)
    assert time.monotonic() - started < 10
    assert recognition.attempts == 3 and recognition.text.startswith("heard")


def test_a_500_without_a_reason_is_the_servers_and_the_health_check_decides(
        proxy: FaultProxy, tone: Path, settings_for: Callable[..., ServerConfig], sleep: SleepRecorder) -> None:
    # funasr-server answers 500 "Internal Server Error" for audio it cannot read and for its own trouble.
    internal = respond(500, "Internal Server Error")
    settings = keyed(settings_for(proxy.url))
    proxy.add("POST", TRANSCRIPTIONS, internal, internal, internal)  # this file's three tries only
    with pytest.raises(RecognitionError) as caught:
        connect_one(settings, sleep=sleep).transcribe(tone)
    assert not caught.value.permanent and caught.value.attempts == 3
    assert str(caught.value).startswith("server kept failing on this file after 3 attempts: server failed without "
                                        "saying why (HTTP 500 on POST /v1/audio/transcriptions)")
    assert proxy.count("POST", TRANSCRIPTIONS) == 4  # and the check clip, which worked
    proxy.add("POST", TRANSCRIPTIONS, internal, times=None)  # now nothing works
    with pytest.raises(ServerUnavailableError, match="stopped doing work: .* a known test clip failed too"):
        connect_one(settings, sleep=sleep).transcribe(tone)


def test_a_server_that_is_not_running(settings_for: Callable[..., ServerConfig], sleep: SleepRecorder) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnavailableError) as caught:
        ping(settings_for(url, protocol="openai"), sleep=sleep)
    assert str(caught.value) == (f"server {url} unavailable after 3 attempts: connection refused on GET /v1/models "
                                 "(check that it is running: asrbatch ping)")


def test_a_server_speaking_neither_protocol_is_described(proxy: FaultProxy, settings_for: Callable[..., ServerConfig],
                                                         sleep: SleepRecorder) -> None:
    proxy.add("GET", r"^/config$", respond(404, '{"detail": "Not Found"}', "application/json"), times=None)
    proxy.add("GET", r"^/v1/models$", respond(404, "<html>nothing here</html>", "text/html"), times=None)
    with pytest.raises(EndpointError) as caught:
        ping(settings_for(proxy.url), sleep=sleep)
    assert str(caught.value).startswith(
        f"{proxy.url} speaks no protocol asrbatch knows: GET /config is 404: not a Gradio app; "
        "GET /v1/models is 404: not an OpenAI-compatible server (check server.url")
    assert "server.protocol" in str(caught.value) and sleep.waits == []


def test_requests_in_flight_keep_to_the_limit(simulate: ServerProcess, tone: Path,
                                              settings_for: Callable[..., ServerConfig]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with OpenAIClient(keyed(settings_for(simulate.url, concurrency=2))) as client:
        assert client.probe().protocol == "openai" and client.capacity == 2
        before = len(re.findall(r"event=recognize .* running=(\d+) ", simulate.log_text()))
        with ThreadPoolExecutor(max_workers=6) as pool:
            texts = list(pool.map(lambda _: client.transcribe(tone).text, range(6)))
    assert all(text.startswith("heard") for text in texts)
    running = [int(n) for n in re.findall(r"event=recognize .* running=(\d+) ", simulate.log_text())][before:]
    assert len(running) == 6 and max(running) <= 2


def test_client_errors_are_retried_as_configured(proxy: FaultProxy, tone: Path,
                                                 settings_for: Callable[..., ServerConfig],
                                                 sleep: SleepRecorder) -> None:
    proxy.add("POST", TRANSCRIPTIONS, respond(502), times=None)
    settings = keyed(settings_for(proxy.url, retry=RetryConfig(attempts=2, initial_wait=0.5, jitter=0.0)))
    with client_for(settings, sleep=sleep) as client, pytest.raises(ServerUnavailableError) as caught:
        client.transcribe(tone)
    assert str(caught.value).startswith(f"server {proxy.url} unavailable after 2 attempts: HTTP 502 on POST "
                                        "/v1/audio/transcriptions")
    assert sleep.waits == [0.5]
