"""The funasr engine's own code: arguments it builds, results it parses, errors it gives.

FunASR's model weights (gigabytes, fetched from ModelScope) cannot be downloaded on the test
machines, so ``AutoModel`` is replaced by a small stand-in that records its arguments and
answers like FunASR does. Everything else here is the engine's real code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from asrbatch.server.engines import EngineSettings, EngineUnavailable, Segment, create_engine, paraformer


class StandInAutoModel:
    """Records how it was built and called; answers with FunASR's result shape."""

    built_with: dict[str, Any] = {}

    def __init__(self, **kwargs: Any) -> None:
        StandInAutoModel.built_with = kwargs
        self.calls: list[dict[str, Any]] = []

    def generate(self, **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append(kwargs)
        return [
            {
                "key": "input",
                "text": "欢迎使用语音识别。今天天气很好。",
                "sentence_info": [
                    {"text": "欢迎使用语音识别。", "start": 120, "end": 1880, "timestamp": []},
                    {"text": "今天天气很好。", "start": 2100, "end": 3500, "timestamp": []},
                ],
            }
        ]


def test_default_models_are_the_webui_ones() -> None:
    arguments = paraformer.automodel_arguments(EngineSettings("funasr"))
    assert arguments == {
        "model": "iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch",
        "vad_model": "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch",
        "punc_model": "iic/punc_ct-transformer_cn-en-common-vocab471067-large",
        "device": "cpu",
        "disable_update": True,
    }


def test_local_model_directories_are_passed_as_paths(tmp_path: Path) -> None:
    for name in ("asr", "vad", "punc"):
        (tmp_path / name).mkdir()
    settings = EngineSettings(
        "funasr",
        model=str(tmp_path / "asr"),
        vad_model=str(tmp_path / "vad"),
        punc_model=str(tmp_path / "punc"),
        device="cuda:0",
    )
    arguments = paraformer.automodel_arguments(settings)
    assert arguments["model"] == str(tmp_path / "asr")
    assert arguments["punc_model"] == str(tmp_path / "punc")
    assert arguments["device"] == "cuda:0"


def test_missing_model_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match=f"model not found at {tmp_path / 'nope'}"):
        paraformer.automodel_arguments(EngineSettings("funasr", model=str(tmp_path / "nope")))


def test_generate_arguments_carry_hotwords_and_batch_seconds() -> None:
    arguments = paraformer.generate_arguments(Path("/x/a.wav"), ["阿里巴巴", "达摩院"], 3)
    assert arguments == {
        "input": "/x/a.wav",
        "batch_size_s": 180,
        "sentence_timestamp": True,
        "hotword": "阿里巴巴 达摩院",
    }
    assert "hotword" not in paraformer.generate_arguments(Path("/x/a.wav"), [], 1)


def test_result_parsing_reads_text_and_sentence_times() -> None:
    result = paraformer.parse_result(StandInAutoModel().generate(input="x"))
    assert result.text == "欢迎使用语音识别。今天天气很好。"
    assert result.segments == (
        Segment(0.12, 1.88, "欢迎使用语音识别。"),
        Segment(2.1, 3.5, "今天天气很好。"),
    )


def test_result_without_sentences_or_results() -> None:
    assert paraformer.parse_result([{"key": "a", "text": " 你好 "}]).text == "你好"
    assert paraformer.parse_result([]).text == ""


def test_engine_passes_everything_through_to_the_model(tmp_path: Path) -> None:
    engine = paraformer.ParaformerEngine.load(
        EngineSettings("funasr", device="cpu"), automodel=StandInAutoModel
    )
    assert StandInAutoModel.built_with["vad_model"].startswith("iic/speech_fsmn_vad")
    result = engine.transcribe(tmp_path / "a.wav", ["热词"], 1)
    assert result.text.startswith("欢迎")
    assert engine._model.calls[0]["hotword"] == "热词"
    assert (engine.name, engine.device, engine.supports_hotwords) == ("funasr", "cpu", True)


def test_a_model_that_fails_to_load_says_how_to_provide_it() -> None:
    def offline(**kwargs: Any) -> None:
        raise ConnectionError("cannot reach modelscope")

    with pytest.raises(EngineUnavailable, match="cannot load funasr model .*--vad-model"):
        paraformer.ParaformerEngine.load(EngineSettings("funasr"), automodel=offline)


def test_missing_funasr_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "funasr", None)  # makes `import funasr` fail
    with pytest.raises(EngineUnavailable, match=r"funasr not installed.*asrbatch\[funasr\]"):
        create_engine(EngineSettings("funasr"))
