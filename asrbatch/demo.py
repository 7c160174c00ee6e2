"""The embedded default job: a local reference server over the sample recordings.

``asrbatch demo`` starts ``python -m asrbatch.server`` (sphinx engine, CPU, 127.0.0.1, a free
port), runs one batch pass over the shipped samples, prints each transcript, and stops the
server.  It exercises the same code path as a cron run, with the same ledger and log file in
``<output>/.asrbatch``; the caller prints the summary.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asrbatch.config import Config, RetryConfig, ServerConfig, load_config
from asrbatch.errors import AsrbatchError, ExitCode, ServerUnavailableError
from asrbatch.outcomes import RunSummary
from asrbatch.runner import ProgressListener, run_batch
from asrbatch.transport import Client

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
START_TIMEOUT = 180.0


@dataclass(frozen=True)
class DemoResult:
    summary: RunSummary
    transcripts: dict[str, str]

    @property
    def exit_code(self) -> ExitCode:
        return self.summary.exit_code


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_demo(
    *,
    samples: Path | None = None,
    output_dir: Path = Path("demo-output"),
    engine: str = "sphinx",
    echo: Callable[[str], None] = print,
    prepare: Callable[[Config], ProgressListener | None] | None = None,
) -> DemoResult:
    """Start a local reference server, transcribe *samples* into *output_dir*, stop the server.

    *prepare* is called with the demo job's Config just before the pass (the CLI sets up the
    job's log file and console there) and may return the pass's progress listener.
    """
    samples = samples or SAMPLES
    if not samples.is_dir():
        raise AsrbatchError(f"sample folder {samples} not found", hint="pass --samples DIR")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    echo(f"starting the reference server ({engine} engine) on {url} ...")
    with tempfile.TemporaryDirectory(prefix="asrbatch-demo-") as scratch:
        server_log = Path(scratch) / "server.log"
        with open(server_log, "wb") as log_handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "asrbatch.server", "--engine", engine, "--host", "127.0.0.1",
                 "--port", str(port), "--temp-dir", str(Path(scratch) / "uploads")],
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        try:
            _wait_until_up(url, process, server_log)
            config: Config = load_config(None, env={}, overrides={
                "server.url": url, "input.dir": str(samples), "output.dir": str(output_dir), "input.min_age": 0.0})
            echo(f"transcribing {samples} -> {output_dir}")
            progress = prepare(config) if prepare is not None else None
            summary = run_batch(config, progress=progress) if progress is not None else run_batch(config)
        finally:
            _stop(process)
    transcripts = {}
    for txt in sorted(summary.output_dir.rglob("*.txt")):
        if ".asrbatch" in txt.parts:
            continue
        rel = txt.relative_to(summary.output_dir).as_posix()
        transcripts[rel] = txt.read_text(encoding="utf-8").strip()
        echo(f"--- {rel}\n{transcripts[rel] or '(silence)'}")
    return DemoResult(summary, transcripts)


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    settings = ServerConfig(url=url, connect_timeout=2.0, read_timeout=5.0, retry=RetryConfig(attempts=1))
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.2
    while True:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise AsrbatchError(f"the reference server exited with status {process.returncode}:\n{tail}",
                                hint="is the server extra installed? pip install 'asrbatch[server]'")
        try:
            with Client(settings) as client:
                client.probe()
            return
        except ServerUnavailableError:
            if time.monotonic() > deadline:
                raise AsrbatchError(f"the reference server did not answer within {START_TIMEOUT:.0f}s") from None
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
