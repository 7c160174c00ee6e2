"""The funasr engine's own code: arguments it builds, results it parses, errors it gives.

Here ``AutoModel`` is a small stand-in that records its arguments and answers in the shape
FunASR 1.4 does, so these run without FunASR installed; test_funasr_engine.py runs the same
engine through the real library with tiny models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from asrbatch.server.engines import EngineSettings, EngineUnavailable, Segment, create_engine, paraformer
from tests.support import servers


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
        "disable_pbar": True,
    }


def make_model_folder(folder: Path, configuration: dict[str, Any] | None = None) -> Path:
    """A folder with the files FunASR reads (their content does not matter here)."""
    folder.mkdir(parents=True)
    names = ["config.yaml", "model.pt"]
    if configuration is not None:
        (folder / "configuration.json").write_text(json.dumps(configuration), encoding="utf-8")
        metas = configuration.get("file_path_metas", {})
        names = [metas.get("config", "config.yaml"), metas.get("init_param", "model.pt")]
    for name in names:
        (folder / name).write_text("x", encoding="utf-8")
    return folder


def test_local_model_directories_are_passed_as_paths(tmp_path: Path) -> None:
    for name in ("asr", "vad", "punc"):
        make_model_folder(tmp_path / name)
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


def test_a_model_folder_must_hold_the_files_funasr_reads(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineUnavailable, match="VAD model folder is incomplete: .* has no config.yaml and no model.pt"):
        paraformer.check_model_spec(str(tmp_path / "empty"), "VAD model")
    renamed = make_model_folder(
        tmp_path / "renamed", {"file_path_metas": {"init_param": "weights.pt", "config": "conf.yaml"}}
    )
    assert paraformer.check_model_spec(str(renamed)) == str(renamed)
    (renamed / "weights.pt").unlink()
    # FunASR itself would load this folder and serve an untrained model.
    assert paraformer.model_folder_problem(renamed) == f"{renamed} has no weights.pt"
    (renamed / "configuration.json").write_text("{not json", encoding="utf-8")
    assert str(paraformer.model_folder_problem(renamed)).startswith(f"cannot read {renamed / 'configuration.json'}")


def test_generate_arguments_carry_hotwords_and_batch_seconds() -> None:
    arguments = paraformer.generate_arguments(Path("/x/a.wav"), ["阿里巴巴", "达摩院"], 3)
    assert arguments == {
        "input": "/x/a.wav",
        "batch_size_s": 180,
        "sentence_timestamp": True,
        "hotword": " 阿里巴巴 达摩院 ",
    }
    assert arguments["hotword"].split() == ["阿里巴巴", "达摩院"]
    assert "hotword" not in paraformer.generate_arguments(Path("/x/a.wav"), [], 1)


def test_hotwords_never_read_as_a_url_or_a_hotword_file() -> None:
    # FunASR downloads a hotword string that starts with "http" and reads one ending in ".txt".
    for words in (["https://example.org/words.txt"], ["http"], ["notes.txt"], ["a", "list.txt"]):
        hotword = paraformer.hotword_argument(words)
        assert not hotword.startswith("http") and not hotword.endswith(".txt")
        assert hotword.strip().split() == words


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


def test_an_unpunctuated_sentence_comes_as_a_list_of_words() -> None:
    # FunASR's timestamp_sentence gives the words as a list when the punctuation model marked none.
    result = paraformer.parse_result(
        [{"text": "hello world", "sentence_info": [{"text": ["hello", "world"], "start": 0, "end": 640}]}]
    )
    assert result.segments == (Segment(0.0, 0.64, "hello world"),)


def test_devices_other_than_cpu_and_cuda_are_refused_by_name() -> None:
    for device in ("tpu", "gpu", "cuda:x", "mps"):
        with pytest.raises(EngineUnavailable, match=f"device '{device}' is not one the funasr engine runs on"):
            paraformer.check_device(device)
    paraformer.check_device("cpu")


def test_no_feature_backend_is_refused_before_the_models_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paraformer, "find_spec", lambda name: None)
    with pytest.raises(EngineUnavailable, match="neither torchaudio nor kaldi-native-fbank.*pip install kaldi-native-fbank"):
        paraformer.check_feature_backend()
    monkeypatch.setattr(paraformer, "find_spec", lambda name: object() if name == "kaldi_native_fbank" else None)
    paraformer.check_feature_backend()


def test_only_the_first_line_of_a_long_funasr_error_is_shown() -> None:
    def unregistered(**kwargs: Any) -> None:
        raise RuntimeError("model 'x' is not registered.\nRegistered model keys (180): ...\n" + "line\n" * 100)

    with pytest.raises(EngineUnavailable) as caught:
        paraformer.ParaformerEngine.load(EngineSettings("funasr"), automodel=unregistered)
    assert "model 'x' is not registered. (without network access" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_engine_passes_everything_through_to_the_model(tmp_path: Path) -> None:
    engine = paraformer.ParaformerEngine.load(
        EngineSettings("funasr", device="cpu"), automodel=StandInAutoModel
    )
    assert StandInAutoModel.built_with["vad_model"].startswith("iic/speech_fsmn_vad")
    result = engine.transcribe(tmp_path / "a.wav", ["热词"], 1)
    assert result.text.startswith("欢迎")
    assert engine._model.calls[0]["hotword"].split() == ["热词"]
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


def test_the_funasr_test_venv_carries_asrbatchs_own_dependencies() -> None:
    # `python -m asrbatch serve` runs in that venv as where `pip install 'asrbatch[funasr]'` put it.
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((servers.REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert list(servers.ASRBATCH_REQUIREMENTS) == project["dependencies"]
    assert set(servers.ASRBATCH_REQUIREMENTS) <= set(servers.funasr_requirements())
