"""Command-line options of the reference server (argparse only: it runs without click)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from asrbatch.server.engines import ENGINE_NAMES, EngineSettings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_FILE_SIZE = "200mb"
USERNAME_VARIABLE = "ASRBATCH_SERVER_USERNAME"
PASSWORD_VARIABLE = "ASRBATCH_SERVER_PASSWORD"
# FunASR models may also come from the environment, so a service unit can name local copies.
MODEL_VARIABLES = {
    "model": "ASRBATCH_FUNASR_MODEL",
    "vad_model": "ASRBATCH_FUNASR_VAD_MODEL",
    "punc_model": "ASRBATCH_FUNASR_PUNC_MODEL",
}
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")

EPILOG = f"""\
environment:
  {USERNAME_VARIABLE}, {PASSWORD_VARIABLE}
        both set: visitors must log in with these credentials
  {MODEL_VARIABLES["model"]}, {MODEL_VARIABLES["vad_model"]}, {MODEL_VARIABLES["punc_model"]}
        defaults for --model, --vad-model, --punc-model with --engine funasr
  GRADIO_TEMP_DIR
        where uploads are kept when --temp-dir is not given

exit status: 0 stopped normally, 1 could not start (engine, ffmpeg, port), 2 bad usage

example:
  python -m asrbatch.server --engine sphinx --host 127.0.0.1 --port 7860
"""


@dataclass(frozen=True)
class ServerOptions:
    """Everything the server needs, validated."""

    engine: EngineSettings
    host: str
    port: int
    max_file_size: int | None
    temp_dir: Path | None
    concurrency: int
    auth: tuple[str, str] | None
    log_level: str


def parse_size(text: str) -> int | None:
    """``200mb`` -> bytes (binary units, as Gradio counts); ``0`` or ``none`` -> no limit."""
    if text.strip().lower() in ("0", "none", "off", "unlimited"):
        return None
    match = _SIZE.match(text.lower())
    if not match or match.group(2) not in _UNITS:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: use a number with an optional unit (kb, mb, gb), or none"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def positive_int(text: str) -> int:
    """An int of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, not {text!r}")
    return value


def port_number(text: str) -> int:
    """A TCP port, 1..65535."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A float of 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of 0 or more, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The server's argument parser."""
    parser = argparse.ArgumentParser(
        prog="asrbatch serve",
        description="Run the reference speech-recognition WebUI (a Gradio app shaped like\n"
        "the FunASR Paraformer WebUI) that asrbatch sends recordings to.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--engine",
        choices=ENGINE_NAMES,
        default="sphinx",
        help="recognition engine (default: sphinx; simulate is for benchmarking clients only)",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default: {DEFAULT_HOST}; 0.0.0.0 exposes the server to the network)",
    )
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help=f"port to listen on (default: {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--model",
        help="engine model: sphinx 'en-us' or a model directory; funasr a ModelScope id or a local directory",
    )
    parser.add_argument("--vad-model", help="funasr VAD model id or directory")
    parser.add_argument("--punc-model", help="funasr punctuation model id or directory")
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu; sphinx is cpu only)"
    )
    parser.add_argument(
        "--max-file-size",
        type=parse_size,
        default=DEFAULT_MAX_FILE_SIZE,
        help=f"largest accepted upload, e.g. 50mb, or none (default: {DEFAULT_MAX_FILE_SIZE})",
    )
    parser.add_argument(
        "--temp-dir",
        type=Path,
        help="directory for uploads and decoded audio (default: "
        "$GRADIO_TEMP_DIR, else the system temp directory)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=1,
        help="recognitions run at the same time (default: 1, like a single-GPU server)",
    )
    parser.add_argument(
        "--simulate-rtf",
        "--simulate-seconds-per-audio-second",
        dest="simulate_rtf",
        type=non_negative_float,
        default=0.05,
        help="simulate engine: seconds of work per second of audio (default: 0.05)",
    )
    parser.add_argument(
        "--simulate-text",
        default="this is a simulated transcript",
        help="simulate engine: the text every recognition returns; {seconds} in it becomes the "
        "audio's duration (e.g. 12.34)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="logging detail on stderr (default: info)",
    )
    return parser


def parse_options(argv: Sequence[str] | None, environ: Mapping[str, str]) -> ServerOptions:
    """Parse ``argv`` with defaults from ``environ``; exits with status 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    username = environ.get(USERNAME_VARIABLE, "")
    password = environ.get(PASSWORD_VARIABLE, "")
    if bool(username) != bool(password):
        parser.error(f"set both {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}, or neither")
    models = {
        key: getattr(args, key) or (environ.get(variable) if args.engine == "funasr" else None)
        for key, variable in MODEL_VARIABLES.items()
    }
    engine = EngineSettings(
        name=args.engine,
        model=models["model"],
        device=args.device,
        vad_model=models["vad_model"],
        punc_model=models["punc_model"],
        simulate_seconds_per_audio_second=args.simulate_rtf,
        simulate_text=args.simulate_text,
    )
    return ServerOptions(
        engine=engine,
        host=args.host,
        port=args.port,
        max_file_size=args.max_file_size,
        temp_dir=args.temp_dir,
        concurrency=args.concurrency,
        auth=(username, password) if username else None,
        log_level=args.log_level,
    )
