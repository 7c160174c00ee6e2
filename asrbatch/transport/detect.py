"""Reading a Gradio app's ``GET /config``: generation, routes, the recognition function (pure).

Generations, as seen in ``/config``:

- no ``protocol`` key: Gradio 3.x, REST ``/api/predict/`` by ``fn_index`` (:data:`LEGACY`);
- ``protocol`` present, no ``api_prefix``: Gradio 4.x, queued ``/call/<api_name>`` at the root
  (:data:`SSE`);
- ``api_prefix`` (``/gradio_api``): Gradio 5.x and later, the same routes under the prefix
  (:data:`SSE_PREFIXED`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asrbatch.errors import EndpointError
from asrbatch.transport import payload

LEGACY = "legacy"
"""Gradio 3.x: ``POST /api/predict/`` with the audio inline as a data URL."""
SSE = "sse"
"""Gradio 4.x: ``POST /upload``, ``POST /call/<api_name>``, ``GET /call/<api_name>/<event_id>`` (SSE)."""
SSE_PREFIXED = "sse-prefixed"
"""Gradio 5.x and later: the 4.x routes under ``api_prefix`` (``/gradio_api``)."""

# Component types that can never take an audio file; anything else (audio, file, video,
# custom components) is given the benefit of the doubt.
_NOT_FILE_TYPES = frozenset({
    "textbox", "slider", "number", "checkbox", "checkboxgroup", "dropdown", "radio", "markdown",
    "html", "state", "json", "label", "dataframe", "button", "colorpicker", "highlightedtext", "code",
})


@dataclass(frozen=True)
class Function:
    """One event handler of the app (one entry of ``dependencies``)."""

    fn_index: int
    api_name: str | None
    """The name ``/call/<api_name>`` answers to; None when the function is not exposed by name."""
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    input_types: tuple[str | None, ...]

    def label(self) -> str:
        return f"{self.fn_index}: {self.api_name or '(unnamed)'} ({len(self.inputs)} inputs)"


@dataclass(frozen=True)
class AppConfig:
    """What asrbatch needs from a Gradio app's ``/config``."""

    version: str
    protocol: str
    """:data:`LEGACY`, :data:`SSE` or :data:`SSE_PREFIXED`."""
    wire_protocol: str | None
    """The ``protocol`` value itself (``sse_v3``...); None on 3.x."""
    api_prefix: str
    functions: tuple[Function, ...]
    max_file_size: int | None
    concurrency_limit: int | None

    def describe_functions(self) -> str:
        count = len(self.functions)
        listing = ", ".join(f.label() for f in self.functions)
        plural = "function" if count == 1 else "functions"
        return f"the app has {count} {plural}" + (f" ({listing})" if listing else "")


def parse_config(data: Any) -> AppConfig:
    """Parse a ``/config`` document.  Raises :class:`EndpointError` when it is not a Gradio app's."""
    if not isinstance(data, Mapping) or "version" not in data or "dependencies" not in data:
        keys = ", ".join(sorted(map(str, data)))[:200] if isinstance(data, Mapping) else type(data).__name__
        raise EndpointError(
            f"/config does not look like a Gradio app's (got: {keys})",
            hint="check server.url points at the Gradio WebUI",
        )
    version = str(data.get("version") or "unknown")
    wire = data.get("protocol")
    prefix = str(data.get("api_prefix") or "").rstrip("/")
    if wire is None:
        protocol = LEGACY
    elif prefix:
        protocol = SSE_PREFIXED
    else:
        protocol = SSE
    types: dict[Any, str | None] = {}
    for component in data.get("components") or ():
        if isinstance(component, Mapping) and "id" in component:
            types[component["id"]] = component.get("type")
    functions = []
    limits: list[int] = []
    for position, dep in enumerate(data.get("dependencies") or ()):
        if not isinstance(dep, Mapping):
            continue
        dep_id = dep.get("id")
        fn_index = dep_id if isinstance(dep_id, int) and not isinstance(dep_id, bool) else position
        inputs = tuple(dep.get("inputs") or ())
        limit = dep.get("concurrency_limit")
        if isinstance(limit, int) and not isinstance(limit, bool):
            limits.append(limit)
        functions.append(
            Function(
                fn_index=fn_index,
                api_name=_callable_name(dep, protocol),
                inputs=inputs,
                outputs=tuple(dep.get("outputs") or ()),
                input_types=tuple(types.get(i) for i in inputs),
            )
        )
    max_file_size = data.get("max_file_size")
    return AppConfig(
        version=version,
        protocol=protocol,
        wire_protocol=str(wire) if wire is not None else None,
        api_prefix=prefix,
        functions=tuple(functions),
        max_file_size=max_file_size if isinstance(max_file_size, int) and not isinstance(max_file_size, bool) else None,
        concurrency_limit=min(limits) if limits else None,
    )


def _callable_name(dep: Mapping[str, Any], protocol: str) -> str | None:
    name = dep.get("api_name")
    if not isinstance(name, str) or not name:
        return None  # 3.x unnamed handlers (null), 4.x api_name=False (false)
    if protocol != LEGACY and dep.get("api_visibility") == "private":
        # 6.x turns api_name=False into the string "false" with private visibility.
        return None
    return name


def select_function(
    app: AppConfig,
    *,
    fn_index: int | None,
    api_name: str | None,
    template: Sequence[Any],
    output_index: int,
) -> Function:
    """The function to call: by *api_name* when set, else by *fn_index*; checked against *template*.

    Raises :class:`EndpointError` naming what the app has when the function is
    missing or its inputs or outputs do not fit.
    """
    function: Function | None = None
    if api_name:
        wanted = api_name.lstrip("/")
        function = next((f for f in app.functions if f.api_name == wanted), None)
        if function is None:
            raise EndpointError(
                f"api_name {wanted!r} not found: {app.describe_functions()}",
                hint="set server.api_name to one of these names, or unset it and set server.fn_index",
            )
        what = f"api_name {wanted!r} (fn_index {function.fn_index})"
    elif fn_index is not None:
        function = next((f for f in app.functions if f.fn_index == fn_index), None)
        if function is None:
            raise EndpointError(
                f"fn_index {fn_index} not found: {app.describe_functions()}",
                hint="set server.fn_index to the recognition function",
            )
        what = f"fn_index {fn_index}" + (f" ({function.api_name})" if function.api_name else "")
    else:
        raise EndpointError("neither server.fn_index nor server.api_name is set")
    if len(function.inputs) != len(template):
        raise EndpointError(
            f"{what} takes {len(function.inputs)} inputs but server.input_template has {len(template)} "
            f"values {list(template)!r}: {app.describe_functions()}",
            hint="point server.fn_index/api_name at the recognition function or fix server.input_template",
        )
    position = payload.audio_position(template)
    kind = function.input_types[position] if position < len(function.input_types) else None
    if kind in _NOT_FILE_TYPES:
        raise EndpointError(
            f"{what}: input {position} (where server.input_template puts <audio>) is a {kind}, not an audio input",
            hint="move <audio> in server.input_template to the function's audio input",
        )
    if output_index >= len(function.outputs):
        raise EndpointError(
            f"{what} has {len(function.outputs)} outputs, server.output_index is {output_index}",
            hint="set server.output_index to the output that holds the text",
        )
    return function


def routes(app: AppConfig, function: Function) -> dict[str, str]:
    """Paths (relative to the server URL) used to call *function*."""
    if app.protocol == LEGACY:
        return {"predict": "/api/predict/"}
    prefix = app.api_prefix
    found = {"upload": f"{prefix}/upload"}
    if function.api_name:
        found["call"] = f"{prefix}/call/{function.api_name}"
    else:
        found["join"] = f"{prefix}/queue/join"
        found["data"] = f"{prefix}/queue/data"
    return found


def output_text(outputs: Sequence[Any], output_index: int) -> str:
    """The text at *output_index* of a function's outputs.  Raises :class:`EndpointError` otherwise."""
    if output_index >= len(outputs):
        raise EndpointError(
            f"the server returned {len(outputs)} outputs, server.output_index is {output_index}",
            hint="set server.output_index to the output that holds the text",
        )
    value = outputs[output_index]
    if isinstance(value, Mapping) and "value" in value:  # gr.update(value=...) on 3.x
        value = value["value"]
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise EndpointError(
        f"output {output_index} is a {type(value).__name__}, not text",
        hint="set server.output_index to the output that holds the text",
    )
