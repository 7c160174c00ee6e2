"""scripts/run_server.sh: prerequisites are checked and named, then the server runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import requests

from tests.support.servers import REPO, ServerProcess, free_port, gradio_python

SCRIPT = REPO / "scripts" / "run_server.sh"


def run_script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(SCRIPT)], check=True)


def test_missing_engine_package_is_named_with_its_install_command() -> None:
    python = str(gradio_python("6.31.0"))
    completed = run_script({"ASRBATCH_PYTHON": python, "ASRBATCH_ENGINE": "funasr"})
    assert completed.returncode == 3
    assert f"funasr is not installed for {python}: {python} -m pip install 'asrbatch[funasr]'" in (
        completed.stderr
    )


def test_bad_values_are_reported_together() -> None:
    completed = run_script({"ASRBATCH_ENGINE": "whisper", "ASRBATCH_PORT": "http"})
    assert completed.returncode == 3
    assert "ASRBATCH_ENGINE must be sphinx, funasr or simulate" in completed.stderr
    assert "ASRBATCH_PORT must be a number" in completed.stderr


def test_missing_python_is_named() -> None:
    completed = run_script({"ASRBATCH_PYTHON": "/nonexistent/python3"})
    assert completed.returncode == 3
    assert "python not found: '/nonexistent/python3'" in completed.stderr


def test_script_starts_the_server_from_environment_variables(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ASRBATCH_PYTHON": str(gradio_python("6.31.0")),
        "ASRBATCH_PORT": str(port),
        "ASRBATCH_ENGINE": "simulate",
        "ASRBATCH_CONCURRENCY": "2",
        "ASRBATCH_TEMP_DIR": str(tmp_path / "uploads"),
    }
    server = ServerProcess("6.31.0", ["bash", str(SCRIPT)], env, port, tmp_path / "server.log")
    with server.start():
        response = requests.post(
            server.url + "/gradio_api/api/predict/", json={"data": [], "fn_index": 3}, timeout=10
        )
        report = response.json()["data"][0]
        assert "- Engine: simulate" in report
        assert "- Concurrency limit: 2" in report
    assert server.process is not None and server.process.returncode == 0
    assert (tmp_path / "uploads").is_dir()


def test_every_variable_is_documented_in_the_header() -> None:
    header = SCRIPT.read_text().split("set -euo pipefail")[0]
    body = SCRIPT.read_text().split("set -euo pipefail")[1]
    for name in sorted(set(re.findall(r"\bASRBATCH_[A-Z_]+", body))):
        assert name in header, f"{name} is read but not documented"
    assert "ASRBATCH_SERVER_USERNAME" in header
