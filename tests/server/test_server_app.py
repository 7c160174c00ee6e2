"""The reference WebUI on each Gradio generation, called over raw HTTP like a batch client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.server import gradio_http as http
from tests.server.conftest import MAX_WER
from tests.support.servers import ServerProcess
from tests.support.wer import wer

TAB_LABELS = ["Single file", "Batch", "Live recording", "System info"]


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def config(gradio_server: ServerProcess, session: requests.Session) -> dict[str, Any]:
    return http.get_config(session, gradio_server.url)


def component_types(config: dict[str, Any], ids: list[int]) -> list[str]:
    by_id = {component["id"]: component for component in config["components"]}
    return [by_id[i]["type"] for i in ids]


def layout_ids(node: dict[str, Any]) -> list[int]:
    """Component ids in the order the page lays them out."""
    ids = [node["id"]]
    for child in node.get("children", []):
        ids += layout_ids(child)
    return ids


def test_config_reports_the_running_gradio(gradio_server: ServerProcess, config: dict[str, Any]) -> None:
    assert config["version"] == gradio_server.version


def test_four_tabs_in_webui_order(config: dict[str, Any]) -> None:
    labels = {c["id"]: c["props"].get("label") for c in config["components"] if c["type"] == "tabitem"}
    ordered = [labels[i] for i in layout_ids(config["layout"]) if i in labels]
    assert ordered == TAB_LABELS


def test_fn_0_is_recognize_with_four_inputs_and_two_outputs(config: dict[str, Any]) -> None:
    recognize = config["dependencies"][0]
    assert component_types(config, recognize["inputs"]) == ["file", "audio", "slider", "textbox"]
    assert component_types(config, recognize["outputs"]) == ["textbox", "markdown"]
    expected_name = None if http.is_legacy(config) else "recognize"
    assert recognize["api_name"] == expected_name


def test_fn_1_to_3_are_batch_live_and_system_info(config: dict[str, Any]) -> None:
    batch, live, info = config["dependencies"][1:4]
    assert component_types(config, batch["inputs"]) == ["file", "slider", "textbox"]
    assert component_types(config, live["inputs"]) == ["audio", "textbox"]
    assert (info["inputs"], component_types(config, info["outputs"])) == ([], ["markdown"])
    assert len(config["dependencies"]) == 4


def test_system_info_reports_engine_versions_and_counts_requests(
    gradio_server: ServerProcess,
    config: dict[str, Any],
    session: requests.Session,
    speech_clips: list[tuple[str, Path]],
) -> None:
    before = http.system_info(session, gradio_server.url, config)
    assert before["Engine"] == "sphinx"
    assert before["Model"] == "en-us"
    assert before["Device"] == "cpu"
    assert before["Gradio"] == gradio_server.version
    assert before["Python"].startswith("3.")
    assert before["Uptime"].endswith(" s)")

    outcome = http.recognize(session, gradio_server.url, config, speech_clips[0][1])
    assert outcome.ok, outcome

    after = http.system_info(session, gradio_server.url, config)
    assert int(after["Requests served"]) >= int(before["Requests served"]) + 1
    assert int(after["Files recognised"]) >= int(before["Files recognised"]) + 1


def test_recognizes_synthetic_speech(
    gradio_server: ServerProcess,
    config: dict[str, Any],
    session: requests.Session,
    speech_clips: list[tuple[str, Path]],
) -> None:
    errors = []
    for sentence, clip in speech_clips:
        outcome = http.recognize(session, gradio_server.url, config, clip, hotwords="fox, report")
        assert outcome.ok, outcome
        assert outcome.data is not None
        text, details = outcome.data
        errors.append(wer(sentence, text))
        facts = http.parse_report(details)
        assert 2.0 < float(facts["Audio duration"].removesuffix(" s")) < 6.0
        assert facts["Engine"] == "sphinx (model en-us, device cpu)"
        assert facts["Hotwords"].startswith("2 received, ignored")
        assert facts["Speed"].endswith("x real time")
    assert sum(errors) / len(errors) <= MAX_WER, errors


def test_undecodable_audio_is_reported_as_the_files_fault(
    gradio_server: ServerProcess,
    config: dict[str, Any],
    session: requests.Session,
    undecodable_file: Path,
) -> None:
    outcome = http.recognize(session, gradio_server.url, config, undecodable_file)
    assert not outcome.ok
    if gradio_server.version.startswith("4."):
        # Gradio 4.44's /call stream never carries the message (always `data: null`);
        # its REST route does.
        assert outcome.error is None
        slot = http.file_slot(session, gradio_server.url, config, undecodable_file)
        outcome = http.predict(session, gradio_server.url, config, 0, [None, slot, 1, ""])
        assert outcome.status == 500
    assert outcome.error is not None
    assert "cannot decode audio" in outcome.error
    assert str(undecodable_file.parent) not in outcome.error  # no server paths leak


def test_missing_audio_is_an_error(
    gradio_server: ServerProcess, config: dict[str, Any], session: requests.Session
) -> None:
    outcome = http.predict(session, gradio_server.url, config, 0, [None, None, 1, ""])
    assert not outcome.ok
    assert outcome.error is not None and "no audio given" in outcome.error


def test_batch_tab_combines_files_and_reports_each(
    gradio_server: ServerProcess,
    config: dict[str, Any],
    session: requests.Session,
    speech_clips: list[tuple[str, Path]],
    undecodable_file: Path,
) -> None:
    clip = speech_clips[1][1]
    files = [http.file_slot(session, gradio_server.url, config, p) for p in (clip, undecodable_file)]
    outcome = http.predict(session, gradio_server.url, config, 1, [files, 1, ""])
    assert outcome.ok, outcome
    text, details = outcome.data or ["", ""]
    first, second = text.split("\n\n")
    assert first.startswith(f"{clip.name}: ") and "office" in first
    assert second.startswith(f"{undecodable_file.name}: [error: cannot decode audio")
    assert "- Files: 2 (1 recognised, 1 failed)" in details


def test_live_tab_recognizes_a_recording(
    gradio_server: ServerProcess,
    config: dict[str, Any],
    session: requests.Session,
    speech_clips: list[tuple[str, Path]],
) -> None:
    sentence, clip = speech_clips[2]
    slot = http.file_slot(session, gradio_server.url, config, clip)
    outcome = http.predict(session, gradio_server.url, config, 2, [slot, ""])
    assert outcome.ok, outcome
    assert outcome.data is not None
    assert wer(sentence, outcome.data[0]) <= MAX_WER


def test_hotword_file_and_textbox_are_combined(
    gradio_server: ServerProcess,
    config: dict[str, Any],
    session: requests.Session,
    speech_clips: list[tuple[str, Path]],
    tmp_path: Path,
) -> None:
    hotword_file = tmp_path / "hotwords.txt"
    hotword_file.write_text("阿里巴巴\n达摩院, paraformer\n", encoding="utf-8")
    hot_slot = http.file_slot(session, gradio_server.url, config, hotword_file)
    audio_slot = http.file_slot(session, gradio_server.url, config, speech_clips[0][1])
    outcome = http.predict(session, gradio_server.url, config, 0, [hot_slot, audio_slot, 2, "fox"])
    assert outcome.ok, outcome
    assert outcome.data is not None
    assert http.parse_report(outcome.data[1])["Hotwords"].startswith("4 received")
