"""The Gradio client: probe the app once, then transcribe files through the generation it runs.

The probe reads ``/config`` and chooses the function, its arguments and its text output
(:func:`.detect.choose`; ``auto`` settings read the app's components).  Gradio 3.x is called by
``fn_index`` on ``/api/predict/`` (:mod:`.legacy`); 4.x and later upload first and call through
the queue (:mod:`.queued`).  Where the first route cannot give the final result or the reason of a
failure (:class:`.session.QueueRequired`: a 3.x generator, ``api_open=False``, no ``/call``
before 4.20, ``/call`` hiding error messages), the request is sent again through the server's
queue -- the 3.x websocket (:mod:`.gradio3_queue`) or ``/queue/join`` -- and so is every later one.
Every generation uploads first, outside the recognition slot (3.x servers without ``/upload``
take a data URL inside it), so with several requests in flight the next file travels while the
server recognises the current one, and never more than :attr:`Client.capacity` recognitions run.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from asrbatch.config import ServerConfig
from asrbatch.errors import (
    AudioError,
    EndpointError,
    ServerUnavailableError,
    TransientError,
)
from asrbatch.log import kv
from asrbatch.media import mime_type
from asrbatch.transport import detect, gradio3_queue, legacy, queued
from asrbatch.transport.base import (
    HttpServerClient,
    Recognition,
    ServerInfo,
    go_ahead,
    hotword_list,
)
from asrbatch.transport.retry import call_with_retries, recognise_with_retries, unavailable
from asrbatch.transport.session import (
    LoginExpiredError,
    QueueRequired,
    Timeouts,
    classify_exception,
    classify_status,
    join,
    login,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Probe:
    info: ServerInfo
    app: detect.AppConfig
    function: detect.Function
    latency: float
    settings: ServerConfig
    """The settings requests are built from: the chosen fn_index, template and output index filled in."""


class Client(HttpServerClient):
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
        super().__init__(settings, sleep=sleep, clock=clock, session=session)
        self._probe: _Probe | None = None
        self._via_queue = False
        """Call through the server's queue (set by the probe, and for good by :class:`QueueRequired`)."""
        self._queue_reason: str | None = None
        """Why the first route was left for the queue, when it was."""
        self._legacy_upload = True
        """Gradio 3.x: send through ``POST /upload`` (False once the server turned out to have none)."""

    def __repr__(self) -> str:
        return f"Client(url={self.settings.url!r}, user={self.settings.username!r})"

    # -----------------------------------------------------------------------------------------

    def probe(self) -> ServerInfo:
        """Read ``/config`` (logging in when needed) and check the recognition function; cached.

        Raises :class:`ServerUnavailableError` when the server stays unreachable
        and :class:`EndpointError` when the function is missing or does not fit
        the input template, or the login is refused.
        """
        return self._probed().info

    def _reported_limit(self) -> int | None:
        probed = self._probe
        return probed.info.concurrency_limit if probed is not None else None

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
            log.info(kv("probe", url=info.url, gradio=info.gradio_version, protocol=info.protocol,
                        fn_index=info.fn_index, api_name=info.api_name, template=info.template,
                        output_index=info.output_index))
            self._probe = probed
            self._via_queue = info.protocol in (detect.LEGACY_QUEUE, detect.QUEUE)
            self._open_slots()
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
        choice = detect.choose(
            app,
            fn_index=self.settings.fn_index,
            api_name=self.settings.api_name,
            template=self.settings.input_template,
            output_index=self.settings.output_index,
        )
        function = choice.function
        info = ServerInfo(
            url=self.settings.url,
            gradio_version=app.version,
            kind="gradio",
            version=app.version,
            protocol=detect.first_route(app, function),
            api_prefix=app.api_prefix,
            fn_index=function.fn_index,
            api_name=function.api_name if app.protocol != detect.LEGACY else None,
            inputs=len(function.inputs),
            outputs=len(function.outputs),
            auth_required=auth_required,
            concurrency_limit=app.concurrency_limit,
            max_file_size=app.max_file_size,
            template=choice.template,
            output_index=choice.output_index,
        )
        chosen = dataclasses.replace(self.settings, fn_index=function.fn_index, input_template=choice.template,
                                     output_index=choice.output_index)
        return _Probe(info, app, function, latency, chosen)

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
        hotwords: Sequence[str] | str = (),
        proceed: Callable[[], bool] | None = None,
    ) -> Recognition:
        """Send *path* to the recognition function and return its text.

        *name* is the file name the server sees (default: ``path.name``), *mime*
        its type (default: guessed from *name*), *duration* its length in
        seconds (it grows the read timeout and the deadline; unknown counts as 0),
        *hotwords* a list (joined with ``server.hotword_separator``) or text as sent,
        *proceed* asked before the recognition starts (see the Recognizer protocol).

        Raises :class:`ServerUnavailableError` when the server stays unreachable,
        :class:`InputRejectedError` when the server blames the file,
        :class:`RecognitionError` when it fails on the file otherwise or keeps
        timing out, :class:`AudioError` when *path* cannot be read,
        :class:`EndpointError` for configuration problems.
        """
        probed = self._probed()
        name = name or path.name
        mime = mime or mime_type(name)
        separator = self.settings.hotword_separator
        words = hotwords if isinstance(hotwords, str) else separator.join(hotword_list(hotwords, separator))
        timeouts = Timeouts.for_audio(self.settings, duration)
        elapsed = 0.0

        def attempt() -> list[Any]:
            nonlocal elapsed
            start = self._clock()
            try:
                outputs = self._send(probed, path, name=name, mime=mime, hotwords=words, timeouts=timeouts,
                                     proceed=proceed)
            except LoginExpiredError:
                if not self.settings.username:
                    raise
                # The server forgot the session (a restart): log in again once.
                login(self._session, self.settings, timeouts.pair)
                outputs = self._send(probed, path, name=name, mime=mime, hotwords=words, timeouts=timeouts,
                                     proceed=proceed)
            elapsed = self._clock() - start
            failure = detect.app_failure(outputs, probed.info.output_index or 0)
            if failure is not None:
                # The app caught its own failure (its backend down, out of memory) and returned it.
                raise TransientError(f"the app answered with an error instead of a transcript: {failure}")
            return outputs

        try:
            outputs, attempts = recognise_with_retries(attempt, self.settings, sleep=self._sleep, path=path,
                                                       name=name)
        except OSError as exc:  # requests wraps network errors: this is the local file
            raise AudioError(f"cannot read the recording: {exc.strerror or exc}", path=path) from None
        text = detect.output_text(outputs, probed.info.output_index or 0)
        log.debug(kv("recognized", url=self.settings.url, name=name, attempts=attempts, seconds=f"{elapsed:.3f}",
                     chars=len(text), text=text))
        return Recognition(text=text, server_seconds=elapsed, attempts=attempts, outputs=tuple(outputs))

    def _send(self, probed: _Probe, path: Path, *, name: str, mime: str, hotwords: str,
              timeouts: Timeouts, proceed: Callable[[], bool] | None) -> list[Any]:
        settings = probed.settings
        if probed.app.protocol == detect.LEGACY:
            # Uploaded first where the server can take it: the upload then needs no recognition slot.
            server_path = None
            if self._legacy_upload and not self._via_queue:
                server_path = legacy.upload(self._session, self.settings, path, name=name, mime=mime,
                                            timeouts=timeouts)
                if server_path is None:
                    self._legacy_upload = False
                    log.info(kv("no_upload_route", url=self.settings.url, sent_as="data URL"))
            with self._slot():
                go_ahead(proceed)
                if not self._via_queue:
                    try:
                        if server_path is not None:
                            return legacy.predict_uploaded(self._session, settings, probed.function, server_path,
                                                           name=name, hotwords=hotwords, timeouts=timeouts)
                        return legacy.predict(self._session, settings, probed.function, path, name=name, mime=mime,
                                              hotwords=hotwords, timeouts=timeouts)
                    except QueueRequired as exc:
                        self._use_queue(probed, detect.LEGACY_QUEUE, exc)
                with self._explained():
                    return gradio3_queue.predict(self._session, settings, probed.function, path, name=name,
                                                 mime=mime, hotwords=hotwords, timeouts=timeouts, clock=self._clock)
        # The upload needs no recognition slot: it travels while other files are recognised.
        uploaded = queued.upload_recording(self._session, settings, probed.app, path, name=name, mime=mime,
                                           timeouts=timeouts)
        with self._slot():
            go_ahead(proceed)
            if not self._via_queue:
                try:
                    return queued.call(self._session, settings, probed.app, probed.function, uploaded, name=name,
                                       hotwords=hotwords, timeouts=timeouts, clock=self._clock)
                except QueueRequired as exc:
                    self._use_queue(probed, detect.QUEUE, exc)
            with self._explained():
                return queued.call(self._session, settings, probed.app, probed.function, uploaded, name=name,
                                   hotwords=hotwords, timeouts=timeouts, clock=self._clock, via_queue=True)

    def _use_queue(self, probed: _Probe, protocol: str, reason: QueueRequired) -> None:
        """Call through the server's queue from now on (this request included)."""
        with self._lock:
            if self._via_queue:
                return
            self._via_queue = True
            self._queue_reason = reason.message
            if self._probe is probed:
                self._probe = dataclasses.replace(probed, info=dataclasses.replace(probed.info, protocol=protocol))
        log.info(kv("route", url=self.settings.url, fn_index=probed.function.fn_index, protocol=protocol,
                    reason=reason.message))

    @contextmanager
    def _explained(self) -> Iterator[None]:
        """Say why the queue was used when it cannot be (a proxy that drops websockets...)."""
        try:
            yield
        except LoginExpiredError:
            raise
        except EndpointError as exc:
            if self._queue_reason is None:
                raise
            raise EndpointError(f"{self._queue_reason}, so the queue was tried: {exc.message}",
                                hint=exc.hint) from None

    def _unavailable(self, exc: TransientError) -> ServerUnavailableError:
        return unavailable(self.settings.url, exc)
