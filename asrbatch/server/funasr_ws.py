"""The funasr-ws protocol: the FunASR runtime SDK's WebSocket server, offline mode (port 10095).

What the C++ server of the funasr-runtime-sdk images (``websocket-server.cpp``) does, traps
included, so that clients meet here what they meet there:

- Per connection, text frames are JSON: ``{"mode": "offline", "wav_name": ..., "wav_format":
  "pcm" | <file extension>, "audio_fs": 16000, "is_speaking": true, "hotwords": "{\\"阿里巴巴\\":
  20}", "itn": true}``; each field updates the connection's settings (defaults: wav_name
  ``wav-default-id``, wav_format ``pcm``, audio_fs 16000). Binary frames are appended to the
  audio. ``{"is_speaking": false}`` (or ``"is_finished": true``) ends the utterance: it is
  recognised and answered; the connection stays open for another one (the client closes it).
- ``pcm`` audio is 16-bit mono samples at ``audio_fs``; any other ``wav_format`` means the
  frames are a whole file of that kind (wav, mp3, ...), decoded with ffmpeg.
- ``hotwords`` is a string: a JSON object of word -> weight (weights are logged; the words go to
  the engine), or else plain text whose words are the hotwords. It is read from the first text
  frame of a connection only, as the C++ server reads it once.
- The answer is one text frame, compact JSON with sorted keys as nlohmann::json writes it:
  ``{"is_final": false, "mode": "offline", "stamp_sents": [{"end", "punc", "start",
  "text_seg", "ts_list"}], "text": ..., "timestamp": "[[ms,ms],...]", "wav_name": ...}``.
  ``is_final`` is false: the offline C++ server never sets it. ``timestamp`` (a string) comes
  only when the engine times words; ``stamp_sents`` when it gives sentences. ``mode`` is always
  ``offline``, whatever mode the client asked for.
- No audio: ``{"is_final": false, "mode": "offline", "text": "", "wav_name": ...}``. Audio that
  cannot be decoded: the same, plus ``"error": "cannot decode audio: ..."`` (the C++ server
  gives no reason; FunASR's Python server names one in ``error``).
- A text frame that is not JSON makes the server ignore everything after it on that connection,
  without an answer or a close: a client waiting for a result must time out.
- No subprotocol is chosen: a client offering ``binary`` gets a handshake without
  ``Sec-WebSocket-Protocol``. No pings, no compression; one message may be at most 32 MB.
- TLS with ``--certfile``/``--keyfile`` (the images serve wss with a self-signed certificate by
  default), plain ws without.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import ssl
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets

from asrbatch.server.engines.base import EngineResult
from asrbatch.server.options import ServerOptions
from asrbatch.server.service import InputError, Recognizer, parse_hotwords, safe_file_name

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 32_000_000
"""websocketpp's default largest message, which the C++ server keeps."""
DEFAULT_WAV_NAME = "wav-default-id"
SENTENCE_PUNCTUATION = "，。？！、,.?!;；"


def describe(options: ServerOptions) -> str:
    """The start-up log's words about this front."""
    return f"scheme={'wss' if options.certfile else 'ws'} websockets={websockets.__version__}"


def run(options: ServerOptions, recognizer: Recognizer) -> None:
    """Serve until SIGTERM/SIGINT; raises OSError when it cannot listen or load the certificate."""
    context = None
    if options.certfile is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(options.certfile), str(options.keyfile))
    asyncio.run(_serve(options, recognizer, context))


async def _serve(options: ServerOptions, recognizer: Recognizer, context: ssl.SSLContext | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def handler(connection: Any) -> None:
        await Connection(connection, recognizer).serve()

    async with websockets.serve(
        handler,
        options.host,
        options.port,
        ssl=context,
        max_size=MAX_MESSAGE_BYTES,
        ping_interval=None,
        compression=None,
    ):
        await stop.wait()


# --- messages, pure ----------------------------------------------------------------------------


def parse_hotword_field(value: Any) -> tuple[list[str], dict[str, Any]]:
    """The words of a ``hotwords`` field, and their weights when it was a JSON object."""
    if not isinstance(value, str) or not value.strip():
        return [], {}
    try:
        parsed = json.loads(value)
    except ValueError:
        return parse_hotwords(value), {}
    if isinstance(parsed, dict):
        return [str(word) for word in parsed], parsed
    return [], {}  # valid JSON but not an object: the C++ server uses none of it


def pcm_to_wav(samples: bytes, rate: int, target: Path) -> Path:
    """16-bit mono PCM at ``rate`` as a WAV file (a trailing odd byte is dropped)."""
    with wave.open(str(target), "wb") as output:
        output.setnchannels(1)
        output.setsampwidth(2)
        output.setframerate(rate)
        output.writeframes(samples[: len(samples) // 2 * 2])
    return target


def _milliseconds(seconds: float) -> int:
    return int(round(seconds * 1000))


def stamps(result: EngineResult) -> dict[str, Any]:
    """``timestamp`` and ``stamp_sents`` of an answer, as far as the engine timed its result."""
    fields: dict[str, Any] = {}
    if result.words:
        pairs = ",".join(f"[{_milliseconds(w.start)},{_milliseconds(w.end)}]" for w in result.words)
        fields["timestamp"] = f"[{pairs}]"
    sentences = []
    for sentence in result.segments:
        text = sentence.text.strip()
        punctuation = text[-1] if text and text[-1] in SENTENCE_PUNCTUATION else ""
        words = [w for w in result.words if sentence.start <= w.start <= sentence.end]
        tokens = [w.text for w in words] or (text[:-1] if punctuation else text).split()
        sentences.append(
            {
                "text_seg": " ".join(tokens),
                "punc": punctuation,
                "start": _milliseconds(sentence.start),
                "end": _milliseconds(sentence.end),
                "ts_list": [[_milliseconds(w.start), _milliseconds(w.end)] for w in words],
            }
        )
    if sentences:
        fields["stamp_sents"] = sentences
    return fields


def answer_frame(wav_name: str, text: str, extra: dict[str, Any] | None = None) -> str:
    """One answer as the C++ server writes it: compact, keys sorted, UTF-8 as is."""
    message = {"is_final": False, "mode": "offline", "text": text, "wav_name": wav_name, **(extra or {})}
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


# --- connections -------------------------------------------------------------------------------


@dataclass
class Utterance:
    """The audio of one ``is_speaking`` ... ``is_speaking: false`` stretch, and its settings."""

    wav_name: str
    wav_format: str
    audio_fs: int
    hotwords: list[str]
    audio: bytes


@dataclass
class Settings:
    """What the text frames of a connection have set so far."""

    wav_name: str = DEFAULT_WAV_NAME
    wav_format: str = "pcm"
    audio_fs: int = 16000
    hotwords: list[str] | None = None
    audio: bytearray = field(default_factory=bytearray)
    too_large: bool = False


class Connection:
    """One client connection: collects frames, answers each finished utterance."""

    def __init__(self, connection: Any, recognizer: Recognizer) -> None:
        self.connection = connection
        self.recognizer = recognizer
        self.settings = Settings()
        self.ignoring = False
        self.pending: set[asyncio.Task[None]] = set()
        self.peer = str(getattr(connection, "remote_address", ("?",))[0])

    async def serve(self) -> None:
        """Read frames until the client closes; wait for answers still being computed."""
        try:
            async for message in self.connection:
                if not self.ignoring:
                    self.receive(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            if self.pending:
                await asyncio.gather(*self.pending, return_exceptions=True)

    def receive(self, message: str | bytes) -> None:
        """Handle one frame."""
        if isinstance(message, bytes):
            self._add_audio(message)
            return
        try:
            fields = json.loads(message)
            if not isinstance(fields, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            log.info(
                "event=ws_bad_message peer=%s reason=%r: ignoring the rest of the connection",
                self.peer,
                str(error),
            )
            self.ignoring = True
            return
        self._update(fields)
        if fields.get("is_speaking") is False or fields.get("is_finished") is True:
            utterance = self._take()
            task = asyncio.get_running_loop().create_task(self._answer(utterance))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    def _add_audio(self, data: bytes) -> None:
        limit = self.recognizer.max_file_size
        if limit is not None and len(self.settings.audio) + len(data) > limit:
            self.settings.too_large = True
            return
        self.settings.audio.extend(data)

    def _update(self, fields: dict[str, Any]) -> None:
        settings = self.settings
        if fields.get("wav_name") is not None:
            settings.wav_name = str(fields["wav_name"])
        if fields.get("wav_format") is not None:
            settings.wav_format = str(fields["wav_format"])
        if isinstance(fields.get("audio_fs"), int) and fields["audio_fs"] > 0:
            settings.audio_fs = fields["audio_fs"]
        if settings.hotwords is None:
            words, weights = parse_hotword_field(fields.get("hotwords"))
            settings.hotwords = words
            if words:
                log.info(
                    "event=ws_hotwords peer=%s count=%d weights=%s",
                    self.peer,
                    len(words),
                    json.dumps(weights, ensure_ascii=False),
                )
        if "mode" in fields and fields["mode"] != "offline":
            log.info("event=ws_mode peer=%s asked=%s served=offline", self.peer, fields["mode"])

    def _take(self) -> Utterance | InputError:
        settings = self.settings
        if settings.too_large:
            outcome: Utterance | InputError = InputError(
                f"audio too large: the server accepts at most {self.recognizer.max_file_size} bytes"
            )
        else:
            outcome = Utterance(
                settings.wav_name,
                settings.wav_format,
                settings.audio_fs,
                list(settings.hotwords or []),
                bytes(settings.audio),
            )
        settings.audio = bytearray()
        settings.too_large = False
        return outcome

    async def _answer(self, utterance: Utterance | InputError) -> None:
        if isinstance(utterance, InputError):
            self.recognizer.record_rejection()
            frame = answer_frame(self.settings.wav_name, "", {"error": str(utterance)})
        elif not utterance.audio:
            log.info("event=ws_empty peer=%s wav_name=%s", self.peer, utterance.wav_name)
            frame = answer_frame(utterance.wav_name, "")
        else:
            frame = await asyncio.to_thread(self._recognize, utterance)
        try:
            await self.connection.send(frame)
        except websockets.ConnectionClosed:
            log.info("event=ws_answer_lost peer=%s reason=closed", self.peer)

    def _recognize(self, utterance: Utterance) -> str:
        with tempfile.TemporaryDirectory(prefix="asrbatch-ws-", dir=self.recognizer.work_dir) as scratch:
            if utterance.wav_format.lower() == "pcm":
                path = pcm_to_wav(utterance.audio, utterance.audio_fs, Path(scratch) / "input.wav")
            else:
                suffix = "".join(c for c in utterance.wav_format if c.isalnum())[:10] or "bin"
                stem = safe_file_name(Path(utterance.wav_name).stem, "input")
                path = Path(scratch) / f"{stem}.{suffix}"
                path.write_bytes(utterance.audio)
            try:
                recognition = self.recognizer.recognize(path, utterance.hotwords, 1, name=utterance.wav_name)
            except InputError as error:
                return answer_frame(utterance.wav_name, "", {"error": str(error)})
        return answer_frame(utterance.wav_name, recognition.text, stamps(recognition.result))
