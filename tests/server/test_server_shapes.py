"""The Gradio app shapes (``--app``) on every Gradio generation, called over raw HTTP.

One server per (Gradio version, shape), shared by the tests of this module. Each recognises a
festival clip through its generation's native queue route (3.x websocket, 4.16 /queue/join,
4.20+ /call), and refuses a file outside its upload folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.server import gradio_http as http
from tests.server.conftest import MAX_WER
from tests.support.servers import ServerEnvironmentError, ServerProcess, start_server
from tests.support.wer import wer

VERSIONS = ("3.50.2", "4.16.0", "4.44.1", "6.31.0")
SHAPES = ("simple", "numpy", "multitab", "streaming")
CASES = [(version, shape) for version in VERSIONS for shape in SHAPES] + [("4.16.0", "paraformer")]
RECOGNITION_FN = {"simple": 0, "numpy": 0, "multitab": 1, "streaming": 0, "paraformer": 0}


@pytest.fixture(scope="module", params=CASES, ids=lambda case: f"gradio-{case[0]}-{case[1]}")
def shaped(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    version, shape = request.param
    try:
        server = start_server(
            version, extra_args=["--app", shape], log_dir=tmp_path_factory.mktemp(f"{shape}-{version}")
        )
    except ServerEnvironmentError as error:
        pytest.fail(str(error), pytrace=False)
    with server:
        yield server, shape


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def request_data(config: dict[str, Any], fn_index: int, audio_slot: Any) -> list[Any]:
    """The declared defaults of the function's inputs, with the audio in the audio input."""
    data = http.input_defaults(config, fn_index)
    types = http.input_types(config, fn_index)
    data[types.index("audio")] = audio_slot
    return data


def test_functions_sit_where_the_shape_puts_them(
    shaped: tuple[ServerProcess, str], session: requests.Session
) -> None:
    server, shape = shaped
    config = http.get_config(session, server.url)
    assert config["version"] == server.version
    dependencies = config["dependencies"]
    fn = RECOGNITION_FN[shape]
    if shape == "multitab":
        assert http.input_types(config, 0) == ["textbox"]  # an unrelated text function first
        assert http.input_types(config, 1) == ["audio", "dropdown", "textbox", "slider"]
        assert http.input_defaults(config, 1)[1:] == ["auto", "", 5]
        labels = {c["id"]: c["props"].get("label") for c in config["components"]}
        assert labels[dependencies[1]["inputs"][2]] == "热词 / Hotwords"
        outputs = {c["id"]: c["type"] for c in config["components"]}
        assert [outputs[i] for i in dependencies[1]["outputs"]] == ["textbox", "json"]
    elif shape == "paraformer":
        assert http.input_types(config, 0) == ["file", "audio", "slider", "textbox"]
    else:
        assert http.input_types(config, fn) == ["audio"]
    assert dependencies[fn]["types"]["generator"] is (shape == "streaming")


def test_recognises_speech_through_the_native_route(
    shaped: tuple[ServerProcess, str], session: requests.Session, speech_clips: list[tuple[str, Path]]
) -> None:
    server, shape = shaped
    config = http.get_config(session, server.url)
    sentence, clip = speech_clips[0]
    fn = RECOGNITION_FN[shape]
    slot = http.file_slot(session, server.url, config, clip)
    outcome = http.run_event(session, server.url, config, fn, request_data(config, fn, slot))
    assert outcome.ok, (outcome, server.log_tail())
    assert outcome.data is not None
    text = outcome.data[0]
    assert wer(sentence, text) <= MAX_WER, text
    if shape == "multitab":
        details = outcome.data[1]
        assert details["language"] == "auto" and details["beam_size"] == 5
        assert details["segments"] and details["segments"][0]["text"] == text
    if shape == "streaming":
        # Growing partial transcripts first, each a beginning of the final one.
        partials = [p[0] for p in outcome.partials if p[0] != text]
        assert partials, outcome
        assert all(text.startswith(p) and len(p) < len(text) for p in partials)
        assert partials == sorted(partials, key=len)
        check_predict_answers_the_first_partial_only(server, session, config, slot, text)


def test_file_inputs_outside_the_upload_folder_are_refused(
    shaped: tuple[ServerProcess, str],
    session: requests.Session,
    speech_clips: list[tuple[str, Path]],
    tmp_path: Path,
) -> None:
    server, shape = shaped
    config = http.get_config(session, server.url)
    outside = tmp_path / "not-uploaded.mp3"
    outside.write_bytes(speech_clips[0][1].read_bytes())
    slot: dict[str, Any] = (
        {"name": str(outside), "data": None, "is_file": True}
        if http.is_legacy(config)
        else {"path": str(outside), "orig_name": "a.mp3", "meta": {"_type": "gradio.FileData"}}
    )
    fn = RECOGNITION_FN[shape]
    recognitions = server.log_text().count("event=recognize")
    outcome = http.predict(session, server.url, config, fn, request_data(config, fn, slot))
    assert not outcome.ok
    assert outcome.error is not None and "is not a file uploaded to this server" in outcome.error
    assert server.log_text().count("event=recognize") == recognitions


def check_predict_answers_the_first_partial_only(
    server: ServerProcess, session: requests.Session, config: dict[str, Any], slot: Any, final: str
) -> None:
    response = session.post(
        server.url + http.api_prefix(config) + "/api/predict/",
        json={"data": [slot], "fn_index": 0, "event_data": None},
        timeout=http.TIMEOUT,
    )
    assert response.status_code == 200
    body = response.json()
    # The trap a client must not fall into: this is not the transcript.
    assert body["is_generating"] is True
    assert final.startswith(body["data"][0]) and body["data"][0] != final
