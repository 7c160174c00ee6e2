"""FunASR engine: SeACo-Paraformer large with FSMN-VAD and CT-Transformer punctuation.

These are the models the Paraformer WebUI serves. ``funasr`` (and torch) are imported only when
this engine is chosen; model ids are fetched by FunASR from ModelScope on first use, or the
options can name local directories holding the downloaded models (``configuration.json``,
``config.yaml``, ``model.pt`` and the files they name).

What FunASR's ``AutoModel.generate`` does with the arguments built here (read from FunASR 1.4):
the VAD model cuts the audio at pauses, each piece is recognised (``batch_size_s`` seconds of
audio per batch on a GPU; one piece at a time on the CPU), the texts are joined and punctuated,
and ``sentence_timestamp`` splits the result into sentences at the punctuation, each with
``start`` and ``end`` in milliseconds. SeACo-Paraformer takes ``hotword`` as one string of
whitespace-separated words.
"""

from __future__ import annotations

import json
import logging
import threading
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from asrbatch.server.engines.base import EngineResult, EngineSettings, EngineUnavailable, Segment

log = logging.getLogger(__name__)

DEFAULT_MODEL = "iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch"
DEFAULT_VAD_MODEL = "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch"
DEFAULT_PUNC_MODEL = "iic/punc_ct-transformer_cn-en-common-vocab471067-large"
# The WebUI's batch size slider (1..16) counts minutes of audio per decoding batch.
BATCH_SECONDS_PER_STEP = 60
INSTALL_HINT = "pip install 'asrbatch[funasr]'"


def looks_like_path(spec: str) -> bool:
    """True when a model option names a directory rather than a ModelScope id."""
    return spec.startswith(("/", "./", "../", "~")) or Path(spec).expanduser().exists()


def model_folder_problem(directory: Path) -> str | None:
    """What keeps FunASR from loading the model folder ``directory``, or None.

    A downloaded model names its files in ``configuration.json`` (``file_path_metas``); without
    it FunASR reads ``config.yaml`` and ``model.pt``. FunASR itself would go on without the
    weights file named in configuration.json and serve an untrained model, so it is checked here.
    """
    configuration = directory / "configuration.json"
    config, weights = "config.yaml", "model.pt"
    if configuration.is_file():
        try:
            metas = json.loads(configuration.read_text(encoding="utf-8")).get("file_path_metas", {})
        except (OSError, ValueError, AttributeError) as error:
            return f"cannot read {configuration}: {error}"
        if isinstance(metas, dict):
            config = str(metas.get("config", config))
            weights = str(metas.get("init_param", weights))
    missing = [name for name in (config, weights) if not (directory / name).is_file()]
    if missing:
        return f"{directory} has no {' and no '.join(missing)}"
    return None


def check_model_spec(spec: str, label: str = "model") -> str:
    """Return the model option as FunASR wants it; a named directory must hold a model."""
    if looks_like_path(spec):
        directory = Path(spec).expanduser()
        if not directory.is_dir():
            raise EngineUnavailable(f"{label} not found at {directory}")
        problem = model_folder_problem(directory)
        if problem:
            raise EngineUnavailable(
                f"{label} folder is incomplete: {problem} (it should hold the model's files as "
                "downloaded from ModelScope: configuration.json, config.yaml, model.pt, ...)"
            )
        return str(directory)
    return spec


def automodel_arguments(settings: EngineSettings) -> dict[str, Any]:
    """Keyword arguments for ``funasr.AutoModel`` built from the server settings."""
    return {
        "model": check_model_spec(settings.model or DEFAULT_MODEL, "model"),
        "vad_model": check_model_spec(settings.vad_model or DEFAULT_VAD_MODEL, "VAD model"),
        "punc_model": check_model_spec(settings.punc_model or DEFAULT_PUNC_MODEL, "punctuation model"),
        "device": settings.device,
        # No version check against the network at start-up.
        "disable_update": True,
        # No progress bar on stderr for every request.
        "disable_pbar": True,
    }


def hotword_argument(hotwords: list[str]) -> str:
    """The hotwords as SeACo-Paraformer's ``hotword`` string: the words separated by spaces.

    FunASR first tries the string as a URL to download a hotword list from (when it starts with
    ``http``) and as a local ``.txt`` file (when it ends so); a hotword such as
    ``https://...`` or ``notes.txt`` must not make the server fetch or read anything. The space
    before and after defeats both checks, and FunASR strips it before splitting the words.
    """
    return " " + " ".join(hotwords) + " "


def generate_arguments(wav_path: Path, hotwords: list[str], batch_size: int) -> dict[str, Any]:
    """Keyword arguments for ``AutoModel.generate`` for one file."""
    arguments: dict[str, Any] = {
        "input": str(wav_path),
        "batch_size_s": BATCH_SECONDS_PER_STEP * max(1, batch_size),
        "sentence_timestamp": True,
    }
    if hotwords:
        arguments["hotword"] = hotword_argument(hotwords)
    return arguments


def sentence_text(value: Any) -> str:
    """A sentence's text: FunASR gives a string, or a list of words when nothing was punctuated."""
    if isinstance(value, (list, tuple)):
        return " ".join(str(word) for word in value).strip()
    return str(value if value is not None else "").strip()


def parse_result(result: Any) -> EngineResult:
    """Read the text, and sentence timings when present, from ``AutoModel.generate``'s answer.

    FunASR returns a list with one dict per input: ``text`` always, and with
    ``sentence_timestamp`` a ``sentence_info`` list whose items carry ``text``, ``start`` and
    ``end`` (milliseconds from the start of the audio) and ``timestamp`` (per token); ``spk``
    too when a speaker model is loaded. Sentences come in the order they were spoken.
    """
    if not result:
        return EngineResult(text="")
    first = result[0]
    text = str(first.get("text", "")).strip()
    segments = tuple(
        Segment(float(s["start"]) / 1000, float(s["end"]) / 1000, sentence_text(s.get("text")))
        for s in first.get("sentence_info") or ()
        if "start" in s and "end" in s
    )
    return EngineResult(text=text, segments=segments)


def check_device(device: str) -> None:
    """Refuse a device torch cannot use, before loading gigabytes of weights.

    FunASR itself falls back to the CPU without a word when the device asked for is missing.
    """
    if device == "cpu":
        return
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise EngineUnavailable(f"device {device!r} is not one the funasr engine runs on: use cpu, cuda or cuda:N")
    import torch

    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise EngineUnavailable(
            f"device {device!r} requested but torch sees no CUDA GPU (torch {torch.__version__}, {build})"
        )
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise EngineUnavailable(
            f"device {device!r} requested but torch sees {count} CUDA GPU(s): cuda:0 to cuda:{count - 1}"
        )


def check_feature_backend() -> None:
    """Refuse to start when FunASR has nothing to compute audio features with.

    FunASR 1.4 computes fbank features with torchaudio or, where it is missing,
    kaldi-native-fbank; with neither it loads the models and then fails every request.
    """
    if not any(find_spec(name) for name in ("torchaudio", "kaldi_native_fbank")):
        raise EngineUnavailable(
            "FunASR finds neither torchaudio nor kaldi-native-fbank to compute audio features with: "
            "pip install kaldi-native-fbank (or the torchaudio release that matches torch)"
        )


def first_line(error: BaseException) -> str:
    """The first line of an error's message (FunASR's can run to hundreds of lines)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class ParaformerEngine:
    """FunASR ``AutoModel`` behind the Engine interface."""

    name = "funasr"
    supports_hotwords = True

    def __init__(self, model: Any, settings: EngineSettings) -> None:
        self.model = settings.model or DEFAULT_MODEL
        self.device = settings.device
        self._model = model
        # One model instance; FunASR's generate is not meant to be run from two threads at once.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, settings: EngineSettings, automodel: Any = None) -> ParaformerEngine:
        """Load the three models; raises EngineUnavailable when they cannot be loaded.

        ``automodel`` replaces ``funasr.AutoModel`` (tests use a stand-in).
        """
        arguments = automodel_arguments(settings)
        if automodel is None:
            try:
                from funasr import AutoModel
            except ImportError as error:
                raise EngineUnavailable(f"funasr not installed ({error}): {INSTALL_HINT}") from error
            check_device(settings.device)
            check_feature_backend()
            automodel = AutoModel
        try:
            model = automodel(**arguments)
        except EngineUnavailable:
            raise
        except Exception as error:  # FunASR raises many kinds; all mean "cannot load".
            raise EngineUnavailable(
                f"cannot load funasr model {arguments['model']}: {first_line(error)} "
                "(without network access, download the models first and pass their "
                "directories with --model, --vad-model and --punc-model)"
            ) from error
        log.info("engine=funasr model=%s device=%s loaded", arguments["model"], settings.device)
        return cls(model, settings)

    def transcribe(self, wav_path: Path, hotwords: list[str], batch_size: int) -> EngineResult:
        """Recognise one file with the hotwords passed as SeACo-Paraformer's space-separated list."""
        with self._lock:
            result = self._model.generate(**generate_arguments(wav_path, hotwords, batch_size))
        return parse_result(result)
