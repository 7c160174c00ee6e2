"""Gradio 3.x: ``POST /api/predict/`` by ``fn_index``.

The audio is uploaded first (``POST /upload``, multipart field ``files``, answered with the
server-side paths) and named in the call (``{"name": <path>, "data": null, "is_file": true}``):
the upload then needs no recognition slot, and travels while the server recognises other
files.  A 3.x server without ``/upload`` gets the audio inline as a base64 data URL, inside the
call (:func:`predict`).

Where that route cannot give the result -- a generator's first partial only (``is_generating:
true``), or REST closed by ``queue(api_open=False)`` (404; 401 "Not authorized to skip the
queue" on older 3.x) -- :class:`QueueRequired` sends the client to the websocket queue
(:mod:`.gradio3_queue`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from asrbatch.config import ServerConfig
from asrbatch.errors import AsrbatchError, RecognitionError
from asrbatch.transport import payload
from asrbatch.transport.detect import Function
from asrbatch.transport.session import (
    QueueRequired,
    Timeouts,
    classify_exception,
    classify_status,
    error_detail,
    join,
    server_failure,
    unquote,
    uploaded_path,
)

ROUTE = "/api/predict/"
UPLOAD_ROUTE = "/upload"


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
) -> list[Any]:
    """Call *function* on *path*; return the function's outputs.

    Raises the classified errors of :mod:`asrbatch.transport.session`, and
    :class:`InputRejectedError` with the server's message for a ``gr.Error``.
    """
    body = payload.legacy_body(
        settings.input_template,
        path,
        name=name,
        mime=mime,
        fn_index=function.fn_index,
        batch_size=settings.batch_size,
        hotwords=hotwords,
    )
    what = f"POST {ROUTE}"
    try:
        with body:
            response = session.post(
                join(settings.url, ROUTE),
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=timeouts.pair,
            )
    except requests.RequestException as exc:
        raise classify_exception(exc, what) from None
    return parse_response(response, what)


def upload(
    session: requests.Session,
    settings: ServerConfig,
    path: Path,
    *,
    name: str,
    mime: str,
    timeouts: Timeouts,
) -> str | None:
    """Upload *path* with ``POST /upload``; return its path on the server, or None when the server has
    no upload route (404, 405: older 3.x releases).  Raises the classified errors otherwise."""
    what = f"POST {UPLOAD_ROUTE}"
    try:
        with path.open("rb") as handle:
            response = session.post(join(settings.url, UPLOAD_ROUTE), files={"files": (name, handle, mime)},
                                    timeout=timeouts.pair)
    except requests.RequestException as exc:
        raise classify_exception(exc, what) from None
    if response.status_code in (404, 405):
        return None
    if response.status_code != 200:
        raise classify_status(response, what)
    return uploaded_path(response, what)


def predict_uploaded(
    session: requests.Session,
    settings: ServerConfig,
    function: Function,
    server_path: str,
    *,
    name: str,
    hotwords: str,
    timeouts: Timeouts,
) -> list[Any]:
    """Call *function* on a file uploaded to *server_path*; return the function's outputs."""
    body = payload.legacy_call_body(settings.input_template, payload.legacy_file(server_path, name),
                                    fn_index=function.fn_index, batch_size=settings.batch_size, hotwords=hotwords)
    what = f"POST {ROUTE}"
    try:
        response = session.post(join(settings.url, ROUTE), json=body, timeout=timeouts.pair)
    except requests.RequestException as exc:
        raise classify_exception(exc, what) from None
    return parse_response(response, what)


def parse_response(response: requests.Response, what: str = f"POST {ROUTE}") -> list[Any]:
    """The outputs of a 3.x predict response, or the error it stands for.

    Raises :class:`QueueRequired` where only the queue can give the result.
    """
    if response.status_code == 200:
        try:
            body = response.json()
        except ValueError:
            raise RecognitionError(f"server answered {what} with something that is not JSON") from None
        if isinstance(body, dict) and body.get("is_generating") is True:
            raise QueueRequired(f"{what} answered a generator's first partial result only (is_generating: true)")
        if isinstance(body, dict) and isinstance(body.get("data"), list):
            return body["data"]
        if isinstance(body, dict) and body.get("error"):
            raise server_failure(unquote(str(body["error"])), what)
        raise RecognitionError(f"server answered {what} without outputs")
    if response.status_code == 500:
        raise _server_error(response, what)
    if response.status_code == 404:
        raise QueueRequired(f"HTTP 404 on {what}: the app's REST API is closed (queue(api_open=False))")
    if response.status_code == 401 and "queue" in error_detail(response).lower():
        # Older 3.x with api_open=False: {"detail": "Not authorized to skip the queue"}, not a login matter.
        raise QueueRequired(f"HTTP 401 on {what}: {error_detail(response)} (queue(api_open=False))")
    raise classify_status(response, what)


def _server_error(response: requests.Response, what: str) -> AsrbatchError:
    try:
        body = response.json()
    except ValueError:
        body = None
    message = body.get("error") if isinstance(body, dict) else None
    # gr.Error("msg") arrives as {"error": "'msg'"}: the message is quoted once more.
    text = unquote(message) if isinstance(message, str) and message.strip() else None
    return server_failure(text, what, status=500)
