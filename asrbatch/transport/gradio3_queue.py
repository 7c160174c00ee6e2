"""Gradio 3.x through its websocket queue: a generator's final result, and apps with ``api_open=False``.

``POST /api/predict/`` answers a generator's first partial only (``is_generating: true``), and
with ``queue(api_open=False)`` every REST route is 404 (older 3.x: 401 "Not authorized to skip
the queue"); the queue's websocket gives both the final result::

    connect ws(s)://<server>/queue/join        the login cookie goes with the handshake
    <- {"msg": "send_hash"}                    -> {"fn_index": N, "session_hash": H}
    <- {"msg": "estimation", "rank": ...}        while waiting in the queue
    <- {"msg": "send_data"}                    -> {"data": [...], "event_data": null, "fn_index": N,
                                                   "session_hash": H}
    <- {"msg": "process_starts"}
    <- {"msg": "process_generating", ...}        a generator's partials (full values), ignored
    <- {"msg": "process_completed", "success": true, "output": {"data": [...]}}
       or "success": false, "output": {"error": "'<message>'" | null}
    <- {"msg": "queue_full"}                     the queue holds max_size events already

Measured on 3.50: the ``process_completed`` of a generator carries the final value and still
says ``is_generating: true``; the server closes the connection after it.  The data message is
the ``/api/predict/`` body (audio inline as a data URL) plus the session hash, which keeps a
generator's state between its steps.  A read timeout and the overall deadline bound the wait.
"""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import websockets.exceptions
from websockets.sync.client import ClientConnection, connect

from asrbatch.config import ServerConfig
from asrbatch.errors import EndpointError
from asrbatch.transport import payload
from asrbatch.transport.detect import Function
from asrbatch.transport.session import (
    USER_AGENT,
    LoginExpiredError,
    RetryableError,
    Timeouts,
    join,
    server_failure,
    unquote,
)
from asrbatch.transport.websocket import tls_options

ROUTE = "/queue/join"
WHAT = f"the websocket queue {ROUTE}"
MAX_MESSAGE = 64 * 1024 * 1024
"""Largest message accepted from the server (its outputs; partials come whole on 3.x)."""


def predict(
    session: requests.Session,
    settings: ServerConfig,
    function: Function,
    path: Path,
    *,
    name: str,
    mime: str,
    hotwords: str,
    timeouts: Timeouts,
    clock: Callable[[], float],
) -> list[Any]:
    """Run *function* on *path* through the queue; return its final outputs.

    Raises the classified errors of :mod:`asrbatch.transport.session`: :class:`RetryableError`
    for a closed connection, a full queue, a timeout or the deadline; :class:`InputRejectedError`
    or :class:`RetryableError` for a failure the server reports, by its message;
    :class:`LoginExpiredError` when the handshake is refused for want of a login.
    """
    deadline_at = clock() + timeouts.deadline
    session_hash = uuid.uuid4().hex[:11]
    with payload.legacy_body(settings.input_template, path, name=name, mime=mime, fn_index=function.fn_index,
                             batch_size=settings.batch_size, hotwords=hotwords) as body:
        data_message = with_session_hash(body.getvalue(), session_hash)
    hash_message = json.dumps({"fn_index": function.fn_index, "session_hash": session_hash})
    with _connect(session, settings, timeouts) as connection:
        while True:
            message = _receive(connection, timeouts, deadline_at, clock)
            kind = message.get("msg")
            if kind == "send_hash":
                _send(connection, hash_message)
            elif kind == "send_data":
                _send(connection, data_message)
            elif kind == "queue_full":
                # Like a 429: the server is up but refuses work for now.
                raise RetryableError(f"the server's queue is full ({WHAT})", reason="queue full", unreachable=True)
            elif kind == "process_completed":
                return completed_outputs(message)
            # estimation, process_starts, process_generating, progress, log: keep reading


def with_session_hash(body: bytes, session_hash: str) -> str:
    """The JSON object *body* with ``session_hash`` added, as text (the body holds the audio)."""
    text = body.decode("utf-8").rstrip()
    if not text.endswith("}"):  # pragma: no cover - legacy_body always writes an object
        raise AssertionError("the request body is not a JSON object")
    return f"{text[:-1]}, \"session_hash\": {json.dumps(session_hash)}}}"


def completed_outputs(message: dict[str, Any]) -> list[Any]:
    """The outputs of a ``process_completed`` message, or the error it stands for (pure)."""
    output = message.get("output")
    output = output if isinstance(output, dict) else {}
    if message.get("success") and isinstance(output.get("data"), list):
        return list(output["data"])
    error = output.get("error")
    # gr.Error("msg") arrives as "'msg'": the message is quoted once more, as on /api/predict/.
    text = unquote(error) if isinstance(error, str) and error.strip() else None
    raise server_failure(text, WHAT)


def websocket_url(base: str, route: str = ROUTE) -> str:
    """``http://host:7860`` -> ``ws://host:7860/queue/join`` (https -> wss)."""
    url = join(base, route)
    if url.startswith("https://"):
        return "wss://" + url[len("https://"):]
    if url.startswith("http://"):
        return "ws://" + url[len("http://"):]
    return url


def _connect(session: requests.Session, settings: ServerConfig, timeouts: Timeouts) -> ClientConnection:
    url = websocket_url(settings.url)
    cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in session.cookies)
    options: dict[str, Any] = {
        "additional_headers": {"Cookie": cookies} if cookies else None,
        "user_agent_header": USER_AGENT,
        "compression": None,  # the audio is already compact; deflating it costs time on both ends
        "open_timeout": timeouts.connect,
        "close_timeout": timeouts.connect,
        "max_size": MAX_MESSAGE,
    }
    options.update(tls_options(settings, url))
    try:
        return connect(url, **options)
    except websockets.exceptions.InvalidStatus as exc:
        raise _refused(exc.response.status_code) from None
    except ssl.SSLError as exc:
        raise EndpointError(
            f"TLS failure on {WHAT}: {exc}",
            hint="set server.verify_tls to the server's CA bundle, or false to skip verification",
        ) from None
    except websockets.exceptions.InvalidHandshake as exc:
        raise EndpointError(
            f"{WHAT} did not open a websocket ({exc}): a proxy in front of the app that does not pass "
            "websockets?",
            hint="let the proxy pass websocket upgrades to the app (the queue needs them on Gradio 3.x)",
        ) from None
    except TimeoutError:
        raise RetryableError(f"connect timeout on {WHAT}", reason="connect timeout", unreachable=True) from None
    except OSError as exc:
        refused = isinstance(exc, ConnectionRefusedError)
        reason = "connection refused" if refused else "connection reset"
        raise RetryableError(f"{reason} on {WHAT}: {exc}", reason=reason, unreachable=True) from None


def _refused(status: int) -> Exception:
    """The error for a handshake the server answered with HTTP *status*."""
    if status in (401, 403):
        return LoginExpiredError(
            f"HTTP {status} on {WHAT}: the server requires a login",
            hint="set server.username and the password variable (server.password_env)",
        )
    if status == 404:
        return EndpointError(
            f"HTTP 404 on {WHAT}: the app has no websocket queue here, or a proxy in front of it does not "
            "pass websockets",
            hint="let the proxy pass websocket upgrades to the app, or start the app with its REST API open "
                 "(queue(api_open=True)) and a function that returns its result at once",
        )
    if status in (429, 502, 503, 504):
        return RetryableError(f"HTTP {status} on {WHAT}", reason=str(status), unreachable=True)
    return RetryableError(f"HTTP {status} on {WHAT}", reason=str(status))


def _send(connection: ClientConnection, text: str) -> None:
    try:
        connection.send(text)
    except websockets.exceptions.ConnectionClosed:
        raise RetryableError(f"server closed {WHAT} while the request was sent", reason="closed mid-request") from None
    except OSError as exc:
        raise RetryableError(f"connection reset on {WHAT}: {exc}", reason="connection reset") from None


def _receive(connection: ClientConnection, timeouts: Timeouts, deadline_at: float,
             clock: Callable[[], float]) -> dict[str, Any]:
    """The next JSON object from the server, within the read timeout and the deadline."""
    while True:
        remaining = deadline_at - clock()
        if remaining <= 0:
            raise RetryableError(f"no result within the {timeouts.deadline:g} s deadline on {WHAT}", reason="deadline")
        try:
            text = connection.recv(timeout=min(timeouts.read, remaining))
        except TimeoutError:
            if clock() >= deadline_at:
                continue  # reported as the deadline above
            raise RetryableError(f"read timeout on {WHAT}", reason="read timeout") from None
        except websockets.exceptions.ConnectionClosed:
            raise RetryableError(f"server closed {WHAT} before the result", reason="stream closed") from None
        except OSError as exc:
            raise RetryableError(f"connection reset on {WHAT}: {exc}", reason="connection reset") from None
        try:
            message = json.loads(text)
        except ValueError:
            continue
        if isinstance(message, dict):
            return message
