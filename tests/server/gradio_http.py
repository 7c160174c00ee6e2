"""Raw HTTP calls to the reference server, one way per Gradio generation, written out by hand.

The server tests check the app, not a client library, so they speak the wire protocols directly
(see shared/GRADIO_PROTOCOLS.md and the docstring of asrbatch/server/compat.py): 3.x takes a
data URL on ``/api/predict`` or its websocket queue; 4.x and later upload first, then 4.20+
call ``{prefix}/call/<api_name>`` and read its SSE stream, 4.16 joins ``/queue/join`` and reads
``/queue/data``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import mimetypes
import time
import uuid
from dataclasses import dataclass, field
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
    partials: list[list[Any]] = field(default_factory=list)
    """What a generator yielded before its final value (queue routes only)."""


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
    partials: list[list[Any]] = []
    with session.get(f"{base}{prefix}/call/{api_name}/{event_id}", stream=True, timeout=TIMEOUT) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no result from {api_name} within {CALL_DEADLINE_SECONDS} s")
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "generating":
                payload = json.loads(line.split(":", 1)[1])
                partials.append(_apply_diff(partials[-1] if partials else None, payload))
            elif line.startswith("data:") and event in ("complete", "error"):
                payload = json.loads(line.split(":", 1)[1])
                if event == "complete":
                    return Outcome(True, data=payload, partials=partials)
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


def has_call_route(config: dict[str, Any]) -> bool:
    """True where ``{prefix}/call/<api_name>`` exists (Gradio 4.20 and later)."""
    major, minor = (int(part) for part in str(config["version"]).split(".")[:2])
    return (major, minor) >= (4, 20)


def queue_sse(
    session: requests.Session, base: str, config: dict[str, Any], fn_index: int, data: list[Any]
) -> Outcome:
    """``{prefix}/queue/join`` + ``{prefix}/queue/data`` (Gradio 4+), by fn_index.

    Generator partials are collected whole (4.16) or rebuilt from 4.44+'s ``append`` diffs.
    """
    prefix = api_prefix(config)
    session_hash = uuid.uuid4().hex[:10]
    body = {"data": data, "fn_index": fn_index, "event_data": None, "session_hash": session_hash}
    joined = session.post(f"{base}{prefix}/queue/join", json=body, timeout=TIMEOUT)
    if joined.status_code != 200:
        return Outcome(False, error=joined.text, status=joined.status_code)
    deadline = time.monotonic() + CALL_DEADLINE_SECONDS
    partials: list[list[Any]] = []
    url = f"{base}{prefix}/queue/data"
    with session.get(url, params={"session_hash": session_hash}, stream=True, timeout=TIMEOUT) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no result from fn {fn_index} within {CALL_DEADLINE_SECONDS} s")
            if not line.startswith("data:"):
                continue
            message = json.loads(line.split(":", 1)[1])
            if message.get("msg") == "process_generating":
                partials.append(_apply_diff(partials[-1] if partials else None, message["output"]["data"]))
            elif message.get("msg") == "process_completed":
                output = message.get("output") or {}
                if message.get("success"):
                    return Outcome(True, data=output["data"], partials=partials)
                return Outcome(False, error=output.get("error"), partials=partials)
    raise ConnectionError(f"queue stream of fn {fn_index} ended without a result")


def _apply_diff(previous: list[Any] | None, data: list[Any]) -> list[Any]:
    """A generator's value from a ``process_generating`` message: whole, or 4.44+'s diffs."""
    if previous is None:
        return list(data)
    rebuilt = []
    for old, new in zip(previous, data, strict=True):
        if isinstance(new, list) and new and all(isinstance(op, list) and len(op) == 3 for op in new):
            value = old
            for action, _path, text in new:
                value = value + text if action == "append" else text
            rebuilt.append(value)
        else:
            rebuilt.append(new)
    return rebuilt


def queue_websocket(base: str, fn_index: int, data: list[Any]) -> Outcome:
    """Gradio 3's websocket ``/queue/join`` (the only route left with ``api_open=False``)."""
    import websockets

    async def exchange() -> Outcome:
        session_hash = uuid.uuid4().hex[:10]
        partials: list[list[Any]] = []
        url = base.replace("http", "ws", 1) + "/queue/join"
        async with websockets.connect(url, max_size=None) as connection:
            while True:
                message = json.loads(await asyncio.wait_for(connection.recv(), CALL_DEADLINE_SECONDS))
                kind = message.get("msg")
                if kind == "send_hash":
                    await connection.send(json.dumps({"fn_index": fn_index, "session_hash": session_hash}))
                elif kind == "send_data":
                    body = {
                        "data": data,
                        "event_data": None,
                        "fn_index": fn_index,
                        "session_hash": session_hash,
                    }
                    await connection.send(json.dumps(body))
                elif kind == "process_generating":
                    partials.append(message["output"]["data"])
                elif kind == "process_completed":
                    output = message.get("output") or {}
                    if message.get("success"):
                        return Outcome(True, data=output["data"], partials=partials)
                    return Outcome(False, error=output.get("error"), partials=partials)
                elif kind == "queue_full":
                    return Outcome(False, error="queue full")

    return asyncio.run(exchange())


def run_event(
    session: requests.Session,
    base: str,
    config: dict[str, Any],
    fn_index: int,
    data: list[Any],
) -> Outcome:
    """Run fn ``fn_index`` through its generation's queue: 3.x websocket, 4.16 ``/queue/join``,
    4.20+ ``/call/<api_name>``."""
    if is_legacy(config):
        return queue_websocket(base, fn_index, data)
    if not has_call_route(config):
        return queue_sse(session, base, config, fn_index, data)
    api_name = config["dependencies"][fn_index]["api_name"]
    return call(session, base, config, api_name, data)


def input_defaults(config: dict[str, Any], fn_index: int) -> list[Any]:
    """The values the inputs of fn ``fn_index`` declare (``value`` in /config), None if none."""
    by_id = {component["id"]: component for component in config["components"]}
    return [by_id[i].get("props", {}).get("value") for i in config["dependencies"][fn_index]["inputs"]]


def input_types(config: dict[str, Any], fn_index: int) -> list[str]:
    """The component types of fn ``fn_index``'s inputs."""
    by_id = {component["id"]: component for component in config["components"]}
    return [by_id[i]["type"] for i in config["dependencies"][fn_index]["inputs"]]


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
