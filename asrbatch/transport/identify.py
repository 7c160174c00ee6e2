"""Which protocol a server speaks, for ``server.protocol: auto``.

``ws://`` and ``wss://`` URLs speak the FunASR runtime's WebSocket protocol.  An ``http(s)`` URL
is looked at once per probe (under the retry policy, so a server that is down is reported as
unavailable, not as unknown):

1. ``GET /config`` answering a Gradio app's config: **gradio**;
2. else ``GET /v1/models`` (``/models`` when the URL ends in ``/v1``) answering a model list, or
   asking for a key (401/403): **openai**;
3. else a ``/config`` that asked for a login (401): **gradio** (its client logs in);
4. else an :class:`~asrbatch.errors.EndpointError` naming the URL and what each route answered.

:class:`AutoClient` does the look on its first probe and hands everything on to the client of
the protocol found, so building it costs no request.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from asrbatch.config import WEBSOCKET_SCHEMES, ServerConfig
from asrbatch.errors import EndpointError, TransientError
from asrbatch.transport.base import Closing, Recognition, Recognizer, ServerInfo, request_limit
from asrbatch.transport.openai import Routes, model_ids
from asrbatch.transport.retry import call_with_retries, unavailable
from asrbatch.transport.session import build_session, classify_exception, classify_status, join

GRADIO = "gradio"
OPENAI = "openai"
FUNASR_WS = "funasr-ws"


def declared_protocol(settings: ServerConfig) -> str | None:
    """The protocol the settings decide without asking the server, or None (an http(s) URL on auto)."""
    if settings.url.startswith(WEBSOCKET_SCHEMES):
        return FUNASR_WS
    return None if settings.protocol == "auto" else settings.protocol


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _looks_like_gradio(body: Any) -> bool:
    return isinstance(body, Mapping) and "version" in body and "dependencies" in body


def identify(session: requests.Session, settings: ServerConfig) -> str:
    """One look at the http(s) server of *settings*: :data:`GRADIO` or :data:`OPENAI`.

    Raises :class:`RetryableError` for transient failures (to be retried) and
    :class:`EndpointError` when the server is neither.
    """
    timeout = (settings.connect_timeout, settings.read_timeout)
    try:
        config = session.get(join(settings.url, "/config"), timeout=timeout)
    except requests.RequestException as exc:
        raise classify_exception(exc, "GET /config") from None
    if config.status_code == 200 and _looks_like_gradio(_json(config)):
        return GRADIO
    if config.status_code not in (200, 401, 404):
        raise classify_status(config, "GET /config")

    routes = Routes.for_url(settings.url)
    what = "GET /v1/models"
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    try:
        models = session.get(routes.models, timeout=timeout, headers=headers)
    except requests.RequestException as exc:
        raise classify_exception(exc, what) from None
    if models.status_code in (401, 403) or (models.status_code == 200 and model_ids(_json(models)) is not None):
        return OPENAI
    if config.status_code == 401:
        return GRADIO
    if models.status_code not in (200, 404, 405):
        raise classify_status(models, what)
    raise EndpointError(
        f"{settings.url} speaks no protocol asrbatch knows: {_config_finding(config)}; {what} "
        + ("is 404: not an OpenAI-compatible server" if models.status_code == 404 else _finding(models)),
        hint="check server.url (the FunASR runtime's WebSocket server needs ws:// or wss://), or set server.protocol",
    )


def _config_finding(response: requests.Response) -> str:
    if response.status_code == 404:
        return "GET /config is 404: not a Gradio app"
    body = _json(response)
    if body is None:
        return "GET /config did not return JSON: not a Gradio app"
    keys = ", ".join(sorted(map(str, body)))[:200] if isinstance(body, Mapping) else type(body).__name__
    return f"/config does not look like a Gradio app's (got: {keys})"


def _finding(response: requests.Response) -> str:
    kind = response.headers.get("Content-Type", "no content type").split(";")[0]
    return f"answered HTTP {response.status_code} ({kind}), not a model list"


class AutoClient(Closing):
    """A :class:`Recognizer` for ``server.protocol: auto`` on an http(s) URL.

    Its first probe identifies the protocol (retried like any probe) and builds that
    protocol's client with *build*; everything else is that client's.
    """

    def __init__(
        self,
        settings: ServerConfig,
        build: Callable[[ServerConfig], Recognizer],
        *,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self._build = build
        self._sleep = sleep
        self._owns_session = session is None
        self._session = session if session is not None else build_session(settings)
        self._lock = threading.Lock()
        self._inner: Recognizer | None = None
        self.protocol: str | None = None
        """The protocol found (``gradio`` or ``openai``), once probed."""

    def __repr__(self) -> str:
        return f"AutoClient(url={self.settings.url!r}, protocol={self.protocol!r})"

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        if self._owns_session:
            self._session.close()

    def _resolved(self) -> Recognizer:
        with self._lock:
            if self._inner is None:
                try:
                    found, _ = call_with_retries(lambda: identify(self._session, self.settings), self.settings.retry,
                                                 sleep=self._sleep, url=self.settings.url)
                except TransientError as exc:
                    raise unavailable(self.settings.url, exc) from None
                self.protocol = found
                self._inner = self._build(dataclasses.replace(self.settings, protocol=found))  # type: ignore[arg-type]
            return self._inner

    def probe(self) -> ServerInfo:
        return self._resolved().probe()

    @property
    def capacity(self) -> int:
        inner = self._inner
        return inner.capacity if inner is not None else request_limit(self.settings, None)

    @property
    def latency(self) -> float:
        """The probe latency the protocol's client measured."""
        inner = self._resolved()
        inner.probe()
        return float(getattr(inner, "latency", 0.0))

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
        return self._resolved().transcribe(path, name=name, mime=mime, duration=duration, hotwords=hotwords,
                                           proceed=proceed)
