"""What every way of talking to a server offers the runner: the :class:`Recognizer` protocol.

A single server's client (one module per wire protocol), the health guard around it and the
pool of several servers all satisfy it, so the runner never knows which it has, nor which
protocol is spoken.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar, runtime_checkable

import requests

from asrbatch.config import ServerConfig
from asrbatch.errors import CancelledError
from asrbatch.output import Segment
from asrbatch.transport.session import build_session


@dataclass(frozen=True)
class ServerInfo:
    """What a probe found out about a server."""

    url: str
    protocol: str
    """How it is spoken to: ``legacy`` (Gradio 3.x, ``/api/predict/``), ``legacy-queue`` (3.x
    websocket queue: generators, ``api_open=False``), ``queue`` (Gradio 4.0-4.19, functions without
    a name, and where ``/call`` hides error messages), ``sse`` (4.x ``/call``), ``sse-prefixed`` (5.x and later),
    ``openai`` (``/v1/audio/transcriptions``), ``funasr-ws`` (the FunASR runtime's WebSocket)."""
    gradio_version: str | None = None
    kind: str = "gradio"
    """The server program: ``gradio``, ``funasr-server``, ``openai`` (another compatible server),
    ``funasr-runtime``."""
    version: str | None = None
    """The server's own version when it tells (Gradio's version for Gradio apps)."""
    api_prefix: str = ""
    fn_index: int | None = None
    api_name: str | None = None
    """The name the function is called by; None when it is called by fn_index."""
    inputs: int = 0
    outputs: int = 0
    auth_required: bool = False
    concurrency_limit: int | None = None
    """Recognitions the server runs at once, when it says (no Gradio version measured so far does)."""
    max_file_size: int | None = None
    """Largest upload in bytes when the server sets one, else None."""
    model: str | None = None
    """OpenAI-compatible servers: the model requests name."""
    models: tuple[str, ...] = ()
    template: tuple[Any, ...] | None = None
    """Gradio: the arguments sent to the function (placeholders included), as chosen."""
    timings: bool = False
    """The server returns sentence or word timings with its text (then utterance-level requests are
    not needed for timed outputs)."""
    output_index: int | None = None
    """Gradio: which of the function's outputs holds the text, as chosen."""
    codecs: tuple[str, ...] | None = None
    """The codecs chunks travel in to this server, when it takes only some (the FunASR runtime with
    ``server.send_format: pcm``: ``wav``, sent as samples); None: any."""

    @property
    def label(self) -> str:
        """``gradio 4.44.1``, ``funasr-server``... for logs and the JSON output."""
        if self.kind == "gradio":
            return f"gradio {self.gradio_version}" if self.gradio_version else "gradio"
        return f"{self.kind} {self.version}" if self.version else self.kind


@dataclass(frozen=True)
class Recognition:
    """The result of one :meth:`Recognizer.transcribe`."""

    text: str
    server_seconds: float
    """Wall time of the successful try (upload, queue and recognition included)."""
    attempts: int
    outputs: tuple[Any, ...] = ()
    """Everything the server returned, as it returned it."""
    segments: tuple[Segment, ...] = field(default=())
    """Sentence (or word) timings the server returned, in seconds from the start of the audio sent."""


@runtime_checkable
class Recognizer(Protocol):
    """Something that turns audio files into text: one server, a guarded one, or a pool.

    Safe to call from several threads; it keeps at most :attr:`capacity` recognitions on its
    server(s) at once, whatever the number of callers.
    """

    def probe(self) -> ServerInfo:
        """Check the server(s) once (cached).  Raises ``ServerUnavailableError`` or ``EndpointError``."""
        ...

    @property
    def capacity(self) -> int:
        """Recognitions kept in flight at once (over all servers); valid after :meth:`probe`."""
        ...

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
        """Recognise *path*.  Raises the transport's classified errors (see the fault model).

        *proceed*, when given, is asked once a recognition slot is free, right before the
        server is asked to start; False withdraws the request (``CancelledError``).
        """
        ...

    def close(self) -> None:
        ...


_Closing = TypeVar("_Closing", bound="Closing")


class Closing:
    """``with`` for anything that has :meth:`close` (clients, guards, pools)."""

    def __enter__(self: _Closing) -> _Closing:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release what is held (nothing here)."""


class RecognizerWrapper(Closing):
    """A :class:`Recognizer` around another (a health guard, a codec ladder): what a subclass does
    not override goes to :attr:`inner`."""

    def __init__(self, inner: Recognizer) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    def probe(self) -> ServerInfo:
        return self.inner.probe()

    @property
    def capacity(self) -> int:
        return self.inner.capacity

    def close(self) -> None:
        self.inner.close()

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
        return self.inner.transcribe(path, name=name, mime=mime, duration=duration, hotwords=hotwords,
                                     proceed=proceed)


class ServerClient(Closing):
    """What every client of one server shares: its settings, the injected sleep and clock, the
    recognition slots (:attr:`capacity` of them) and use as a context manager.  Subclasses probe
    the server and call :meth:`_open_slots` once they know it.
    """

    def __init__(
        self,
        settings: ServerConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: threading.BoundedSemaphore | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.settings.url!r})"

    def _reported_limit(self) -> int | None:
        """The recognitions at once the server said it runs, once probed (None: it does not say)."""
        return None

    @property
    def capacity(self) -> int:
        """Recognitions kept in flight: ``server.concurrency``, else what the server reports, else 1."""
        return request_limit(self.settings, self._reported_limit())

    def _open_slots(self) -> None:
        """Make the :attr:`capacity` recognition slots (once the probe knows the server)."""
        self._slots = threading.BoundedSemaphore(self.capacity)

    @contextmanager
    def _slot(self) -> Iterator[None]:
        """Hold one of the recognition slots."""
        slots = self._slots
        assert slots is not None, "probe() opens the slots"
        with slots:
            yield


class HttpServerClient(ServerClient):
    """A :class:`ServerClient` that speaks HTTP through one session (default timeouts, TLS).

    ``session`` replaces the session built from *settings* (the caller then owns it).
    """

    def __init__(
        self,
        settings: ServerConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(settings, sleep=sleep, clock=clock)
        self._owns_session = session is None
        self._session: requests.Session = session if session is not None else build_session(settings)

    def close(self) -> None:
        if self._owns_session:
            self._session.close()


def request_limit(settings: ServerConfig, reported: int | None) -> int:
    """Recognitions to keep in flight on one server: ``server.concurrency`` (``--workers``), else
    what the server reports, else 1.  The one rule, for every protocol and the pool."""
    if settings.concurrency:
        return settings.concurrency
    if reported:
        return max(1, reported)
    return 1


def go_ahead(proceed: Callable[[], bool] | None) -> None:
    """Raise ``CancelledError`` when the caller's *proceed* says the request is no longer wanted."""
    if proceed is not None and not proceed():
        raise CancelledError("the request was withdrawn before the server started on it")


def hotword_list(hotwords: Sequence[str] | str, separator: str) -> list[str]:
    """Hotwords as a list, from a list or from text joined by *separator*."""
    if isinstance(hotwords, str):
        return [w.strip() for w in hotwords.split(separator or ",") if w.strip()]
    return [w for w in (h.strip() for h in hotwords) if w]
