"""Every difference between the Gradio generations the server runs on, in one place.

Supported deployment: Gradio 6.x. Also run in tests: 4.44 and 3.50, the generations the
Paraformer WebUI is found on. Differences are detected from signatures where possible, so a
minor release that adds or drops a parameter is handled without a version table.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

VERSION: str = gr.__version__
MAJOR = int(VERSION.split(".")[0])


def _accepts(function: Callable[..., Any], name: str) -> bool:
    return name in inspect.signature(function).parameters


def blocks_options() -> dict[str, Any]:
    """Extra ``gr.Blocks`` arguments: drop cached uploads after an hour where Gradio can."""
    options: dict[str, Any] = {"analytics_enabled": False}
    if _accepts(gr.Blocks.__init__, "delete_cache"):
        # Check every 10 minutes, delete files older than an hour: a batch server runs for weeks.
        options["delete_cache"] = (600, 3600)
    return options


def audio_input(label: str, sources: Sequence[Any]) -> Any:
    """A ``gr.Audio`` handing the handler a file path, from the given sources.

    Gradio 4 and later take a list ``sources=``; Gradio 3 takes a single ``source=``.
    """
    if _accepts(gr.Audio.__init__, "sources"):
        return gr.Audio(label=label, sources=list(sources), type="filepath")
    legacy: dict[str, Any] = {"source": sources[0]}  # one source only, and no such parameter on 4+
    return gr.Audio(label=label, type="filepath", **legacy)


def file_path(value: Any) -> Path | None:
    """The path behind a ``gr.File``/``gr.Audio`` value, whatever the generation hands over.

    Gradio 4+ gives a str path; Gradio 3's ``gr.File`` gives a temporary-file object whose
    ``name`` is the path; API callers of some versions leave a dict with ``path`` or ``name``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, (str, Path)):
        return Path(value)
    if isinstance(value, dict):
        found = value.get("path") or value.get("name")
        return Path(found) if found else None
    name = getattr(value, "path", None) or getattr(value, "name", None)
    return Path(name) if name else None


def _payload_size(payload: Any) -> int | None:
    """Bytes an audio payload carries before Gradio decodes it, when that can be told."""
    path = getattr(payload, "path", None)
    if isinstance(payload, dict):
        if payload.get("is_file") or not payload.get("data"):
            path = payload.get("name")
        else:
            data = str(payload["data"])
            encoded = data.split(",", 1)[1] if data.startswith("data:") else data
            return len(encoded) * 3 // 4
    if path and Path(path).is_file():
        return Path(path).stat().st_size
    return None


_PATH_PREFIX = re.compile(r"^/\S*?:\s*")


def decoding_reason(error: BaseException) -> str:
    """One line saying why audio could not be read, from a pydub/ffmpeg error message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(error).__name__
    return _PATH_PREFIX.sub("", reason)


def guard_audio_input(component: Any, max_file_size: int | None, on_reject: Callable[[], None]) -> None:
    """Make an Audio input refuse oversized payloads and report undecodable ones clearly.

    Gradio 3 and 4 decode and re-encode uploaded audio before the handler runs, so a broken
    file fails inside Gradio with a long ffmpeg dump (3.x) or no message at all. Wrapping the
    component's own ``preprocess`` turns that into ``cannot decode audio: <reason>``, the same
    message the handler gives on Gradio 6, where audio reaches the handler undecoded. Gradio 3
    has no upload limit, so the size is checked here too, before any decoding. ``on_reject``
    is called for every payload refused here.
    """
    original = component.preprocess

    def preprocess(payload: Any) -> Any:
        if payload is not None and max_file_size is not None:
            size = _payload_size(payload)
            if size is not None and size > max_file_size:
                on_reject()
                raise gr.Error(
                    f"audio file too large: {size} bytes, the server accepts at most {max_file_size} bytes"
                )
        try:
            return original(payload)
        except gr.Error:
            on_reject()
            raise
        except Exception as error:
            on_reject()
            raise gr.Error(f"cannot decode audio: {decoding_reason(error)}") from error

    component.preprocess = preprocess


def enable_queue(demo: Any, concurrency: int) -> None:
    """Queue events, running at most ``concurrency`` of each at once.

    Gradio 4+ limits per event (``default_concurrency_limit``); Gradio 3 has one pool of
    workers (``concurrency_count``). Either way the REST routes stay open for scripted clients.
    """
    if _accepts(demo.queue, "default_concurrency_limit"):
        demo.queue(default_concurrency_limit=concurrency)
    else:
        demo.queue(concurrency_count=concurrency, api_open=True)


def launch_options(
    host: str, port: int, auth: tuple[str, str] | None, max_file_size: int | None
) -> dict[str, Any]:
    """Arguments for ``demo.launch`` that this Gradio accepts."""
    options: dict[str, Any] = {
        "server_name": host,
        "server_port": port,
        "share": False,
        "inbrowser": False,
        "show_error": True,
        "auth": auth,
    }
    if auth is not None:
        options["auth_message"] = "Log in to the speech recognition server."
    launch = gr.Blocks.launch
    if max_file_size is not None and _accepts(launch, "max_file_size"):
        options["max_file_size"] = max_file_size
    if _accepts(launch, "ssr_mode"):
        # Server-side rendering needs Node.js and adds nothing for API clients.
        options["ssr_mode"] = False
    if _accepts(launch, "quiet"):
        # Gradio's start-up text tells notebook users to set share=True; serve says where it listens.
        options["quiet"] = True
    return options


def enforces_upload_limit() -> bool:
    """True when Gradio itself refuses uploads over ``max_file_size`` (4.x and later)."""
    return _accepts(gr.Blocks.launch, "max_file_size")
