"""Fixtures of the transport tests: client settings for a server, a recording sleep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from asrbatch.config import RetryConfig, ServerConfig


class SleepRecorder:
    """Stands in for time.sleep: records the waits, never sleeps."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleep() -> SleepRecorder:
    return SleepRecorder()


def make_settings(url: str, **changes: Any) -> ServerConfig:
    """Settings for tests: short timeouts, 3 attempts, no jitter (waits 1 s, 2 s: never really slept)."""
    values: dict[str, Any] = {
        "url": url,
        "connect_timeout": 2.0,
        "read_timeout": 30.0,
        "read_timeout_per_audio_second": 1.0,
        "deadline": 60.0,
        "retry": RetryConfig(attempts=3, initial_wait=1.0, max_wait=10.0, jitter=0.0),
    }
    values.update(changes)
    return ServerConfig(**values)


@pytest.fixture
def settings_for() -> Callable[..., ServerConfig]:
    return make_settings
