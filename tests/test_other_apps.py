"""Gradio ASR apps written elsewhere, as their authors publish them, under ``asrbatch run`` and ``ping``.

FunASR's Gradio demo for its OpenAI-compatible API (tests/support/apps/, unchanged) is a Blocks app
whose recognition function takes the API's address, the audio, a model, a response format and a
timeout, and answers a transcript and the raw JSON. It catches its own failures and returns them
as ordinary outputs: an empty transcript beside ``HTTP 500 from ...`` or ``Transcription failed:
...``. Here it runs in the Gradio 6.31 venv in front of the reference server speaking
funasr-server's API (the sphinx engine), so the transcripts can be checked word for word; then in
front of nothing, where its backend is down.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import speech
from tests.support.jobs import cli, ledger_rows, log_events, place
from tests.support.servers import (
    REPO,
    ServerEnvironmentError,
    ServerProcess,
    free_port,
    gradio_python,
    start_server,
)
from tests.support.wer import wer

VERSION = "6.31.0"
FUNASR_DEMO = REPO / "tests" / "support" / "apps" / "funasr_openai_gradio_app.py"
SAID = {f"meeting {index}.mp3": speech.SENTENCES[index] for index in (0, 1, 2)}
FAST_RETRIES = {"ASRBATCH_SERVER_RETRY_ATTEMPTS": "2", "ASRBATCH_SERVER_RETRY_INITIAL_WAIT": "0.05",
                "ASRBATCH_SERVER_RETRY_MAX_WAIT": "0.1", "ASRBATCH_SERVER_RETRY_JITTER": "0"}


def funasr_demo(backend_url: str, log_dir: Path) -> ServerProcess:
    """FunASR's demo app on a free port, sending to *backend_url* (started, not yet entered)."""
    port = free_port()
    command = [str(gradio_python(VERSION)), str(FUNASR_DEMO), "--base-url", backend_url, "--host", "127.0.0.1",
               "--port", str(port), "--timeout", "60"]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    process = ServerProcess(VERSION, command, env, port, log_dir / "demo.log")
    try:
        return process.start()
    except ServerEnvironmentError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start_server(VERSION, protocol="openai", log_dir=tmp_path_factory.mktemp("backend")) as server:
        yield server


@pytest.fixture(scope="module")
def demo(backend: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with funasr_demo(backend.url, tmp_path_factory.mktemp("demo")) as app:
        yield app


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recordings")
    for name, sentence in SAID.items():
        place(folder, name, speech.synthesize(sentence, fmt="mp3", rate=44100, channels=2))
    return folder


def test_ping_finds_the_demos_recognition_function_and_its_arguments(demo: ServerProcess, backend: ServerProcess) -> None:
    result = cli("ping", "--url", demo.url, "--deep")
    assert result.returncode == 0, result.stderr
    assert "fn_index=1 api_name=safe_transcribe" in result.stdout
    # Every other input keeps the value the app shows: its backend, model, format and timeout.
    assert f'template=["{backend.url}","<audio>","sensevoice","verbose_json",60]' in result.stdout
    assert "output_index=0" in result.stdout


def test_run_transcribes_through_the_demo(demo: ServerProcess, recordings: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("run", str(recordings), "-o", str(out), "--url", demo.url)
    assert result.returncode == 0, result.stderr
    for name, sentence in SAID.items():
        heard = (out / Path(name).with_suffix(".txt")).read_text(encoding="utf-8")
        assert wer(sentence, heard) <= 0.2, (name, heard)


def test_a_demo_whose_backend_is_down_stops_the_run_and_blames_no_recording(
    recordings: Path, tmp_path: Path
) -> None:
    """The demo answers every call, with ``("", "Transcription failed: <urlopen error ... refused>")``.
    Taken at face value each recording would be silent, written empty and never sent again."""
    port = free_port()
    out = tmp_path / "out"
    with funasr_demo(f"http://127.0.0.1:{port}", tmp_path) as app:
        down = cli("run", str(recordings), "-o", str(out), "--url", app.url, env=FAST_RETRIES)
        assert down.returncode == 3, down.stderr
        assert "Transcription failed" in down.stderr and "none blamed" in down.stderr
        assert not any(out.glob("*.txt"))
        assert {row["outcome"] for row in ledger_rows(out / ".asrbatch").values()} == {"pending"}
        log = (out / ".asrbatch" / "asrbatch.log").read_text(encoding="utf-8")
        assert log_events(log, "health_check_failed")
        ping = cli("ping", "--url", app.url, "--deep", env=FAST_RETRIES)
        assert ping.returncode == 3 and "did not transcribe a known test clip" in ping.stderr, ping.stderr
        # The backend comes up where the demo sends: the next run does the work.
        with start_server(VERSION, protocol="openai", port=port, log_dir=tmp_path / "backend"):
            again = cli("run", str(recordings), "-o", str(out), "--url", app.url)
    assert again.returncode == 0, again.stderr
    for name, sentence in SAID.items():
        assert wer(sentence, (out / Path(name).with_suffix(".txt")).read_text(encoding="utf-8")) <= 0.2, name


@pytest.mark.parametrize(("name", "digest"), [
    ("funasr_openai_gradio_app.py", "6afdc071c83c0cb913aeeffed6748490dc6b2f992b107e9b219d7722dbefa607"),
    ("funasr_wss_server.py", "4122265c08490e01f513b2995d6293c5b60f4edeb903b3fbb749297f56786cc5"),
])
def test_the_third_party_files_are_run_as_published(name: str, digest: str) -> None:
    """The copies under tests/support/apps are FunASR's files, byte for byte, below a three-line note
    naming the commit they come from."""
    published = (FUNASR_DEMO.parent / name).read_bytes().split(b"\n", 3)[3]
    assert hashlib.sha256(published).hexdigest() == digest
