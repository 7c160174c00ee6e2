"""OpenAI-compatible speech servers: FunASR's ``funasr-server`` and the servers that share its API.

Routes, relative to the base URL (a base ending in ``/v1`` is the API root itself)::

    GET  /v1/models                   {"object": "list", "data": [{"id": "paraformer"}, ...]}
    POST /v1/audio/transcriptions     multipart: file, model, response_format, language, hotwords | prompt
    GET  /health                      funasr-server only: {"status", "device", "models_loaded"}
    POST /asr                         funasr-server only: file, language, hotwords (comma-separated)

funasr-server (FunASR >= 1.4) is told from the others (vLLM, speaches, LocalAI...) by its
``/health``.  What is sent depends on what the server is:

- the model: ``server.model``, else one the server lists -- the one funasr-server has loaded, else
  a paraformer model, else the first listed -- so no request names a model the server rejects;
- timings: ``verbose_json`` (segments with words, in seconds), falling back to ``json`` and then
  ``text`` on a server that refuses the format; funasr-server's ``text`` answer is a JSON string;
- hotwords: funasr-server takes them on ``/asr`` (which always runs ``fun-asr-nano``), so they go
  there when that is the model, else in a ``hotwords`` field; other servers get them in the
  standard ``prompt`` field;
- the API key (``Authorization: Bearer``) from the variable named by ``server.api_key_env``.

Each request is one POST that uploads and recognises, so it holds a recognition slot throughout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from asrbatch.config import ServerConfig
from asrbatch.errors import AsrbatchError, AudioError, EndpointError, RecognitionError, TransientError
from asrbatch.log import kv
from asrbatch.media import mime_type
from asrbatch.output import Segment
from asrbatch.subtitles import Word
from asrbatch.transport.base import (
    HttpServerClient,
    Recognition,
    ServerInfo,
    go_ahead,
    hotword_list,
)
from asrbatch.transport.retry import call_with_retries, recognise_with_retries, unavailable
from asrbatch.transport.session import (
    Timeouts,
    classify_exception,
    classify_status,
    error_detail,
)

log = logging.getLogger(__name__)

PROTOCOL = "openai"
FUNASR_SERVER = "funasr-server"
OTHER_SERVER = "openai"
ASR_ROUTE_MODEL = "fun-asr-nano"
"""The model funasr-server's ``/asr`` runs, whatever the request says."""
FORMATS = ("verbose_json", "json", "text")
"""Answer formats asked for, best first: a server that refuses one gets the next."""


@dataclass(frozen=True)
class Routes:
    """Where the routes of a server are, from its base URL (with or without ``/v1``)."""

    root: str
    api: str

    @classmethod
    def for_url(cls, url: str) -> Routes:
        base = url.rstrip("/")
        if base.endswith("/v1"):
            return cls(base[: -len("/v1")], base)
        return cls(base, base + "/v1")

    @property
    def models(self) -> str:
        return self.api + "/models"

    @property
    def transcriptions(self) -> str:
        return self.api + "/audio/transcriptions"

    @property
    def asr(self) -> str:
        return self.root + "/asr"

    @property
    def health(self) -> str:
        return self.root + "/health"


# ---------------------------------------------------------------------------------------------
# Reading answers (pure)


def model_ids(body: Any) -> tuple[str, ...] | None:
    """The model names of a ``GET /v1/models`` answer, or None when it is not one."""
    if not isinstance(body, Mapping) or not isinstance(body.get("data"), list):
        return None
    names: list[str] = []
    for entry in body["data"]:
        name = entry.get("id") if isinstance(entry, Mapping) else entry
        if isinstance(name, str) and name and name not in names:
            names.append(name)
    return tuple(names)


def loaded_models(body: Any) -> tuple[str, ...] | None:
    """funasr-server's ``models_loaded`` from its ``/health`` answer (``"fun-asr-nano (vLLM)"`` ->
    ``fun-asr-nano``); None when the answer is not funasr-server's."""
    if not isinstance(body, Mapping) or "status" not in body or not isinstance(body.get("models_loaded"), list):
        return None
    return tuple(str(name).split(" (", 1)[0].strip() for name in body["models_loaded"] if str(name).strip())


def choose_model(configured: str | None, listed: Sequence[str], loaded: Sequence[str]) -> str | None:
    """The model to name: *configured*, else a *loaded* one the server lists, else a paraformer
    model, else the first listed; None when there is nothing to choose from."""
    if configured:
        return configured
    for name in loaded:
        if name in listed:
            return name
    for name in listed:
        if "paraformer" in name.lower():
            return name
    return listed[0] if listed else None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return max(0.0, float(value))


def parse_segments(items: Any) -> tuple[Segment, ...]:
    """Segments (with their words where given) of a ``verbose_json`` or ``/asr`` answer, in seconds;
    entries without a start and an end are left out."""
    if not isinstance(items, list):
        return ()
    segments = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        start, end = _seconds(item.get("start")), _seconds(item.get("end"))
        if start is None or end is None:
            continue
        words = []
        for word in item.get("words") or ():
            if not isinstance(word, Mapping):
                continue
            word_start, word_end = _seconds(word.get("start")), _seconds(word.get("end"))
            token = word.get("word", word.get("text"))
            if word_start is None or word_end is None or not isinstance(token, str) or not token.strip():
                continue
            words.append(Word(word_start, max(word_end, word_start), token.strip()))
        segments.append(Segment(start, max(end, start), str(item.get("text") or "").strip(), words=tuple(words)))
    return tuple(segments)


def parse_answer(response: requests.Response, what: str) -> tuple[str, tuple[Segment, ...], Any]:
    """Text, segments and the body of a successful recognition answer, whatever its format.

    JSON objects carry ``text`` (and ``segments``); a JSON string is funasr-server's ``text``
    format; anything else is taken as plain text.  Raises :class:`RecognitionError` when a JSON
    answer holds no text.
    """
    content_type = response.headers.get("Content-Type", "").lower()
    if "html" in content_type:
        raise RecognitionError(f"server answered {what} with a web page, not a transcript")
    if "json" not in content_type:
        return response.text.strip(), (), response.text
    try:
        body = response.json()
    except ValueError:
        raise RecognitionError(f"server answered {what} with broken JSON") from None
    if isinstance(body, str):
        return body.strip(), (), body
    if isinstance(body, Mapping) and isinstance(body.get("text"), str):
        return body["text"].strip(), parse_segments(body.get("segments")), body
    raise RecognitionError(f"server answered {what} without a text")


def redact(text: str, secret: str | None) -> str:
    """*text* with *secret* masked (servers may quote the key they refused)."""
    return text.replace(secret, "***") if secret else text


# ---------------------------------------------------------------------------------------------
# The client


@dataclass(frozen=True)
class _Request:
    route: str
    label: str
    fields: dict[str, str]
    formats: tuple[str, ...]
    """Answer formats to try in order; empty for ``/asr`` (it has one)."""


class OpenAIClient(HttpServerClient):
    """A connection to one OpenAI-compatible speech server; a :class:`~asrbatch.transport.base.Recognizer`.

    ``sleep`` and ``clock`` are injected for tests; ``session`` replaces the session built from
    *settings* (the caller then owns it).
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
        self.routes = Routes.for_url(settings.url)
        if settings.api_key:
            self._session.headers["Authorization"] = f"Bearer {settings.api_key}"
        self._info: ServerInfo | None = None
        self._latency = 0.0
        self._formats: tuple[str, ...] = FORMATS
        self._hotwords_noted = False

    @property
    def latency(self) -> float:
        """Seconds the successful ``GET /v1/models`` of the probe took."""
        self.probe()
        return self._latency

    # -- probe ------------------------------------------------------------------------------

    def probe(self) -> ServerInfo:
        """List the models, tell funasr-server from others, choose the model; cached.

        Raises :class:`ServerUnavailableError` when the server stays unreachable and
        :class:`EndpointError` when it is not an OpenAI-compatible server, refuses the API key,
        or does not serve the configured model (funasr-server).
        """
        with self._lock:
            if self._info is not None:
                return self._info
            try:
                info, _ = call_with_retries(self._probe_once, self.settings.retry, sleep=self._sleep,
                                            url=self.settings.url)
            except TransientError as exc:
                raise unavailable(self.settings.url, exc) from None
            log.info(kv("probe", url=info.url, protocol=info.protocol, server=info.kind, model=info.model,
                        models=",".join(info.models)))
            self._info = info
            self._open_slots()
            return info

    def _probe_once(self) -> ServerInfo:
        what = "GET /v1/models"
        start = self._clock()
        response = self._get(self.routes.models, what)
        latency = self._clock() - start
        if response.status_code in (401, 403):
            raise self._key_error(response, what)
        if response.status_code == 404:
            raise EndpointError(f"{what} is 404 at {self.settings.url}: not an OpenAI-compatible server",
                                hint="check server.url (the server's address, with or without /v1)")
        if response.status_code != 200:
            raise classify_status(response, what)
        try:
            listed = model_ids(response.json())
        except ValueError:
            listed = None
        if listed is None:
            raise EndpointError(f"{what} at {self.settings.url} is not a model list: not an OpenAI-compatible server",
                                hint="check server.url")
        loaded = self._loaded_models()
        kind = FUNASR_SERVER if loaded is not None else OTHER_SERVER
        configured = self.settings.model
        if configured and listed and configured not in listed:
            if kind == FUNASR_SERVER:
                raise EndpointError(
                    f"server.model {configured!r} is not served by {self.settings.url} "
                    f"(it lists {', '.join(listed)})",
                    hint="set server.model to one of them, or unset it to let asrbatch choose",
                )
            log.warning(kv("model_not_listed", url=self.settings.url, model=configured, listed=",".join(listed)))
        model = choose_model(configured, listed, loaded or ())
        if model is None:
            raise EndpointError(f"{self.settings.url} lists no models ({what})", hint="set server.model")
        self._latency = latency
        # verbose_json (asked for first) carries segment timings; the text-only fallbacks are rare.
        return ServerInfo(url=self.settings.url, protocol=PROTOCOL, kind=kind, model=model, models=listed,
                          auth_required=bool(self.settings.api_key), timings=True)

    def _loaded_models(self) -> tuple[str, ...] | None:
        """funasr-server's loaded models from ``/health``; None for another server."""
        response = self._get(self.routes.health, "GET /health")
        if response.status_code != 200:
            return None
        try:
            return loaded_models(response.json())
        except ValueError:
            return None

    def _get(self, url: str, what: str) -> requests.Response:
        try:
            return self._session.get(url, timeout=(self.settings.connect_timeout, self.settings.read_timeout))
        except requests.RequestException as exc:
            raise classify_exception(exc, what) from None

    # -- recognition ------------------------------------------------------------------------

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
        """Send *path* and return its text and segments (see the Recognizer protocol).

        Raises :class:`ServerUnavailableError`, :class:`InputRejectedError` (the server blamed
        the file), :class:`RecognitionError` (it kept failing), :class:`AudioError` (*path*
        cannot be read) and :class:`EndpointError` (key refused, model rejected).
        """
        info = self.probe()
        name = name or path.name
        mime = mime or mime_type(name)
        words = hotword_list(hotwords, self.settings.hotword_separator)
        request = self._plan(info, words)
        timeouts = Timeouts.for_audio(self.settings, duration)

        def attempt() -> tuple[tuple[str, tuple[Segment, ...], Any], float]:
            with self._slot():
                go_ahead(proceed)
                start = self._clock()
                answer = self._post(request, path, name=name, mime=mime, timeouts=timeouts)
                return answer, self._clock() - start

        (answer, elapsed), attempts = recognise_with_retries(attempt, self.settings, sleep=self._sleep, path=path,
                                                             name=name)
        text, segments, body = answer
        log.debug(kv("recognized", url=self.settings.url, name=name, attempts=attempts, seconds=f"{elapsed:.3f}",
                     chars=len(text), text=text))
        return Recognition(text=text, server_seconds=elapsed, attempts=attempts, outputs=(body,), segments=segments)

    def _plan(self, info: ServerInfo, words: list[str]) -> _Request:
        """The route and form fields of a request with *words* as hotwords."""
        language = {"language": self.settings.language} if self.settings.language else {}
        if info.kind == FUNASR_SERVER and words and info.model == ASR_ROUTE_MODEL:
            return _Request(self.routes.asr, "POST /asr", {**language, "hotwords": ",".join(words)}, ())
        fields = {"model": info.model or "", **language}
        if words:
            if info.kind == FUNASR_SERVER:
                self._note_hotwords(info)
                fields["hotwords"] = ",".join(words)
            else:
                fields["prompt"] = ", ".join(words)
        return _Request(self.routes.transcriptions, "POST /v1/audio/transcriptions", fields, self._formats)

    def _note_hotwords(self, info: ServerInfo) -> None:
        if not self._hotwords_noted:
            self._hotwords_noted = True
            log.warning(kv("hotwords_field", url=self.settings.url, model=info.model,
                        note=f"funasr-server applies hotwords on /asr (model {ASR_ROUTE_MODEL}) only"))

    def _post(self, request: _Request, path: Path, *, name: str, mime: str,
              timeouts: Timeouts) -> tuple[str, tuple[Segment, ...], Any]:
        formats: tuple[str | None, ...] = request.formats or (None,)
        for index, answer_format in enumerate(formats):
            fields = dict(request.fields)
            if answer_format is not None:
                fields["response_format"] = answer_format
            response = self._send(request, fields, path, name=name, mime=mime, timeouts=timeouts)
            if response.status_code == 200:
                if answer_format is not None and index > 0:
                    self._remember_format(formats[index:])
                return parse_answer(response, request.label)
            detail = error_detail(response)
            refused_format = response.status_code in (400, 415, 422) and (
                "response_format" in detail or "verbose" in detail.lower())
            if answer_format is None or not refused_format or index == len(formats) - 1:
                raise self._failure(response, request, detail)
            log.info(kv("format_refused", url=self.settings.url, format=answer_format, detail=detail))
        raise AssertionError("unreachable")  # pragma: no cover

    def _remember_format(self, formats: tuple[str | None, ...]) -> None:
        with self._lock:
            self._formats = tuple(f for f in formats if f is not None)

    def _send(self, request: _Request, fields: dict[str, str], path: Path, *, name: str, mime: str,
              timeouts: Timeouts) -> requests.Response:
        try:
            audio = path.open("rb")
        except OSError as exc:
            raise AudioError(f"cannot read the recording: {exc.strerror or exc}", path=path) from None
        with audio:
            try:
                return self._session.post(request.route, data=fields, files={"file": (name, audio, mime)},
                                          timeout=timeouts.pair)
            except requests.RequestException as exc:
                raise classify_exception(exc, request.label) from None

    def _failure(self, response: requests.Response, request: _Request, detail: str) -> AsrbatchError:
        status = response.status_code
        if status in (401, 403):
            return self._key_error(response, request.label)
        model = request.fields.get("model")
        if model and status in (400, 404, 422) and "model" in detail.lower():
            return EndpointError(
                f"{self.settings.url} refused model {model!r} ({request.label}: HTTP {status}: "
                f"{redact(detail, self.settings.api_key)})",
                hint="set server.model to a model the server lists (asrbatch ping shows them)",
            )
        return classify_status(response, request.label)

    def _key_error(self, response: requests.Response, what: str) -> EndpointError:
        detail = redact(error_detail(response), self.settings.api_key)
        variable = self.settings.api_key_env
        if response.status_code == 403:
            return EndpointError(f"HTTP 403 forbidden on {what} at {self.settings.url}: {detail or 'no reason given'}",
                                 hint=f"check the API key in {variable} and the server's access rules")
        if not self.settings.api_key:
            return EndpointError(
                f"the server at {self.settings.url} requires an API key and none is set ({what}: HTTP 401)",
                hint=f"put the key in the environment variable {variable} (server.api_key_env names it)",
            )
        return EndpointError(
            f"the server at {self.settings.url} refused the API key from {variable} ({what}: HTTP 401"
            + (f": {detail})" if detail else ")"),
            hint=f"check the key in {variable}",
        )


__all__ = ["OpenAIClient", "Routes", "choose_model", "loaded_models", "model_ids",
           "parse_answer", "parse_segments"]
