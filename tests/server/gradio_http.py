"""Raw HTTP calls to the reference server, one way per Gradio generation, written out by hand.

The server tests check the app, not a client library, so they speak the wire protocols directly
(see shared/GRADIO_PROTOCOLS.md): 3.x takes a data URL on ``/api/predict``; 4.x and later
upload first and then call ``{prefix}/call/recognize`` and read its SSE stream.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

TIMEOUT = (5, 60)
CALL_DEADLINE_SECONDS = 60.0


@dataclass(frozen=True)
class Outcome:
    """What a call produced: ``data`` on success, else ``error`` (None when Gradio hides it)."""

    ok: bool
    data: list[Any] | None = None
    error: str | None = None
    status: int = 200


def api_prefix(config: dict[str, Any]) -> str:
    """``/gradio_api`` on 5.x and later, ``''`` before."""
    return str(config.get("api_prefix") or "")


def is_legacy(config: dict[str, Any]) -> bool:
    """True for Gradio 3.x (no ``protocol`` key in /config)."""
    return "protocol" not in config


def login(session: requests.Session, base: str, username: str, password: str) -> int:
    """Gradio's login form; the session keeps the cookie. Returns the status code."""
    return session.post(
        base + "/login", data={"username": username, "password": password}, timeout=TIMEOUT
    ).status_code


def get_config(session: requests.Session, base: str) -> dict[str, Any]:
    """The app's /config."""
    response = session.get(base + "/config", timeout=TIMEOUT)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def file_slot(session: requests.Session, base: str, config: dict[str, Any], path: Path) -> dict[str, Any]:
    """The value a file input takes: a data URL on 3.x, an uploaded path on 4.x and later."""
    if is_legacy(config):
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        return {"name": path.name, "data": f"data:{mime};base64,{encoded}"}
    with path.open("rb") as handle:
        response = session.post(
            base + api_prefix(config) + "/upload",
            files={"files": (path.name, handle)},
            timeout=TIMEOUT,
        )
    response.raise_for_status()
    uploaded = response.json()[0]
    return {"path": uploaded, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def predict(
    session: requests.Session, base: str, config: dict[str, Any], fn_index: int, data: list[Any]
) -> Outcome:
    """``{prefix}/api/predict/`` by fn_index (every generation; bypasses the queue)."""
    response = session.post(
        base + api_prefix(config) + "/api/predict/",
        json={"data": data, "event_data": None, "fn_index": fn_index},
        timeout=TIMEOUT,
    )
    try:
        body = response.json()
    except ValueError:
        return Outcome(False, error=response.text, status=response.status_code)
    if response.status_code == 200 and "data" in body:
        return Outcome(True, data=body["data"], status=200)
    return Outcome(False, error=body.get("error"), status=response.status_code)


def call(
    session: requests.Session, base: str, config: dict[str, Any], api_name: str, data: list[Any]
) -> Outcome:
    """``{prefix}/call/<api_name>`` then its SSE stream (4.20 and later, through the queue)."""
    prefix = api_prefix(config)
    posted = session.post(f"{base}{prefix}/call/{api_name}", json={"data": data}, timeout=TIMEOUT)
    if posted.status_code != 200:
        return Outcome(False, error=posted.text, status=posted.status_code)
    event_id = posted.json()["event_id"]
    deadline = time.monotonic() + CALL_DEADLINE_SECONDS
    event = None
    with session.get(f"{base}{prefix}/call/{api_name}/{event_id}", stream=True, timeout=TIMEOUT) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no result from {api_name} within {CALL_DEADLINE_SECONDS} s")
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                payload = json.loads(line.split(":", 1)[1])
                if event == "complete":
                    return Outcome(True, data=payload)
                message = payload.get("error") if isinstance(payload, dict) else payload
                return Outcome(False, error=message)
    raise ConnectionError(f"stream of {api_name} ended without a result")


def recognize(
    session: requests.Session,
    base: str,
    config: dict[str, Any],
    audio: Path | None,
    hotwords: str = "",
    batch_size: int = 1,
) -> Outcome:
    """fn 0 as a batch client calls it: 3.x by fn_index, 4.x+ by api_name through the queue."""
    slot = file_slot(session, base, config, audio) if audio is not None else None
    data = [None, slot, batch_size, hotwords]
    if is_legacy(config):
        return predict(session, base, config, 0, data)
    return call(session, base, config, "recognize", data)


def system_info(session: requests.Session, base: str, config: dict[str, Any]) -> dict[str, str]:
    """fn 3's report parsed into ``{"Requests served": "3", ...}``."""
    outcome = predict(session, base, config, 3, [])
    assert outcome.ok and outcome.data is not None, outcome
    return parse_report(outcome.data[0])


def parse_report(markdown: str) -> dict[str, str]:
    """``- Key: value`` lines of a report as a dict."""
    facts = {}
    for line in markdown.splitlines():
        if line.startswith("- ") and ": " in line:
            key, value = line[2:].split(": ", 1)
            facts[key] = value
    return facts
