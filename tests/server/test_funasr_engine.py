"""The funasr engine through FunASR itself, with tiny models of the published classes.

The funasr test venv holds the real FunASR (and the CPU build of torch); the model folders are
laid out like the ModelScope downloads and load through ``AutoModel`` from disk
(tests/support/funasr_models.py). Their weights are random (the VAD's are set to detect energy),
so the recognised text is noise, and nothing here looks at what it says. What is checked is the
integration: the three models load from local folders, the engine's arguments are the ones
FunASR's code takes (hotwords reach SeACo-Paraformer's hotword parser word by word; sentence
timestamps come back, in seconds, in order, within the audio), a long recording is cut by the
VAD at its pauses, the engine's errors are the documented ones, the reference server and the
client run on top of it, and no process tries the network.

Run only these with ``pytest -m funasr``; leave them out with ``-m "not funasr"``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.server import gradio_http
from tests.support import speech
from tests.support.faultproxy import FaultProxy, respond
from tests.support.funasr_models import (
    ASR_TOKENS,
    UNKNOWN,
    TinyModels,
    offline_environment,
    tiny_funasr_models,  # noqa: F401 (fixture)
)
from tests.support.jobs import log_events, place
from tests.support.servers import (
    FUNASR_GRADIO_VERSION,
    REPO,
    ServerProcess,
    free_port,
    funasr_python,
)

pytestmark = pytest.mark.funasr

PROBE = REPO / "tests" / "support" / "funasr_probe.py"
AUDIT_PATH = REPO / "tests" / "support" / "network_audit"
RUN_SERVER = REPO / "scripts" / "run_server.sh"
HOTWORDS = ["阿里巴巴", "达摩院"]
# Hotwords FunASR would take for a URL to download or a file to read, if passed as they are.
TRICKY_HOTWORDS = ["https://hotwords.invalid/list.txt"]
# Longer than the 2 s of silence FunASR's VAD waits for before it cuts, early in a segment.
LONG_PAUSES = (2.5, 3.0)
LONG_SENTENCES = 16
# The recogniser counts time in 60 ms frames (low frame rate, 6 x 10 ms), the last one padded,
# so a piece's last token can end up to 60 ms past the piece's (or the audio's) end.
TIME_SLACK = 0.06


@dataclass(frozen=True)
class LongRecording:
    """Sentences with pauses between them, and where each sentence lies (seconds)."""

    path: Path
    duration: float
    spoken: tuple[tuple[float, float], ...]

    def pauses(self) -> list[tuple[float, float]]:
        """The silent stretches between sentences."""
        return [(a[1], b[0]) for a, b in zip(self.spoken, self.spoken[1:], strict=False)]


@dataclass(frozen=True)
class FunasrSetup:
    """The funasr venv's python, the model folders, and the environment every process gets."""

    python: Path
    models: TinyModels
    audit_log: Path
    hub_cache: Path

    def environment(self) -> dict[str, str]:
        """Offline hubs, an empty ModelScope cache, and the network audit (see network_audit/)."""
        python_path = os.pathsep.join([str(AUDIT_PATH), str(REPO)])
        return {
            **offline_environment(),
            "MODELSCOPE_CACHE": str(self.hub_cache),
            "HF_HOME": str(self.hub_cache / "hf"),
            "ASRBATCH_NETWORK_AUDIT": str(self.audit_log),
            "PYTHONPATH": python_path,
            "PYTHONUNBUFFERED": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
        }

    def network_attempts(self) -> list[str]:
        """Every lookup or connection beyond loopback any process has attempted so far."""
        if not self.audit_log.exists():
            return []
        return self.audit_log.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def funasr(tiny_funasr_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> FunasrSetup:  # noqa: F811
    """The setup, built once (``servers.py --prepare all`` builds it ahead)."""
    scratch = tmp_path_factory.mktemp("funasr")
    audit_log = scratch / "network-attempts.log"
    audit_log.write_text("", encoding="utf-8")
    return FunasrSetup(funasr_python(), tiny_funasr_models, audit_log, scratch / "hub")


@pytest.fixture(scope="module")
def short_clip() -> Path:
    """Two seconds of festival speech, 16 kHz mono WAV."""
    return speech.synthesize(speech.SENTENCES[0])


@pytest.fixture(scope="module")
def long_recording() -> LongRecording:
    """Sixteen sentences with 2.5 to 3 s pauses between them: about 80 s of audio."""
    clips = [speech.synthesize(sentence) for sentence in speech.SENTENCES[:LONG_SENTENCES]]
    path = speech.concat(clips, LONG_PAUSES)
    spoken, at = [], 0.0
    for index, clip in enumerate(clips):
        length = speech.duration(clip)
        spoken.append((at, at + length))
        at += length + LONG_PAUSES[index % len(LONG_PAUSES)]
    return LongRecording(path, speech.duration(path), tuple(spoken))


def token_ids(word: str) -> list[int]:
    """The tiny vocabulary's ids of a hotword, character by character (as its seg_dict splits it)."""
    return [ASR_TOKENS.index(character) for character in word]


# --- the engine in the funasr venv -----------------------------------------------------------


def run_probe(setup: FunasrSetup, loads: list[dict[str, Any]], scratch: Path) -> dict[str, Any]:
    """Run tests/support/funasr_probe.py with ``loads`` in the funasr venv; its answer."""
    job, answer, log = scratch / "job.json", scratch / "answer.json", scratch / "probe.log"
    job.write_text(json.dumps({"loads": loads}, ensure_ascii=False), encoding="utf-8")
    with log.open("w", encoding="utf-8") as output:
        completed = subprocess.run(
            [str(setup.python), str(PROBE), str(job), str(answer)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **setup.environment()},
            cwd=REPO,
            timeout=300,
            check=False,
        )
    assert completed.returncode == 0, log.read_text(encoding="utf-8")[-4000:]
    result: dict[str, Any] = json.loads(answer.read_text(encoding="utf-8"))
    return result


@pytest.fixture(scope="module")
def probed(
    funasr: FunasrSetup,
    short_clip: Path,
    long_recording: LongRecording,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """One probe process: the engine with the tiny models and its requests, then the error cases."""
    scratch = tmp_path_factory.mktemp("probe")
    models = funasr.models
    folders = {"model": str(models.asr), "vad_model": str(models.vad), "punc_model": str(models.punc)}
    no_weights = scratch / "vad-without-weights"
    shutil.copytree(models.vad, no_weights, ignore=shutil.ignore_patterns("model.pt"))
    (scratch / "empty").mkdir()
    loads: list[dict[str, Any]] = [
        {
            "settings": {"name": "funasr", **folders, "device": "cpu"},
            "requests": [
                {"wav": str(short_clip)},
                {"wav": str(short_clip), "hotwords": HOTWORDS},
                {"wav": str(short_clip)},
                {"wav": str(short_clip), "hotwords": TRICKY_HOTWORDS},
                {"wav": str(long_recording.path), "batch_size": 2},
                {"wav": str(long_recording.path), "vad_only": True},
            ],
        },
        {"settings": {"name": "funasr", **folders, "device": "cuda"}},
        {"settings": {"name": "funasr", **folders, "device": "cuda:1"}},
        {"settings": {"name": "funasr", **folders, "device": "tpu"}},
        {"settings": {"name": "funasr", **folders, "model": str(scratch / "missing")}},
        {"settings": {"name": "funasr", **folders, "vad_model": str(no_weights)}},
        {"settings": {"name": "funasr", **folders, "punc_model": str(scratch / "empty")}},
    ]
    answer = run_probe(funasr, loads, scratch)
    answer["scratch"] = str(scratch)
    return answer


def results(probed: dict[str, Any]) -> list[dict[str, Any]]:
    """The requests' results of the working load, in the order asked."""
    working = probed["loads"][0]
    assert "error" not in working, working
    found: list[dict[str, Any]] = working["results"]
    return found


def test_the_three_models_load_from_local_folders(probed: dict[str, Any]) -> None:
    first = results(probed)[0]
    assert first["text"], "the recogniser produced no tokens at all"
    assert first["segments"], "no sentence timestamps"


def test_hotwords_reach_seaco_paraformers_hotword_parser_word_by_word(probed: dict[str, Any]) -> None:
    plain, hot, again = results(probed)[:3]
    assert plain["hotword_calls"] == [{"argument": None, "token_ids": None}]
    (call,) = hot["hotword_calls"]
    # One string, words split at spaces; each Chinese word becomes its characters' ids through
    # the model folder's seg_dict, and FunASR adds <s> (id 1) as the "no hotword" entry.
    assert call["argument"].split() == HOTWORDS
    assert call["token_ids"] == [token_ids("阿里巴巴"), token_ids("达摩院"), [ASR_TOKENS.index("<s>")]]
    # The hotwords change what is recognised; without them the same audio gives the same text.
    assert hot["text"] != plain["text"]
    assert again["text"] == plain["text"]


def test_a_hotword_that_looks_like_a_url_or_file_stays_a_word(probed: dict[str, Any], funasr: FunasrSetup) -> None:
    (call,) = results(probed)[3]["hotword_calls"]
    assert call["argument"].split() == TRICKY_HOTWORDS
    assert call["token_ids"] == [[ASR_TOKENS.index(UNKNOWN)], [ASR_TOKENS.index("<s>")]]
    assert not [line for line in funasr.network_attempts() if "hotwords.invalid" in line]


def assert_in_order_within(segments: list[list[Any]], duration: float) -> None:
    assert segments
    for start, end, _text in segments:
        assert 0 <= start <= end <= duration + TIME_SLACK, (start, end, duration)
    for (_, end, _), (start, _, _) in zip(segments, segments[1:], strict=False):
        assert end <= start + TIME_SLACK, (end, start)


def test_sentence_timestamps_are_seconds_in_order_within_the_audio(
    probed: dict[str, Any], short_clip: Path, long_recording: LongRecording
) -> None:
    short, long = results(probed)[0], results(probed)[4]
    assert_in_order_within(short["segments"], speech.duration(short_clip))
    assert_in_order_within(long["segments"], long_recording.duration)
    # Seconds, not FunASR's milliseconds: the last sentence ends near the end of the speech.
    assert long["segments"][-1][1] > long_recording.spoken[-1][0]


def test_a_long_recording_is_cut_at_its_pauses_by_the_vad(
    probed: dict[str, Any], long_recording: LongRecording
) -> None:
    vad = [(start / 1000, end / 1000) for start, end in results(probed)[5]["vad_segments"]]
    # FunASR's VAD found every sentence and no pause's middle second.
    for start, end in long_recording.spoken:
        assert any(a < end and start < b for a, b in vad), f"speech at {start:.1f}-{end:.1f} s not found"
    for start, end in long_recording.pauses():
        middle = (start + end) / 2
        assert not any(a < middle + 0.5 and middle - 0.5 < b for a, b in vad), f"pause at {middle:.1f} s"
    assert len(vad) == LONG_SENTENCES
    # The engine's sentences were recognised piece by piece: each starts and ends inside a piece.
    for start, end, _text in results(probed)[4]["segments"]:
        for moment in (start, end):
            assert any(a - TIME_SLACK <= moment <= b + TIME_SLACK for a, b in vad), moment


def test_the_engines_errors_are_the_documented_ones(probed: dict[str, Any]) -> None:
    scratch = Path(probed["scratch"])
    errors = [load.get("error", "") for load in probed["loads"][1:]]
    assert errors[0].startswith("device 'cuda' requested but torch sees no CUDA GPU (torch 2.13.0")
    assert errors[1].startswith("device 'cuda:1' requested but torch sees no CUDA GPU")
    assert errors[2] == "device 'tpu' is not one the funasr engine runs on: use cpu, cuda or cuda:N"
    assert errors[3] == f"model not found at {scratch / 'missing'}"
    assert errors[4].startswith(
        f"VAD model folder is incomplete: {scratch / 'vad-without-weights'} has no model.pt"
    )
    assert errors[5].startswith(
        f"punctuation model folder is incomplete: {scratch / 'empty'} has no config.yaml and no model.pt"
    )


# --- the reference server and the client on top of it ----------------------------------------


def funasr_server_process(setup: FunasrSetup, command: list[str], env: dict[str, str], port: int, log: Path) -> ServerProcess:
    """A server process in the funasr venv with the setup's environment."""
    return ServerProcess(FUNASR_GRADIO_VERSION, command, {**os.environ, **setup.environment(), **env}, port, log)


@pytest.fixture(scope="module")
def server(funasr: FunasrSetup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``asrbatch serve --engine funasr --model DIR --vad-model DIR --punc-model DIR --device cpu``."""
    scratch = tmp_path_factory.mktemp("funasr-server")
    port = free_port()
    command = [
        str(funasr.python), "-m", "asrbatch", "serve", "--engine", "funasr", *funasr.models.server_args(),
        "--device", "cpu", "--host", "127.0.0.1", "--port", str(port), "--temp-dir", str(scratch / "uploads"),
    ]
    process = funasr_server_process(funasr, command, {}, port, scratch / "server.log")
    with process.start():
        yield process


def client(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The asrbatch CLI as cron runs it (the test venv's asrbatch, the client side)."""
    return subprocess.run(
        [sys.executable, "-m", "asrbatch", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False,
    )


def test_ping_deep_against_the_funasr_server(server: ServerProcess) -> None:
    result = client("ping", "--url", server.url, "--deep")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok url={server.url} gradio={FUNASR_GRADIO_VERSION}")
    assert "roundtrip_ms=" in result.stdout


def test_run_transcribes_recordings_through_the_funasr_server(
    server: ServerProcess, tmp_path: Path, long_recording: LongRecording
) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    shutil.copyfile(speech.synthesize(speech.SENTENCES[1]), inp / "first.wav")
    shutil.copyfile(speech.synthesize(speech.SENTENCES[2], fmt="mp3", rate=44100, channels=2), inp / "second.mp3")
    shutil.copyfile(long_recording.path, inp / "long.wav")
    old = 1_000_000_000
    for path in inp.iterdir():
        os.utime(path, (old, old))
    before = server_counters(server)
    result = client("run", str(inp), "-o", str(out), "--url", server.url)
    assert result.returncode == 0, result.stderr
    for name in ("first", "second", "long"):
        assert (out / f"{name}.txt").read_text(encoding="utf-8").strip(), name
    # The long recording went to the server whole (the client splits only above 300 s).
    after = server_counters(server)
    assert after["Files recognised"] - before["Files recognised"] == 3
    assert after["Audio processed"] - before["Audio processed"] > long_recording.duration


def server_counters(server: ServerProcess) -> dict[str, float]:
    """The system-information tab's counters as numbers."""
    session = requests.Session()
    report = gradio_http.system_info(session, server.url, gradio_http.get_config(session, server.url))
    return {key: float(report[key].split()[0]) for key in ("Files recognised", "Audio processed")}


def recognise(server: ServerProcess, audio: Path, hotwords: str = "") -> tuple[str, str]:
    """Text and details from the WebUI's recognition function, as a scripted client calls it."""
    session = requests.Session()
    config = gradio_http.get_config(session, server.url)
    outcome = gradio_http.recognize(session, server.url, config, audio, hotwords)
    assert outcome.ok and outcome.data is not None, outcome
    return str(outcome.data[0]), str(outcome.data[1])


def test_hotwords_sent_to_the_server_reach_seaco_paraformer(server: ServerProcess, short_clip: Path) -> None:
    plain, _ = recognise(server, short_clip)
    hot, details = recognise(server, short_clip, "阿里巴巴, 达摩院")
    assert "- Hotwords: 2 used" in details
    assert hot != plain and recognise(server, short_clip)[0] == plain
    # FunASR's own log line from SeACo-Paraformer's hotword parser, in the server's log.
    assert "Hotword list: ['阿里巴巴', '达摩院', '<s>']" in server.log_path.read_text(encoding="utf-8")


def test_the_server_reports_sentences_of_a_long_recording(server: ServerProcess, long_recording: LongRecording) -> None:
    text, details = recognise(server, long_recording.path)
    assert text
    assert f"- Audio duration: {long_recording.duration:.2f} s" in details
    found = re.search(r"- Segments: (\d+)", details)
    assert found and int(found.group(1)) >= 1, details


def test_run_server_script_starts_the_funasr_engine(funasr: FunasrSetup, tmp_path: Path, short_clip: Path) -> None:
    port = free_port()
    env = {
        "ASRBATCH_PYTHON": str(funasr.python),
        "ASRBATCH_ENGINE": "funasr",
        "ASRBATCH_MODEL": str(funasr.models.asr),
        "ASRBATCH_FUNASR_VAD_MODEL": str(funasr.models.vad),
        "ASRBATCH_FUNASR_PUNC_MODEL": str(funasr.models.punc),
        "ASRBATCH_DEVICE": "cpu",
        "ASRBATCH_PORT": str(port),
        "ASRBATCH_TEMP_DIR": str(tmp_path / "uploads"),
    }
    process = funasr_server_process(funasr, ["bash", str(RUN_SERVER)], env, port, tmp_path / "server.log")
    with process.start():
        session = requests.Session()
        config = gradio_http.get_config(session, process.url)
        report = gradio_http.system_info(session, process.url, config)
        assert report["Engine"] == "funasr"
        assert report["Model"] == str(funasr.models.asr)
        text, _ = recognise(process, short_clip)
        assert text
    assert process.process is not None and process.process.returncode == 0


def serve_and_fail(setup: FunasrSetup, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [str(setup.python), "-m", "asrbatch", "serve", "--engine", "funasr", "--port", str(free_port())]
    return subprocess.run(
        [*command, *arguments],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, **setup.environment()}, check=False,
    )


def test_serve_refuses_cuda_on_a_machine_without_a_gpu(funasr: FunasrSetup) -> None:
    result = serve_and_fail(funasr, *funasr.models.server_args(), "--device", "cuda")
    assert result.returncode == 1
    assert "asrbatch server: cannot start: device 'cuda' requested but torch sees no CUDA GPU" in result.stderr


def test_serve_names_a_missing_model_folder(funasr: FunasrSetup, tmp_path: Path) -> None:
    models = funasr.models
    result = serve_and_fail(
        funasr, "--model", str(tmp_path / "asr"), "--vad-model", str(models.vad), "--punc-model", str(models.punc)
    )
    assert result.returncode == 1
    assert f"asrbatch server: cannot start: model not found at {tmp_path / 'asr'}" in result.stderr


# --- FunASR's own funasr-server (funasr.bin.server, as published) on the tiny model ----------


@pytest.fixture(scope="module")
def funasr_server(funasr: FunasrSetup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``funasr-server --device cpu --model-path DIR``: FunASR's OpenAI-compatible server, its own
    code, loading the tiny SeACo-Paraformer as its custom model."""
    scratch = tmp_path_factory.mktemp("funasr-own-server")
    port = free_port()
    command = [
        str(funasr.python), "-m", "funasr.bin.server", "--host", "127.0.0.1", "--port", str(port),
        "--device", "cpu", "--model-path", str(funasr.models.asr),
    ]
    env = {**os.environ, **funasr.environment(), "TMPDIR": str(scratch)}
    process = ServerProcess("funasr-server", command, env, port, scratch / "server.log", protocol="openai")
    with process.start():
        yield process


def recognitions(server: ServerProcess) -> list[str]:
    """The status of every ``POST /v1/audio/transcriptions`` in the server's access log, in order."""
    log = server.log_path.read_text(encoding="utf-8", errors="replace")
    return re.findall(r'"POST /v1/audio/transcriptions HTTP/1\.1" (\d{3})', log)


def test_ping_knows_funasr_server_and_the_model_it_loaded(funasr_server: ServerProcess) -> None:
    result = client("ping", "--url", funasr_server.url, "--deep")
    assert result.returncode == 0, result.stderr
    assert f"ok url={funasr_server.url} protocol=openai server=funasr-server" in result.stdout
    assert "model=custom" in result.stdout  # what it loaded: other names would make it load from the hub


def test_run_transcribes_every_format_through_funasr_server(
    funasr_server: ServerProcess, tmp_path: Path, long_recording: LongRecording
) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    sources = {
        "plain.wav": speech.synthesize(speech.SENTENCES[1]),
        "stereo.mp3": speech.synthesize(speech.SENTENCES[2], fmt="mp3", rate=44100, channels=2),
        "phone.m4a": speech.synthesize(speech.SENTENCES[3], fmt="m4a", rate=48000),
        "archive.flac": speech.synthesize(speech.SENTENCES[4], fmt="flac", rate=44100),
        "memo.ogg": speech.synthesize(speech.SENTENCES[5], fmt="ogg", rate=48000),
        "lecture.wav": long_recording.path,
    }
    for name, source in sources.items():
        place(inp, name, source)
    before = len(recognitions(funasr_server))
    result = client("run", str(inp), "-o", str(out), "--url", funasr_server.url, "--formats", "txt,json,srt",
                    "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert recognitions(funasr_server)[before:] == ["200"] * len(sources)  # one request each, none failed
    for name, source in sources.items():
        stem = Path(name).stem
        words = (out / f"{stem}.txt").read_text(encoding="utf-8").split()
        assert words and set(words) <= set(ASR_TOKENS), (name, words)
        document = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
        assert document["server_version"] == "funasr-server"
        assert document["audio_seconds"] == pytest.approx(speech.duration(source), abs=0.1)
        ends = [segment["end"] for segment in document["segments"]]
        assert ends == sorted(ends) and 0 < ends[-1] <= document["audio_seconds"] + TIME_SLACK, (name, ends)
        assert (out / f"{stem}.srt").read_text(encoding="utf-8").startswith("1\n00:00:")
    # The next hourly run finds nothing new and sends nothing.
    again = client("run", str(inp), "-o", str(out), "--url", funasr_server.url)
    assert again.returncode == 0, again.stderr
    assert len(recognitions(funasr_server)) == before + len(sources)


def test_audio_funasr_server_keeps_failing_on_goes_again_as_plain_wav(
    funasr_server: ServerProcess, tmp_path: Path
) -> None:
    """funasr-server answers audio its decoder cannot read with a bare 500, like any crash of its
    own. Where a server's decoder takes WAV but not Ogg (Vorbis, what asrbatch sends by default),
    the Ogg requests fail while the health check's WAV clip passes: the recording goes again as WAV,
    and the rest of the run sends WAV. The proxy answers Ogg uploads with the server's own answer
    to undecodable audio, recorded first (this server decodes Ogg Vorbis)."""
    garbage = b"OggS" + bytes(range(256)) * 8
    answer = requests.post(funasr_server.url + "/v1/audio/transcriptions", data={"model": "custom"},
                           files={"file": ("audio.ogg", garbage, "audio/ogg")}, timeout=60)
    assert (answer.status_code, answer.text) == (500, "Internal Server Error")
    inp, out = tmp_path / "in", tmp_path / "out"
    for index in range(3):
        place(inp, f"call {index}.mp3", speech.synthesize(speech.SENTENCES[6 + index], fmt="mp3", rate=44100))
    env = {"ASRBATCH_SERVER_RETRY_ATTEMPTS": "2", "ASRBATCH_SERVER_RETRY_INITIAL_WAIT": "0.05",
           "ASRBATCH_SERVER_RETRY_MAX_WAIT": "0.1", "ASRBATCH_SERVER_RETRY_JITTER": "0"}
    with FaultProxy(funasr_server.url) as proxy:
        proxy.add("POST", r"/v1/audio/transcriptions$", respond(500, answer.content, answer.headers["content-type"]),
                  times=None, when=lambda request: b'.ogg"' in request)
        result = subprocess.run(
            [sys.executable, "-m", "asrbatch", "run", str(inp), "-o", str(out), "--url", proxy.url, "--workers", "1"],
            capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, **env}, check=False,
        )
        refused = [hit for hit in proxy.hits if hit.action.startswith("respond")]
    assert result.returncode == 0, result.stderr
    for index in range(3):
        assert (out / f"call {index}.txt").read_text(encoding="utf-8").split(), index
    log = (out / ".asrbatch" / "asrbatch.log").read_text(encoding="utf-8")
    failed = log_events(log, "codec_failed")
    # Two tries as Vorbis (the default) for each recording sent before the server was known to fail on
    # it: the one in the slot and the one prepared ahead, whose tries take turns in it. Then WAV for
    # every request.
    assert {event["codec"] for event in failed} == {"vorbis"} and len(refused) == 2 * len(failed) <= 4
    assert [event["codec"] for event in log_events(log, "codec_fallback")] == ["wav"]
    assert log_events(log, "health_check_passed")
    attempts = {event["path"]: int(event["attempts"]) for event in log_events(log, "file")}
    assert attempts["call 2.mp3"] == 1, attempts


# --- FunASR's own Python WebSocket server (runtime/python/websocket, as published) ----------

WSS_LAUNCHER = REPO / "tests" / "support" / "apps" / "run_funasr_wss_server.py"


@pytest.fixture(scope="module")
def funasr_wss_server(funasr: FunasrSetup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``funasr_wss_server.py`` with the tiny models: the VAD, the offline recogniser and the
    punctuation model it loads (its streaming model, unused in offline mode, is the same folder)."""
    scratch = tmp_path_factory.mktemp("funasr-wss-server")
    port = free_port()
    models = funasr.models
    command = [
        str(funasr.python), str(WSS_LAUNCHER), "--host", "127.0.0.1", "--port", str(port),
        "--asr_model", str(models.asr), "--asr_model_online", str(models.asr), "--vad_model", str(models.vad),
        "--punc_model", str(models.punc), "--ngpu", "0", "--device", "cpu", "--ncpu", "1", "--certfile", "",
    ]
    # Its own audit: the server as published asks PyPI for a newer FunASR at every model it loads.
    (scratch / "network-attempts.log").write_text("", encoding="utf-8")
    env = {**os.environ, **funasr.environment(), "ASRBATCH_NETWORK_AUDIT": str(scratch / "network-attempts.log")}
    process = ServerProcess("funasr_wss_server", command, env, port, scratch / "server.log", protocol="funasr-ws")
    with process.start():
        yield process


def test_ping_reaches_funasrs_python_websocket_server(funasr_wss_server: ServerProcess) -> None:
    result = client("ping", "--url", funasr_wss_server.url, "--deep")
    assert result.returncode == 0, result.stderr
    assert f"ok url={funasr_wss_server.url} protocol=funasr-ws" in result.stdout
    assert int(re.search(r"text_chars=(\d+)", result.stdout).group(1)) > 0  # type: ignore[union-attr]


def test_run_through_funasrs_python_websocket_server_keeps_every_stretch_of_speech(
    funasr_wss_server: ServerProcess, tmp_path: Path, long_recording: LongRecording
) -> None:
    """The server answers once per stretch of speech its VAD finds: the transcript of a recording
    with pauses holds every answer, not the first. Samples travel as 60 ms frames of PCM (the
    server reads every frame as such), whatever the codec for other servers."""
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "lecture.wav", long_recording.path)
    place(inp, "call.mp3", speech.synthesize(speech.SENTENCES[9], fmt="mp3", rate=44100, channels=2))
    result = client("run", str(inp), "-o", str(out), "--url", funasr_wss_server.url)
    assert result.returncode == 0, result.stderr
    log = (out / ".asrbatch" / "asrbatch.log").read_text(encoding="utf-8")
    pieces = [int(event["pieces"]) for event in log_events(log, "ws_pieces")]
    assert len(pieces) == 1 and pieces[0] >= 4, pieces  # the lecture: sixteen sentences, pauses of 2.5-3 s
    lecture = (out / "lecture.txt").read_text(encoding="utf-8")
    call = (out / "call.txt").read_text(encoding="utf-8")
    assert call.strip() and len(lecture) > 4 * len(call), (lecture, call)
    assert "Exception" not in funasr_wss_server.log_path.read_text(encoding="utf-8", errors="replace")


def test_funasrs_python_websocket_server_only_looks_for_a_newer_funasr(funasr_wss_server: ServerProcess) -> None:
    """What the published server tries beyond this machine: FunASR's update check (AutoModel without
    ``disable_update``), one per model; nothing else, and the client nothing at all."""
    attempts = (funasr_wss_server.log_path.parent / "network-attempts.log").read_text(encoding="utf-8").split("\n")
    looked_up = {line.split()[1] for line in attempts if line.startswith("getaddrinfo")}
    assert looked_up <= {"pypi.org"}, attempts


def test_nothing_tried_the_network(funasr: FunasrSetup, server: ServerProcess, funasr_server: ServerProcess,
                                   funasr_wss_server: ServerProcess, probed: dict[str, Any]) -> None:
    """Every process above ran with the audit hook; none looked up or connected to another host."""
    assert funasr.network_attempts() == []
    assert not funasr.hub_cache.exists() or not any(funasr.hub_cache.rglob("*")), "something was downloaded"
