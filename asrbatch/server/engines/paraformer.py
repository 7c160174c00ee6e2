"""FunASR engine: SeACo-Paraformer large with FSMN-VAD and CT-Transformer punctuation.

These are the models the Paraformer WebUI serves. ``funasr`` (and torch) are imported only when
this engine is chosen; model ids are fetched by FunASR from ModelScope on first use, or the
options can name local directories holding the downloaded weights.
"""

from __future__ import annotations

import logging
import threading
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


def check_model_spec(spec: str) -> str:
    """Return the model option as FunASR wants it; a named directory must exist."""
    if looks_like_path(spec):
        directory = Path(spec).expanduser()
        if not directory.is_dir():
            raise EngineUnavailable(f"model not found at {directory}")
        return str(directory)
    return spec


def automodel_arguments(settings: EngineSettings) -> dict[str, Any]:
    """Keyword arguments for ``funasr.AutoModel`` built from the server settings."""
    return {
        "model": check_model_spec(settings.model or DEFAULT_MODEL),
        "vad_model": check_model_spec(settings.vad_model or DEFAULT_VAD_MODEL),
        "punc_model": check_model_spec(settings.punc_model or DEFAULT_PUNC_MODEL),
        "device": settings.device,
        # No version check against the network at start-up.
        "disable_update": True,
    }


def generate_arguments(wav_path: Path, hotwords: list[str], batch_size: int) -> dict[str, Any]:
    """Keyword arguments for ``AutoModel.generate`` for one file."""
    arguments: dict[str, Any] = {
        "input": str(wav_path),
        "batch_size_s": BATCH_SECONDS_PER_STEP * max(1, batch_size),
        "sentence_timestamp": True,
    }
    if hotwords:
        arguments["hotword"] = " ".join(hotwords)
    return arguments


def parse_result(result: Any) -> EngineResult:
    """Read the text, and sentence timings when present, from ``AutoModel.generate``'s answer.

    FunASR returns a list with one dict per input: ``text`` always, ``sentence_info`` (a list of
    ``{"text", "start", "end"}`` with times in milliseconds) when sentence timestamps were asked
    for and a VAD model is loaded.
    """
    if not result:
        return EngineResult(text="")
    first = result[0]
    text = str(first.get("text", "")).strip()
    segments = tuple(
        Segment(float(s["start"]) / 1000, float(s["end"]) / 1000, str(s.get("text", "")).strip())
        for s in first.get("sentence_info") or ()
        if "start" in s and "end" in s
    )
    return EngineResult(text=text, segments=segments)


def check_device(device: str) -> None:
    """Refuse a CUDA device that torch cannot see, before loading gigabytes of weights."""
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise EngineUnavailable(f"device {device!r} requested but torch sees no CUDA GPU")


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
            automodel = AutoModel
        try:
            model = automodel(**arguments)
        except EngineUnavailable:
            raise
        except Exception as error:  # FunASR raises many kinds; all mean "cannot load".
            raise EngineUnavailable(
                f"cannot load funasr model {arguments['model']}: {error} "
                "(without network access, download the models first and pass their "
                "directories with --model, --vad-model and --punc-model)"
            ) from error
        log.info("engine=funasr model=%s device=%s loaded", arguments["model"], settings.device)
        return cls(model, settings)

    def transcribe(self, wav_path: Path, hotwords: list[str], batch_size: int) -> EngineResult:
        """Recognise one file with the hotwords passed as FunASR's space-separated list."""
        with self._lock:
            result = self._model.generate(**generate_arguments(wav_path, hotwords, batch_size))
        return parse_result(result)
