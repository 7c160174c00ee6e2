"""Command-line options of the reference server (argparse only: it runs without click)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from asrbatch.server.engines import ENGINE_NAMES, EngineSettings

DEFAULT_HOST = "127.0.0.1"
PROTOCOLS = ("gradio", "openai", "funasr-ws")
# Each protocol's usual port: Gradio's, funasr-server's, the FunASR runtime SDK image's.
DEFAULT_PORTS = {"gradio": 7860, "openai": 8000, "funasr-ws": 10095}
DEFAULT_PORT = DEFAULT_PORTS["gradio"]
APP_SHAPES = ("paraformer", "simple", "numpy", "multitab", "streaming")
API_KEY_VARIABLE = "ASRBATCH_SERVE_API_KEY"
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
  {API_KEY_VARIABLE} (or the variable --api-key-env names)
        set: --protocol openai requires "Authorization: Bearer <its value>"

protocols:
  gradio     the WebUI and its Gradio API (port 7860); --app picks the app's shape
  openai     FunASR's funasr-server API (port 8000): POST /v1/audio/transcriptions, POST /asr,
             GET /v1/models, GET /health
  funasr-ws  the FunASR runtime SDK's WebSocket server, offline mode (port 10095);
             wss with --certfile/--keyfile, else plain ws

exit status: 0 stopped normally, 1 could not start (engine, ffmpeg, port), 2 bad usage

examples:
  python -m asrbatch.server --engine sphinx --host 127.0.0.1 --port 7860
  python -m asrbatch.server --protocol funasr-ws --certfile server.crt --keyfile server.key
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
    protocol: str = "gradio"
    app: str = "paraformer"
    """Gradio only: the shape of the app (see ``asrbatch.server.shapes``)."""
    api_open: bool = True
    """Gradio only: False queues with ``api_open=False`` (REST prediction routes closed)."""
    allow_url_inputs: bool = False
    """Gradio only: let file inputs name URLs for Gradio to fetch."""
    api_key: str | None = None
    """openai only: the bearer token every request but /health must carry."""
    certfile: Path | None = None
    keyfile: Path | None = None


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


def true_or_false(text: str) -> bool:
    """``true``/``false`` (also yes/no, on/off, 1/0)."""
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"must be true or false, not {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """The server's argument parser."""
    parser = argparse.ArgumentParser(
        prog="asrbatch serve",
        description="Run the reference speech-recognition server that asrbatch sends recordings to:\n"
        "a Gradio app shaped like the FunASR Paraformer WebUI, FunASR's OpenAI-compatible\n"
        "funasr-server API, or the FunASR runtime SDK's WebSocket server, with one engine.",
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
        "--protocol",
        choices=PROTOCOLS,
        default="gradio",
        help="what the server speaks (default: gradio; see 'protocols' below)",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        help="port to listen on (default: "
        + ", ".join(f"{port} for {name}" for name, port in DEFAULT_PORTS.items())
        + ")",
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
        "audio's duration (e.g. 12.34), {hotwords} the request's hotwords, comma-separated",
    )
    gradio = parser.add_argument_group("gradio protocol")
    gradio.add_argument(
        "--app",
        choices=APP_SHAPES,
        help="shape of the Gradio app (default: paraformer, the four-tab WebUI; simple and numpy: "
        "one-input gr.Interface; multitab: recognition is not fn 0 and takes extra inputs; "
        "streaming: fn 0 yields partial transcripts)",
    )
    gradio.add_argument(
        "--api-open",
        type=true_or_false,
        metavar="true|false",
        help="false: queue(api_open=False), only the queue routes run events (default: true)",
    )
    gradio.add_argument(
        "--allow-url-inputs",
        action="store_true",
        help="let file inputs name http(s) URLs that Gradio then fetches (default: refused; a "
        "file input must always be a file uploaded to this server)",
    )
    openai = parser.add_argument_group("openai protocol")
    openai.add_argument(
        "--api-key-env",
        metavar="NAME",
        help=f"environment variable holding the API key clients must send as a bearer token "
        f"(default: {API_KEY_VARIABLE}; unset or empty: no key needed)",
    )
    tls = parser.add_argument_group("openai and funasr-ws protocols")
    tls.add_argument("--certfile", type=Path, help="TLS certificate (PEM): serve https / wss")
    tls.add_argument("--keyfile", type=Path, help="private key (PEM) of --certfile")
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
    gradio_only = {
        "--app": args.app,
        "--api-open": args.api_open,
        "--allow-url-inputs": args.allow_url_inputs or None,
    }
    for flag, value in gradio_only.items():
        if value is not None and args.protocol != "gradio":
            parser.error(f"{flag} applies to --protocol gradio only")
    if args.api_key_env is not None and args.protocol != "openai":
        parser.error("--api-key-env applies to --protocol openai only")
    if (args.certfile is None) != (args.keyfile is None):
        parser.error("give both --certfile and --keyfile, or neither")
    if args.certfile is not None:
        if args.protocol == "gradio":
            parser.error("--certfile/--keyfile apply to --protocol openai and funasr-ws")
        for path in (args.certfile, args.keyfile):
            if not path.is_file():
                parser.error(f"no such file: {path}")
    api_key = None
    if args.protocol == "openai":
        variable = args.api_key_env or API_KEY_VARIABLE
        api_key = environ.get(variable) or None
        if args.api_key_env is not None and api_key is None:
            parser.error(f"--api-key-env {variable}: the variable is not set or empty")
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
        port=args.port or DEFAULT_PORTS[args.protocol],
        max_file_size=args.max_file_size,
        temp_dir=args.temp_dir,
        concurrency=args.concurrency,
        auth=(username, password) if username and args.protocol == "gradio" else None,
        log_level=args.log_level,
        protocol=args.protocol,
        app=args.app or "paraformer",
        api_open=True if args.api_open is None else args.api_open,
        allow_url_inputs=args.allow_url_inputs,
        api_key=api_key,
        certfile=args.certfile,
        keyfile=args.keyfile,
    )
