"""Deployment behaviour of the reference server: login, bind address, limits, start-up errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.server import gradio_http as http
from tests.support.servers import (
    GRADIO_VERSIONS,
    REPO,
    ServerProcess,
    gradio_python,
    start_server,
)

CREDENTIALS = ("alice", "correct horse")
SIZE_LIMIT = "64kb"
SIZE_LIMIT_BYTES = 64 * 1024


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, _remote, state = line.split()[1:4]
        address, local_port = local.split(":")
        if int(local_port, 16) == port and state == "0A":
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    return found


@pytest.fixture(scope="module", params=GRADIO_VERSIONS, ids=lambda v: f"gradio-{v}")
def guarded_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server with a login and a small upload limit, bound where the server decides."""
    with start_server(
        request.param,
        auth=CREDENTIALS,
        host=None,
        extra_args=["--max-file-size", SIZE_LIMIT],
        log_dir=tmp_path_factory.mktemp(f"guarded-{request.param}"),
    ) as server:
        yield server


def test_binds_to_loopback_by_default(guarded_server: ServerProcess) -> None:
    assert listening_addresses(guarded_server.port) == {"127.0.0.1"}


def test_nothing_works_without_login(guarded_server: ServerProcess) -> None:
    with requests.Session() as session:
        assert session.get(guarded_server.url + "/config", timeout=10).status_code == 401
        prefix = "/gradio_api" if guarded_server.version.startswith("6.") else ""
        response = session.post(
            guarded_server.url + prefix + "/api/predict/", json={"data": [], "fn_index": 3}, timeout=10
        )
        assert response.status_code == 401


def test_wrong_password_is_refused(guarded_server: ServerProcess) -> None:
    with requests.Session() as session:
        assert http.login(session, guarded_server.url, CREDENTIALS[0], "wrong") == 400
        assert session.get(guarded_server.url + "/config", timeout=10).status_code == 401


def test_login_with_the_environment_credentials(
    guarded_server: ServerProcess, speech_clips: list[tuple[str, Path]]
) -> None:
    with requests.Session() as session:
        assert http.login(session, guarded_server.url, *CREDENTIALS) == 200
        config = http.get_config(session, guarded_server.url)
        outcome = http.recognize(session, guarded_server.url, config, speech_clips[0][1])
        assert outcome.ok, outcome


def test_uploads_over_the_size_limit_are_refused(guarded_server: ServerProcess, tmp_path: Path) -> None:
    big = tmp_path / "big.wav"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=4", "-ar", "16000", str(big)],
        check=True,
    )
    assert big.stat().st_size > SIZE_LIMIT_BYTES
    with requests.Session() as session:
        http.login(session, guarded_server.url, *CREDENTIALS)
        config = http.get_config(session, guarded_server.url)
        if http.is_legacy(config):
            # Gradio 3 has no upload limit of its own: the app refuses the payload.
            outcome = http.recognize(session, guarded_server.url, config, big)
            assert not outcome.ok
            assert outcome.error is not None and "too large" in outcome.error
        else:
            with big.open("rb") as handle:
                response = session.post(
                    guarded_server.url + http.api_prefix(config) + "/upload",
                    files={"files": (big.name, handle)},
                    timeout=30,
                )
            assert response.status_code == 413
        assert config.get("max_file_size") in (None, SIZE_LIMIT_BYTES)


def test_simulate_engine_honours_the_concurrency_limit(server_factory: Any, tmp_path: Path) -> None:
    """Two requests at once take twice as long as one: one recognition at a time.

    Gradio 3's REST route bypasses its queue, so this checks the server's own limit (on 4.x and
    later the queue enforces it as well).
    """
    version = "3.50.2"
    # Two different files: Gradio 3.50 keeps an upload under its content's hash and writes its
    # decoded copy next to it; two identical uploads at once share those files, and one of the two
    # calls then failed with a bare 500 in about one run in twelve.
    clips = [tmp_path / f"two-seconds-{frequency}.wav" for frequency in (440, 660)]
    for clip in clips:
        frequency = clip.stem.rsplit("-", 1)[1]
        subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", f"sine=f={frequency}:d=2", "-ar",
                        "16000", str(clip)], check=True)
    server = server_factory(
        version,
        engine="simulate",
        extra_args=["--simulate-rtf", "0.5", "--simulate-text", "hello from the simulator"],
    )
    config = server.config()
    outcomes: list[http.Outcome] = []

    def send(clip: Path) -> None:
        with requests.Session() as session:
            outcomes.append(http.recognize(session, server.url, config, clip))

    threads = [threading.Thread(target=send, args=(clip,)) for clip in clips]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.monotonic() - started
    assert [o.data[0] for o in outcomes if o.data] == ["hello from the simulator"] * 2, outcomes
    assert elapsed >= 2 * 0.5 * 2 * 0.95  # two one-second sleeps, one after the other
    with requests.Session() as session:
        facts = http.system_info(session, server.url, config)
    assert facts["Engine"] == "simulate"
    assert facts["Requests served"] == "2"


def test_restart_keeps_the_port_and_resets_counters(
    server_factory: Any, speech_clips: list[tuple[str, Path]]
) -> None:
    server = server_factory("6.31.0")
    port = server.port
    config = server.config()
    with requests.Session() as session:
        assert http.recognize(session, server.url, config, speech_clips[0][1]).ok
    server.kill()
    assert not server.is_running()
    server.restart()
    assert server.port == port and server.is_running()
    with requests.Session() as session:
        assert http.system_info(session, server.url, server.config())["Requests served"] == "0"
    assert server.stop() == 0


def run_server_command(version: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [str(gradio_python(version)), "-m", "asrbatch.server", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_missing_funasr_says_what_to_install() -> None:
    completed = run_server_command("6.31.0", "--engine", "funasr", "--port", "1")
    assert completed.returncode == 1
    assert "funasr not installed" in completed.stderr
    assert "pip install 'asrbatch[funasr]'" in completed.stderr


def test_bad_usage_exits_2() -> None:
    completed = run_server_command("6.31.0", "--concurrency", "0")
    assert completed.returncode == 2
    assert "--concurrency" in completed.stderr


def test_half_set_login_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASRBATCH_SERVER_USERNAME", "alice")
    monkeypatch.delenv("ASRBATCH_SERVER_PASSWORD", raising=False)
    completed = run_server_command("6.31.0")
    assert completed.returncode == 2
    assert "ASRBATCH_SERVER_PASSWORD" in completed.stderr


def test_busy_port_is_a_clear_start_up_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        completed = run_server_command("6.31.0", "--port", str(taken.getsockname()[1]))
    assert completed.returncode == 1
    assert "cannot start" in completed.stderr


def test_server_runs_on_gradio_alone() -> None:
    """The oldest venv has only Gradio and PocketSphinx; the server imports no client module."""
    probe = (
        "import sys; from asrbatch.server import app, serve, compat; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('asrbatch'))))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [str(gradio_python("3.50.2")), "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    modules = completed.stdout.split()
    assert modules and all(m == "asrbatch" or m.startswith("asrbatch.server") for m in modules)
    assert run_server_command("3.50.2", "--help").returncode == 0


def test_help_needs_no_gradio(capsys: pytest.CaptureFixture[str]) -> None:
    probe = (
        "import sys; from asrbatch.server import main; code = main(['--help']); "
        "print('exit', code, 'gradio loaded' if 'gradio' in sys.modules else 'gradio not loaded')"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60, check=True
    )
    assert "--engine {sphinx,funasr,simulate}" in completed.stdout
    assert completed.stdout.strip().endswith("exit 0 gradio not loaded")
