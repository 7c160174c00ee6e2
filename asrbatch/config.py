"""Configuration: YAML file + ``ASRBATCH_*`` environment + command-line flags -> one frozen Config.

Precedence, highest first: flags, environment, file, defaults.  Every problem is
reported with its key path (``server.connect_timeout: must be > 0``) and unknown
keys are rejected.  After :func:`load_config` returns, nothing reads the
environment or the YAML file again.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
import urllib.parse
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from asrbatch.errors import ConfigError
from asrbatch.media import DEFAULT_EXTENSIONS
from asrbatch.subtitles import check_rules as check_subtitle_rules

ENV_PREFIX = "ASRBATCH_"
CONFIG_ENV = "ASRBATCH_CONFIG"
"""Environment variable naming the config file when ``-c`` is not given."""
PASSWORD_ENV = "ASRBATCH_SERVER_PASSWORD"
"""Default environment variable holding the Gradio login password (the reference server reads it too)."""
API_KEY_ENV = "ASRBATCH_SERVER_API_KEY"
"""Default environment variable holding the API key of an OpenAI-compatible server."""
SECRET_ENV_ENDINGS = ("_API_KEY",)
"""Variables named like these hold secrets (an API key named by ``server.api_key_env``), not settings."""
RESERVED_ENV = (
    # Read by the reference server, scripts/run_server.sh, the scripts and the test harness.
    "ASRBATCH_SERVE_", "ASRBATCH_FUNASR_", "ASRBATCH_TEST", "ASRBATCH_ENGINE", "ASRBATCH_HOST", "ASRBATCH_PORT",
    "ASRBATCH_MODEL", "ASRBATCH_DEVICE", "ASRBATCH_PYTHON", "ASRBATCH_VENV", "ASRBATCH_MAX_FILE_SIZE",
    "ASRBATCH_TEMP_DIR", "ASRBATCH_CONCURRENCY", "ASRBATCH_SIMULATE", "ASRBATCH_VAD_MODEL", "ASRBATCH_PUNC_MODEL",
)

DEFAULT_TEMPLATE = (None, "<audio>", "<batch_size>", "<hotwords>")
"""The Paraformer WebUI's arguments (hotword file, audio, batch size, hotwords): what ``auto`` builds there."""
SERVER_SCHEMES = ("http://", "https://", "ws://", "wss://")
WEBSOCKET_SCHEMES = ("ws://", "wss://")
OUTPUT_FORMATS = ("txt", "json", "srt", "vtt")


def _doc(text: str, **kwargs: Any) -> Any:
    return field(metadata={"doc": text}, **kwargs)


@dataclass(frozen=True)
class RetryConfig:
    attempts: int = _doc("Tries per request before giving up (1 = no retry).", default=4)
    initial_wait: float = _doc("Seconds before the first retry; doubles each time.", default=1.0)
    max_wait: float = _doc("Longest wait between two tries, in seconds.", default=30.0)
    jitter: float = _doc("Random seconds (0..jitter) added to each wait.", default=1.0)


@dataclass(frozen=True)
class ServerConfig:
    url: str = _doc(
        "Base URL of the ASR server: the Gradio WebUI (http/https), an OpenAI-compatible server such as "
        "funasr-server (http/https, with or without /v1), or the FunASR runtime (ws/wss).",
        default="http://127.0.0.1:7860",
    )
    protocol: Literal["auto", "gradio", "openai", "funasr-ws"] = _doc(
        "How the server is spoken to. auto: ws:// and wss:// URLs speak the FunASR runtime's WebSocket "
        "protocol; for http(s) URLs a Gradio app (GET /config) or an OpenAI-compatible server "
        "(GET /v1/models) is recognised.",
        default="auto",
    )
    fn_index: Literal["auto"] | int | None = _doc(
        "Index of the recognition function in the app's /config (the WebUI's first button is 0); auto "
        "(or null): the first function the server runs that takes an audio (else a file) input and gives text.",
        default="auto",
    )
    api_name: str | None = _doc(
        "Name of the recognition endpoint (Gradio 4+); when set it wins over fn_index.", default=None
    )
    input_template: Literal["auto"] | tuple[Any, ...] = _doc(
        "Arguments sent to the function; the placeholders <audio>, <batch_size> and <hotwords> are "
        "filled in, anything else is sent as written. auto: built from the function's inputs (the recording "
        "to its audio input, else its file input; <batch_size> to a slider labelled batch size; <hotwords> to "
        "a textbox labelled or hinting hotwords, 热词 or prompt; every other input its declared default).",
        default="auto",
    )
    output_index: Literal["auto"] | int = _doc(
        "Which of the function's outputs holds the text; auto: its first text output.", default="auto"
    )
    batch_size: int = _doc("Value sent for <batch_size>.", default=1)
    hotword_separator: str = _doc("Separator used to join hotwords into <hotwords>.", default=",")
    username: str | None = _doc("Gradio login user name (password comes from password_env).", default=None)
    password_env: str = _doc("Environment variable holding the Gradio login password.", default=PASSWORD_ENV)
    verify_tls: bool | str = _doc(
        "Verify HTTPS certificates: true, false, or the path of a CA bundle.", default=True
    )
    connect_timeout: float = _doc("Seconds to wait for a connection.", default=5.0)
    read_timeout: float = _doc("Base seconds to wait for an answer.", default=60.0)
    read_timeout_per_audio_second: float = _doc(
        "Seconds added to the read timeout and the deadline per second of audio sent.", default=1.0
    )
    deadline: float = _doc(
        "Base overall seconds allowed for one recognition, streamed results included.", default=300.0
    )
    retry: RetryConfig = _doc("Retries of transient failures.", default_factory=RetryConfig)
    urls: tuple[str, ...] = _doc(
        "Several servers sharing the work (overrides url when set); the least busy healthy one gets the "
        "next request.",
        default=(),
    )
    concurrency: int | None = _doc(
        "Requests in flight per server; null: the limit the server reports in /config where Gradio "
        "exposes it, else 1.",
        default=None,
    )
    model: str | None = _doc(
        "OpenAI-compatible servers: the model requests name; null: one the server lists (the one "
        "funasr-server has loaded, else a paraformer model, else the first).",
        default=None,
    )
    language: str | None = _doc(
        "OpenAI-compatible servers: the language field sent (zh, en, auto...); null: not sent.", default=None
    )
    api_key_env: str = _doc(
        "OpenAI-compatible servers: environment variable holding the API key sent as a bearer token "
        "(unset: no key is sent).",
        default=API_KEY_ENV,
    )
    send_format: Literal["pcm", "file"] = _doc(
        "FunASR runtime: pcm sends every chunk as 16-bit mono samples whatever audio.codec says (FunASR's "
        "C++ and Python servers both take them); file sends chunks in audio.codec, each as a file with its "
        "extension as wav_format (the C++ server decodes it).",
        default="pcm",
    )
    hotword_weight: int = _doc("FunASR runtime: the weight given to each hotword.", default=20)
    itn: bool = _doc("FunASR runtime: inverse text normalisation (numbers as digits).", default=True)
    password: str | None = field(default=None, repr=False, metadata={"internal": True})
    api_key: str | None = field(default=None, repr=False, metadata={"internal": True})


@dataclass(frozen=True)
class InputConfig:
    dir: Path | None = _doc(
        "The folder of recordings (the INPUT_DIR argument of run and watch sets it).", default=None
    )
    recursive: bool = _doc("Look into sub-folders.", default=True)
    extensions: tuple[str, ...] = _doc("File extensions taken as recordings (any case).", default=DEFAULT_EXTENSIONS)
    min_age: float = _doc(
        "Seconds since a file's last change before it is picked up (a file being copied in is skipped).",
        default=60.0,
    )
    hotwords_file: str = _doc(
        "Name of a per-folder hotword file (one per line) merged into that folder's hotwords.",
        default="hotwords.txt",
    )


@dataclass(frozen=True)
class SubtitlesConfig:
    line_length: int = _doc("Longest subtitle line, in columns of Latin text.", default=42)
    line_length_cjk: int = _doc(
        "Longest line of Chinese, Japanese or Korean text, in wide characters (a wide character counts "
        "line_length / line_length_cjk columns in mixed lines).",
        default=16,
    )
    lines: int = _doc("Lines per cue at most.", default=2)
    max_cue_seconds: float = _doc("Longest time one cue stays on screen, in seconds.", default=7.0)
    min_cue_seconds: float = _doc(
        "Shortest time a cue stays on screen where the next cue and the audio's end allow, in seconds.",
        default=1.0,
    )


@dataclass(frozen=True)
class OutputConfig:
    dir: Path | None = _doc(
        "Where transcripts go, mirroring the input tree. Default: a sibling of the input folder "
        "named <input>_transcripts.",
        default=None,
    )
    formats: tuple[str, ...] = _doc("Files written per recording: txt, json, srt, vtt.", default=("txt",))
    subtitles: SubtitlesConfig = _doc("How srt and vtt cues are cut.", default_factory=SubtitlesConfig)


@dataclass(frozen=True)
class StateConfig:
    dir: Path | None = _doc("Folder of the ledger, lock and log. Default: <output>/.asrbatch.", default=None)
    max_runs: int = _doc(
        "Runs in which a file that failed transiently is tried again before it waits for `asrbatch retry`.",
        default=3,
    )
    ledger: str = _doc(
        "sqlite: the file ledger.sqlite3 in the state folder, one run at a time; or a "
        "postgresql://user@host:port/database URL (no password in it) shared by several workers.",
        default="sqlite",
    )
    ledger_password_env: str | None = _doc(
        "Environment variable holding the PostgreSQL password; null: libpq's own PGPASSWORD or ~/.pgpass.",
        default=None,
    )
    lease: float = _doc(
        "Seconds a worker's claim on a recording lasts unless renewed (shared ledger): a worker that dies "
        "loses its recordings to the others this long after.",
        default=300.0,
    )
    ledger_password: str | None = field(default=None, repr=False, metadata={"internal": True})


@dataclass(frozen=True)
class AudioConfig:
    convert: bool = _doc(
        "Decode and send 16-bit mono WAV at sample_rate; false sends the original bytes unchanged.",
        default=True,
    )
    sample_rate: int = _doc("Sample rate sent to the server, in Hz.", default=16000)
    channels: Literal["mix", "split"] = _doc(
        "mix: down-mix to mono; split: transcribe each channel separately (call-centre stereo).",
        default="mix",
    )
    split_above: float = _doc("Recordings longer than this many seconds are sent in chunks.", default=300.0)
    max_chunk: float = _doc("Longest chunk, in seconds.", default=60.0)
    min_silence: float = _doc("Shortest pause, in seconds, where a chunk may end.", default=0.3)
    silence_threshold: float = _doc("Level in dBFS below which audio counts as silence.", default=-40.0)
    overlap: float = _doc("Seconds of overlap when a chunk must be cut where there is no pause.", default=1.0)
    utterances: Literal["auto", "always", "never"] = _doc(
        "Send each utterance (speech between pauses) as its own request, so subtitles and JSON segments are "
        "timed by the audio: auto does so when json, srt or vtt is written and the server returns no timings "
        "of its own; always; never (chunks only).",
        default="auto",
    )
    utterance_pause: float = _doc("Shortest pause, in seconds, that ends an utterance.", default=0.5)
    utterance_min: float = _doc("Utterances shorter than this many seconds join the next one.", default=1.0)
    utterance_max: float = _doc(
        "Utterances longer than this many seconds (or than max_chunk) are cut again at their longest inner pause.",
        default=10.0
    )
    codec: Literal["vorbis", "opus", "flac", "wav", "original"] = _doc(
        "How each chunk travels: vorbis (Ogg Vorbis at 16 kHz, about bitrate), opus (Ogg Opus at bitrate), "
        "flac, wav (16-bit PCM), or original (the recording's own bytes when it is sent whole, else wav). "
        "A server that refuses it gets the next one that it takes (vorbis, opus, flac, wav, original).",
        default="vorbis",
    )
    bitrate: int = _doc("Bitrate of vorbis and opus in kbit/s (6-256; vorbis takes the quality nearest it).",
                        default=32)


@dataclass(frozen=True)
class RunConfig:
    max_files: int | None = _doc("Send at most this many recordings per run; the rest stay pending.", default=None)
    max_runtime: float | None = _doc(
        "Start no new recording after this many seconds, so an hourly run never overlaps the next.", default=None
    )


@dataclass(frozen=True)
class MonitoringConfig:
    healthchecks_url: str | None = _doc(
        "healthchecks.io-style ping URL: <url>/start at the start, <url> on success, <url>/<exit code> on "
        "failure, with the log tail as the body.",
        default=None,
    )
    webhook_url: str | None = _doc("URL that receives the run summary as JSON (POST) after every run.", default=None)
    timeout: float = _doc("Seconds allowed for each monitoring call; a failing call only logs a warning.", default=10.0)
    log_tail_lines: int = _doc("Lines of the log sent with the healthchecks pings.", default=50)
    textfile: Path | None = _doc(
        "Prometheus textfile-collector output (e.g. /var/lib/node_exporter/textfile/asrbatch.prom).", default=None
    )


@dataclass(frozen=True)
class HousekeepingConfig:
    mode: Literal["keep", "move"] = _doc(
        "keep: leave recordings where they are. move: after success move them to done_dir (and, with "
        "failed_dir set, permanently failed ones there), preserving the tree.",
        default="keep",
    )
    done_dir: Path | None = _doc("Where finished recordings are moved (mode: move).", default=None)
    failed_dir: Path | None = _doc("Where permanently failed recordings are moved (optional).", default=None)


@dataclass(frozen=True)
class WatchConfig:
    settle: float = _doc("Seconds a new file must stay unchanged (and closed) before it is processed.", default=5.0)
    rescan_interval: float = _doc("Seconds between full rescans that catch anything the events missed.", default=300.0)


@dataclass(frozen=True)
class LogConfig:
    file: Path | None = _doc("Log file. Default: <state>/asrbatch.log.", default=None)
    max_bytes: int = _doc("Rotate the log file above this size.", default=5_000_000)
    backups: int = _doc("Rotated log files kept.", default=5)
    level: Literal["debug", "info", "warning"] = _doc("Level written to the log file.", default="info")


@dataclass(frozen=True)
class Config:
    server: ServerConfig = _doc("The ASR server.", default_factory=ServerConfig)
    input: InputConfig = _doc("What is picked up from the input folder.", default_factory=InputConfig)
    output: OutputConfig = _doc("Where transcripts are written.", default_factory=OutputConfig)
    state: StateConfig = _doc("Run state: ledger, lock, log.", default_factory=StateConfig)
    audio: AudioConfig = _doc("How recordings are prepared before sending.", default_factory=AudioConfig)
    log: LogConfig = _doc("Log file.", default_factory=LogConfig)
    run: RunConfig = _doc("Bounds of one run.", default_factory=RunConfig)
    monitoring: MonitoringConfig = _doc("Monitoring hooks and metrics.", default_factory=MonitoringConfig)
    housekeeping: HousekeepingConfig = _doc("What happens to recordings after success.",
                                            default_factory=HousekeepingConfig)
    watch: WatchConfig = _doc("asrbatch watch.", default_factory=WatchConfig)
    hotwords: tuple[str, ...] = _doc("Hotwords sent with every recording.", default=())
    source: Path | None = field(default=None, metadata={"internal": True})


# --------------------------------------------------------------------------------------------
# Loading and validation


def load_config(
    path: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    additions: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config from *path* (or ``$ASRBATCH_CONFIG``), the environment and the flags.

    The flags arrive as key paths, applied before validation (so a bad flag is reported
    like a bad key): *overrides* maps dotted key paths (``"server.url"``) to values that
    replace what the file and environment say; *additions* maps list keys
    (``"hotwords"``) to values appended to them.  ``None`` values are ignored.  Raises
    :class:`ConfigError` listing every problem.
    """
    env = dict(os.environ if env is None else env)
    if path is None and env.get(CONFIG_ENV):
        path = env[CONFIG_ENV]
    data: dict[str, Any] = {}
    source = None
    if path is not None:
        source = Path(path).expanduser()
        data = read_yaml(source)
    problems: list[str] = []
    _apply_environment(data, env, problems, secrets=_secret_variables(data, env))
    apply_arguments(data, overrides or {}, additions or {})
    config = _build(Config, data, "", problems)
    if config is not None:
        password = ledger_password = None
        if config.server.username:
            password = env.get(config.server.password_env)
            if password is None:
                problems.append(
                    f"server.username: set, but the password variable {config.server.password_env} is not"
                )
        if config.state.ledger_password_env:
            ledger_password = env.get(config.state.ledger_password_env)
            if ledger_password is None:
                problems.append(f"state.ledger_password_env: set, but the variable "
                                f"{config.state.ledger_password_env} is not")
        problems.extend(_cross_checks(config))
    if problems or config is None:
        where = f" in {source}" if source else ""
        raise ConfigError(problems, hint=f"fix the configuration{where}; see config.example.yaml")
    api_key = env.get(config.server.api_key_env) or None
    server = dataclasses.replace(config.server, password=password, api_key=api_key)
    state = dataclasses.replace(config.state, ledger_password=ledger_password)
    return dataclasses.replace(config, server=server, state=state, source=source)


def apply_arguments(data: dict[str, Any], overrides: Mapping[str, Any], additions: Mapping[str, Any]) -> None:
    """Apply command-line values to the raw config *data* by key path (in place)."""
    for key, value in overrides.items():
        if value is not None:
            _set_path(data, key.split("."), value)
    for key, value in additions.items():
        if value is None:
            continue
        parts = key.split(".")
        current = _get_path(data, parts)
        if current is None:
            current = []
        elif isinstance(current, str):
            current = [current]
        if not isinstance(current, (list, tuple)):
            _set_path(data, parts, value)  # let validation report the configured value's type
            continue
        added = list(value) if isinstance(value, (list, tuple)) else [value]
        _set_path(data, parts, [*current, *(v for v in added if v not in current)])


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def iter_keys(cls: type = Config, prefix: str = "") -> typing.Iterator[tuple[str, dataclasses.Field[Any], Any]]:
    """Yield ``(dotted key, field, type)`` for every leaf key of the schema."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        hint = hints[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hint):
            yield from iter_keys(typing.cast(type, hint), key + ".")
        else:
            yield key, f, hint


def env_name(key: str) -> str:
    """``server.read_timeout`` -> ``ASRBATCH_SERVER_READ_TIMEOUT``."""
    return ENV_PREFIX + key.replace(".", "_").upper()


def _secret_variables(data: Mapping[str, Any], env: Mapping[str, str]) -> set[str]:
    """The variables named to hold the password and the API key (file or environment): secrets, not settings."""
    server = data.get("server")
    server = server if isinstance(server, Mapping) else {}
    names = set()
    for key, default in (("password_env", PASSWORD_ENV), ("api_key_env", API_KEY_ENV)):
        value = env.get(env_name(f"server.{key}")) or server.get(key) or default
        if isinstance(value, str):
            names.add(value)
    return names


def _is_setting(name: str, secrets: Collection[str] = ()) -> bool:
    """*name* is an environment variable that :func:`load_config` reads as a config key (a key's own
    variable always is, ``ASRBATCH_SERVER_PASSWORD_ENV`` too; a secret's never)."""
    if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV or name in secrets or name.startswith(RESERVED_ENV):
        return False
    if name in _known_variables():
        return True
    return "PASSWORD" not in name and not name.endswith(SECRET_ENV_ENDINGS)


@functools.lru_cache(maxsize=1)
def _known_variables() -> frozenset[str]:
    return frozenset(env_name(key) for key, _, _ in iter_keys())


def config_variables(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``ASRBATCH_*`` variables of *env* (default: the process's) that set config keys, by name.

    What a job started elsewhere (cron) needs to see the same config; the password and API key
    variables are never among them.
    """
    env = os.environ if env is None else env
    secrets = _secret_variables({}, env)
    return {name: value for name, value in sorted(env.items()) if _is_setting(name, secrets)}


def _apply_environment(data: dict[str, Any], env: Mapping[str, str], problems: list[str],
                       secrets: Collection[str] = ()) -> None:
    known = {env_name(key): key for key, _, _ in iter_keys()}
    for name, raw in env.items():
        if not _is_setting(name, secrets):
            continue
        key = known.get(name)
        if key is None and ("PASSWORD" in name or name.startswith(RESERVED_ENV)):
            continue
        if key is None:
            problems.append(f"{name}: unknown environment variable (known: see config.example.yaml)")
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict,)):
            problems.append(f"{name}: expected a single value or a list, not a mapping")
            continue
        if isinstance(value, str) and "," in value and _is_sequence_key(key):
            value = [part.strip() for part in value.split(",") if part.strip()]
        _set_path(data, key.split("."), value)


def _is_sequence_key(key: str) -> bool:
    for k, _, hint in iter_keys():
        if k == key:
            return typing.get_origin(hint) is tuple
    return False


def _get_path(data: dict[str, Any], parts: list[str]) -> Any:
    node: Any = data
    for part in parts:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _set_path(data: dict[str, Any], parts: list[str], value: Any) -> None:
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _build(cls: type, data: Any, prefix: str, problems: list[str]) -> Any:
    where = prefix.rstrip(".") or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{where}: must be a mapping, not {type(data).__name__}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in fields:
            near = ", ".join(sorted(fields))
            problems.append(f"{prefix}{key}: unknown key (known here: {near})")
    values: dict[str, Any] = {}
    for name in fields:
        hint = hints[name]
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            built = _build(typing.cast(type, hint), data.get(name), key + ".", problems)
            if built is not None:
                values[name] = built
            continue
        if name not in data:
            continue
        ok, converted = _convert(data[name], hint, key, problems)
        if ok:
            values[name] = converted
    try:
        return cls(**values)
    except TypeError as exc:  # pragma: no cover - schema bug, not user error
        raise AssertionError(f"config schema for {cls.__name__}: {exc}") from exc


def _convert(value: Any, hint: Any, key: str, problems: list[str]) -> tuple[bool, Any]:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return True, None
        errors: list[str] = []
        for arg in args:
            if arg is type(None):
                continue
            ok, converted = _convert(value, arg, key, errors)
            if ok:
                return True, converted
        problems.append(errors[0] if len(errors) == 1 else f"{key}: {_describe(value)} is not {_type_name(hint)}")
        return False, None
    if origin is Literal:
        if value in args:
            return True, value
        problems.append(f"{key}: must be one of {', '.join(map(str, args))}, not {value!r}")
        return False, None
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            problems.append(f"{key}: must be a list, not {_describe(value)}")
            return False, None
        if len(args) == 2 and args[1] is Ellipsis:
            item_type = args[0]
            out = []
            good = True
            for i, item in enumerate(value):
                ok, converted = _convert(item, item_type, f"{key}[{i}]", problems)
                good = good and ok
                out.append(converted)
            return good, tuple(out)
        return True, tuple(value)
    if hint is Any:
        return True, value
    if hint is bool:
        if isinstance(value, bool):
            return True, value
        problems.append(f"{key}: must be true or false, not {_describe(value)}")
        return False, None
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value
        problems.append(f"{key}: must be a whole number, not {_describe(value)}")
        return False, None
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        problems.append(f"{key}: must be a number, not {_describe(value)}")
        return False, None
    if hint is str:
        if isinstance(value, str):
            return True, value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, str(value)
        problems.append(f"{key}: must be text, not {_describe(value)}")
        return False, None
    if hint is Path:
        if isinstance(value, (str, Path)) and str(value).strip():
            return True, Path(value).expanduser()
        problems.append(f"{key}: must be a path, not {_describe(value)}")
        return False, None
    raise AssertionError(f"config schema: unsupported type {hint!r} at {key}")  # pragma: no cover


def _describe(value: Any) -> str:
    if value is None:
        return "empty"
    return f"{type(value).__name__} {value!r}"


def _type_name(hint: Any) -> str:
    names: list[str] = []
    for arg in typing.get_args(hint):
        if arg is type(None):
            continue
        if typing.get_origin(arg) is Literal:
            names.extend(map(str, typing.get_args(arg)))
        elif typing.get_origin(arg) is tuple:
            names.append("a list")
        else:
            names.append(getattr(arg, "__name__", str(arg)))
    return " or ".join(names)


def protocol_problem(protocol: str, url: str) -> str | None:
    """Why *protocol* cannot be spoken at *url* (its scheme), or None when it can."""
    websocket = url.startswith(WEBSOCKET_SCHEMES)
    if protocol == "funasr-ws" and not websocket and url.startswith(SERVER_SCHEMES):
        return f"{url!r}: server.protocol funasr-ws needs a ws:// or wss:// URL (the FunASR runtime listens on 10095)"
    if protocol in ("gradio", "openai") and websocket:
        return f"{url!r}: server.protocol {protocol} needs an http:// or https:// URL (ws:// is the FunASR runtime's)"
    return None


def _cross_checks(config: Config) -> list[str]:
    problems: list[str] = []
    s = config.server
    if not s.url.startswith(SERVER_SCHEMES):
        problems.append(f"server.url: must start with http://, https://, ws:// or wss://, not {s.url!r}")
    if isinstance(s.fn_index, int) and s.fn_index < 0:
        problems.append("server.fn_index: must be >= 0 or auto")
    if isinstance(s.output_index, int) and s.output_index < 0:
        problems.append("server.output_index: must be >= 0 or auto")
    if not isinstance(s.input_template, str) and "<audio>" not in s.input_template:
        problems.append("server.input_template: must be auto, or a list that contains the <audio> placeholder")
    if not 1 <= s.batch_size <= 10_000:
        problems.append("server.batch_size: must be >= 1")
    for name in ("connect_timeout", "read_timeout", "deadline"):
        if getattr(s, name) <= 0:
            problems.append(f"server.{name}: must be > 0")
    if s.read_timeout_per_audio_second < 0:
        problems.append("server.read_timeout_per_audio_second: must be >= 0")
    r = s.retry
    if r.attempts < 1:
        problems.append("server.retry.attempts: must be >= 1")
    for name in ("initial_wait", "max_wait", "jitter"):
        if getattr(r, name) < 0:
            problems.append(f"server.retry.{name}: must be >= 0")
    if isinstance(s.verify_tls, str) and not Path(s.verify_tls).expanduser().exists():
        problems.append(f"server.verify_tls: CA bundle {s.verify_tls} does not exist")
    i = config.input
    if not i.extensions:
        problems.append("input.extensions: must list at least one extension")
    if i.min_age < 0:
        problems.append("input.min_age: must be >= 0")
    for fmt in config.output.formats:
        if fmt not in OUTPUT_FORMATS:
            problems.append(f"output.formats: unknown format {fmt!r} (known: {', '.join(OUTPUT_FORMATS)})")
    if not config.output.formats:
        problems.append("output.formats: must list at least one format")
    problems.extend(f"output.subtitles.{problem}" for problem in check_subtitle_rules(config.output.subtitles))
    if config.state.max_runs < 1:
        problems.append("state.max_runs: must be >= 1")
    if config.state.ledger != "sqlite" and (problem := ledger_url_problem(config.state.ledger)):
        problems.append(f"state.ledger: {problem}")
    if config.state.lease < 1:
        problems.append("state.lease: must be >= 1 second")
    a = config.audio
    if not 8000 <= a.sample_rate <= 192_000:
        problems.append("audio.sample_rate: must be between 8000 and 192000")
    if a.max_chunk < 5:
        problems.append("audio.max_chunk: must be >= 5 seconds")
    if a.split_above < a.max_chunk:
        problems.append("audio.split_above: must be >= audio.max_chunk")
    if a.overlap < 0 or a.overlap >= a.max_chunk / 2:
        problems.append("audio.overlap: must be >= 0 and less than half of audio.max_chunk")
    if a.min_silence <= 0:
        problems.append("audio.min_silence: must be > 0")
    if a.utterance_pause < a.min_silence:
        problems.append("audio.utterance_pause: must be >= audio.min_silence")
    if a.utterance_min < 0:
        problems.append("audio.utterance_min: must be >= 0")
    if not a.utterance_min < a.utterance_max:
        problems.append("audio.utterance_max: must be more than audio.utterance_min")
    if a.silence_threshold >= 0:
        problems.append("audio.silence_threshold: must be below 0 dBFS")
    if not 6 <= a.bitrate <= 256:
        problems.append("audio.bitrate: must be between 6 and 256 (kbit/s)")
    for url in s.urls:
        if not url.startswith(SERVER_SCHEMES):
            problems.append(f"server.urls: {url!r} must start with http://, https://, ws:// or wss://")
    for key, url in [("server.url", s.url)] if not s.urls else [("server.urls", u) for u in s.urls]:
        problem = protocol_problem(s.protocol, url)
        if problem:
            problems.append(f"{key}: {problem}")
    if s.model is not None and not s.model.strip():
        problems.append("server.model: must not be empty (null picks one the server lists)")
    if not s.api_key_env.strip():
        problems.append("server.api_key_env: must name an environment variable")
    if not 1 <= s.hotword_weight <= 10_000:
        problems.append("server.hotword_weight: must be between 1 and 10000")
    if s.concurrency is not None and not 1 <= s.concurrency <= 64:
        problems.append("server.concurrency: must be between 1 and 64")
    if config.run.max_files is not None and config.run.max_files < 1:
        problems.append("run.max_files: must be >= 1")
    if config.run.max_runtime is not None and config.run.max_runtime <= 0:
        problems.append("run.max_runtime: must be > 0")
    m = config.monitoring
    for name in ("healthchecks_url", "webhook_url"):
        value = getattr(m, name)
        if value is not None and not value.startswith(("http://", "https://")):
            problems.append(f"monitoring.{name}: must start with http:// or https://")
    if m.timeout <= 0:
        problems.append("monitoring.timeout: must be > 0")
    if m.log_tail_lines < 0:
        problems.append("monitoring.log_tail_lines: must be >= 0")
    h = config.housekeeping
    if h.mode == "move" and h.done_dir is None:
        problems.append("housekeeping.done_dir: required when housekeeping.mode is move")
    if config.watch.settle < 0:
        problems.append("watch.settle: must be >= 0")
    if config.watch.rescan_interval <= 0:
        problems.append("watch.rescan_interval: must be > 0")
    if config.log.max_bytes < 10_000:
        problems.append("log.max_bytes: must be >= 10000")
    if config.log.backups < 0:
        problems.append("log.backups: must be >= 0")
    return problems


LEDGER_SCHEMES = ("postgresql://", "postgres://")


def ledger_url_problem(url: str) -> str | None:
    """Why *url* cannot name a shared ledger (a password in it, a bad scheme), or None."""
    if not url.startswith(LEDGER_SCHEMES):
        return f"must be sqlite or a postgresql:// URL, not {redact_url(url)!r}"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.password is not None or "password" in {k.lower() for k in urllib.parse.parse_qs(parts.query)}:
        return ("holds a password: take it out of the URL and put it in PGPASSWORD, in the variable named by "
                "state.ledger_password_env, or in ~/.pgpass")
    return None


def redact_url(url: str) -> str:
    """*url* with any password in it replaced by ``***`` (for messages)."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return url.rsplit("@", 1)[-1]
    if password is not None:
        parts = parts._replace(netloc=parts.netloc.replace(f":{password}@", ":***@", 1))
    if any(k.lower() == "password" for k, _ in query):
        hidden = [(k, "***" if k.lower() == "password" else v) for k, v in query]
        parts = parts._replace(query=urllib.parse.urlencode(hidden))
    return urllib.parse.urlunsplit(parts)
