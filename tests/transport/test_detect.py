"""Reading /config: generation, functions, checks (on /config documents recorded from real servers).

The samples in ``data/`` come from a four-tab app shaped like the Paraformer WebUI with two extra
buttons: fn 4 = recognize with ``api_name=False``, fn 5 = recognize with ``api_name="asr"``
(components trimmed to id and type).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from asrbatch.config import DEFAULT_TEMPLATE
from asrbatch.errors import EndpointError
from asrbatch.transport import detect

DATA = Path(__file__).parent / "data"
VERSIONS = ("3.50.2", "4.44.1", "6.31.0")
pytestmark = pytest.mark.unit


def load(version: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((DATA / f"config-{version}.json").read_text(encoding="utf-8"))
    return result


def select(app: detect.AppConfig, fn_index: int | None = 0, api_name: str | None = None,
           template: tuple[Any, ...] = DEFAULT_TEMPLATE, output_index: int = 0) -> detect.Function:
    return detect.select_function(app, fn_index=fn_index, api_name=api_name, template=template,
                                  output_index=output_index)


@pytest.mark.parametrize(
    ("version", "protocol", "wire", "prefix"),
    [("3.50.2", detect.LEGACY, None, ""), ("4.44.1", detect.SSE, "sse_v3", ""),
     ("6.31.0", detect.SSE_PREFIXED, "sse_v3", "/gradio_api")],
)
def test_generation(version: str, protocol: str, wire: str | None, prefix: str) -> None:
    app = detect.parse_config(load(version))
    assert (app.version, app.protocol, app.wire_protocol, app.api_prefix) == (version, protocol, wire, prefix)
    assert [f.fn_index for f in app.functions] == [0, 1, 2, 3, 4, 5]
    assert app.concurrency_limit is None
    assert app.max_file_size is None


def test_names_per_generation() -> None:
    names = {v: [f.api_name for f in detect.parse_config(load(v)).functions] for v in VERSIONS}
    assert names["3.50.2"] == [None, None, None, None, None, "asr"]
    # 4.x: api_name=False is false; 6.x: the string "false" with private visibility.
    assert names["4.44.1"] == ["recognize", "batch", "lambda", "sysinfo", None, "asr"]
    assert names["6.31.0"] == ["recognize", "batch", "lambda", "sysinfo", None, "asr"]


@pytest.mark.parametrize("version", VERSIONS)
def test_select_by_fn_index_and_routes(version: str) -> None:
    app = detect.parse_config(load(version))
    function = select(app, 0)
    assert function.fn_index == 0
    assert len(function.inputs) == 4
    assert function.input_types == ("file", "audio", "slider", "textbox")
    prefix = app.api_prefix
    expected = ({"predict": "/api/predict/"} if app.protocol == detect.LEGACY
                else {"upload": f"{prefix}/upload", "call": f"{prefix}/call/recognize"})
    assert detect.routes(app, function) == expected


@pytest.mark.parametrize("version", VERSIONS)
def test_api_name_wins_over_fn_index(version: str) -> None:
    app = detect.parse_config(load(version))
    assert select(app, fn_index=3, api_name="asr").fn_index == 5
    assert select(app, fn_index=3, api_name="/asr").fn_index == 5


@pytest.mark.parametrize("version", ["4.44.1", "6.31.0"])
def test_unnamed_function_goes_through_queue_join(version: str) -> None:
    app = detect.parse_config(load(version))
    function = select(app, 4)
    assert function.api_name is None
    assert detect.routes(app, function) == {"upload": f"{app.api_prefix}/upload",
                                            "join": f"{app.api_prefix}/queue/join",
                                            "data": f"{app.api_prefix}/queue/data"}


def test_missing_fn_index_lists_the_functions() -> None:
    app = detect.parse_config(load("4.44.1"))
    with pytest.raises(EndpointError) as caught:
        select(app, 7)
    assert str(caught.value).startswith(
        "fn_index 7 not found: the app has 6 functions (0: recognize (4 inputs), 1: batch (3 inputs), "
        "2: lambda (0 inputs), 3: sysinfo (0 inputs), 4: (unnamed) (4 inputs), 5: asr (4 inputs))"
    )
    assert "server.fn_index" in str(caught.value)


def test_missing_api_name_lists_the_functions() -> None:
    app = detect.parse_config(load("6.31.0"))
    with pytest.raises(EndpointError, match=r"api_name 'transcribe' not found: the app has 6 functions \(0: recognize"):
        select(app, api_name="transcribe")


def test_inputs_must_match_the_template() -> None:
    app = detect.parse_config(load("3.50.2"))
    with pytest.raises(EndpointError, match=r"fn_index 3 takes 0 inputs but server.input_template has 4 values"):
        select(app, 3)
    with pytest.raises(EndpointError, match=r"fn_index 1 takes 3 inputs"):
        select(app, 1)


def test_audio_placeholder_must_sit_on_a_file_input() -> None:
    app = detect.parse_config(load("6.31.0"))
    with pytest.raises(EndpointError, match="input 2 .* is a slider, not an audio input"):
        select(app, 0, template=(None, "<batch_size>", "<audio>", "<hotwords>"))
    # The file input (the hotword file in the WebUI) could take audio: allowed.
    assert select(app, 0, template=("<audio>", None, "<batch_size>", "<hotwords>")).fn_index == 0


def test_output_index_must_exist() -> None:
    app = detect.parse_config(load("4.44.1"))
    assert select(app, 0, output_index=1).outputs == (7, 8)
    with pytest.raises(EndpointError, match="has 2 outputs, server.output_index is 2"):
        select(app, 0, output_index=2)


def test_max_file_size_and_concurrency_limit_when_present() -> None:
    data = load("6.31.0")
    data["max_file_size"] = 10240
    data["dependencies"][0]["concurrency_limit"] = 2
    app = detect.parse_config(data)
    assert app.max_file_size == 10240
    assert app.concurrency_limit == 2


@pytest.mark.parametrize("data", [[], {"detail": "Not Found"}, {"version": "1"}, "html"])
def test_not_a_gradio_config(data: Any) -> None:
    with pytest.raises(EndpointError, match="does not look like a Gradio app"):
        detect.parse_config(data)


@pytest.mark.parametrize(
    ("outputs", "text"),
    [(["hello", "details"], "hello"), ([None], ""), ([{"__type__": "update", "value": "x"}], "x"), ([3], "3")],
)
def test_output_text(outputs: list[Any], text: str) -> None:
    assert detect.output_text(outputs, 0) == text


def test_output_text_errors() -> None:
    with pytest.raises(EndpointError, match="returned 1 outputs, server.output_index is 1"):
        detect.output_text(["a"], 1)
    with pytest.raises(EndpointError, match="output 0 is a list, not text"):
        detect.output_text([["a"]], 0)


# -- an app's own error report in place of a transcript


@pytest.mark.parametrize(
    ("outputs", "reported"),
    [
        # FunASR's Gradio demo when its backend fails, and when it cannot reach it.
        (["", "HTTP 500 from http://gpu:8000/v1/audio/transcriptions: Internal Server Error"],
         "HTTP 500 from http://gpu:8000/v1/audio/transcriptions: Internal Server Error"),
        (["", "Transcription failed: <urlopen error [Errno 111] Connection refused>"],
         "Transcription failed: <urlopen error [Errno 111] Connection refused>"),
        # The error as the transcript.
        (["Error: CUDA out of memory. Tried to allocate 2.00 GiB"], "Error: CUDA out of memory. Tried to allocate 2.00 GiB"),
        (["识别失败：模型未加载"], "识别失败：模型未加载"),
        (["Traceback (most recent call last):\n  File \"app.py\", line 3"], "Traceback (most recent call last):"),
        # A details output as JSON, or as a dict, or a gr.update.
        (["", '{"text": "", "error": "model not loaded"}'], "error: model not loaded"),
        ([{"__type__": "update", "value": ""}, {"detail": "backend timed out"}], "detail: backend timed out"),
    ],
)
def test_an_apps_error_report_is_not_a_transcript(outputs: list[object], reported: str) -> None:
    assert detect.app_failure(outputs, 0) == reported


@pytest.mark.parametrize(
    "outputs",
    [
        ["", '{"text": "", "error": null, "segments": []}'],  # silence, with an empty error field
        ["", {"text": "", "segments": []}],
        ["", "Engine: sphinx, 0 words, 2.1 s of audio"],
        [None, None],
        ["The error in the budget was found on Monday."],  # a transcript that mentions an error
        ["Failed attempts are logged, she said."],
        ["Transcribed 3 files.", "Transcription failed for none"],  # a transcript beside a status
    ],
)
def test_transcripts_and_quiet_details_are_not_errors(outputs: list[object]) -> None:
    assert detect.app_failure(outputs, 0) is None
