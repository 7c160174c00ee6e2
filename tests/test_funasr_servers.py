"""FunASR's own servers end to end: `asrbatch run` and `asrbatch ping` as cron runs them.

The reference server speaks funasr-server's OpenAI-compatible API (behind an API key) and the
FunASR runtime's WebSocket protocol with the sphinx engine; a pool mixes a Gradio app and an
OpenAI-compatible server, both with the simulate engine, whose transcripts name the hotwords
that reached the engine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from asrbatch.config import load_config
from asrbatch.errors import ConfigError, ExitCode
from tests.support import speech
from tests.support.jobs import cli, log_events, place
from tests.support.servers import ServerEnvironmentError, ServerProcess, start_server
from tests.support.wer import wer

VERSION = "6.31.0"
API_KEY = "sk-run-0815"
FORMATS = ("wav", "mp3", "m4a", "flac")
SIMULATED = "heard [{hotwords}] {seconds}"


def started(log_dir: Path, **kwargs: object) -> ServerProcess:
    try:
        return start_server(VERSION, log_dir=log_dir, **kwargs)  # type: ignore[arg-type]
    except ServerEnvironmentError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def openai(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with started(tmp_path_factory.mktemp("openai"), protocol="openai", env={"ASRBATCH_SERVE_API_KEY": API_KEY}) as s:
        yield s


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with started(tmp_path_factory.mktemp("ws"), protocol="funasr-ws") as server:
        yield server


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Every festival sentence as a recording, in turn WAV, MP3, M4A and FLAC."""
    folder = tmp_path_factory.mktemp("corpus")
    said = {}
    for index, sentence in enumerate(speech.SENTENCES):
        fmt = FORMATS[index % len(FORMATS)]
        key = f"part {index // 10}/sentence {index:02d}.{fmt}"
        place(folder, key, speech.synthesize(sentence, fmt=fmt))
        said[key] = sentence
    return folder, said


def transcripts(out: Path, said: dict[str, str]) -> dict[str, str]:
    return {key: (out / Path(key).with_suffix(".txt")).read_text(encoding="utf-8") for key in said}


def assert_heard(said: dict[str, str], heard: dict[str, str]) -> None:
    rates = {key: wer(said[key], heard[key]) for key in said}
    assert max(rates.values()) <= 0.5 and sum(rates.values()) / len(rates) <= 0.25, rates


@pytest.mark.parametrize("protocol", ["openai", "funasr-ws"])
def test_the_corpus_comes_back_through_run(protocol: str, openai: ServerProcess, runtime: ServerProcess,
                                           corpus: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    folder, said = corpus
    server = openai if protocol == "openai" else runtime
    out = tmp_path / "out"
    result = cli("run", str(folder), "-o", str(out), "--url", server.url, "--formats", "txt,json", "--workers", "2",
                 env={"ASRBATCH_SERVER_API_KEY": API_KEY})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""  # cron hears nothing when nothing failed
    heard = transcripts(out, said)
    assert_heard(said, heard)
    for key in said:
        document = json.loads((out / Path(key).with_suffix(".json")).read_text(encoding="utf-8"))
        assert document["text"] == heard[key].strip()
    log = (out / ".asrbatch" / "asrbatch.log").read_text(encoding="utf-8")
    (summary,) = log_events(log, "summary")
    assert (summary["found"], summary["done"], summary["failed"]) == (str(len(said)), str(len(said)), "0")
    assert API_KEY not in log


def test_ping_names_protocol_and_server(openai: ServerProcess, runtime: ServerProcess, tmp_path: Path) -> None:
    result = cli("ping", "--url", openai.url + "/v1", "--deep", env={"ASRBATCH_SERVER_API_KEY": API_KEY})
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"ok url={re.escape(openai.url)}/v1 protocol=openai server=funasr-server "
                        r"models=fun-asr-nano,sensevoice,paraformer,custom model=paraformer latency_ms=\d+ "
                        r"roundtrip_ms=\d+ text_chars=\d+", result.stdout.strip()), result.stdout
    config = tmp_path / "ws.yaml"
    config.write_text(f"server:\n  url: {runtime.url}\n  protocol: funasr-ws\n")
    result = cli("ping", "-c", str(config), "--deep")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"ok url={re.escape(runtime.url)} protocol=funasr-ws server=funasr-runtime latency_ms=\d+ "
                        r"roundtrip_ms=\d+ text_chars=[1-9]\d*", result.stdout.strip()), result.stdout


def test_a_missing_api_key_is_a_configuration_error(openai: ServerProcess, tmp_path: Path) -> None:
    place(tmp_path / "in", "a.wav", speech.synthesize(speech.SENTENCES[0]))
    result = cli("run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--url", openai.url,
                 env={"ASRBATCH_SERVER_API_KEY": ""})
    assert result.returncode == ExitCode.USAGE
    assert "requires an API key and none is set" in result.stderr and "ASRBATCH_SERVER_API_KEY" in result.stderr


def test_a_pool_of_a_gradio_app_and_an_openai_server_shares_the_work(tmp_path_factory: pytest.TempPathFactory,
                                                                     tmp_path: Path) -> None:
    arguments = ["--simulate-text", SIMULATED, "--simulate-rtf", "0.2"]
    inp, out = tmp_path / "in", tmp_path / "out"
    tone = speech.tone(2.0)
    keys = [f"call {index}.wav" for index in range(8)]
    for key in keys:
        place(inp, key, tone)
    with started(tmp_path_factory.mktemp("pool-gradio"), extra_args=arguments, engine="simulate") as gradio, \
            started(tmp_path_factory.mktemp("pool-openai"), protocol="openai", extra_args=arguments,
                    engine="simulate") as funasr:
        result = cli("run", str(inp), "-o", str(out), "--hotwords", "alpha,beta",
                     env={"ASRBATCH_SERVER_URLS": f"{gradio.url},{funasr.url}"})
        served = {name: len(re.findall(r"event=recognize ", server.log_text()))
                  for name, server in (("gradio", gradio), ("openai", funasr))}
    assert result.returncode == 0, result.stderr
    assert all(text.startswith("heard [alpha,beta] 2.0") for text in transcripts(out, dict.fromkeys(keys)).values())
    assert sum(served.values()) == len(keys) and min(served.values()) >= 2, served


# -- configuration -----------------------------------------------------------------------------


def test_protocol_and_url_must_fit() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={"ASRBATCH_SERVER_URL": "ws://gpu:10095", "ASRBATCH_SERVER_PROTOCOL": "gradio",
                               "ASRBATCH_SERVER_HOTWORD_WEIGHT": "0"})
    assert caught.value.problems == [
        "server.url: 'ws://gpu:10095': server.protocol gradio needs an http:// or https:// URL (ws:// is the FunASR "
        "runtime's)",
        "server.hotword_weight: must be between 1 and 10000",
    ]
    with pytest.raises(ConfigError, match=r"server.urls: 'http://b:8000': server.protocol funasr-ws needs a ws://"):
        load_config(None, env={"ASRBATCH_SERVER_URLS": "ws://a:10095,http://b:8000",
                               "ASRBATCH_SERVER_PROTOCOL": "funasr-ws"})
    mixed = load_config(None, env={"ASRBATCH_SERVER_URLS": "ws://a:10095,http://b:8000"})
    assert mixed.server.protocol == "auto"


def test_the_api_key_comes_from_the_named_variable_and_stays_out_of_sight() -> None:
    config = load_config(None, env={"ASRBATCH_SERVER_API_KEY": "sk-default"})
    assert config.server.api_key == "sk-default" and "sk-default" not in repr(config)
    named = load_config(None, env={"ASRBATCH_SERVER_API_KEY_ENV": "VLLM_API_KEY", "VLLM_API_KEY": "sk-named",
                                   "ASRBATCH_SERVER_API_KEY": "sk-default"})
    assert named.server.api_key == "sk-named"
    assert load_config(None, env={}).server.api_key is None
    # A variable of asrbatch's own prefix named for the key is a secret, not an unknown setting.
    prefixed = load_config(None, env={"ASRBATCH_SERVER_API_KEY_ENV": "ASRBATCH_TOKEN", "ASRBATCH_TOKEN": "sk-own"})
    assert prefixed.server.api_key == "sk-own"
