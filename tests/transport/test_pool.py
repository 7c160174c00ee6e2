"""The server pool against real reference servers (simulate engine), faults from the fault proxy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from asrbatch.config import ServerConfig
from asrbatch.errors import EndpointError, RecognitionError, ServerUnavailableError
from asrbatch.transport import Client, ServerPool
from asrbatch.transport.pool import FAILURES_BEFORE_REST, REPROBE_AFTER
from tests.support import speech
from tests.support.faultproxy import FaultProxy, respond
from tests.support.servers import ServerProcess, free_port, start_server
from tests.transport.conftest import SleepRecorder

VERSION = "6.31.0"
CALL = r"^/gradio_api/call/recognize$"
TEXT = "heard {seconds}"


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def simulate_server(tmp_path_factory: pytest.TempPathFactory, name: str, rtf: float, concurrency: int) -> ServerProcess:
    return start_server(VERSION, engine="simulate", log_dir=tmp_path_factory.mktemp(name),
                        extra_args=["--simulate-rtf", str(rtf), "--simulate-text", TEXT,
                                    "--concurrency", str(concurrency)])


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with simulate_server(tmp_path_factory, "fast", 0.02, 2) as server:
        yield server


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with simulate_server(tmp_path_factory, "slow", 1.0, 1) as server:
        yield server


@pytest.fixture(scope="module")
def clip() -> Path:
    return speech.tone(1.0)


def until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    """Poll *condition* until it holds, for at most *seconds*."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def pool_for(settings_for: Callable[..., ServerConfig], urls: list[str], **kwargs: object) -> ServerPool:
    settings = settings_for(urls[0], urls=tuple(urls), concurrency=kwargs.pop("concurrency", None))
    return ServerPool(settings, **kwargs)  # type: ignore[arg-type]


def test_requests_alternate_between_idle_servers_and_capacity_adds_up(
    fast: ServerProcess, clip: Path, settings_for: Callable[..., ServerConfig], sleep: SleepRecorder
) -> None:
    with FaultProxy(fast.url) as a, FaultProxy(fast.url) as b:
        with pool_for(settings_for, [a.url, b.url], sleep=sleep) as pool:
            info = pool.probe()
            assert info.gradio_version == VERSION and info.url == a.url
            assert pool.capacity == 2  # the server reports no limit: one request in flight each
        with pool_for(settings_for, [a.url, b.url], sleep=sleep, concurrency=3) as pool:
            pool.probe()
            assert pool.capacity == 6  # --workers 3: three on each
            texts = [pool.transcribe(clip, duration=1.0).text for _ in range(4)]
            assert texts == ["heard 1.00"] * 4
            assert (a.count("POST", CALL), b.count("POST", CALL)) == (2, 2)
            assert [s.served for s in pool.servers] == [2, 2]
            assert all(s.healthy and s.in_flight == 0 and s.limit == 3 for s in pool.servers)


def test_the_next_request_goes_to_the_less_busy_server(
    fast: ServerProcess, slow: ServerProcess, settings_for: Callable[..., ServerConfig], sleep: SleepRecorder
) -> None:
    long_clip, short_clip = speech.tone(3.0), speech.tone(1.0)
    with pool_for(settings_for, [slow.url, fast.url], sleep=sleep, concurrency=2) as pool:
        pool.probe()
        texts: list[str] = []
        # Both idle: the first server in the list; three seconds of work on the slow one.
        busy = threading.Thread(target=lambda: texts.append(pool.transcribe(long_clip, duration=3.0).text))
        busy.start()
        until(lambda: pool.servers[0].in_flight == 1)
        for _ in range(3):
            texts.append(pool.transcribe(short_clip, duration=1.0).text)
        assert pool.servers[0].in_flight == 1  # still busy: everything else went to the fast one
        busy.join(timeout=30)
        served = [s.served for s in pool.servers]
    assert served == [1, 3]
    assert sorted(texts) == ["heard 1.00"] * 3 + ["heard 3.00"]


def test_a_server_down_at_the_start_is_left_out(
    fast: ServerProcess, clip: Path, settings_for: Callable[..., ServerConfig], sleep: SleepRecorder
) -> None:
    down = dead_url()
    with FaultProxy(fast.url) as up, pool_for(settings_for, [down, up.url], sleep=sleep) as pool:
        assert pool.probe().url == up.url
        assert sleep.waits == []  # one quick try: a dead server costs no retry waits
        assert pool.transcribe(clip).text == "heard 1.00"
        assert up.count("POST", CALL) == 1
        state = pool.servers[0]
        assert not state.healthy and "connection refused" in (state.error or "")


def test_in_flight_work_moves_when_a_server_becomes_unavailable(
    fast: ServerProcess, clip: Path, settings_for: Callable[..., ServerConfig], sleep: SleepRecorder
) -> None:
    with FaultProxy(fast.url) as a, FaultProxy(fast.url) as b, \
            pool_for(settings_for, [a.url, b.url], sleep=sleep) as pool:
        pool.probe()
        a.add("POST", r"/upload$", respond(503), times=None)  # a breaks after the probe
        assert pool.transcribe(clip).text == "heard 1.00"
        assert a.count("POST", r"/upload$") == 3  # the configured tries on a, then on to b
        assert b.count("POST", CALL) == 1
        state_a, state_b = pool.servers
        assert not state_a.healthy and "503" in (state_a.error or "")
        assert state_a.next_probe is not None
        assert state_b.healthy and state_b.served == 1
        # Out of rotation: the next requests go straight to b.
        pool.transcribe(clip)
        assert a.count("POST", r"/upload$") == 3 and b.count("POST", CALL) == 2


def test_a_server_out_of_rotation_is_probed_again_with_back_off(
    fast: ServerProcess, clip: Path, settings_for: Callable[..., ServerConfig], sleep: SleepRecorder
) -> None:
    clock = FakeClock()
    with FaultProxy(fast.url) as a, FaultProxy(fast.url) as b, \
            pool_for(settings_for, [a.url, b.url], sleep=sleep, clock=clock) as pool:
        a.add("GET", r"^/config$", respond(503), times=None)
        pool.probe()
        assert not pool.servers[0].healthy
        assert pool.servers[0].next_probe == clock.now + REPROBE_AFTER
        probes = a.count("GET", r"^/config$")

        pool.transcribe(clip)  # not due yet: no probe
        assert a.count("GET", r"^/config$") == probes

        clock.advance(REPROBE_AFTER)  # due, still failing: the wait doubles
        pool.transcribe(clip)
        until(lambda: pool.servers[0].next_probe is not None)
        assert a.count("GET", r"^/config$") == probes + 1
        assert pool.servers[0].next_probe == clock.now + 2 * REPROBE_AFTER

        a.clear()  # the server is back
        clock.advance(REPROBE_AFTER)
        pool.transcribe(clip)
        assert a.count("GET", r"^/config$") == probes + 1  # only half of the wait is over
        clock.advance(REPROBE_AFTER)
        pool.transcribe(clip)
        until(lambda: pool.servers[0].healthy)
        assert pool.servers[0].error is None
        # Back in rotation: it served nothing yet, so it is chosen next.
        pool.transcribe(clip)
        assert a.count("POST", CALL) == 1


def test_a_server_failing_on_a_recording_hands_it_over_and_is_rested_when_it_keeps_failing(
    fast: ServerProcess, clip: Path, settings_for: Callable[..., ServerConfig], sleep: SleepRecorder
) -> None:
    with FaultProxy(fast.url) as a, FaultProxy(fast.url) as b, \
            pool_for(settings_for, [a.url, b.url], sleep=sleep) as pool:
        pool.probe()
        for done in range(1, FAILURES_BEFORE_REST + 1):
            # Server a fails on the recording's three tries, then passes its health check: it works,
            # but not on this recording, which goes to b.
            a.add("POST", CALL, respond(500), times=3)
            assert pool.transcribe(clip).text == "heard 1.00"
            assert b.count("POST", CALL) == done
        assert a.count("POST", CALL) == FAILURES_BEFORE_REST * (3 + 1)
        assert not pool.servers[0].healthy
        assert "in a row" in (pool.servers[0].error or "")


def test_a_server_that_fails_everything_is_taken_out_after_its_health_check(
    fast: ServerProcess, clip: Path, settings_for: Callable[..., ServerConfig], sleep: SleepRecorder
) -> None:
    with FaultProxy(fast.url) as a, FaultProxy(fast.url) as b, \
            pool_for(settings_for, [a.url, b.url], sleep=sleep) as pool:
        pool.probe()
        a.add("POST", CALL, respond(500, '{"error": "CUDA out of memory. Tried to allocate 2.00 GiB"}'), times=None)
        assert pool.transcribe(clip).text == "heard 1.00"
        assert a.count("POST", CALL) == 3 + 1  # the recording's tries, then the health check's clip
        assert not pool.servers[0].healthy and "stopped doing work" in (pool.servers[0].error or "")
        assert "CUDA out of memory" in (pool.servers[0].error or "")
        assert [pool.transcribe(clip).text for _ in range(2)] == ["heard 1.00"] * 2
        assert a.count("POST", CALL) == 4 and b.count("POST", CALL) == 3


def test_a_recording_every_server_fails_on_is_the_files_failure(
    fast: ServerProcess, clip: Path, settings_for: Callable[..., ServerConfig], sleep: SleepRecorder
) -> None:
    with FaultProxy(fast.url) as a, FaultProxy(fast.url) as b, \
            pool_for(settings_for, [a.url, b.url], sleep=sleep) as pool:
        pool.probe()
        for _ in range(FAILURES_BEFORE_REST + 1):
            # Both fail on the recording (three tries each) and pass their health checks.
            for proxy in (a, b):
                proxy.add("POST", CALL, respond(500), times=3)
            with pytest.raises(RecognitionError) as caught:
                pool.transcribe(clip)
            assert not caught.value.permanent
        # Nobody managed these recordings: the servers are not blamed for them.
        assert all(s.healthy for s in pool.servers)


def test_unusable_servers_are_retired(
    fast: ServerProcess, clip: Path, settings_for: Callable[..., ServerConfig], sleep: SleepRecorder
) -> None:
    with FaultProxy(fast.url) as good, FaultProxy(fast.url) as not_gradio:
        not_gradio.add("GET", r"^/config$", respond(404), times=None)
        with pool_for(settings_for, [not_gradio.url, good.url], sleep=sleep) as pool:
            assert pool.probe().url == good.url
            assert pool.servers[0].retired and "not a Gradio app" in (pool.servers[0].error or "")
            assert pool.capacity == 1
            assert pool.transcribe(clip).text == "heard 1.00"
        with pool_for(settings_for, [not_gradio.url], sleep=sleep) as pool, \
                pytest.raises(EndpointError, match="no server can be used"):
            pool.probe()


def test_no_server_answers(settings_for: Callable[..., ServerConfig], sleep: SleepRecorder) -> None:
    first, second = dead_url(), dead_url()
    with pool_for(settings_for, [first, second], sleep=sleep) as pool, \
            pytest.raises(ServerUnavailableError) as caught:
        pool.probe()
    assert first in str(caught.value) and second in str(caught.value)
    assert sorted(sleep.waits) == [1.0, 1.0, 2.0, 2.0]  # after the quick round, the usual patience


def test_the_last_server_going_away_raises_unavailable(
    fast: ServerProcess, clip: Path, settings_for: Callable[..., ServerConfig], sleep: SleepRecorder
) -> None:
    with FaultProxy(fast.url) as a, FaultProxy(fast.url) as b, \
            pool_for(settings_for, [a.url, b.url], sleep=sleep) as pool:
        pool.probe()
        for proxy in (a, b):
            proxy.add("POST", r"/upload$", respond(503), times=None)
        with pytest.raises(ServerUnavailableError, match="all 2 servers unavailable"):
            pool.transcribe(clip)
        assert not any(s.healthy for s in pool.servers)


def test_client_capacity(fast: ServerProcess, settings_for: Callable[..., ServerConfig]) -> None:
    with Client(settings_for(fast.url)) as client:
        assert client.capacity == 1
        client.probe()
        assert client.capacity == 1  # none of the supported Gradio versions reports its limit
    with Client(settings_for(fast.url, concurrency=4)) as client:
        assert client.capacity == 4
