"""Gradio 4.x and later: upload, then call through the queue and read the result as server-sent events.

By name (the usual case)::

    POST {prefix}/upload                  multipart "files"   -> ["/tmp/gradio/.../a.wav"]
    POST {prefix}/call/<api_name>         {"data": [...]}      -> {"event_id": "..."}
    GET  {prefix}/call/<api_name>/<id>    SSE: complete | error | heartbeat | generating

Functions without a name (``api_name=False``), and every function before Gradio 4.20 (no
``/call``), are joined to the queue by ``fn_index``: ``POST {prefix}/queue/join`` with a
``session_hash``, then ``GET {prefix}/queue/data?session_hash=``, whose events are JSON messages.
The shapes that matter are the same in every version of that protocol (``sse_v1`` of 4.14-4.2x,
``sse_v2``/``sse_v2.1``, ``sse_v3`` of 4.4x-6.x): ``process_completed`` carries the full final
outputs (``success`` false: ``output.error``, the message or null); ``process_generating``
(a generator's partials: full values on ``sse_v1``, diffs from ``sse_v2``) is skipped;
``heartbeat``, ``estimation``, ``process_starts``, ``progress`` and ``log`` carry nothing for us;
``close_stream`` (``sse_v3``) follows the last completed event of a session.  The first protocol
(``sse``, Gradio 4.0-4.9) turns the two routes around: ``GET {prefix}/queue/join?fn_index=&session_hash=``
streams the messages and asks for the data with ``send_data`` (an ``event_id``), which goes to
``POST {prefix}/queue/data`` with that event_id; the stream then carries one event only.  ``/call`` hides
every error message on 4.x and some 5.x (``event: error`` + ``data: null``); the queue route
carries it, so such a failure is asked again there (:class:`QueueRequired`).

Both go through the server's queue, so its concurrency limit holds.  The
server sends a heartbeat every 15 s, so a read timeout never fires on a stuck
job: the stream is read under an overall deadline checked against the clock
between chunks.
"""

from __future__ import annotations

import codecs
import json
import logging
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3.exceptions

from asrbatch.config import ServerConfig
from asrbatch.errors import AsrbatchError, EndpointError, RecognitionError
from asrbatch.transport import payload
from asrbatch.transport.detect import AppConfig, Function, routes
from asrbatch.transport.session import (
    QueueRequired,
    RetryableError,
    Timeouts,
    classify_exception,
    classify_status,
    join,
    server_failure,
    unquote,
    uploaded_path,
)

log = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024


# ---------------------------------------------------------------------------------------------
# Server-sent events (pure)


@dataclass(frozen=True)
class Event:
    """One server-sent event: its ``event:`` name (``message`` when absent) and joined ``data:``."""

    name: str
    data: str


@dataclass
class EventParser:
    """Incremental parser of a ``text/event-stream``: feed bytes, get the events completed so far.

    Follows the HTML spec: lines end in LF, CRLF or CR; a blank line dispatches;
    ``:`` starts a comment; one space after the field's colon is dropped.
    """

    _buffer: str = ""
    _name: str = ""
    _data: list[str] = field(default_factory=list)
    _pending_cr: bool = False
    _decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"),
                          repr=False)

    def feed(self, chunk: bytes) -> list[Event]:
        text = self._decoder.decode(chunk)
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        self._pending_cr = text.endswith("\r")
        self._buffer += text
        events: list[Event] = []
        lines = self._buffer.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._buffer = lines.pop()
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Event | None:
        if line == "":
            if not self._data and not self._name:
                return None
            event = Event(self._name or "message", "\n".join(self._data))
            self._name, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._name = value
        elif name == "data":
            self._data.append(value)
        return None


def parse_events(chunks: list[bytes]) -> list[Event]:
    """Every complete event in *chunks* (a convenience over :class:`EventParser`)."""
    parser = EventParser()
    events: list[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def interpret_call_event(event: Event) -> list[Any] | None:
    """The outputs when *event* completes a ``/call`` stream, None to keep reading; raises on ``error``."""
    if event.name == "complete":
        data = _loads(event.data)
        if isinstance(data, list):
            return data
        raise RecognitionError("server completed the call without a list of outputs")
    if event.name == "error":
        raise error_from(_loads(event.data))
    return None  # heartbeat, generating, log...


def interpret_queue_message(message: Any, event_id: str) -> list[Any] | None:
    """The outputs when *message* (from ``/queue/data``) completes *event_id*; None to keep reading."""
    if not isinstance(message, dict):
        return None
    kind = message.get("msg")
    mine = message.get("event_id") in (None, event_id)
    if kind == "process_completed" and message.get("event_id") == event_id:
        output = message.get("output") or {}
        if message.get("success") and isinstance(output.get("data"), list):
            return output["data"]
        raise error_from(output)
    if kind == "unexpected_error" and mine:
        detail = message.get("message")
        raise server_failure(detail if isinstance(detail, str) else None, "the queue (unexpected_error)")
    if kind == "close_stream":
        raise RetryableError("server closed the queue stream before the result", reason="stream closed")
    if kind == "server_stopped":
        raise RetryableError("server stopped while the file was queued", reason="server stopped", unreachable=True)
    return None


def error_from(data: Any, what: str = "the call") -> AsrbatchError:
    """The error for an ``event: error`` payload: whose fault it is, by the server's message."""
    message = _message(data)
    # 4.x quotes a gr.Error's message on the queue route ("'cannot decode audio: ...'").
    return server_failure(unquote(message) if message is not None else None, what)


def _message(data: Any) -> str | None:
    """The message of an error payload (``{"error": ...}``, ``{"message": ...}`` or text), None when hidden."""
    message = None
    if isinstance(data, dict):
        message = data.get("error") or data.get("message")
    elif isinstance(data, str):
        message = data
    return message if isinstance(message, str) and message.strip() else None


def _loads(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


# ---------------------------------------------------------------------------------------------
# Network


def upload_recording(
    session: requests.Session,
    settings: ServerConfig,
    app: AppConfig,
    path: Path,
    *,
    name: str,
    mime: str,
    timeouts: Timeouts,
) -> dict[str, Any]:
    """Upload *path*; return the file slot that names it in a call (needs no recognition slot)."""
    route = f"{app.api_prefix}/upload"
    server_path = upload(session, settings.url, route, path, name=name, mime=mime, timeouts=timeouts,
                         max_file_size=app.max_file_size)
    return payload.file_data(server_path, name)


def call(
    session: requests.Session,
    settings: ServerConfig,
    app: AppConfig,
    function: Function,
    slot: dict[str, Any],
    *,
    name: str,
    hotwords: str,
    timeouts: Timeouts,
    clock: Callable[[], float],
    via_queue: bool = False,
) -> list[Any]:
    """Run *function* on an uploaded file through the queue; return its outputs.

    By ``/call/<api_name>`` where the server has it, unless *via_queue*; else by fn_index
    through ``/queue/join``.  Raises :class:`QueueRequired` when ``/call`` is missing (404) or
    hid the reason of a failure.  The exchange must finish within ``timeouts.deadline`` seconds
    of *clock*; otherwise :class:`RetryableError` (reason ``deadline``).
    """
    deadline_at = clock() + timeouts.deadline
    found = routes(app, function, via_queue=via_queue)
    body = payload.queued_body(settings.input_template, slot, settings.batch_size, hotwords)
    if "call" in found:
        event_id = _post_json(session, settings.url, found["call"], body, timeouts, missing=QueueRequired)
        stream_url = join(settings.url, f"{found['call']}/{event_id}")
        for event in _stream(session, stream_url, f"GET {found['call']}/<event_id>", timeouts, deadline_at, clock):
            if event.name == "error" and _message(_loads(event.data)) is None:
                raise QueueRequired(f"GET {found['call']}/<event_id> reported a failure without its reason")
            outputs = interpret_call_event(event)
            if outputs is not None:
                return outputs
        raise RetryableError("server ended the result stream without a result", reason="stream ended")
    session_hash = uuid.uuid4().hex[:11]
    body.update({"fn_index": function.fn_index, "session_hash": session_hash, "event_data": None,
                 "trigger_id": None})
    if app.wire_protocol == FIRST_QUEUE_PROTOCOL:
        return _call_first_queue(session, settings.url, found, body, timeouts, deadline_at, clock)
    event_id = _post_json(session, settings.url, found["join"], body, timeouts)
    stream_url = join(settings.url, f"{found['data']}?session_hash={session_hash}")
    for event in _stream(session, stream_url, f"GET {found['data']}", timeouts, deadline_at, clock):
        outputs = interpret_queue_message(_loads(event.data), event_id)
        if outputs is not None:
            return outputs
    raise RetryableError("server ended the queue stream without a result", reason="stream ended")


FIRST_QUEUE_PROTOCOL = "sse"
"""The ``protocol`` of Gradio 4.0-4.9 in ``/config``."""


def _call_first_queue(
    session: requests.Session,
    base: str,
    found: dict[str, str],
    body: dict[str, Any],
    timeouts: Timeouts,
    deadline_at: float,
    clock: Callable[[], float],
) -> list[Any]:
    """Gradio 4.0-4.9: stream ``GET /queue/join``, send the data to ``POST /queue/data`` when asked."""
    query = urllib.parse.urlencode({"fn_index": body["fn_index"], "session_hash": body["session_hash"]})
    stream_url = join(base, f"{found['join']}?{query}")
    event_id: str | None = None
    for event in _stream(session, stream_url, f"GET {found['join']}", timeouts, deadline_at, clock):
        message = _loads(event.data)
        if not isinstance(message, dict):
            continue
        if message.get("msg") == "send_data":
            event_id = str(message.get("event_id") or "")
            _post(session, base, found["data"], {**body, "event_id": event_id}, timeouts)
            continue
        # The stream carries this one event: a message without an event_id is about it.
        outputs = interpret_queue_message({"event_id": event_id, **message}, event_id or "")
        if outputs is not None:
            return outputs
    raise RetryableError("server ended the queue stream without a result", reason="stream ended")


def upload(
    session: requests.Session,
    base: str,
    route: str,
    path: Path,
    *,
    name: str,
    mime: str,
    timeouts: Timeouts,
    max_file_size: int | None = None,
) -> str:
    """Upload *path* as multipart field ``files``; return the server-side path."""
    what = f"POST {route}"
    try:
        with path.open("rb") as handle:
            response = session.post(join(base, route), files={"files": (name, handle, mime)},
                                    timeout=timeouts.pair)
    except requests.RequestException as exc:
        raise classify_exception(exc, what) from None
    if response.status_code != 200:
        raise classify_status(response, what, max_file_size=max_file_size)
    return uploaded_path(response, what)


def _post(session: requests.Session, base: str, route: str, body: dict[str, Any], timeouts: Timeouts,
          *, missing: type[EndpointError] = EndpointError) -> requests.Response:
    """POST *body* as JSON; the 200 response, or the error any other answer stands for."""
    what = f"POST {route}"
    try:
        response = session.post(join(base, route), json=body, timeout=timeouts.pair)
    except requests.RequestException as exc:
        raise classify_exception(exc, what) from None
    if response.status_code != 200:
        if response.status_code == 404:
            raise missing(f"HTTP 404 on {what}: the server has no such route", hint="check server.url")
        if response.status_code == 405:
            # Not the recording's fault: a route that takes other requests (another queue protocol).
            raise EndpointError(f"HTTP 405 on {what}: the route does not take this request",
                                hint="check server.url; which Gradio is it (asrbatch ping)?")
        raise classify_status(response, what)
    return response


def _post_json(session: requests.Session, base: str, route: str, body: dict[str, Any], timeouts: Timeouts,
               *, missing: type[EndpointError] = EndpointError) -> str:
    what = f"POST {route}"
    response = _post(session, base, route, body, timeouts, missing=missing)
    try:
        event_id = response.json().get("event_id")
    except (ValueError, AttributeError):
        event_id = None
    if not isinstance(event_id, str) or not event_id:
        raise EndpointError(f"server answered {what} without an event_id")
    return event_id


def _stream(
    session: requests.Session,
    url: str,
    what: str,
    timeouts: Timeouts,
    deadline_at: float,
    clock: Callable[[], float],
) -> Iterator[Event]:
    """Events of the SSE stream at *url*, until it ends or the deadline passes."""
    try:
        response = session.get(url, stream=True, timeout=timeouts.pair, headers={"Accept": "text/event-stream"})
    except requests.RequestException as exc:
        raise classify_exception(exc, what) from None
    with response:
        if response.status_code != 200:
            raise classify_status(response, what)
        parser = EventParser()
        for chunk in _chunks(response, what):
            if clock() > deadline_at:
                raise RetryableError(
                    f"no result within the {timeouts.deadline:g} s deadline on {what}", reason="deadline"
                )
            yield from parser.feed(chunk)


def _chunks(response: requests.Response, what: str) -> Iterator[bytes]:
    """The body as it arrives: each read returns what the socket has, chunked or not."""
    raw = response.raw
    read1 = getattr(raw, "read1", None)
    if read1 is None:  # pragma: no cover - urllib3 < 2
        try:
            yield from response.iter_content(chunk_size=None)
        except requests.RequestException as exc:
            raise classify_exception(exc, what) from None
        return
    while True:
        try:
            chunk = read1(_READ_SIZE)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            raise RetryableError(f"read timeout on {what}", reason="read timeout") from None
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError, ConnectionError, OSError):
            raise RetryableError(f"connection closed mid-response on {what}", reason="closed mid-response") from None
        if not chunk:
            return
        yield chunk
