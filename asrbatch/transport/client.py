"""The client: probe the server once, then transcribe files through the protocol it speaks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from asrbatch.config import ServerConfig
from asrbatch.errors import (
    AsrbatchError,
    AudioError,
    EndpointError,
    RecognitionError,
    ServerUnavailableError,
    TransientError,
)
from asrbatch.transport import detect, legacy, payload, queued
from asrbatch.transport.retry import call_with_retries
from asrbatch.transport.session import (
    LoginExpiredError,
    Timeouts,
    build_session,
    classify_exception,
    classify_status,
    join,
    login,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerInfo:
    """What :meth:`Client.probe` found out about the server."""

    url: str
    gradio_version: str
    protocol: str
    """``legacy`` (Gradio 3.x, ``/api/predict/``), ``sse`` (4.x, ``/call`` at the root) or
    ``sse-prefixed`` (5.x and later, ``/call`` under ``api_prefix``)."""
    api_prefix: str
    fn_index: int | None
    api_name: str | None
    """The name the function is called by; None when it is called by fn_index (3.x, unnamed functions)."""
    inputs: int
    outputs: int
    auth_required: bool
    concurrency_limit: int | None
    """From /config when the Gradio version exposes it (none of 3.50, 4.44, 6.31 does), else None."""
    max_file_size: int | None
    """Largest upload in bytes when the server sets one (4.x and later), else None."""


@dataclass(frozen=True)
class Recognition:
    """The result of one :meth:`Client.transcribe`."""

    text: str
    server_seconds: float
    """Wall time of the successful try (upload, queue and recognition included)."""
    attempts: int
    outputs: tuple[Any, ...]
    """All outputs of the function, as the server returned them."""


@dataclass(frozen=True)
class _Probe:
    info: ServerInfo
    app: detect.AppConfig
    function: detect.Function
    latency: float


class Client:
    """A connection to one Gradio ASR WebUI, safe to share between threads.

    ``sleep`` and ``clock`` are injected for tests; ``session`` replaces the
    session built from *settings* (the caller then owns it).
    """

    def __init__(
        self,
        settings: ServerConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._clock = clock
        self._owns_session = session is None
        self._session = session if session is not None else build_session(settings)
        self._lock = threading.Lock()
        self._probe: _Probe | None = None

    def __repr__(self) -> str:
        return f"Client(url={self.settings.url!r}, user={self.settings.username!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    # -----------------------------------------------------------------------------------------

    def probe(self) -> ServerInfo:
        """Read ``/config`` (logging in when needed) and check the recognition function; cached.

        Raises :class:`ServerUnavailableError` when the server stays unreachable
        and :class:`EndpointError` when the function is missing or does not fit
        the input template, or the login is refused.
        """
        return self._probed().info

    @property
    def capacity(self) -> int:
        """Requests to keep in flight: ``server.concurrency``, else the limit the server reported
        in its probe (Gradio versions that expose one), else 1."""
        if self.settings.concurrency:
            return self.settings.concurrency
        probed = self._probe
        if probed is not None and probed.info.concurrency_limit:
            return max(1, probed.info.concurrency_limit)
        return 1

    @property
    def latency(self) -> float:
        """Seconds the successful ``GET /config`` of the probe took."""
        return self._probed().latency

    def _probed(self) -> _Probe:
        with self._lock:
            if self._probe is not None:
                return self._probe
            try:
                probed, _ = call_with_retries(self._probe_once, self.settings.retry, sleep=self._sleep,
                                              url=self.settings.url)
            except TransientError as exc:
                raise self._unavailable(exc) from None
            info = probed.info
            log.info("event=probe url=%s gradio=%s protocol=%s fn_index=%s api_name=%s",
                     info.url, info.gradio_version, info.protocol, info.fn_index, info.api_name or "-")
            self._probe = probed
            return probed

    def _probe_once(self) -> _Probe:
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        auth_required = False
        start = self._clock()
        response = self._get_config(timeout)
        if response.status_code == 401:
            auth_required = True
            if not self.settings.username:
                raise EndpointError(
                    f"the server at {self.settings.url} requires a login and none is configured",
                    hint=f"set server.username and the password variable {self.settings.password_env}",
                )
            login(self._session, self.settings, timeout)
            start = self._clock()
            response = self._get_config(timeout)
        latency = self._clock() - start
        if response.status_code != 200:
            if response.status_code == 404:
                raise EndpointError(f"GET /config is 404 at {self.settings.url}: not a Gradio app",
                                    hint="check server.url points at the Gradio WebUI")
            if response.status_code == 401:
                raise EndpointError(f"the server at {self.settings.url} still refuses access after the login",
                                    hint="check server.username")
            raise classify_status(response, "GET /config")
        try:
            data = response.json()
        except ValueError:
            raise EndpointError(f"GET /config at {self.settings.url} did not return JSON: not a Gradio app",
                                hint="check server.url points at the Gradio WebUI") from None
        app = detect.parse_config(data)
        function = detect.select_function(
            app,
            fn_index=self.settings.fn_index,
            api_name=self.settings.api_name,
            template=self.settings.input_template,
            output_index=self.settings.output_index,
        )
        info = ServerInfo(
            url=self.settings.url,
            gradio_version=app.version,
            protocol=app.protocol,
            api_prefix=app.api_prefix,
            fn_index=function.fn_index,
            api_name=function.api_name if app.protocol != detect.LEGACY else None,
            inputs=len(function.inputs),
            outputs=len(function.outputs),
            auth_required=auth_required,
            concurrency_limit=app.concurrency_limit,
            max_file_size=app.max_file_size,
        )
        return _Probe(info, app, function, latency)

    def _get_config(self, timeout: tuple[float, float]) -> requests.Response:
        try:
            return self._session.get(join(self.settings.url, "/config"), timeout=timeout)
        except requests.RequestException as exc:
            raise classify_exception(exc, "GET /config") from None

    # -----------------------------------------------------------------------------------------

    def transcribe(
        self,
        path: Path,
        *,
        name: str | None = None,
        mime: str | None = None,
        duration: float | None = None,
        hotwords: str = "",
    ) -> Recognition:
        """Send *path* to the recognition function and return its text.

        *name* is the file name the server sees (default: ``path.name``), *mime*
        its type (default: guessed from *name*), *duration* its length in
        seconds (it grows the read timeout and the deadline; unknown counts as 0).

        Raises :class:`ServerUnavailableError` when the server stays unreachable,
        :class:`InputRejectedError` when the server blames the file,
        :class:`RecognitionError` when it fails on the file otherwise or keeps
        timing out, :class:`AudioError` when *path* cannot be read,
        :class:`EndpointError` for configuration problems.
        """
        probed = self._probed()
        name = name or path.name
        mime = mime or payload.guess_mime(name)
        timeouts = Timeouts.for_audio(self.settings, duration)
        elapsed = 0.0

        def attempt() -> list[Any]:
            nonlocal elapsed
            start = self._clock()
            try:
                outputs = self._send(probed, path, name=name, mime=mime, hotwords=hotwords, timeouts=timeouts)
            except LoginExpiredError:
                if not self.settings.username:
                    raise
                # The server forgot the session (a restart): log in again once.
                login(self._session, self.settings, timeouts.pair)
                outputs = self._send(probed, path, name=name, mime=mime, hotwords=hotwords, timeouts=timeouts)
            elapsed = self._clock() - start
            return outputs

        try:
            outputs, attempts = call_with_retries(attempt, self.settings.retry, sleep=self._sleep,
                                                  url=self.settings.url, name=name)
        except TransientError as exc:
            if exc.unreachable:
                raise self._unavailable(exc) from None
            tries = getattr(exc, "attempts", self.settings.retry.attempts)
            raise RecognitionError(
                f"server kept failing on this file after {tries} attempts: {exc.message}",
                path=path,
                hint="it is retried on the next run; raise server.read_timeout or server.deadline for long files",
            ) from None
        except OSError as exc:  # requests wraps network errors: this is the local file
            raise AudioError(f"cannot read the recording: {exc.strerror or exc}", path=path) from None
        except AsrbatchError as exc:
            if getattr(exc, "path", False) is None:
                exc.path = path  # type: ignore[attr-defined]
            raise
        text = detect.output_text(outputs, self.settings.output_index)
        log.debug("event=recognized url=%s name=%s attempts=%d seconds=%.3f chars=%d text=%r",
                  self.settings.url, name, attempts, elapsed, len(text), text)
        return Recognition(text=text, server_seconds=elapsed, attempts=attempts, outputs=tuple(outputs))

    def _send(self, probed: _Probe, path: Path, *, name: str, mime: str, hotwords: str,
              timeouts: Timeouts) -> list[Any]:
        if probed.app.protocol == detect.LEGACY:
            return legacy.predict(self._session, self.settings, probed.function, path, name=name, mime=mime,
                                  hotwords=hotwords, timeouts=timeouts)
        return queued.recognize(self._session, self.settings, probed.app, probed.function, path, name=name,
                                mime=mime, hotwords=hotwords, timeouts=timeouts, clock=self._clock)

    def _unavailable(self, exc: TransientError) -> ServerUnavailableError:
        tries = getattr(exc, "attempts", self.settings.retry.attempts)
        return ServerUnavailableError(
            f"server {self.settings.url} unavailable after {tries} attempts: {exc.message}",
            hint="check it is running (asrbatch ping)",
        )
