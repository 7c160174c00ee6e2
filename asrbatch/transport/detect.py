"""Reading a Gradio app's ``GET /config``: generation, routes, the recognition function (pure).

Generations, as seen in ``/config``:

- no ``protocol`` key: Gradio 3.x, REST ``/api/predict/`` by ``fn_index`` (:data:`LEGACY`);
- ``protocol`` present, no ``api_prefix``: Gradio 4.x, queued ``/call/<api_name>`` at the root
  (:data:`SSE`);
- ``api_prefix`` (``/gradio_api``): Gradio 5.x and later, the same routes under the prefix
  (:data:`SSE_PREFIXED`).

``/call`` exists from Gradio 4.20; before, and for functions without a name, a 4.x+ function is
called through ``/queue/join`` + ``/queue/data`` (:data:`QUEUE`).  On 3.x a generator (or an app
whose REST routes are closed by ``queue(api_open=False)``) is called through the websocket
``/queue/join`` (:data:`LEGACY_QUEUE`).  Which function to call, with which arguments, and which
output holds the text is chosen by :func:`choose` (``auto`` settings read the components).
"""

from __future__ import annotations

import contextlib
import json
import re
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
QUEUE = "queue"
"""Gradio 4.x and later by fn_index: ``POST {prefix}/queue/join``, ``GET {prefix}/queue/data`` (SSE)."""
LEGACY_QUEUE = "legacy-queue"
"""Gradio 3.x through its websocket queue, ``/queue/join`` (generators; ``api_open=False``)."""
CALL_FROM = (4, 20)
"""The first Gradio version with ``/call/<api_name>``."""

# Component types that can never take an audio file; anything else (audio, file, video,
# custom components) is given the benefit of the doubt.
_NOT_FILE_TYPES = frozenset({
    "textbox", "slider", "number", "checkbox", "checkboxgroup", "dropdown", "radio", "markdown",
    "html", "state", "json", "label", "dataframe", "button", "colorpicker", "highlightedtext", "code",
})
RECORDING_INPUTS = ("audio",)
"""Inputs given the recording first; then, where a function has none, :data:`FILE_INPUTS`."""
FILE_INPUTS = ("file", "uploadbutton")
TEXT_OUTPUTS = ("textbox",)
"""Outputs taken as the transcript first; then, where a function has none, :data:`OTHER_TEXT_OUTPUTS`."""
OTHER_TEXT_OUTPUTS = ("markdown", "html", "code")
HOTWORDS_INPUT = re.compile(r"热词|hot[ _-]?words?|prompt", re.IGNORECASE)
"""A textbox whose label or placeholder says this gets ``<hotwords>``."""
BATCH_SIZE_INPUT = re.compile(r"batch|批", re.IGNORECASE)
"""A slider (or number) whose label says this gets ``<batch_size>``."""


@dataclass(frozen=True)
class Component:
    """What ``/config`` says of one input or output component."""

    id: Any
    type: str | None
    label: str | None = None
    placeholder: str | None = None
    value: Any = None
    """The value the app declares (``props.value``; ``value`` on some 3.x), None when it declares none."""

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Component:
        props = data.get("props")
        props = props if isinstance(props, Mapping) else {}

        def text(key: str) -> str | None:
            value = props.get(key, data.get(key))
            return value if isinstance(value, str) else None

        return cls(id=data.get("id"), type=data.get("type"), label=text("label"), placeholder=text("placeholder"),
                   value=props["value"] if "value" in props else data.get("value"))


@dataclass(frozen=True)
class Function:
    """One event handler of the app (one entry of ``dependencies``)."""

    fn_index: int
    api_name: str | None
    """The name ``/call/<api_name>`` answers to; None when the function is not exposed by name."""
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    input_types: tuple[str | None, ...]
    input_components: tuple[Component, ...] = ()
    output_types: tuple[str | None, ...] = ()
    generator: bool = False
    """The handler yields partial results (``types.generator``): only a queue route gives the final one."""
    backend: bool = True
    """False for js-only handlers (``backend_fn: false``), which the server cannot run."""

    def label(self) -> str:
        return f"{self.fn_index}: {self.api_name or '(unnamed)'} ({len(self.inputs)} inputs)"

    def recording_input(self) -> int | None:
        """Where the recording goes: the first audio input, else the first file input, else None."""
        for kinds in (RECORDING_INPUTS, FILE_INPUTS):
            for position, kind in enumerate(self.input_types):
                if kind in kinds:
                    return position
        return None

    def text_output(self) -> int | None:
        """The first text output (a textbox, else markdown, HTML or code), None when there is none."""
        for kinds in (TEXT_OUTPUTS, OTHER_TEXT_OUTPUTS):
            for position, kind in enumerate(self.output_types):
                if kind in kinds:
                    return position
        return None


@dataclass(frozen=True)
class Choice:
    """The function to call, the arguments sent to it and the output that holds the text."""

    function: Function
    template: tuple[Any, ...]
    output_index: int


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
    has_call: bool = False
    """The server has ``{prefix}/call/<api_name>`` (Gradio 4.20 and later)."""

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
    components: dict[Any, Component] = {}
    for component in data.get("components") or ():
        if isinstance(component, Mapping) and "id" in component:
            components[component["id"]] = Component.parse(component)
    functions = []
    limits: list[int] = []
    for position, dep in enumerate(data.get("dependencies") or ()):
        if not isinstance(dep, Mapping):
            continue
        dep_id = dep.get("id")
        fn_index = dep_id if isinstance(dep_id, int) and not isinstance(dep_id, bool) else position
        inputs = tuple(dep.get("inputs") or ())
        outputs = tuple(dep.get("outputs") or ())
        declared = tuple(components.get(i) or Component(id=i, type=None) for i in inputs)
        kinds = dep.get("types")
        limit = dep.get("concurrency_limit")
        if isinstance(limit, int) and not isinstance(limit, bool):
            limits.append(limit)
        functions.append(
            Function(
                fn_index=fn_index,
                api_name=_callable_name(dep, protocol),
                inputs=inputs,
                outputs=outputs,
                input_types=tuple(c.type for c in declared),
                input_components=declared,
                output_types=tuple(components[i].type if i in components else None for i in outputs),
                generator=isinstance(kinds, Mapping) and kinds.get("generator") is True,
                backend=dep.get("backend_fn") is not False,
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
        has_call=protocol != LEGACY and _version_tuple(version) >= CALL_FROM,
    )


def _version_tuple(version: str) -> tuple[int, ...]:
    """``4.16.0`` -> (4, 16, 0); a version that cannot be read counts as a recent one."""
    numbers = []
    for part in version.split(".")[:3]:
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
    return tuple(numbers) if numbers else (99,)


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
    fn_index: int | str | None,
    api_name: str | None,
    template: Sequence[Any] | str,
    output_index: int | str,
) -> Function:
    """The function :func:`choose` picks (see there)."""
    return choose(app, fn_index=fn_index, api_name=api_name, template=template, output_index=output_index).function


def choose(
    app: AppConfig,
    *,
    fn_index: int | str | None,
    api_name: str | None,
    template: Sequence[Any] | str,
    output_index: int | str,
) -> Choice:
    """The function to call, its arguments and its text output, from the settings and the app.

    The function is *api_name* when set, else *fn_index*; with neither (``auto``), the first
    function the server runs that takes an audio input (else a file input) and gives text and, with
    an explicit *template*, fits it.  An ``auto`` *template* is built from the function's inputs
    (:func:`auto_template`); an ``auto`` *output_index* is its first text output.  Raises
    :class:`EndpointError` naming what the app has when the function is missing or does not fit.
    """
    automatic = not isinstance(template, (list, tuple))
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
    elif isinstance(fn_index, int):
        function = next((f for f in app.functions if f.fn_index == fn_index), None)
        if function is None:
            raise EndpointError(
                f"fn_index {fn_index} not found: {app.describe_functions()}",
                hint="set server.fn_index to the recognition function",
            )
        what = f"fn_index {fn_index}" + (f" ({function.api_name})" if function.api_name else "")
    else:
        function = _recognition_function(app, None if automatic else tuple(template))
        what = f"fn_index {function.fn_index}" + (f" ({function.api_name})" if function.api_name else "")
    if automatic:
        arguments = auto_template(function, what)
    else:
        arguments = tuple(template)
        _check_template(app, function, arguments, what)
    if isinstance(output_index, int):
        if output_index >= len(function.outputs):
            raise EndpointError(
                f"{what} has {len(function.outputs)} outputs, server.output_index is {output_index}",
                hint="set server.output_index to the output that holds the text",
            )
        chosen_output = output_index
    else:
        if not function.outputs:
            raise EndpointError(f"{what} has no outputs: {app.describe_functions()}",
                                hint="point server.fn_index/api_name at the recognition function")
        found = function.text_output()
        # No text output by type (a custom component?): the first output, checked when it answers.
        chosen_output = found if found is not None else 0
    return Choice(function, arguments, chosen_output)


def _recognition_function(app: AppConfig, template: tuple[Any, ...] | None) -> Function:
    """The first function the server runs that takes the recording and gives text (and fits *template*)."""
    candidates = [f for f in app.functions if f.backend and f.text_output() is not None]
    if template is not None:
        fitting = []
        for function in candidates:
            try:
                _check_template(app, function, template, "")
            except EndpointError:
                continue
            fitting.append(function)
        if not fitting:
            raise EndpointError(
                f"no function of the app takes {len(template)} inputs with an audio input where "
                f"server.input_template puts <audio>, and gives text: {app.describe_functions()}",
                hint="set server.fn_index or server.api_name, or server.input_template: auto",
            )
        candidates = fitting
    for kinds in (RECORDING_INPUTS, FILE_INPUTS):
        for function in candidates:
            position = function.recording_input()
            if position is not None and function.input_types[position] in kinds:
                return function
    raise EndpointError(
        f"no function of the app takes an audio or file input and gives text: {app.describe_functions()}",
        hint="set server.fn_index or server.api_name, and server.input_template",
    )


def auto_template(function: Function, what: str = "") -> tuple[Any, ...]:
    """The arguments for *function* read from its inputs: the recording goes to its audio input (else
    its file input), ``<batch_size>`` to a slider labelled for batch size, ``<hotwords>`` to a textbox
    labelled (or with a placeholder) for hotwords, and every other input gets the value the app declares."""
    position = function.recording_input()
    if position is None:
        kinds = ", ".join(str(kind) for kind in function.input_types) or "none"
        raise EndpointError(
            f"{what or function.label()} has no audio or file input (its inputs: {kinds})",
            hint="point server.fn_index/api_name at the recognition function, or set server.input_template",
        )
    template: list[Any] = []
    batch_size = hotwords = False
    for index, component in enumerate(function.input_components):
        words = " ".join(filter(None, (component.label, component.placeholder)))
        if index == position:
            template.append(payload.AUDIO)
        elif (not batch_size and component.type in ("slider", "number") and component.label
              and BATCH_SIZE_INPUT.search(component.label)):
            batch_size = True
            template.append(payload.BATCH_SIZE)
        elif not hotwords and component.type == "textbox" and HOTWORDS_INPUT.search(words):
            hotwords = True
            template.append(payload.HOTWORDS)
        else:
            template.append(component.value)
    return tuple(template)


def _check_template(app: AppConfig, function: Function, template: tuple[Any, ...], what: str) -> None:
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


def routes(app: AppConfig, function: Function, *, via_queue: bool = False) -> dict[str, str]:
    """Paths (relative to the server URL) used to call *function*.

    3.x: ``predict`` (REST), or ``join`` (the websocket queue) *via_queue*.  4.x and later:
    ``upload`` and ``call`` where the server has ``/call`` and the function a name, else (and
    *via_queue*) ``join`` + ``data``.
    """
    if app.protocol == LEGACY:
        return {"join": "/queue/join"} if via_queue else {"predict": "/api/predict/"}
    prefix = app.api_prefix
    found = {"upload": f"{prefix}/upload"}
    if function.api_name and app.has_call and not via_queue:
        found["call"] = f"{prefix}/call/{function.api_name}"
    else:
        found["join"] = f"{prefix}/queue/join"
        found["data"] = f"{prefix}/queue/data"
    return found


def first_route(app: AppConfig, function: Function) -> str:
    """How *function* is called at first: :data:`LEGACY`, :data:`LEGACY_QUEUE` (a 3.x generator),
    :data:`SSE`/:data:`SSE_PREFIXED` (``/call``) or :data:`QUEUE`."""
    if app.protocol == LEGACY:
        return LEGACY_QUEUE if function.generator else LEGACY
    return app.protocol if "call" in routes(app, function) else QUEUE


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


# -- an app's own error report in place of a transcript ------------------------------------------

_ERROR_WORDS = re.compile(
    r"\b(?:error|errno|exception|traceback|failed|failure|refused|unavailable|timed out)\b"
    r"|\bHTTP [45]\d\d\b|错误|失败|异常|出错|超时",
    re.IGNORECASE,
)
_LEADING_ERROR = re.compile(
    r"\s*(?:traceback \(most recent call last\)"
    r"|http [45]\d\d\b"
    r"|(?:\[?error\]?|exception|transcription failed|recognition failed|failed)\s*[:：]"
    r"|(?:错误|失败|识别失败|出错|异常)\s*[:：])",
    re.IGNORECASE,
)
_ERROR_KEYS = ("error", "err", "exception", "detail", "message", "msg")


def app_failure(outputs: Sequence[Any], output_index: int) -> str | None:
    """The error an app reported *instead of* a transcript, or None.

    Gradio apps often catch their own failures and return them as ordinary outputs, so a call
    succeeds with an empty transcript beside a status saying what went wrong (FunASR's own
    Gradio demo answers ``("", "HTTP 500 from ...")`` when its backend fails) or with the error
    as the "transcript" (``"Error: CUDA out of memory"``).  Taken at face value, the recording
    would be recorded as silent, or its transcript would be the error.  Found: the text output
    is empty and another output reports an error, or the text itself opens like an error report.
    """
    if output_index >= len(outputs):
        return None
    text = outputs[output_index]
    if isinstance(text, Mapping) and "value" in text:
        text = text["value"]
    if isinstance(text, str) and text.strip():
        return _first_line(text) if _LEADING_ERROR.match(text) else None
    if text not in (None, ""):
        return None
    for index, value in enumerate(outputs):
        if index != output_index:
            found = _reported_error(value)
            if found:
                return found
    return None


def _reported_error(value: Any) -> str | None:
    """An error message in one output (text, or the JSON of a details output), else None."""
    if isinstance(value, Mapping) and set(value) <= {"value", "__type__", "visible"} and "value" in value:
        value = value["value"]  # gr.update(value=...)
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("{", "["):
            with contextlib.suppress(ValueError):
                value = json.loads(stripped)
        if isinstance(value, str):
            return _first_line(value) if _ERROR_WORDS.search(value) else None
    if isinstance(value, Mapping):
        for key in _ERROR_KEYS:
            reported = value.get(key)
            if isinstance(reported, str) and reported.strip():
                return _first_line(f"{key}: {reported}")
            if isinstance(reported, Mapping):
                inner = _reported_error(reported)
                if inner:
                    return inner
    return None


def _first_line(text: str, limit: int = 200) -> str:
    line = next((part.strip() for part in text.strip().splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."
