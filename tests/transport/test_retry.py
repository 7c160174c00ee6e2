"""The retry policy: what is retried, how long it waits, what it logs."""

from __future__ import annotations

import logging

import pytest

from asrbatch.config import RetryConfig
from asrbatch.errors import InputRejectedError, TransientError
from asrbatch.transport.retry import call_with_retries
from asrbatch.transport.session import RetryableError

pytestmark = pytest.mark.unit


class Flaky:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def test_transient_failures_are_retried_with_growing_waits(caplog: pytest.LogCaptureFixture) -> None:
    waits: list[float] = []
    flaky = Flaky([RetryableError("HTTP 503 on POST /x", reason="503", unreachable=True) for _ in range(3)])
    caplog.set_level(logging.WARNING, logger="asrbatch.transport.retry")
    result, attempts = call_with_retries(flaky, RetryConfig(attempts=4, initial_wait=1.0, max_wait=30, jitter=0),
                                         sleep=waits.append, url="http://h:1", name="a b.wav")
    assert (result, attempts, flaky.calls) == ("ok", 4, 4)
    assert waits == [1.0, 2.0, 4.0]
    assert [r.getMessage() for r in caplog.records] == [
        f'event=retry url=http://h:1 name="a b.wav" attempt={n} reason=503 wait_s={w:.1f}'
        for n, w in ((2, 1.0), (3, 2.0), (4, 4.0))
    ]


def test_waits_are_capped_and_jittered() -> None:
    waits: list[float] = []
    flaky = Flaky([TransientError("x") for _ in range(5)])
    call_with_retries(flaky, RetryConfig(attempts=6, initial_wait=1.0, max_wait=3.0, jitter=0.5),
                      sleep=waits.append, url="u")
    assert len(waits) == 5
    for wait, base in zip(waits, [1.0, 2.0, 3.0, 3.0, 3.0], strict=True):
        assert base <= wait <= base + 0.5


def test_last_transient_error_is_raised_with_the_attempts() -> None:
    waits: list[float] = []
    flaky = Flaky([RetryableError(f"fail {i}", reason="read timeout") for i in range(5)])
    with pytest.raises(RetryableError, match="fail 2") as caught:
        call_with_retries(flaky, RetryConfig(attempts=3, jitter=0), sleep=waits.append, url="u")
    assert caught.value.attempts == 3  # type: ignore[attr-defined]
    assert flaky.calls == 3
    assert len(waits) == 2


def test_other_errors_are_not_retried() -> None:
    waits: list[float] = []
    flaky = Flaky([InputRejectedError("bad file")])
    with pytest.raises(InputRejectedError):
        call_with_retries(flaky, RetryConfig(attempts=4), sleep=waits.append, url="u")
    assert flaky.calls == 1
    assert waits == []


def test_one_attempt_means_no_retry() -> None:
    waits: list[float] = []
    with pytest.raises(TransientError):
        call_with_retries(Flaky([TransientError("x")]), RetryConfig(attempts=1), sleep=waits.append, url="u")
    assert waits == []
