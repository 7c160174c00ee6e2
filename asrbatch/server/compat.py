"""Every difference between the Gradio generations the server runs on, in one place.

Supported deployment: Gradio 6.x. Also run in tests: 4.44 and 3.50, the generations the
Paraformer WebUI is found on, 4.16, the last 4.x before ``/call``, 4.8, the last 4.x of the
first queue protocol, and 5.50, whose ``/call`` answers even a ``gr.Error`` with ``event: error``
and ``data: null`` (its ``/queue/data`` carries the message). Differences are
detected from signatures where possible, so a minor release that adds or drops a parameter is
handled without a version table.

Measured on 127.0.0.1 with this server (Python 3.11; pins in tests/support/servers.py):

File inputs (``guard_file_inputs``). Without the guard, Gradio 3.50 opens any path a request
names as a file value (``{"name": "/etc/passwd", "data": null, "is_file": true}``), and 4.16
copies any ``{"path": ...}`` into its cache (its ``move_files_to_cache`` has no upload-folder
check); 4.44 and 6.x refuse paths outside the upload folder but fetch ``http(s)`` URLs given as
a file's ``path`` (6.x resolves the host first, then refuses private addresses). With the
guard, every generation answers a path outside ``$GRADIO_TEMP_DIR`` (else ``<tmp>/gradio``) or
a URL with the event's error, before anything is opened: 3.x ``/api/predict`` 500 ``{"error":
"\"Audio: '/etc/passwd' is not a file uploaded to this server: ...\""}`` (quoted); 4.x
``/api/predict`` 500 with the same, ``/queue/data`` ``process_completed`` ``{"success": false,
"output": {"error": ...}}``, 4.44 ``/call`` ``event: error`` + ``data: null`` (4.44 hides every
message there); 6.x 500 / ``event: error`` + ``{"error": "Audio: ...", "visible": true}``.

``queue(api_open=False)`` (``--api-open false``):

- 3.50: ``/api/predict/``, ``/run/predict`` and ``/api/<name>/`` answer 404 ``{"detail": "Not
  Found"}``; only the websocket ``/queue/join`` runs events (``send_hash`` -> ``{"fn_index",
  "session_hash"}``, ``send_data`` -> ``{"data", "event_data", "fn_index", "session_hash"}``,
  then ``estimation``, ``process_starts``, ``process_completed`` with ``output.data``).
  ``/upload``, ``/config`` and ``/info`` still answer.
- 4.16, 4.44, 6.31: ``{prefix}/api/predict/`` and ``/run/...`` answer 404 ``{"detail": "This API
  endpoint does not accept direct HTTP POST requests. Please join the queue to use this API."}``;
  ``{prefix}/queue/join`` works, and so does ``{prefix}/call/<api_name>`` where it exists (4.44,
  6.x: it goes through the queue).

Generators (``--app streaming``): on every generation ``{prefix}/api/predict/`` answers only the
first partial, ``{"data": ["i would like"], "is_generating": true, ...}``, and the rest is lost:
a client must not take that as the transcript. Through the queue the partials arrive as
``process_generating`` messages: 3.50 (websocket) and 4.16 send each partial's full value and
then ``process_completed`` with the last value and, still, ``"is_generating": true``; 4.44 and
6.x send the first partial in full, later ones as diffs (``[["append", [], " a cup"]]``), and
``process_completed`` with the full final value and ``"is_generating": false``.

Gradio 4.16 on the wire (no ``/call`` yet: 404):

- ``GET /config``: ``version`` ``4.16.0``, ``protocol`` ``sse_v1``, no ``api_prefix``, no
  ``max_file_size`` (4.16's launch has no upload limit: the size is checked in the audio
  input's preprocessing, as on 3.x); dependencies have ``api_name`` (the function's name)
  but no ``id``, and ``queue: null``. ``/info`` answers (``/gradio_api/info`` is 404).
- ``POST /upload`` (multipart ``files``) -> ``["<temp dir>/<sha1>/a.wav"]``; the file value is
  ``{"path": ..., "orig_name": ..., "meta": {"_type": "gradio.FileData"}}``.
- ``POST /api/predict/`` ``{"data", "fn_index", "event_data"}`` works (bypasses the queue) while
  ``api_open`` is true.
- ``POST /queue/join`` ``{"data": [...], "fn_index": 0, "event_data": null, "session_hash":
  "s1"}`` -> 200 ``{"event_id": "..."}`` (no session_hash: 400 ``{"detail": "No session hash
  provided."}``); then ``GET /queue/data?session_hash=s1`` streams ``text/event-stream`` lines
  ``data: {"msg": "estimation", "event_id", "rank", "queue_size", "rank_eta"}``, ``data:
  {"msg": "process_starts", "event_id", "eta"}``, ``data: {"msg": "process_completed",
  "event_id", "output": {"data": [...], "is_generating": false, "duration", "average_duration"},
  "success": true}`` (JSON with spaces after separators; 4.44+ write it compact). A failure is
  ``process_completed`` with ``"success": false`` and ``"output": {"error": "<quoted message>"}``.

Gradio 4.8 on the wire (4.9 already says ``sse_v1``): ``/config`` says ``protocol`` ``sse``; no
``/call`` (404), and ``POST /queue/join`` is 405. ``GET /queue/join?fn_index=0&session_hash=s1``
streams ``estimation``, then ``{"msg": "send_data", "event_id": "..."}``; ``POST /queue/data``
``{"data", "fn_index", "session_hash", "event_id", "event_data"}`` answers 200 ``null``; the
stream goes on with ``process_starts``, a generator's ``process_generating`` (full values) and
``process_completed`` without an ``event_id`` (the stream is the event's own).
"""

from __future__ import annotations

import inspect
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

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


def interface_options() -> dict[str, Any]:
    """Extra ``gr.Interface`` arguments: no flagging (3.x writes a ``flagged/`` folder at start)."""
    options: dict[str, Any] = {"analytics_enabled": False}
    if _accepts(gr.Interface.__init__, "flagging_mode"):
        options["flagging_mode"] = "never"
    else:
        options["allow_flagging"] = "never"
    return options


def audio_input(label: str, sources: Sequence[Any], kind: Literal["filepath", "numpy"] = "filepath") -> Any:
    """A ``gr.Audio`` handing the handler a file path (or ``kind="numpy"``: rate and samples).

    Gradio 4 and later take a list ``sources=``; Gradio 3 takes a single ``source=``.
    """
    if _accepts(gr.Audio.__init__, "sources"):
        return gr.Audio(label=label, sources=list(sources), type=kind)
    legacy: dict[str, Any] = {"source": sources[0]}  # one source only, and no such parameter on 4+
    return gr.Audio(label=label, type=kind, **legacy)


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


def enable_queue(demo: Any, concurrency: int, api_open: bool = True) -> None:
    """Queue events, running at most ``concurrency`` of each at once.

    Gradio 4+ limits per event (``default_concurrency_limit``); Gradio 3 has one pool of
    workers (``concurrency_count``). With ``api_open`` the REST routes stay open for scripted
    clients; without, only the queue routes run events (see the module docstring).
    """
    if _accepts(demo.queue, "default_concurrency_limit"):
        demo.queue(default_concurrency_limit=concurrency, api_open=api_open)
    else:
        demo.queue(concurrency_count=concurrency, api_open=api_open)


# --- file inputs must be uploads ------------------------------------------------------------------

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
FETCHABLE_SCHEMES = ("http://", "https://")
FILE_COMPONENTS: tuple[type, ...] = tuple(
    getattr(gr, name) for name in ("Audio", "File", "Video", "Image", "UploadButton") if hasattr(gr, name)
)


UPLOAD_HINT = (
    "send the file's contents as a data URL, or upload it (POST /upload) and pass the path that returns"
    if MAJOR < 4
    else f"upload the file first (POST {'/gradio_api' if MAJOR >= 5 else ''}/upload) and pass the path that returns"
)


class RefusedInput(Exception):
    """A file input names something other than a file uploaded to this server."""


def upload_folder() -> Path:
    """Where this Gradio keeps uploads (and 3.x its decoded data URLs), symlinks resolved.

    Every generation uses ``$GRADIO_TEMP_DIR``, else ``<system temp>/gradio``.
    """
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def named_files(value: Any, takes_files: bool) -> list[str]:
    """The paths or URLs an input value makes Gradio open or fetch, whatever the generation.

    Gradio 4+ file values are ``{"path": ...}`` (FileData); Gradio 3 values are ``{"name": ...,
    "data": <data URL>}`` (contents inline: nothing named) or ``{"name": <path>, "is_file":
    true}``. A plain string counts only for a file-taking component; data URLs are contents.
    """
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [name for item in value for name in named_files(item, takes_files)]
    if isinstance(value, Path):
        return [str(value)]
    if isinstance(value, str):
        return [value] if takes_files and value and not value.startswith("data:") else []
    if isinstance(value, dict):
        names = []
        if isinstance(value.get("path"), str) and value["path"]:
            names.append(value["path"])
        if (
            isinstance(value.get("name"), str)
            and value["name"]
            and (value.get("is_file") or not value.get("data"))
        ):
            names.append(value["name"])
        return names
    return []


def check_named_file(name: str, allowed: Path, allow_urls: bool) -> None:
    """Raise RefusedInput unless ``name`` is inside ``allowed`` (or a permitted URL)."""
    if _URL.match(name):
        if allow_urls and name.lower().startswith(FETCHABLE_SCHEMES):
            return
        hint = "" if allow_urls else " (start it with --allow-url-inputs to allow http and https)"
        raise RefusedInput(
            f"{name!r} is a URL: this server does not fetch files a request names{hint}; "
            "send the file itself instead"
        )
    resolved = Path(os.path.realpath(name))
    if resolved != allowed and allowed not in resolved.parents:
        raise RefusedInput(f"{name!r} is not a file uploaded to this server: {UPLOAD_HINT}")


def _input_components(demo: Any, function: Any) -> list[Any] | None:
    """The input components of the event ``function`` (an fn_index on 3.x/4.1x, else a
    BlockFunction), or None when this Gradio's layout is not known."""
    if isinstance(function, int):
        try:
            return [demo.blocks[i] for i in demo.dependencies[function]["inputs"]]
        except (AttributeError, IndexError, KeyError, TypeError):
            return None
    inputs = getattr(function, "inputs", None)
    return list(inputs) if isinstance(inputs, (list, tuple)) else None


def guard_file_inputs(demo: Any, allow_urls: bool, on_reject: Callable[[], None]) -> None:
    """Make every event refuse file inputs outside the upload folder, before Gradio reads them.

    Gradio 3.50 and 4.16 open any path a request names (``{"name": "/etc/passwd", "is_file":
    true}``, ``{"path": ...}``); 4.44+ refuse outside paths but fetch ``http(s)`` URLs named as
    a file's path. The check wraps ``Blocks.preprocess_data``, which every route (REST, queue,
    ``/call``) passes through before any file is copied or downloaded, and raises ``gr.Error``
    so the client reads why. ``on_reject`` is called for every refused request.
    """
    original = demo.preprocess_data

    def check(function: Any, inputs: Any) -> None:
        allowed = upload_folder()
        components = _input_components(demo, function)
        values = list(inputs) if isinstance(inputs, (list, tuple)) else []
        for index, value in enumerate(values):
            component = components[index] if components and index < len(components) else None
            takes_files = component is not None and isinstance(component, FILE_COMPONENTS)
            for name in named_files(value, takes_files):
                try:
                    check_named_file(name, allowed, allow_urls)
                except RefusedInput as error:
                    on_reject()
                    label = getattr(component, "label", None) or f"input {index}"
                    raise gr.Error(f"{label}: {error}") from None

    def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        function = args[0] if args else kwargs.get("block_fn", kwargs.get("fn_index"))
        inputs = args[1] if len(args) > 1 else kwargs.get("inputs")
        return function, inputs

    if inspect.iscoroutinefunction(original):

        async def preprocess_async(*args: Any, **kwargs: Any) -> Any:
            check(*arguments(args, kwargs))
            return await original(*args, **kwargs)

        demo.preprocess_data = preprocess_async
    else:

        def preprocess(*args: Any, **kwargs: Any) -> Any:
            check(*arguments(args, kwargs))
            return original(*args, **kwargs)

        demo.preprocess_data = preprocess


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
