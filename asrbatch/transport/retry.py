"""The one retry policy: exponential backoff with jitter over :class:`TransientError`, sleep injected."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import tenacity

from asrbatch.config import RetryConfig, ServerConfig
from asrbatch.errors import FileError, RecognitionError, ServerUnavailableError, TransientError
from asrbatch.log import kv

log = logging.getLogger(__name__)

T = TypeVar("T")


def build_policy(
    retry: RetryConfig,
    *,
    sleep: Callable[[float], None],
    url: str,
    name: str | None = None,
) -> tenacity.Retrying:
    """A tenacity policy: retry :class:`TransientError` up to ``retry.attempts`` tries in all.

    Waits ``initial_wait * 2**(n-1)`` seconds (at most ``max_wait``) plus up to
    ``jitter`` random seconds, through *sleep*.  Logs one ``event=retry`` line
    per retry.  The last TransientError is re-raised as it is.
    """
    wait: tenacity.wait.wait_base = tenacity.wait_exponential(
        multiplier=retry.initial_wait, exp_base=2, min=0, max=retry.max_wait
    )
    if retry.jitter > 0:
        wait = wait + tenacity.wait_random(0, retry.jitter)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = getattr(exc, "reason", None) or (str(exc) if exc else "unknown")
        wait_s = state.next_action.sleep if state.next_action else 0.0
        fields = {"url": url, **({"name": name} if name else {}), "attempt": state.attempt_number + 1,
                  "reason": reason, "wait_s": f"{wait_s:.1f}"}
        log.warning(kv("retry", **fields))

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, retry.attempts)),
        wait=wait,
        retry=tenacity.retry_if_exception_type(TransientError),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


def call_with_retries(
    function: Callable[[], T],
    retry: RetryConfig,
    *,
    sleep: Callable[[float], None],
    url: str,
    name: str | None = None,
) -> tuple[T, int]:
    """Run *function* under the policy; return its result and the number of tries it took.

    Raises the last :class:`TransientError` (with ``attempts`` set on it) when
    every try failed; other errors pass through at once.
    """
    policy = build_policy(retry, sleep=sleep, url=url, name=name)
    attempts = 0

    def counted() -> T:
        nonlocal attempts
        attempts += 1
        return function()

    try:
        result = policy(counted)
    except TransientError as exc:
        exc.attempts = attempts
        raise
    return result, attempts


def recognise_with_retries(
    function: Callable[[], T],
    settings: ServerConfig,
    *,
    sleep: Callable[[float], None],
    path: Path,
    name: str,
) -> tuple[T, int]:
    """Run one recognition of *path* under the policy, as every server client does.

    What the retries could not overcome becomes :class:`ServerUnavailableError` (the server
    could not be reached) or :class:`RecognitionError` (it kept failing on this file);
    a :class:`FileError` gets *path*.  Other errors pass through.
    """
    try:
        return call_with_retries(function, settings.retry, sleep=sleep, url=settings.url, name=name)
    except TransientError as exc:
        if exc.unreachable:
            raise unavailable(settings.url, exc) from None
        raise RecognitionError(
            f"server kept failing on this file after {exc.attempts} attempts: {exc.message}",
            path=path,
            attempts=exc.attempts,
            hint="it is retried on the next run; raise server.read_timeout or server.deadline for long files",
        ) from None
    except FileError as exc:
        if exc.path is None:
            exc.path = path
        raise


def unavailable(url: str, exc: TransientError) -> ServerUnavailableError:
    """The error of a server that stayed unreachable through the retries."""
    hint = f"; {exc.hint}" if exc.hint else ""
    return ServerUnavailableError(
        f"server {url} unavailable after {exc.attempts} attempts: {exc.message}",
        hint=f"check that it is running: asrbatch ping{hint}",
    )
