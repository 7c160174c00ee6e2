"""The FunASR runtime SDK's WebSocket server, offline mode (``ws://host:10095``; ``wss://`` on the images).

One connection per request in flight, one utterance per connection::

    -> {"mode": "offline", "chunk_size": [5, 10, 5], "chunk_interval": 10, "wav_name": "a.wav",
        "wav_format": "pcm", "audio_fs": 16000, "is_speaking": true,
        "hotwords": "{\\"阿里巴巴\\": 20}", "itn": true}
    -> binary frames: 16-bit mono samples, 60 ms a frame (the data of a WAV file), or the whole
       file as it is (``wav_format`` is then its extension and the server decodes it)
    -> {"is_speaking": false}
    <- {"mode": "offline", "wav_name": ..., "text": ..., "is_final": false,
        "timestamp": "[[ms,ms],...]", "stamp_sents": [{"text_seg", "punc", "start", "end", "ts_list"}]}

Two servers speak it: FunASR's C++ server (the runtime SDK images) and FunASR's Python server
(``runtime/python/websocket/funasr_wss_server.py``).  What they do that a client has to live with:

- the C++ server answers once and never sets ``is_final`` in offline mode; the Python server
  answers once per stretch of speech its VAD finds (:class:`Answers` gathers them);
- the Python server treats every binary frame as 16 kHz PCM, whatever ``wav_format`` says, and
  closes the connection at once when the start frame has no ``chunk_size``: samples are sent
  (``server.send_format: pcm``, the default: chunks travel as WAV whatever ``audio.codec`` says);
- hotwords are read from a connection's first text frame only, so every request opens its own
  connection; they are a JSON object of word -> weight *inside a string*;
- a decoding failure sends nothing at all, and a text frame that is not JSON makes the server
  ignore the connection: only the read timeout ends such a wait (the health check then tells a
  broken server from a bad file); the reference server names undecodable audio in an
  ``error`` field, which :func:`~asrbatch.transport.session.server_failure` judges;
- the images serve ``wss://`` with a self-signed certificate (``server.verify_tls: false``);
- ``binary`` is offered as subprotocol, as FunASR's clients do; the server picks none.

Timeouts are those of every server (:class:`~asrbatch.transport.session.Timeouts`): the
connection and handshake get ``server.connect_timeout``, the wait for the answer the read
timeout, and the whole exchange the deadline, after which the socket is shut down, even in
the middle of sending.  Works with websockets 11 and later (its synchronous client).
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
import unicodedata
import wave
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import websockets.exceptions
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from asrbatch.config import ServerConfig
from asrbatch.errors import AsrbatchError, AudioError, EndpointError, TransientError
from asrbatch.log import kv
from asrbatch.output import Segment
from asrbatch.subtitles import Word
from asrbatch.transport.base import (
    Recognition,
    ServerClient,
    ServerInfo,
    go_ahead,
    hotword_list,
)
from asrbatch.transport.retry import call_with_retries, recognise_with_retries, unavailable
from asrbatch.transport.session import RetryableError, Timeouts, server_failure
from asrbatch.transport.websocket import CONNECT_PARAMETERS, tls_options

log = logging.getLogger(__name__)

PROTOCOL = "funasr-ws"
KIND = "funasr-runtime"
FRAME_BYTES = 64 * 1024
"""Bytes per binary frame of a whole file (the C++ server takes messages of up to 32 MB)."""
PCM_FRAME_SECONDS = 0.06
"""Audio per binary frame of samples: 60 ms, as FunASR's clients send (``60 * chunk_size[1] /
chunk_interval`` ms).  FunASR's Python server runs its VAD on each frame as it arrives and misses
the ends of speech in a frame that holds more than one."""
CHUNK_SIZE = (5, 10, 5)
CHUNK_INTERVAL = 10
"""What FunASR's C++ and Python clients send in every start frame; FunASR's Python server needs
them, offline mode too, and closes the connection without an answer when they are missing."""
MAX_ANSWER_BYTES = 16 * 1024 * 1024
SUBPROTOCOLS = ("binary",)
PROBE_NAME = "asrbatch-probe"
CLOSE_TIMEOUT = 2.0


# ---------------------------------------------------------------------------------------------
# Messages (pure)


def start_message(*, wav_name: str, wav_format: str, audio_fs: int | None, hotwords: Sequence[str], weight: int,
                  itn: bool) -> str:
    """The first text frame of an offline utterance."""
    message: dict[str, Any] = {"mode": "offline", "chunk_size": list(CHUNK_SIZE), "chunk_interval": CHUNK_INTERVAL,
                               "wav_name": wav_name, "wav_format": wav_format}
    if audio_fs is not None:
        message["audio_fs"] = audio_fs
    message["is_speaking"] = True
    if hotwords:
        # The server parses this string as JSON itself: an object of word -> weight.
        message["hotwords"] = json.dumps({word: weight for word in hotwords}, ensure_ascii=False)
    message["itn"] = itn
    return json.dumps(message, ensure_ascii=False)


END_MESSAGE = json.dumps({"is_speaking": False})


def _offline(message: Mapping[str, Any]) -> bool:
    mode = message.get("mode")
    return isinstance(mode, str) and mode.endswith("offline")


class Answers:
    """The answers to one offline utterance, gathered until the last (pure; fed frame by frame).

    The servers that speak this protocol answer differently:

    - FunASR's C++ server: one answer, ``is_final`` false (it never sets it in offline mode);
    - FunASR's Python server (``runtime/python/websocket``): one answer per stretch of speech its
      VAD finds, each with ``is_final`` true while audio is still coming, then, for the end
      message, the rest with ``is_final`` false; from 2026 every answer says ``is_final`` true
      and an acknowledgement with ``is_end`` true (and an ``error`` when something failed) ends
      the utterance.

    So: offline answers are gathered until one says ``is_end`` or does not say ``is_final``
    true.  One answer is the result as it is (its timings included); several are joined into
    one text, without timings (each piece's are counted from its own start).
    """

    def __init__(self) -> None:
        self.pieces: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.done = False

    def add(self, message: Any) -> bool:
        """Take one decoded frame; True once the utterance's answers are complete."""
        if not isinstance(message, Mapping) or self.done:
            return self.done
        error = message.get("error")
        if isinstance(error, str) and error.strip():
            self.errors.append(error.strip())
        if _offline(message) and "text" in message:
            self.pieces.append(dict(message))
        ended = message.get("is_end") is True or (_offline(message) and message.get("is_final") is not True)
        self.done = ended
        return ended

    def result(self) -> dict[str, Any]:
        """The answer to the utterance: one piece as it came, or the pieces' texts joined."""
        if len(self.pieces) == 1:
            answer = dict(self.pieces[0])
        else:
            texts = [str(piece.get("text") or "").strip() for piece in self.pieces]
            answer = {"mode": "offline", "text": join_pieces([text for text in texts if text]),
                      "pieces": len(self.pieces)}
            if self.pieces:
                answer["wav_name"] = self.pieces[0].get("wav_name")
        if self.errors:
            answer["error"] = "; ".join(self.errors)
        return answer


def join_pieces(texts: Sequence[str]) -> str:
    """Texts of consecutive stretches of speech as one: side by side where either side is Chinese."""
    joined = ""
    for text in texts:
        if joined and not (_wide(joined[-1]) or _wide(text[0])):
            joined += " "
        joined += text
    return joined


def _wide(character: str) -> bool:
    return unicodedata.east_asian_width(character) in ("W", "F")


def join_tokens(tokens: Sequence[str]) -> str:
    """Tokens of ``text_seg`` as text: Chinese characters side by side, other words spaced."""
    text = ""
    for token in tokens:
        if text and not (_wide(text[-1]) and _wide(token[0])):
            text += " "
        text += token
    return text


def text_tokens(text: str) -> list[str]:
    """What the server times one by one: each wide character, each other word, no punctuation."""
    tokens: list[str] = []
    word = ""
    for character in text:
        if _wide(character) and unicodedata.category(character).startswith("L"):
            if word:
                tokens.append(word)
                word = ""
            tokens.append(character)
        elif character.isalnum() or character in "'-":
            word += character
        else:
            if word:
                tokens.append(word)
            word = ""
    if word:
        tokens.append(word)
    return tokens


def _milliseconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return max(0.0, float(value)) / 1000.0


def _pairs(value: Any) -> list[tuple[float, float]] | None:
    """``[[ms, ms], ...]`` (a list, or the string the C++ server sends) in seconds; None if malformed."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, list):
        return None
    pairs = []
    for item in value:
        if not isinstance(item, list) or len(item) < 2:
            return None
        start, end = _milliseconds(item[0]), _milliseconds(item[1])
        if start is None or end is None:
            return None
        pairs.append((start, max(start, end)))
    return pairs


def _words(tokens: Sequence[str], times: list[tuple[float, float]] | None) -> tuple[Word, ...]:
    if not times or len(times) != len(tokens):
        return ()
    return tuple(Word(start, end, token) for token, (start, end) in zip(tokens, times, strict=True))


def answer_segments(answer: Mapping[str, Any]) -> tuple[Segment, ...]:
    """Sentence segments of an answer in seconds: ``stamp_sents``, else one segment timed by
    ``timestamp``; words where the tokens and their timings pair up."""
    sentences = answer.get("stamp_sents")
    segments = []
    if isinstance(sentences, list) and sentences:
        for sentence in sentences:
            if not isinstance(sentence, Mapping):
                continue
            start, end = _milliseconds(sentence.get("start")), _milliseconds(sentence.get("end"))
            if start is None or end is None:
                continue
            tokens = str(sentence.get("text_seg") or "").split()
            punctuation = str(sentence.get("punc") or "")
            text = join_tokens(tokens) + punctuation
            segments.append(Segment(start, max(start, end), text, words=_words(tokens, _pairs(sentence.get("ts_list")))))
        return tuple(segments)
    times = _pairs(answer.get("timestamp"))
    text = str(answer.get("text") or "").strip()
    if not times or not text:
        return ()
    return (Segment(times[0][0], times[-1][1], text, words=_words(text_tokens(text), times)),)


@dataclass(frozen=True)
class Audio:
    """How a file goes over the wire: its ``wav_format``, ``audio_fs`` (PCM only) and frames."""

    wav_format: str
    audio_fs: int | None
    frames: Callable[[], Iterator[bytes]]


def audio_for(path: Path, send_format: str) -> Audio:
    """*path* as PCM samples when it is a 16-bit mono WAV and *send_format* is ``pcm``, else as it is."""
    if send_format == "pcm":
        try:
            with wave.open(str(path), "rb") as reader:
                pcm = reader.getnchannels() == 1 and reader.getsampwidth() == 2 and reader.getcomptype() == "NONE"
                rate = reader.getframerate()
        except (wave.Error, EOFError):
            pcm = False
        except OSError as exc:
            raise AudioError(f"cannot read the recording: {exc.strerror or exc}", path=path) from None
        if pcm:
            return Audio("pcm", rate, lambda: _wav_frames(path))
    extension = path.suffix.lstrip(".").lower() or "others"
    return Audio(extension, None, lambda: _file_frames(path))


def _wav_frames(path: Path) -> Iterator[bytes]:
    with wave.open(str(path), "rb") as reader:
        samples = max(1, round(reader.getframerate() * PCM_FRAME_SECONDS))
        while chunk := reader.readframes(samples):
            yield chunk


def _file_frames(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(FRAME_BYTES):
            yield chunk


# ---------------------------------------------------------------------------------------------
# Connections


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status of a refused handshake (websockets 11-13 and 14+ say it differently)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    return int(status) if status is not None else None


def classify_connect_error(exc: BaseException, url: str) -> AsrbatchError:
    """What a failure to open the WebSocket at *url* means."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return EndpointError(
            f"TLS certificate of {url} not trusted: {exc.verify_message or exc.reason or exc}",
            hint="FunASR's runtime images serve a self-signed certificate: set server.verify_tls to its "
                 "certificate (a CA bundle file), or to false to skip verification",
        )
    if isinstance(exc, ssl.SSLError):
        return EndpointError(
            f"TLS handshake with {url} failed: {exc.reason or exc}",
            hint="a server without TLS needs a ws:// URL; check server.url and server.verify_tls",
        )
    if isinstance(exc, ConnectionRefusedError):
        return RetryableError(f"connection refused on {url}", reason="connection refused", unreachable=True)
    if isinstance(exc, socket.gaierror):
        return RetryableError(f"host name not resolved for {url}", reason="name not resolved", unreachable=True)
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return RetryableError(f"connect timeout on {url}", reason="connect timeout", unreachable=True)
    if isinstance(exc, websockets.exceptions.InvalidURI):
        return EndpointError(f"invalid server URL {url}: {exc}", hint="check server.url")
    status = _status_of(exc)
    if status is not None:
        if status == 429 or status >= 500:
            return RetryableError(f"HTTP {status} on the WebSocket handshake with {url}", reason=str(status),
                                  unreachable=True)
        return EndpointError(
            f"{url} did not accept a WebSocket connection (HTTP {status})",
            hint="check server.url: the FunASR runtime listens on port 10095 by default",
        )
    return RetryableError(
        f"WebSocket handshake with {url} failed: {type(exc).__name__}: {exc}"
        + (" (a server with TLS needs a wss:// URL)" if url.startswith("ws://") else ""),
        reason="handshake failed",
        unreachable=True,
    )


class _Exchange:
    """One open connection, shut down by a watchdog at the deadline."""

    def __init__(self, settings: ServerConfig, deadline: float) -> None:
        self.url = settings.url
        kwargs: dict[str, Any] = {
            "open_timeout": settings.connect_timeout,
            "close_timeout": CLOSE_TIMEOUT,
            "max_size": MAX_ANSWER_BYTES,
            "compression": None,
            "subprotocols": list(SUBPROTOCOLS),
            "ping_interval": None,  # the runtime server sends no pings; the timeouts here do the job
            "user_agent_header": "asrbatch",
        }
        kwargs.update(tls_options(settings, settings.url))
        self.expired = threading.Event()
        try:
            # Entered as a context manager, which every websockets from 11 on supports (17 wants it).
            self._opener = ws_connect(settings.url, **{k: v for k, v in kwargs.items() if k in CONNECT_PARAMETERS})
            self.connection: ClientConnection = self._opener.__enter__()
        except (OSError, EOFError, websockets.exceptions.WebSocketException) as exc:
            raise classify_connect_error(exc, settings.url) from None
        self._watchdog = threading.Timer(max(0.0, deadline), self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _expire(self) -> None:
        self.expired.set()
        with _suppressed():
            self.connection.socket.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._watchdog.cancel()
        with _suppressed():
            self._opener.__exit__(None, None, None)

    def __enter__(self) -> _Exchange:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@contextmanager
def _suppressed() -> Iterator[None]:
    try:
        yield
    except Exception:  # closing a connection that is already gone
        log.debug("event=ws_close_failed", exc_info=True)


# ---------------------------------------------------------------------------------------------
# The client


class FunasrWsClient(ServerClient):
    """A connection to one FunASR runtime server; a :class:`~asrbatch.transport.base.Recognizer`.

    ``sleep`` and ``clock`` are injected for tests.
    """

    def __init__(
        self,
        settings: ServerConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(settings, sleep=sleep, clock=clock)
        self._info: ServerInfo | None = None
        self._latency = 0.0

    @property
    def latency(self) -> float:
        """Seconds the probe's empty utterance took, connection included."""
        self.probe()
        return self._latency

    def probe(self) -> ServerInfo:
        """Send an empty offline utterance and check the answer is FunASR's; cached.

        Raises :class:`ServerUnavailableError` when the server stays unreachable or silent, and
        :class:`EndpointError` when it is not a FunASR runtime server or its certificate is refused.
        """
        with self._lock:
            if self._info is not None:
                return self._info
            try:
                info, _ = call_with_retries(self._probe_once, self.settings.retry, sleep=self._sleep,
                                            url=self.settings.url)
            except TransientError as exc:
                raise unavailable(self.settings.url, exc) from None
            log.info(kv("probe", url=info.url, protocol=info.protocol, server=info.kind))
            self._info = info
            self._open_slots()
            return info

    def _probe_once(self) -> ServerInfo:
        timeouts = Timeouts(self.settings.connect_timeout, self.settings.read_timeout, self.settings.deadline)
        start = self._clock()
        message = start_message(wav_name=PROBE_NAME, wav_format="pcm", audio_fs=16000, hotwords=(),
                                weight=self.settings.hotword_weight, itn=self.settings.itn)
        answer = self._exchange(message, lambda: iter(()), timeouts, what="the probe")
        if "text" not in answer:
            raise EndpointError(
                f"the WebSocket server at {self.settings.url} answered an empty utterance without a text "
                f"({json.dumps(answer, ensure_ascii=False)[:200]}): not a FunASR runtime server",
                hint="check server.url, or set server.protocol",
            )
        self._latency = self._clock() - start
        # Offline answers carry stamp_sents (sentence timings) with the punctuation model the images load.
        codecs = ("wav",) if self.settings.send_format == "pcm" else None
        return ServerInfo(url=self.settings.url, protocol=PROTOCOL, kind=KIND, timings=True, codecs=codecs)

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
        """Send *path* as one offline utterance and return its text and segments.

        Raises :class:`ServerUnavailableError`, :class:`InputRejectedError` (the server named the
        audio undecodable), :class:`RecognitionError` (it kept failing or staying silent),
        :class:`AudioError` (*path* cannot be read) and :class:`EndpointError` (TLS refused).
        """
        self.probe()
        name = name or path.name
        words = hotword_list(hotwords, self.settings.hotword_separator)
        audio = audio_for(path, self.settings.send_format)
        message = start_message(wav_name=name, wav_format=audio.wav_format, audio_fs=audio.audio_fs, hotwords=words,
                                weight=self.settings.hotword_weight, itn=self.settings.itn)
        timeouts = Timeouts.for_audio(self.settings, duration)

        def attempt() -> tuple[dict[str, Any], float]:
            with self._slot():
                go_ahead(proceed)
                start = self._clock()
                answer = self._exchange(message, audio.frames, timeouts, what=name, path=path)
                return answer, self._clock() - start

        (answer, elapsed), attempts = recognise_with_retries(attempt, self.settings, sleep=self._sleep, path=path,
                                                             name=name)
        text = str(answer.get("text") or "").strip()
        if answer.get("pieces", 1) != 1:
            # FunASR's Python server: one answer per stretch of speech, untimed in the recording.
            log.info(kv("ws_pieces", url=self.settings.url, name=name, pieces=answer["pieces"]))
        log.debug(kv("recognized", url=self.settings.url, name=name, attempts=attempts, seconds=f"{elapsed:.3f}",
                     chars=len(text), text=text))
        return Recognition(text=text, server_seconds=elapsed, attempts=attempts, outputs=(answer,),
                           segments=answer_segments(answer))

    def _exchange(self, message: str, frames: Callable[[], Iterator[bytes]], timeouts: Timeouts, *, what: str,
                  path: Path | None = None) -> dict[str, Any]:
        """Open a connection, send one utterance, return the server's answer to it.

        Raises :class:`RetryableError` when the connection fails or closes, or no answer
        comes within the read timeout or the deadline; the server's ``error`` as the fault
        model says (:func:`~asrbatch.transport.session.server_failure`).
        """
        deadline = self._clock() + timeouts.deadline
        with _Exchange(self.settings, timeouts.deadline) as exchange:
            try:
                exchange.connection.send(message)
                for frame in _read(frames, path):
                    exchange.connection.send(frame)
                exchange.connection.send(END_MESSAGE)
                answer = self._answer(exchange, timeouts, deadline, what)
            except (websockets.exceptions.ConnectionClosed, OSError) as exc:
                if exchange.expired.is_set():
                    raise self._too_late(timeouts, what) from None
                raise _closed(exc, self.settings.url, what) from None
        error = answer.get("error")
        if isinstance(error, str) and error.strip():
            raise server_failure(error, f"the answer for {what}")
        return answer

    def _answer(self, exchange: _Exchange, timeouts: Timeouts, deadline: float, what: str) -> dict[str, Any]:
        answers = Answers()
        while True:
            left = deadline - self._clock()
            if left <= 0 or exchange.expired.is_set():
                raise self._too_late(timeouts, what)
            wait = min(timeouts.read, left)
            try:
                frame = exchange.connection.recv(timeout=wait)
            except TimeoutError:
                if wait < timeouts.read or exchange.expired.is_set():
                    raise self._too_late(timeouts, what) from None
                raise RetryableError(
                    f"no result for {what} within the {timeouts.read:g} s read timeout on {self.settings.url}",
                    reason="read timeout",
                ) from None
            if isinstance(frame, bytes):
                continue
            try:
                answer = json.loads(frame)
            except ValueError:
                log.debug(kv("ws_ignored", url=self.settings.url, frame=frame[:200]))
                continue
            if answers.add(answer):
                return answers.result()
            log.debug(kv("ws_partial", url=self.settings.url, mode=answer.get("mode") if isinstance(answer, dict)
                         else None, pieces=len(answers.pieces)))

    def _too_late(self, timeouts: Timeouts, what: str) -> RetryableError:
        return RetryableError(
            f"no result for {what} within the {timeouts.deadline:g} s deadline on {self.settings.url}",
            reason="deadline",
        )


def _read(frames: Callable[[], Iterator[bytes]], path: Path | None) -> Iterator[bytes]:
    """The audio frames; a failure to read the local file is the recording's (:class:`AudioError`)."""
    iterator = frames()
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except (OSError, wave.Error, EOFError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise AudioError(f"cannot read the recording: {reason}", path=path) from None
        yield chunk


def _closed(exc: BaseException, url: str, what: str) -> RetryableError:
    if isinstance(exc, websockets.exceptions.ConnectionClosed):
        code = getattr(getattr(exc, "rcvd", None), "code", None)
        detail = f" (close code {code})" if code else ""
        return RetryableError(f"connection to {url} closed before the result for {what}{detail}",
                              reason="closed before result")
    return RetryableError(f"connection to {url} failed while sending {what}: {exc}", reason="connection reset")


__all__ = ["FunasrWsClient", "answer_segments", "audio_for", "classify_connect_error", "Answers", "join_pieces", "join_tokens",
           "start_message", "text_tokens"]
