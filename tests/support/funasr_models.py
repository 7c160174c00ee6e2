"""Tiny FunASR model folders, laid out like the published ModelScope models, with made-up weights.

The funasr engine loads SeACo-Paraformer, FSMN-VAD and CT-Transformer punctuation from model
folders. The real ones are gigabytes on ModelScope and cannot be fetched here, so the tests use
folders with the same files (``configuration.json``, ``config.yaml``, ``model.pt``, ``am.mvn``,
``tokens.json``, ``seg_dict``, ``jieba_usr_dict``), the same model classes and the same audio
frontends, with every dimension scaled far down:

- ``asr``: ``SeacoParaformer`` (SANM encoder, Paraformer SANM decoder, SeACo hotword decoder with
  its LSTM bias encoder, CIF predictor v3 that also predicts timestamps); 80 mel bins, LFR 7/6.
- ``vad``: ``FsmnVADStreaming`` with the published thresholds and 248 outputs; the streaming
  frontend ``WavFrontendOnline`` (which it requires), 80 mel bins, LFR 5/1.
- ``punc``: ``CTTransformer`` with the published punctuation list.

``model.pt`` is written by FunASR itself: its ``AutoModel.build_model`` builds each model from
the folder (so the config is what FunASR reads), inside the funasr test venv, and the state dict
is saved with torch (``tests/support/funasr_weights.py``). The recogniser's and punctuation
model's weights are random, so their text is noise. The VAD's are set by hand so that the network
scores a frame as speech when its mean log-mel energy is high: random weights would call every
frame speech, and segmentation at pauses could not be exercised.

Built folders are cached under ``$ASRBATCH_TEST_CACHE/funasr-models`` (default
``<repo>/.cache/funasr-models``), named by a hash of this recipe, the weights script and the venv's
requirements; built under a file lock and renamed into place when complete.

In tests::

    def test_something(tiny_funasr_models):
        tiny_funasr_models.asr, tiny_funasr_models.vad, tiny_funasr_models.punc  # folders

or directly: ``build_tiny_models()`` (``python tests/support/funasr_models.py`` builds and prints).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script
    sys.path.insert(0, str(REPO))

from tests.support.servers import (  # noqa: E402
    ServerEnvironmentError,
    _file_lock,
    _tail,
    funasr_python,
    funasr_requirements,
)

WEIGHTS_SCRIPT = Path(__file__).with_name("funasr_weights.py")
NETWORK_AUDIT = Path(__file__).with_name("network_audit")
READY_MARKER = ".asrbatch-ready.json"
CACHE_ENV = "ASRBATCH_TEST_CACHE"

# Chinese characters and a few English words: what the recogniser can emit and hotwords are
# spelled with. The real vocabulary has 8404 tokens laid out the same way.
CHARACTERS = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家"
    "学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见"
    "经头面公同三已老从动两长阿巴达摩院语音识别欢迎使今气很"
)
ENGLISH_WORDS = ("hello", "world", "meeting", "office", "morning")
SPECIAL_START = ("<blank>", "<s>", "</s>")
UNKNOWN = "<unk>"
ASR_TOKENS = [*SPECIAL_START, *CHARACTERS, *ENGLISH_WORDS, UNKNOWN]
PUNC_TOKENS = [UNKNOWN, *CHARACTERS, *ENGLISH_WORDS]
PUNCTUATION = ["<unk>", "_", "，", "。", "？", "、"]

# Log-mel statistics of festival speech at FunASR's int16 scale, rounded (FunASR's WavFrontend
# over ten of the test sentences: mean 13.3, standard deviation 4.4): am.mvn shifts and scales
# every bin by them, as the published files do by their training data's statistics.
LOG_MEL_MEAN = 13.0
LOG_MEL_STD = 4.5


@dataclass(frozen=True)
class TinyModels:
    """The three model folders the funasr engine takes (``--model``, ``--vad-model``, ``--punc-model``)."""

    asr: Path
    vad: Path
    punc: Path

    def server_args(self) -> list[str]:
        """The reference server's options naming these folders."""
        return ["--model", str(self.asr), "--vad-model", str(self.vad), "--punc-model", str(self.punc)]


def _yaml(document: str) -> str:
    return document.strip() + "\n"


def _am_mvn(dimension: int) -> str:
    """CMVN in the Kaldi nnet text format FunASR's WavFrontend reads (AddShift, then Rescale)."""
    shift = " ".join([f"{-LOG_MEL_MEAN:.6f}"] * dimension)
    scale = " ".join([f"{1 / LOG_MEL_STD:.6f}"] * dimension)
    return (
        "<Nnet>\n"
        f"<Splice> {dimension} {dimension}\n[ 0 ]\n"
        f"<AddShift> {dimension} {dimension}\n<LearnRateCoef> 0 [ {shift} ]\n"
        f"<Rescale> {dimension} {dimension}\n<LearnRateCoef> 0 [ {scale} ]\n"
        "</Nnet>\n"
    )


def _configuration(task: str, file_path_metas: dict[str, object]) -> str:
    """configuration.json as ModelScope publishes FunASR models: where each file is."""
    document = {
        "framework": "pytorch",
        "task": task,
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "model_name_in_hub": {"ms": "", "hf": ""},
        "file_path_metas": file_path_metas,
    }
    return json.dumps(document, indent=2) + "\n"


ASR_CONFIG = _yaml(f"""
model: SeacoParaformer
model_conf:
    ctc_weight: 0.0
    lsm_weight: 0.1
    length_normalized_loss: true
    predictor_weight: 1.0
    predictor_bias: 1
    sampling_ratio: 0.75
    inner_dim: 32
    bias_encoder_type: lstm
    bias_encoder_bid: false
    seaco_lsm_weight: 0.1
    seaco_length_normal: true
    train_decoder: false
    NO_BIAS: {len(ASR_TOKENS) - 2}
encoder: SANMEncoder
encoder_conf:
    output_size: 32
    attention_heads: 2
    linear_units: 64
    num_blocks: 2
    dropout_rate: 0.1
    positional_dropout_rate: 0.1
    attention_dropout_rate: 0.1
    input_layer: pe
    pos_enc_class: SinusoidalPositionEncoder
    normalize_before: true
    kernel_size: 11
    sanm_shfit: 0
    selfattention_layer_type: sanm
decoder: ParaformerSANMDecoder
decoder_conf:
    attention_heads: 2
    linear_units: 64
    num_blocks: 2
    dropout_rate: 0.1
    positional_dropout_rate: 0.1
    self_attention_dropout_rate: 0.1
    src_attention_dropout_rate: 0.1
    att_layer_num: 2
    kernel_size: 11
    sanm_shfit: 0
seaco_decoder: ParaformerSANMDecoder
seaco_decoder_conf:
    attention_heads: 2
    linear_units: 32
    num_blocks: 1
    dropout_rate: 0.1
    positional_dropout_rate: 0.1
    self_attention_dropout_rate: 0.1
    src_attention_dropout_rate: 0.1
    kernel_size: 21
    sanm_shfit: 0
    use_output_layer: false
    wo_input_layer: true
predictor: CifPredictorV3
predictor_conf:
    idim: 32
    threshold: 1.0
    l_order: 1
    r_order: 1
    tail_threshold: 0.45
    smooth_factor2: 0.25
    noise_threshold2: 0.01
    upsample_times: 3
    use_cif1_cnn: false
    upsample_type: cnn_blstm
frontend: WavFrontend
frontend_conf:
    fs: 16000
    window: hamming
    n_mels: 80
    frame_length: 25
    frame_shift: 10
    lfr_m: 7
    lfr_n: 6
    dither: 0.0
specaug: SpecAugLFR
specaug_conf:
    apply_time_warp: false
    time_warp_window: 5
    time_warp_mode: bicubic
    apply_freq_mask: true
    freq_mask_width_range: [0, 30]
    lfr_rate: 6
    num_freq_mask: 1
    apply_time_mask: true
    time_mask_width_range: [0, 12]
    num_time_mask: 1
tokenizer: CharTokenizer
tokenizer_conf:
    unk_symbol: <unk>
    split_with_space: true
ctc_conf:
    dropout_rate: 0.0
    ctc_type: builtin
    reduce: true
    ignore_nan_grad: true
normalize: null
""")

VAD_CONFIG = _yaml("""
model: FsmnVADStreaming
model_conf:
    sample_rate: 16000
    detect_mode: 1
    snr_mode: 0
    max_end_silence_time: 800
    max_start_silence_time: 3000
    do_start_point_detection: true
    do_end_point_detection: true
    window_size_ms: 200
    sil_to_speech_time_thres: 150
    speech_to_sil_time_thres: 150
    speech_2_noise_ratio: 1.0
    do_extend: 1
    lookback_time_start_point: 200
    lookahead_time_end_point: 100
    max_single_segment_time: 60000
    snr_thres: -100.0
    noise_frame_num_used_for_snr: 100
    decibel_thres: -100.0
    speech_noise_thres: 0.6
    fe_prior_thres: 0.0001
    silence_pdf_num: 1
    sil_pdf_ids: [0]
    speech_noise_thresh_low: -0.1
    speech_noise_thresh_high: 0.3
    output_frame_probs: false
    frame_in_ms: 10
    frame_length_ms: 25
encoder: FSMN
encoder_conf:
    input_dim: 400
    input_affine_dim: 8
    fsmn_layers: 2
    linear_dim: 8
    proj_dim: 4
    lorder: 4
    rorder: 0
    lstride: 1
    rstride: 0
    output_affine_dim: 8
    output_dim: 248
frontend: WavFrontendOnline
frontend_conf:
    fs: 16000
    window: hamming
    n_mels: 80
    frame_length: 25
    frame_shift: 10
    dither: 0.0
    lfr_m: 5
    lfr_n: 1
""")

PUNC_CONFIG = _yaml(f"""
model: CTTransformer
model_conf:
    ignore_id: 0
    embed_unit: 16
    att_unit: 16
    dropout_rate: 0.1
    punc_list: {json.dumps(PUNCTUATION, ensure_ascii=False)}
    punc_weight: {json.dumps([1.0] * len(PUNCTUATION))}
    sentence_end_id: 3
encoder: SANMEncoder
encoder_conf:
    input_size: 16
    output_size: 16
    attention_heads: 2
    linear_units: 32
    num_blocks: 1
    dropout_rate: 0.1
    positional_dropout_rate: 0.1
    attention_dropout_rate: 0.0
    input_layer: pe
    pos_enc_class: SinusoidalPositionEncoder
    normalize_before: true
    kernel_size: 11
    sanm_shfit: 0
    selfattention_layer_type: sanm
    padding_idx: 0
tokenizer: CharTokenizer
tokenizer_conf:
    unk_symbol: <unk>
""")


def model_files() -> dict[str, dict[str, str]]:
    """Every text file of the three folders, by folder and file name (model.pt comes later)."""
    seg_dict = "".join(f"{token} {token}\n" for token in [*CHARACTERS, *ENGLISH_WORDS])
    return {
        "asr": {
            "configuration.json": _configuration(
                "auto-speech-recognition",
                {
                    "init_param": "model.pt",
                    "config": "config.yaml",
                    "tokenizer_conf": {"token_list": "tokens.json", "seg_dict_file": "seg_dict"},
                    "frontend_conf": {"cmvn_file": "am.mvn"},
                },
            ),
            "config.yaml": ASR_CONFIG,
            "tokens.json": json.dumps(ASR_TOKENS, ensure_ascii=False) + "\n",
            "seg_dict": seg_dict,
            "am.mvn": _am_mvn(80 * 7),
        },
        "vad": {
            "configuration.json": _configuration(
                "voice-activity-detection",
                {"init_param": "model.pt", "config": "config.yaml", "frontend_conf": {"cmvn_file": "am.mvn"}},
            ),
            "config.yaml": VAD_CONFIG,
            "am.mvn": _am_mvn(80 * 5),
        },
        "punc": {
            "configuration.json": _configuration(
                "punctuation",
                {
                    "init_param": "model.pt",
                    "config": "config.yaml",
                    "tokenizer_conf": {"token_list": "tokens.json"},
                    "jieba_usr_dict": "jieba_usr_dict",
                },
            ),
            "config.yaml": PUNC_CONFIG,
            "tokens.json": json.dumps(PUNC_TOKENS, ensure_ascii=False) + "\n",
            "jieba_usr_dict": "".join(f"{word} 10\n" for word in ("阿里巴巴", "达摩院", "语音识别")),
        },
    }


def recipe_key() -> str:
    """A hash of everything that goes into the folders: files, weights script, venv requirements."""
    parts = [model_files(), WEIGHTS_SCRIPT.read_text(encoding="utf-8"), funasr_requirements()]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    """Where built folders live: ``$ASRBATCH_TEST_CACHE/funasr-models`` or ``<repo>/.cache/funasr-models``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) / "funasr-models" if configured else REPO / ".cache" / "funasr-models"


def offline_environment() -> dict[str, str]:
    """Variables that keep Hugging Face code (which FunASR imports) from reaching for its hub.

    ModelScope 1.40 reads no such variable; FunASR calls it only for model ids, not folders.
    Whether anything still tried the network is what tests/support/network_audit records.
    """
    return {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def _models_in(root: Path) -> TinyModels:
    return TinyModels(asr=root / "asr", vad=root / "vad", punc=root / "punc")


def _is_ready(root: Path) -> bool:
    try:
        recorded = json.loads((root / READY_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    models = _models_in(root)
    complete = all((folder / "model.pt").is_file() for folder in (models.asr, models.vad, models.punc))
    return bool(recorded.get("key") == root.name and complete)


def build_tiny_models(root: Path | None = None) -> TinyModels:
    """The three folders, built (in the funasr venv, which is built first if needed) when missing.

    Safe from several processes at once. Raises ServerEnvironmentError with the build's output
    when FunASR cannot build a model from the folder.
    """
    base = root or cache_dir()
    target = base / recipe_key()
    if _is_ready(target):
        return _models_in(target)
    python = funasr_python()
    with _file_lock(base / f"{target.name}.lock"):
        if _is_ready(target):
            return _models_in(target)
        shutil.rmtree(target, ignore_errors=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=base))
        try:
            for folder, files in model_files().items():
                (scratch / folder).mkdir()
                for name, text in files.items():
                    (scratch / folder / name).write_text(text, encoding="utf-8")
            log, attempts = scratch / "build.log", scratch / "network-attempts.log"
            attempts.write_text("", encoding="utf-8")
            environment = {
                **os.environ,
                **offline_environment(),
                "MODELSCOPE_CACHE": str(scratch / "hub"),
                "ASRBATCH_NETWORK_AUDIT": str(attempts),
                "PYTHONPATH": os.pathsep.join([str(NETWORK_AUDIT), str(REPO)]),
            }
            with log.open("w", encoding="utf-8") as handle:
                completed = subprocess.run(
                    [str(python), str(WEIGHTS_SCRIPT), str(scratch)],
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=environment,
                    check=False,
                )
            if completed.returncode != 0:
                raise ServerEnvironmentError(
                    f"building the tiny FunASR models failed ({completed.returncode}); "
                    f"last lines of {log}:\n{_tail(log)}"
                )
            if attempts.read_text(encoding="utf-8"):
                raise ServerEnvironmentError(
                    f"building the tiny FunASR models tried the network: {attempts.read_text(encoding='utf-8')}"
                )
            (scratch / READY_MARKER).write_text(json.dumps({"key": target.name}), encoding="utf-8")
            os.replace(scratch, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return _models_in(target)


@pytest.fixture(scope="session")
def tiny_funasr_models() -> TinyModels:
    """The tiny SeACo-Paraformer, FSMN-VAD and CT-Transformer folders (built once, cached)."""
    try:
        return build_tiny_models()
    except ServerEnvironmentError as error:
        pytest.fail(str(error), pytrace=False)


if __name__ == "__main__":
    print(build_tiny_models())
