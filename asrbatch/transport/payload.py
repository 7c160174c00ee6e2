"""Request bodies: filling the input template, data URLs (pure, no network)."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

AUDIO = "<audio>"
BATCH_SIZE = "<batch_size>"
HOTWORDS = "<hotwords>"

# Read in multiples of 3 bytes so every chunk encodes to base64 without padding.
_ENCODE_CHUNK = 3 * 256 * 1024

def fill_template(template: Sequence[Any], audio: Any, batch_size: int, hotwords: str) -> list[Any]:
    """Replace the placeholders of *template* by *audio*, *batch_size* and *hotwords*.

    Any other value is sent as written.  Only whole-string placeholders are
    replaced (``"<audio>"``, not ``"x<audio>"``).
    """
    if isinstance(template, str):
        raise ValueError(f"the input template must be chosen before a request is built, not {template!r}")
    values = {AUDIO: audio, BATCH_SIZE: batch_size, HOTWORDS: hotwords}
    return [values[item] if isinstance(item, str) and item in values else item for item in template]


def audio_position(template: Sequence[Any]) -> int:
    """Index of the ``<audio>`` placeholder in *template*; ValueError when absent."""
    for i, item in enumerate(template):
        if item == AUDIO:
            return i
    raise ValueError("the input template has no <audio> placeholder")


def encode_base64(source: BinaryIO, sink: BinaryIO) -> None:
    """Copy *source* to *sink* as base64, a chunk at a time."""
    while True:
        chunk = source.read(_ENCODE_CHUNK)
        if not chunk:
            return
        sink.write(base64.b64encode(chunk))


def legacy_body(
    template: Sequence[Any],
    path: Path,
    *,
    name: str,
    mime: str,
    fn_index: int,
    batch_size: int,
    hotwords: str,
) -> io.BytesIO:
    """The JSON body of a Gradio 3.x ``/api/predict/`` call, with the audio inline as a data URL.

    The file is read once and encoded straight into the body buffer, so the
    only large allocation is the body itself (about 4/3 of the file).
    """
    marker = f"asrbatch-audio-{uuid.uuid4().hex}"
    slot = {"name": name, "data": marker}
    payload = {"data": fill_template(template, slot, batch_size, hotwords), "event_data": None, "fn_index": fn_index}
    text = json.dumps(payload, ensure_ascii=False)
    head, separator, tail = text.partition(json.dumps(marker))
    if not separator:  # pragma: no cover - the marker is always in the dump
        raise AssertionError("audio marker missing from the request body")
    body = io.BytesIO()
    body.write(head.encode("utf-8"))
    body.write(f'"data:{mime};base64,'.encode("ascii"))
    with path.open("rb") as source:
        encode_base64(source, body)
    body.write(b'"')
    body.write(tail.encode("utf-8"))
    body.seek(0)
    return body


def legacy_file(server_path: str, name: str) -> dict[str, Any]:
    """The file slot of a Gradio 3.x call for a file already uploaded (``POST /upload``) to *server_path*."""
    return {"name": server_path, "data": None, "is_file": True, "orig_name": name}


def legacy_call_body(template: Sequence[Any], slot: dict[str, Any], *, fn_index: int, batch_size: int,
                     hotwords: str) -> dict[str, Any]:
    """The JSON body of a Gradio 3.x ``/api/predict/`` call whose audio slot is *slot*."""
    return {"data": fill_template(template, slot, batch_size, hotwords), "event_data": None, "fn_index": fn_index}


def file_data(server_path: str, name: str) -> dict[str, Any]:
    """The file slot of a Gradio 4+ call for a file already uploaded to *server_path*.

    ``meta`` is required from Gradio 5.49 on and accepted by every 4.x.
    """
    return {"path": server_path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def queued_body(template: Sequence[Any], slot: dict[str, Any], batch_size: int, hotwords: str) -> dict[str, Any]:
    """The JSON body of a Gradio 4+ ``/call/<api_name>`` request."""
    return {"data": fill_template(template, slot, batch_size, hotwords)}
