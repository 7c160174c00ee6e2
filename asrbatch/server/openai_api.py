"""The openai protocol: FunASR's ``funasr-server`` HTTP API (FunASR 1.4), in front of the Recognizer.

Routes and answers as funasr-server gives them (``funasr/bin/_server_app.py``), quirks included:

- ``POST /v1/audio/transcriptions``, multipart: ``file``; ``model`` (default ``fun-asr-nano``;
  ``fun-asr-nano``, ``sensevoice``, ``paraformer`` and ``custom`` are accepted and all served
  by this server's one engine; any other name is 400 ``{"detail": "Unknown model 'x'.
  Available: fun-asr-nano, custom, sensevoice, paraformer"}``); ``language``;
  ``response_format``: ``verbose_json`` -> ``{task, language, duration, text, segments: [{id,
  start, end, text, words: [{word, start, end}], speaker?}]}`` (seconds; ``language`` is the
  one asked for, else ``"unknown"``), ``text`` -> the transcript as a JSON string (quoted, with
  ``Content-Type: application/json``), anything else (``json``, ``srt``, ...) -> ``{"text":
  ...}``; ``spk`` (a boolean form field). Like other OpenAI-style servers it also takes
  ``hotwords`` (comma-separated) and ``prompt`` (its words are used as hotwords); funasr-server
  itself ignores both there.
- ``POST /asr``, multipart: ``file``, ``language``, ``hotwords`` (comma-separated), ``spk`` ->
  ``{text, segments: [{text, start, end, words?}], duration, processing_time, rtf}``.
- ``GET /v1/models`` -> ``{"object": "list", "data": [{"id": ..., "object": "model"}, ...]}``.
- ``GET /health`` -> ``{"status": "ok", "device": ..., "models_loaded": [...]}``.

Engine sentence timings come back as segments; word timings where the engine has them (sphinx);
an engine with text only gets coarse segments cut from the text, timed in proportion to their
length, as funasr-server does. No engine here diarizes: ``spk=true`` adds no ``speaker``.

Where this server differs, on purpose: audio that cannot be decoded is 400 ``{"detail": "cannot
decode audio: ..."}`` (funasr-server answers 500 ``Internal Server Error`` as plain text);
audio over ``--max-file-size`` is 413; recognitions run in worker threads, at most
``--concurrency`` at once (funasr-server runs them on its event loop, one at a time, and answers
nothing else, not even /health, meanwhile). With an API key set, every route but ``/health``
needs ``Authorization: Bearer <key>``, else 401 ``{"error": {"message", "type":
"invalid_request_error", "param": null, "code": "invalid_api_key"}}`` as OpenAI answers;
funasr-server has no key.
"""

from __future__ import annotations

import hmac
import logging
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from asrbatch.server.engines.base import EngineResult, Segment
from asrbatch.server.options import ServerOptions
from asrbatch.server.service import InputError, Recognition, Recognizer, parse_hotwords, safe_file_name

log = logging.getLogger(__name__)

MODELS = ("fun-asr-nano", "sensevoice", "paraformer", "custom")
"""As ``GET /v1/models`` lists them (funasr-server lists ``custom`` when started with a model path)."""
DEFAULT_MODEL = "fun-asr-nano"
UNKNOWN_MODEL_ORDER = ("fun-asr-nano", "custom", "sensevoice", "paraformer")
"""The order funasr-server names the models in its unknown-model error."""
SEGMENT_CHARACTERS = 80
COPY_CHUNK_BYTES = 1024 * 1024
OPEN_PATHS = frozenset({"/health"})


def describe(options: ServerOptions) -> str:
    """The start-up log's words about this front."""
    scheme = "https" if options.certfile else "http"
    return f"scheme={scheme} api_key={'on' if options.api_key else 'off'}"


def run(options: ServerOptions, recognizer: Recognizer) -> None:
    """Serve until SIGTERM/SIGINT; raises OSError when it cannot listen."""
    api = build_api(recognizer, options.api_key, options.max_file_size)
    tls: dict[str, Any] = {}
    if options.certfile is not None:
        tls = {"ssl_certfile": str(options.certfile), "ssl_keyfile": str(options.keyfile)}
    uvicorn.run(api, host=options.host, port=options.port, log_level=options.log_level, **tls)


# --- answers, pure ------------------------------------------------------------------------------


def text_segments(text: str, duration: float, limit: int = SEGMENT_CHARACTERS) -> list[Segment]:
    """Segments for an engine that gave text only: pieces of at most ``limit`` characters, cut
    between words, each timed in proportion to its share of the characters."""
    words = text.split()
    if not words:
        return []
    pieces: list[str] = []
    current: list[str] = []
    for word in words:
        if current and len(" ".join([*current, word])) > limit:
            pieces.append(" ".join(current))
            current = []
        current.append(word)
    pieces.append(" ".join(current))
    total = sum(len(piece) for piece in pieces)
    segments = []
    start = 0.0
    consumed = 0
    for index, piece in enumerate(pieces):
        consumed += len(piece)
        end = duration if index == len(pieces) - 1 else round(duration * consumed / total, 3)
        segments.append(Segment(round(start, 3), end, piece))
        start = end
    return segments


def timed_segments(result: EngineResult, duration: float) -> list[tuple[Segment, list[Segment]]]:
    """Each sentence segment with the words timed inside it."""
    sentences = list(result.segments) or text_segments(result.text, duration)
    paired = []
    for index, sentence in enumerate(sentences):
        last = index == len(sentences) - 1
        inside = [
            word
            for word in result.words
            if word.start >= sentence.start
            and (word.start < sentence.end or (last and word.start <= sentence.end))
        ]
        paired.append((sentence, inside))
    return paired


def _word(word: Segment) -> dict[str, Any]:
    return {"word": word.text, "start": round(word.start, 3), "end": round(word.end, 3)}


def verbose_json(recognition: Recognition, language: str | None) -> dict[str, Any]:
    """The ``verbose_json`` answer of ``/v1/audio/transcriptions``."""
    segments = [
        {
            "id": index,
            "start": round(sentence.start, 3),
            "end": round(sentence.end, 3),
            "text": sentence.text,
            "words": [_word(w) for w in words],
        }
        for index, (sentence, words) in enumerate(
            timed_segments(recognition.result, recognition.audio_seconds)
        )
    ]
    return {
        "task": "transcribe",
        "language": language if language and language.strip().lower() != "auto" else "unknown",
        "duration": round(recognition.audio_seconds, 3),
        "text": recognition.text,
        "segments": segments,
    }


def asr_answer(recognition: Recognition) -> dict[str, Any]:
    """The answer of ``/asr``."""
    segments = []
    for sentence, words in timed_segments(recognition.result, recognition.audio_seconds):
        segment: dict[str, Any] = {
            "text": sentence.text,
            "start": round(sentence.start, 3),
            "end": round(sentence.end, 3),
        }
        if words:
            segment["words"] = [_word(w) for w in words]
        segments.append(segment)
    duration = recognition.audio_seconds
    processing = recognition.processing_seconds
    return {
        "text": recognition.text,
        "segments": segments,
        "duration": round(duration, 3),
        "processing_time": round(processing, 3),
        "rtf": round(processing / duration, 4) if duration > 0 else 0,
    }


def comma_hotwords(text: str | None) -> list[str]:
    """funasr-server's ``/asr`` hotwords: comma-separated, each stripped (phrases stay whole)."""
    return [word.strip() for word in (text or "").split(",") if word.strip()]


def unauthorized(message: str) -> JSONResponse:
    """401 as OpenAI answers a missing or wrong key."""
    body = {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})


# --- the app ------------------------------------------------------------------------------------


def build_api(recognizer: Recognizer, api_key: str | None, max_file_size: int | None) -> FastAPI:
    """The FastAPI app serving funasr-server's routes with ``recognizer``."""
    engine = recognizer.engine
    api = FastAPI(title="FunASR Server", description="asrbatch reference server, funasr-server protocol")

    if api_key:
        expected = f"Bearer {api_key}".encode()

        @api.middleware("http")
        async def require_key(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            if request.url.path in OPEN_PATHS:
                return await call_next(request)
            given = request.headers.get("authorization")
            if not given:
                return unauthorized(
                    "You didn't provide an API key: send it as 'Authorization: Bearer <key>'."
                )
            if not hmac.compare_digest(given.encode(), expected):
                return unauthorized("Incorrect API key provided.")
            return await call_next(request)

    async def recognize(upload: UploadFile, words: list[str]) -> Recognition:
        name = safe_file_name(upload.filename, "audio")
        with tempfile.TemporaryDirectory(prefix="asrbatch-upload-", dir=recognizer.work_dir) as scratch:
            target = Path(scratch) / name
            size = await run_in_threadpool(_store, upload, target, max_file_size)
            if size is None:
                recognizer.record_rejection()
                raise HTTPException(
                    413, f"{name}: file too large, the server accepts at most {max_file_size} bytes"
                )
            try:
                return await run_in_threadpool(recognizer.recognize, target, words, 1, name=name)
            except InputError as error:
                raise HTTPException(400, str(error)) from error

    @api.post("/v1/audio/transcriptions")
    async def transcriptions(
        file: Annotated[UploadFile, File()],
        model: Annotated[str, Form()] = DEFAULT_MODEL,
        language: Annotated[str | None, Form()] = None,
        response_format: Annotated[str | None, Form()] = "json",
        spk: Annotated[bool, Form()] = False,
        hotwords: Annotated[str, Form()] = "",
        prompt: Annotated[str, Form()] = "",
    ) -> Response:
        if model not in MODELS:
            raise HTTPException(400, f"Unknown model '{model}'. Available: {', '.join(UNKNOWN_MODEL_ORDER)}")
        words = comma_hotwords(hotwords)
        words += [word for word in parse_hotwords(prompt) if word not in words]
        if spk:
            log.info("event=spk_requested engine=%s diarization=none", engine.name)
        recognition = await recognize(file, words)
        if response_format == "verbose_json":
            return JSONResponse(verbose_json(recognition, language))
        if response_format == "text":
            return JSONResponse(recognition.text)
        return JSONResponse({"text": recognition.text})

    @api.post("/asr")
    async def asr(
        file: Annotated[UploadFile, File()],
        language: Annotated[str | None, Form()] = None,
        hotwords: Annotated[str, Form()] = "",
        spk: Annotated[bool, Form()] = False,
    ) -> Response:
        recognition = await recognize(file, comma_hotwords(hotwords))
        return JSONResponse(asr_answer(recognition))

    @api.get("/v1/models")
    async def models() -> Response:
        return JSONResponse({"object": "list", "data": [{"id": name, "object": "model"} for name in MODELS]})

    @api.get("/health")
    async def health() -> Response:
        return JSONResponse({"status": "ok", "device": engine.device, "models_loaded": [engine.name]})

    return api


def _store(upload: UploadFile, target: Path, max_file_size: int | None) -> int | None:
    """Copy the upload to ``target``; its size, or None when it is over ``max_file_size``."""
    upload.file.seek(0)
    size = 0
    with target.open("wb") as output:
        while chunk := upload.file.read(COPY_CHUNK_BYTES):
            size += len(chunk)
            if max_file_size is not None and size > max_file_size:
                return None
            output.write(chunk)
    return size
