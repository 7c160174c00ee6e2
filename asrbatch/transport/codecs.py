"""Which codec a chunk travels in, per server: the configured one, or the next one the server takes.

The runner hands the transport an :class:`AudioSource` (a chunk that can be encoded in any
codec it lists, the configured one first) instead of a file.  :class:`CodecLadder`, one per
server around its client, sends it in the codec that server last took.  When the server
refuses the payload, it tries the next codec at once, before anything is blamed:

- a refusal about the format (the server's decoder failed on it, an unsupported type: any
  message :class:`~asrbatch.errors.InputRejectedError` carries that is not about size) ->
  the next codec in the source's order (``vorbis -> opus -> flac -> wav -> original``);
- a refusal about size (HTTP 413, "too large", larger than the ``max_file_size`` the server
  announces, checked before anything is sent) -> the largest of ``wav``, ``flac``, ``vorbis``, ``opus``
  estimated to be smaller (lossless before lossy);
- a failure the server keeps having with this chunk while it recognises the health check's
  clip (:class:`~asrbatch.errors.FailsAloneError`: FunASR's ``funasr-server`` answers a plain
  500 for audio its decoder cannot read) -> the same audio as plain 16 kHz WAV, the clip's form.

Only a codec that then works is remembered for that server, for the rest of the run, with the
format refusals it took to find it: a chunk every codec fails on says nothing about the
server, and fails alone with the first refusal's message.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from asrbatch.errors import FailsAloneError, FileError, InputRejectedError
from asrbatch.log import kv
from asrbatch.transport.base import Recognition, Recognizer, RecognizerWrapper, ServerInfo

log = logging.getLogger(__name__)

_SIZE = re.compile(
    r"too (?:large|big)|\b413\b|max(?:imum)?[ _]?(?:upload|file)?[ _]?size|file size|exceeds", re.IGNORECASE
)
PLAIN = "wav"
"""The codec of the health check's clip: what a server that answers the clip is known to take."""
OPENAI_EXTENSIONS = frozenset({"flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm"})
"""File types OpenAI-style transcription APIs take (their documented list)."""


class EncodedAudio(Protocol):
    """One encoding of a chunk: the file and how it is named and typed on the wire."""

    @property
    def path(self) -> Path: ...
    @property
    def name(self) -> str: ...
    @property
    def mime(self) -> str: ...
    @property
    def codec(self) -> str: ...
    @property
    def size(self) -> int: ...


class AudioSource(Protocol):
    """A chunk the transport may encode as it needs (:class:`asrbatch.audio.ChunkAudio`)."""

    @property
    def codecs(self) -> tuple[str, ...]:
        """The codecs it can travel in, the configured one first, then in fallback order."""
        ...

    @property
    def duration(self) -> float: ...

    @property
    def name(self) -> str:
        """What the logs call it (the recording's name)."""
        ...

    def estimated_size(self, codec: str) -> int: ...

    def encode(self, codec: str) -> EncodedAudio: ...


@runtime_checkable
class AudioRecognizer(Recognizer, Protocol):
    """A Recognizer that chooses, per server, the codec an :class:`AudioSource` travels in."""

    def transcribe_audio(
        self,
        audio: AudioSource,
        *,
        hotwords: Sequence[str] | str = (),
        proceed: Callable[[], bool] | None = None,
    ) -> Recognition:
        """Recognise *audio* in the codec the server takes; raises what ``transcribe`` raises."""
        ...


def send_audio(
    recognizer: Recognizer,
    audio: AudioSource,
    *,
    hotwords: Sequence[str] | str = (),
    proceed: Callable[[], bool] | None = None,
) -> Recognition:
    """Recognise *audio* through *recognizer*: with its own codec choice when it has one, else in
    the source's first codec."""
    if isinstance(recognizer, AudioRecognizer):
        return recognizer.transcribe_audio(audio, hotwords=hotwords, proceed=proceed)
    encoded = audio.encode(audio.codecs[0])
    return recognizer.transcribe(encoded.path, name=encoded.name, mime=encoded.mime, duration=audio.duration,
                                 hotwords=hotwords, proceed=proceed)


def refusal_kind(exc: InputRejectedError) -> str:
    """``size`` when the server refused the payload for its size, else ``format``."""
    return "size" if _SIZE.search(exc.message) else "format"


def accepts(info: ServerInfo, encoded_name: str) -> bool:
    """Whether a server of this kind takes a file of that name at all (OpenAI-style APIs check the type
    by its extension; Gradio apps and the FunASR runtime's offline mode decode anything ffmpeg reads)."""
    if info.kind in ("openai", "funasr-server"):
        return encoded_name.rsplit(".", 1)[-1].lower() in OPENAI_EXTENSIONS
    return True


class CodecLadder(RecognizerWrapper):
    """A :class:`Recognizer` around one server's client that remembers which codec the server takes.

    Thread-safe; what it learns holds for the rest of the run (the object's life).
    """

    def __init__(self, inner: Recognizer, url: str) -> None:
        super().__init__(inner)
        self.url = url
        self._lock = threading.Lock()
        self._working: str | None = None
        """The codec the server last took after a refusal (None: nothing refused yet)."""
        self._refused: dict[str, str] = {}
        """Codecs the server refused for their format, with the reason."""

    @property
    def codec(self) -> str | None:
        """The codec this server was found to take after refusing another (None: none refused)."""
        with self._lock:
            return self._working

    def transcribe_audio(
        self,
        audio: AudioSource,
        *,
        hotwords: Sequence[str] | str = (),
        proceed: Callable[[], bool] | None = None,
    ) -> Recognition:
        info = self.inner.probe()
        with self._lock:
            working, refused = self._working, dict(self._refused)
        taken = [c for c in audio.codecs if info.codecs is None or c in info.codecs] or list(audio.codecs)
        candidates = [c for c in taken if c not in refused] or taken
        codec = working if working in candidates else candidates[0]
        tried: list[tuple[str, str, FileError]] = []
        sent = 0
        while True:
            encoded = audio.encode(codec)
            try:
                self._check(info, encoded)
                sent += 1
                recognition = self.inner.transcribe(encoded.path, name=encoded.name, mime=encoded.mime,
                                                    duration=audio.duration, hotwords=hotwords, proceed=proceed)
            except FailsAloneError as exc:
                # The server recognises the test clip, a plain WAV, but not this: try the audio in that form.
                if codec == PLAIN or PLAIN not in audio.codecs or any(c == PLAIN for c, _, _ in tried):
                    raise self._failed_alone(exc, codec, tried, sent) from None
                tried.append((codec, "failure", exc))
                log.warning(kv("codec_failed", url=self.url, name=encoded.name, codec=codec, next=PLAIN,
                               reason=exc.message))
                codec = PLAIN
                continue
            except InputRejectedError as exc:
                kind = refusal_kind(exc)
                tried.append((codec, kind, exc))
                following = self._next(audio, candidates, codec, kind, encoded.size, {c for c, _, _ in tried})
                if following is None:
                    raise self._exhausted([t for t in tried if isinstance(t[2], InputRejectedError)], sent) from None
                log.warning(kv("codec_refused", url=self.url, name=encoded.name, codec=codec, refusal=kind,
                               next=following, reason=exc.message))
                codec = following
                continue
            break
        if tried or working is None:
            self._learn(codec, tried)
        if sent > 1:
            return Recognition(recognition.text, recognition.server_seconds, recognition.attempts + sent - 1,
                               recognition.outputs, recognition.segments)
        return recognition

    def _check(self, info: ServerInfo, encoded: EncodedAudio) -> None:
        """Refuse locally what the server is known not to take: no upload is wasted on it."""
        if info.max_file_size is not None and encoded.size > info.max_file_size:
            raise InputRejectedError(
                f"file larger than the server's max upload size of {info.max_file_size} bytes "
                f"({encoded.size} bytes as {encoded.codec})",
                hint="lower audio.max_chunk, or raise the server's max_file_size",
            )
        if not accepts(info, encoded.name):
            raise InputRejectedError(f"unsupported file format for a {info.kind} server: {encoded.name}")

    @staticmethod
    def _next(audio: AudioSource, candidates: list[str], codec: str, kind: str, size: int,
              tried: set[str]) -> str | None:
        if kind == "size":
            # The recording's own bytes are a way around a decoder, not a way to save bytes.
            smaller = [c for c in candidates
                       if c not in tried and c != "original" and audio.estimated_size(c) < size]
            return max(smaller, key=audio.estimated_size, default=None)
        index = candidates.index(codec) if codec in candidates else -1
        for following in candidates[index + 1:] + candidates[:max(index, 0)]:
            if following not in tried:
                return following
        return None

    def _learn(self, codec: str, tried: list[tuple[str, str, FileError]]) -> None:
        with self._lock:
            changed = self._working != codec
            self._working = codec
            for refused, kind, exc in tried:
                if kind in ("format", "failure"):
                    self._refused[refused] = exc.message
        if tried and changed:
            log.warning(kv("codec_fallback", url=self.url, codec=codec,
                           refused=",".join(f"{c}:{kind}" for c, kind, _ in tried)))
        elif changed:
            log.info(kv("codec", url=self.url, codec=codec))

    @staticmethod
    def _failed_alone(exc: FailsAloneError, codec: str, tried: list[tuple[str, str, FileError]],
                      sent: int) -> FileError:
        """What a chunk that failed alone in its last codec fails with: the first refusal about its
        format when there was one (the recording's fault), else the server's failure (transient)."""
        refusals = [(c, k, e) for c, k, e in tried if isinstance(e, InputRejectedError)]
        if refusals:
            return CodecLadder._exhausted(refusals, sent)
        attempts = exc.attempts + sum(e.attempts for _, _, e in tried)
        first = tried[0][2] if tried else exc
        others = ", ".join([c for c, _, _ in tried[1:]] + ([codec] if tried else []))
        message = first.message + (f" (failed as {others} too)" if others else "")
        return FailsAloneError(message, path=first.path, hint=first.hint, attempts=attempts)

    @staticmethod
    def _exhausted(tried: Sequence[tuple[str, str, FileError]], sent: int) -> InputRejectedError:
        first = tried[0][2]
        others = ", ".join(c for c, _, _ in tried[1:])
        message = first.message + (f" (refused as {others} too)" if others else "")
        return InputRejectedError(message, path=first.path, hint=first.hint, attempts=sent)
