"""Choosing the function, its arguments and its text output from /config (pure).

The ``data/shape-*.json`` documents are the reference server's app shapes (``asrbatch serve --app
...``) as Gradio 3.50.2, 4.16.0 and 6.31.0 describe them in ``/config``, trimmed to the components
the functions use and the keys asrbatch reads.
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
VERSIONS = ("3.50.2", "4.16.0", "6.31.0")
AUTO = "auto"


def shape(name: str, version: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((DATA / f"shape-{name}-{version}.json").read_text(encoding="utf-8"))
    return result


def choose(data: dict[str, Any], fn_index: int | str | None = AUTO, api_name: str | None = None,
           template: Any = AUTO, output_index: int | str = AUTO) -> detect.Choice:
    return detect.choose(detect.parse_config(data), fn_index=fn_index, api_name=api_name, template=template,
                         output_index=output_index)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_paraformer_webui_comes_out_as_before(version: str) -> None:
    choice = choose(shape("paraformer", version))
    assert (choice.function.fn_index, choice.template, choice.output_index) == (0, DEFAULT_TEMPLATE, 0)
    # The hotword FILE input gets its declared value (none), the recording goes to the audio input.
    assert choice.function.input_types == ("file", "audio", "slider", "textbox")


@pytest.mark.parametrize("version", VERSIONS)
def test_one_input_app(version: str) -> None:
    choice = choose(shape("simple", version))
    assert (choice.function.fn_index, choice.template, choice.output_index) == (0, ("<audio>",), 0)


@pytest.mark.parametrize("version", VERSIONS)
def test_js_only_handlers_are_never_chosen(version: str) -> None:
    data = shape("simple", version)
    assert [dep["backend_fn"] for dep in data["dependencies"]] == [True, False, False]
    data["dependencies"][0]["backend_fn"] = False  # as if the recognition ran in the browser
    with pytest.raises(EndpointError, match="no function of the app takes an audio or file input and gives text"):
        choose(data)


@pytest.mark.parametrize("version", VERSIONS)
def test_multitab_app_gets_the_declared_defaults(version: str) -> None:
    choice = choose(shape("multitab", version))
    assert choice.function.fn_index == 1  # fn 0 counts words: text in, text out
    assert choice.template == ("<audio>", "auto", "<hotwords>", 5)
    assert choice.output_index == 0
    assert choice.function.output_types == ("textbox", "json")


@pytest.mark.parametrize(
    ("version", "route"), [("3.50.2", detect.LEGACY_QUEUE), ("4.16.0", detect.QUEUE), ("6.31.0", detect.SSE_PREFIXED)]
)
def test_generators_start_on_a_route_that_gives_the_final_result(version: str, route: str) -> None:
    app = detect.parse_config(shape("streaming", version))
    function = choose(shape("streaming", version)).function
    assert function.generator
    assert detect.first_route(app, function) == route


@pytest.mark.parametrize(
    ("version", "route"), [("3.50.2", detect.LEGACY), ("4.16.0", detect.QUEUE), ("6.31.0", detect.SSE_PREFIXED)]
)
def test_routes_by_generation(version: str, route: str) -> None:
    app = detect.parse_config(shape("simple", version))
    function = choose(shape("simple", version)).function
    assert not function.generator
    assert detect.first_route(app, function) == route
    assert app.has_call is (version == "6.31.0")


def test_call_exists_from_4_20() -> None:
    for version, expected in [("4.16.0", False), ("4.19.2", False), ("4.20.0", True), ("4.44.1", True),
                              ("5.0.0b3", True), ("6.31.0", True), ("unknown", True)]:
        data = shape("simple", "4.16.0")
        data["version"] = version
        assert detect.parse_config(data).has_call is expected, version


def test_an_explicit_template_picks_the_function_it_fits() -> None:
    data = shape("multitab", "4.16.0")
    choice = choose(data, template=("<audio>", "zh", "<hotwords>", 3))
    assert choice.function.fn_index == 1
    assert choice.template == ("<audio>", "zh", "<hotwords>", 3)
    with pytest.raises(EndpointError, match=r"no function of the app takes 2 inputs with an audio input"):
        choose(data, template=("<audio>", 1))


def test_an_explicit_function_gets_its_own_template() -> None:
    # The batch tab of the WebUI: a (multiple) file input, a batch size, hotwords.
    choice = choose(shape("paraformer", "6.31.0"), fn_index=1)
    assert choice.template == ("<audio>", "<batch_size>", "<hotwords>")
    with pytest.raises(EndpointError, match=r"fn_index 3 .*has no audio or file input \(its inputs: none\)"):
        choose(shape("paraformer", "6.31.0"), fn_index=3)
    with pytest.raises(EndpointError, match=r"api_name 'count_words' .* has no audio or file input \(its inputs: "
                                            r"textbox\)"):
        choose(shape("multitab", "6.31.0"), api_name="count_words")


def test_the_first_text_output_holds_the_text_unless_told() -> None:
    data = shape("multitab", "6.31.0")
    dependency = data["dependencies"][1]
    dependency["outputs"] = list(reversed(dependency["outputs"]))  # JSON first, then the transcript
    assert choose(data).output_index == 1
    assert choose(data, output_index=0).output_index == 0
    with pytest.raises(EndpointError, match="has 2 outputs, server.output_index is 2"):
        choose(data, output_index=2)


def test_hotwords_by_label_or_placeholder_and_batch_size_by_label() -> None:
    data = shape("multitab", "3.50.2")
    components = {c["id"]: c for c in data["components"]}
    inputs = data["dependencies"][1]["inputs"]
    components[inputs[2]]["props"] = {"label": "Context", "placeholder": "Prompt: words to favour"}
    components[inputs[3]]["props"] = {"label": "Batch size / 批量", "value": 4}
    assert choose(data).template == ("<audio>", "auto", "<hotwords>", "<batch_size>")
    components[inputs[2]]["props"] = {"label": "Notes", "value": "n/a"}
    components[inputs[3]]["props"] = {"label": "Beam"}
    assert choose(data).template == ("<audio>", "auto", "n/a", None)


def test_a_default_outside_props_is_read_too() -> None:
    data = shape("multitab", "3.50.2")
    dropdown = next(c for c in data["components"] if c["type"] == "dropdown")
    dropdown["value"] = dropdown["props"].pop("value")
    assert choose(data).template[1] == "auto"


def test_audio_inputs_go_before_file_inputs() -> None:
    data = shape("paraformer", "3.50.2")
    # Move the batch tab (file input only) in front of the single-file tab.
    data["dependencies"] = [data["dependencies"][1], data["dependencies"][0], *data["dependencies"][2:]]
    assert choose(data).function.input_types == ("file", "audio", "slider", "textbox")


def test_a_file_input_is_used_when_no_function_takes_audio() -> None:
    data = shape("simple", "6.31.0")
    next(c for c in data["components"] if c["type"] == "audio")["type"] = "file"
    choice = choose(data)
    assert (choice.function.fn_index, choice.template) == (0, ("<audio>",))
