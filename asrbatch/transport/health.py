"""Telling a server that stopped working from a recording it cannot handle.

A server can answer its probe and still do no work: every recognition hangs, or fails with
a 500 ("CUDA out of memory").  Retries alone would then spend one full timeout budget on
every recording and blame each of them.  :class:`HealthGuard` wraps one server's client:
when a recording fails for the server's reasons after its retries, and nothing has succeeded
on that server since the request began, it sends a short known clip (shipped with asrbatch)
with one try and short timeouts.  If the clip fails too, the server is unavailable
(:class:`~asrbatch.errors.ServerUnavailableError`: the run stops, nothing is blamed); if the
clip works, the recording's own failure stands (transient, tried again in a later run) as a
:class:`~asrbatch.errors.FailsAloneError`, which the codec ladder answers by sending the same
audio once more as plain WAV.

One check at a time per server: requests failing together share its verdict, so a fully
hung server ends a run within about one request's timeout budget plus one short check.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from asrbatch.config import RetryConfig, ServerConfig
from asrbatch.errors import AsrbatchError, FailsAloneError, RecognitionError, ServerUnavailableError
from asrbatch.log import kv
from asrbatch.transport.base import Recognition, Recognizer, RecognizerWrapper

log = logging.getLogger(__name__)

CHECK_READ_TIMEOUT = 30.0
"""Longest wait for the check clip's answer (the clip is one second of speech)."""
CHECK_DEADLINE = 60.0


def check_clip() -> Path:
    """The known clip sent by health checks and ``asrbatch ping --deep``."""
    return Path(str(resources.files("asrbatch") / "data" / "ping.wav"))


def check_settings(settings: ServerConfig) -> ServerConfig:
    """*settings* for one short check: one try, short timeouts."""
    return dataclasses.replace(
        settings,
        retry=RetryConfig(attempts=1, initial_wait=0.0, max_wait=0.0, jitter=0.0),
        read_timeout=min(settings.read_timeout, CHECK_READ_TIMEOUT),
        deadline=min(settings.deadline, CHECK_DEADLINE),
        read_timeout_per_audio_second=0.0,
        concurrency=1,
    )


class HealthGuard(RecognizerWrapper):
    """A :class:`Recognizer` around one server's client that checks the server before blaming a file.

    *checker* builds the client that sends the check clip (from :func:`check_settings`).
    """

    def __init__(
        self,
        inner: Recognizer,
        settings: ServerConfig,
        checker: Callable[[ServerConfig], Recognizer],
        *,
        clip: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(inner)
        self.settings = settings
        self._checker = checker
        self._clip = clip or check_clip()
        self._clock = clock
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._last_success = float("-inf")
        self._last_check: tuple[float, str | None] | None = None
        """When the last check finished and why it failed (None: the server worked)."""

    def transcribe(
        self,
        path: Path,
        *,
        name: str | None = None,
        mime: str | None = None,
        duration: float | None = None,
        hotwords: Sequence[str] | str = (),
        proceed: Callable[[], bool] | None = None,
    ) -> Recognition:
        started = self._clock()
        try:
            recognition = self.inner.transcribe(path, name=name, mime=mime, duration=duration, hotwords=hotwords,
                                                  proceed=proceed)
        except RecognitionError as exc:
            if exc.permanent:
                raise
            problem = self._server_problem(since=started)
            if problem is not None:
                raise ServerUnavailableError(
                    f"server {self.settings.url} stopped doing work: {exc.message}; a known test clip failed "
                    f"too ({problem})",
                    hint="check the server (its log, GPU memory), then run again; nothing was blamed on the recordings",
                ) from None
            raise FailsAloneError(exc.message, path=exc.path, hint=exc.hint, attempts=exc.attempts) from exc
        with self._lock:
            self._last_success = max(self._last_success, self._clock())
        return recognition

    def _server_problem(self, *, since: float) -> str | None:
        """Why the server is not working, or None when it is (it answered since *since*, or the check passed)."""
        with self._check_lock:
            with self._lock:
                if self._last_success >= since:
                    return None
                if self._last_check is not None and self._last_check[0] >= since:
                    return self._last_check[1]
            problem = self._check()
            with self._lock:
                self._last_check = (self._clock(), problem)
            return problem

    def _check(self) -> str | None:
        log.warning(kv("health_check", url=self.settings.url, clip=self._clip.name))
        client = self._checker(check_settings(self.settings))
        try:
            client.transcribe(self._clip, duration=1.0)
        except AsrbatchError as exc:
            log.error(kv("health_check_failed", url=self.settings.url, reason=exc.message))
            return exc.message
        finally:
            client.close()
        log.info(kv("health_check_passed", url=self.settings.url))
        return None
