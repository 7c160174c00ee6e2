"""Faults a real server cannot be made to show on demand, through the fault proxy in front of it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from asrbatch.config import RetryConfig, ServerConfig
from asrbatch.errors import EndpointError, RecognitionError, ServerUnavailableError
from asrbatch.transport import Client, ping
from tests.support import speech
from tests.support.faultproxy import FaultProxy, close_mid_response, hang, heartbeats, reset, respond
from tests.support.servers import ServerProcess, free_port
from tests.transport.conftest import SleepRecorder

SENTENCE = "The weather is very nice today."
PREFIX = {"3.50.2": None, "4.44.1": "", "6.31.0": "/gradio_api"}


@pytest.fixture(scope="module")
def clip() -> Path:
    return speech.synthesize(SENTENCE, fmt="wav", rate=16000)


@pytest.fixture
def proxy(gradio_server: ServerProcess) -> Iterator[FaultProxy]:
    with FaultProxy(gradio_server.url) as running:
        yield running


def audio_route(version: str) -> str:
    """The request that carries the audio: the predict POST on 3.x, the upload on 4+."""
    prefix = PREFIX[version]
    return r"/api/predict/?$" if prefix is None else f"^{prefix}/upload$"


def test_503_twice_then_success(gradio_server: ServerProcess, proxy: FaultProxy, clip: Path,
                                settings_for: Callable[..., ServerConfig], sleep: SleepRecorder) -> None:
    route = audio_route(gradio_server.version)
    proxy.add("POST", route, respond(503, "busy"), respond(503, "busy"))
    with Client(settings_for(proxy.url), sleep=sleep) as client:
        recognition = client.transcribe(clip)
    assert recognition.attempts == 3
    assert "weather" in recognition.text
    assert sleep.waits == [1.0, 2.0]
    assert proxy.count("POST", route) == 3
    assert proxy.count("GET", "^/config$") == 1  # the probe is done once per client


def test_hang_past_the_read_timeout(gradio_server: ServerProcess, proxy: FaultProxy, clip: Path,
                                    settings_for: Callable[..., ServerConfig], sleep: SleepRecorder) -> None:
    route = audio_route(gradio_server.version)
    proxy.add("POST", route, hang(), times=None)
    settings = settings_for(proxy.url, read_timeout=0.4, read_timeout_per_audio_second=0.0,
                            retry=RetryConfig(attempts=2, initial_wait=1.0, jitter=0.0))
    started = time.monotonic()
    with Client(settings, sleep=sleep) as client, pytest.raises(RecognitionError) as caught:
        client.transcribe(clip, duration=2.0)
    assert time.monotonic() - started < 5
    assert str(caught.value).startswith("server kept failing on this file after 2 attempts: read timeout on POST ")
    assert not caught.value.permanent
    assert caught.value.path == clip
    assert proxy.count("POST", route) == 2
    assert sleep.waits == [1.0]


def test_connection_closed_mid_response(gradio_server: ServerProcess, proxy: FaultProxy, clip: Path,
                                        settings_for: Callable[..., ServerConfig], sleep: SleepRecorder) -> None:
    prefix = PREFIX[gradio_server.version]
    # 3.x: the predict answer is cut; 4+: the result stream is cut.
    route = audio_route(gradio_server.version) if prefix is None else f"^{prefix}/call/recognize/"
    method = "POST" if prefix is None else "GET"
    proxy.add(method, route, close_mid_response())
    with Client(settings_for(proxy.url), sleep=sleep) as client:
        recognition = client.transcribe(clip)
    assert recognition.attempts == 2
    assert "weather" in recognition.text
    assert proxy.count(method, route) == 2
    assert sleep.waits == [1.0]


def test_reset_before_any_response_is_retried(gradio_server: ServerProcess, proxy: FaultProxy, clip: Path,
                                              settings_for: Callable[..., ServerConfig],
                                              sleep: SleepRecorder) -> None:
    proxy.add("GET", "^/config$", reset())
    proxy.add("POST", audio_route(gradio_server.version), reset())
    with Client(settings_for(proxy.url), sleep=sleep) as client:
        assert client.probe().gradio_version == gradio_server.version
        assert client.transcribe(clip).attempts == 2
    assert sleep.waits == [1.0, 1.0]


def test_heartbeats_only_hit_the_deadline(gradio_server: ServerProcess, proxy: FaultProxy, clip: Path,
                                          settings_for: Callable[..., ServerConfig], sleep: SleepRecorder) -> None:
    prefix = PREFIX[gradio_server.version]
    if prefix is None:
        pytest.skip("3.x answers the predict POST itself: no event stream")
    route = f"^{prefix}/call/recognize/"
    proxy.add("GET", route, heartbeats(interval=0.05), times=None)
    settings = settings_for(proxy.url, deadline=0.5, read_timeout_per_audio_second=0.0,
                            retry=RetryConfig(attempts=2, initial_wait=1.0, jitter=0.0))
    started = time.monotonic()
    with Client(settings, sleep=sleep) as client, pytest.raises(RecognitionError) as caught:
        client.transcribe(clip, duration=2.0)
    assert time.monotonic() - started < 5
    assert "after 2 attempts: no result within the 0.5 s deadline on GET " in str(caught.value)
    assert proxy.count("GET", route) == 2


def test_deadline_is_checked_against_the_injected_clock(gradio_server: ServerProcess, proxy: FaultProxy,
                                                        clip: Path, settings_for: Callable[..., ServerConfig],
                                                        sleep: SleepRecorder) -> None:
    prefix = PREFIX[gradio_server.version]
    if prefix is None:
        pytest.skip("3.x answers the predict POST itself: no event stream")
    proxy.add("GET", f"^{prefix}/call/recognize/", heartbeats(interval=0.01), times=None)
    now = [0.0]

    def clock() -> float:
        now[0] += 10.0  # every look at the clock is ten seconds later
        return now[0]

    settings = settings_for(proxy.url, deadline=100.0, read_timeout_per_audio_second=1.0,
                            retry=RetryConfig(attempts=1))
    with Client(settings, sleep=sleep, clock=clock) as client, pytest.raises(RecognitionError,
                                                                             match="120 s deadline"):
        client.transcribe(clip, duration=20.0)


def test_server_errors_that_persist_mean_unavailable(gradio_server: ServerProcess, proxy: FaultProxy, clip: Path,
                                                     settings_for: Callable[..., ServerConfig],
                                                     sleep: SleepRecorder) -> None:
    proxy.add("POST", audio_route(gradio_server.version), respond(502, "bad gateway"), times=None)
    with Client(settings_for(proxy.url), sleep=sleep) as client, pytest.raises(ServerUnavailableError) as caught:
        client.transcribe(clip)
    assert str(caught.value).startswith(f"server {proxy.url} unavailable after 3 attempts: HTTP 502 on POST ")
    assert "check that it is running: asrbatch ping" in str(caught.value)


def test_server_not_running(settings_for: Callable[..., ServerConfig], sleep: SleepRecorder, clip: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ServerUnavailableError) as caught:
        ping(settings_for(url), sleep=sleep)
    assert time.monotonic() - started < 2
    assert str(caught.value) == (f"server {url} unavailable after 3 attempts: connection refused on GET /config "
                                 "(check that it is running: asrbatch ping)")
    assert sleep.waits == [1.0, 2.0]
    with Client(settings_for(url), sleep=sleep) as client, pytest.raises(ServerUnavailableError):
        client.transcribe(clip)


@pytest.mark.parametrize(("status", "body", "message"), [
    (200, "<html>a login page</html>", "did not return JSON: not a Gradio app"),
    (404, '{"detail": "Not Found"}', "GET /config is 404"),
    (200, '{"detail": "something else"}', "does not look like a Gradio app"),
])
def test_not_a_gradio_app(gradio_server: ServerProcess, proxy: FaultProxy, status: int, body: str, message: str,
                          settings_for: Callable[..., ServerConfig], sleep: SleepRecorder) -> None:
    proxy.add("GET", "^/config$", respond(status, body), times=None)
    with pytest.raises(EndpointError, match=message):
        ping(settings_for(proxy.url), sleep=sleep)
    assert sleep.waits == []
