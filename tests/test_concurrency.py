"""Correctness under concurrency: many requests in flight on two servers, one of them killed mid-run.

The reference servers run the simulate engine with ``--simulate-text "heard {seconds}"``: every
transcript names the duration of the audio it came from, and every recording here has its own
duration, so a transcript written for the wrong recording shows.  Speed is measured in ``bench/``,
not here.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from asrbatch.output import content_hash
from tests.support import speech
from tests.support.jobs import log_events
from tests.support.servers import ServerProcess, free_port, start_server

REPO = Path(__file__).resolve().parent.parent
VERSION = "6.31.0"
OLD = time.time() - 3600
# (format, sample rate, channels), cycled over the recordings.
VARIANTS = (("wav", 16000, 1), ("flac", 44100, 2), ("ogg", 48000, 2), ("m4a", 44100, 1), ("wav", 8000, 2))
COUNT = 16
FAST_RETRIES = {
    "ASRBATCH_SERVER_RETRY_INITIAL_WAIT": "0.05",
    "ASRBATCH_SERVER_RETRY_MAX_WAIT": "0.2",
    "ASRBATCH_SERVER_RETRY_JITTER": "0",
}


def seconds_of(index: int) -> float:
    return 1.0 + 0.25 * index


def build_corpus(root: Path) -> dict[str, float]:
    """COUNT recordings of distinct durations (a tone: never silent), in assorted formats and folders."""
    durations = {}
    for index in range(COUNT):
        fmt, rate, channels = VARIANTS[index % len(VARIANTS)]
        key = f"part {index % 3}/rec {index:02d}.{fmt}"
        source = speech.tone(seconds_of(index), fmt=fmt, rate=rate, channels=channels,
                             frequency=300.0 + 40 * index)
        target = root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        os.utime(target, (OLD, OLD))
        durations[key] = seconds_of(index)
    return durations


def simulate(tmp_path: Path, name: str, rtf: float) -> ServerProcess:
    return start_server(VERSION, engine="simulate", log_dir=tmp_path / name,
                        extra_args=["--simulate-rtf", str(rtf), "--simulate-text", "heard {seconds}",
                                    "--concurrency", "2"])


def run_cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "asrbatch", "run", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env})


def heard(text: str) -> float:
    match = re.fullmatch(r"heard (\d+\.\d\d)\n", text)
    assert match, repr(text)
    return float(match.group(1))


def rows(out: Path, table: str) -> list[dict]:
    db = sqlite3.connect(out / ".asrbatch" / "ledger.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in db.execute(f"SELECT * FROM {table}")]
    finally:
        db.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    # The first is slow, so it always has requests in flight when it is killed.
    slow, fast = simulate(tmp_path, "slow", 1.0), simulate(tmp_path, "fast", 0.2)
    try:
        yield slow, fast
    finally:
        slow.stop()
        fast.stop()


def test_two_servers_one_killed_mid_run_every_recording_done_once_and_right(
    servers: tuple[ServerProcess, ServerProcess], tmp_path: Path
) -> None:
    slow, fast = servers
    inp, out = tmp_path / "in", tmp_path / "out"
    durations = build_corpus(inp)
    env = {"ASRBATCH_SERVER_URLS": f"{slow.url},{fast.url}", **FAST_RETRIES}
    process = run_cli(str(inp), "-o", str(out), "--workers", "2", env=env)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.rglob("*.txt"))) < 4:
            assert time.monotonic() < deadline and process.poll() is None, "the run did not progress"
            time.sleep(0.02)
        slow.kill()  # mid-run: its two requests in flight are lost with it
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr

    # Every recording has exactly one transcript, and it is its own.
    transcripts = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
                         and ".asrbatch" not in p.parts)
    assert transcripts == sorted(str(Path(key).with_suffix(".txt").as_posix()) for key in durations)
    for key, seconds in durations.items():
        said = heard((out / Path(key).with_suffix(".txt")).read_text(encoding="utf-8"))
        closest = min(durations, key=lambda other: abs(durations[other] - said))
        assert closest == key and abs(said - seconds) < 0.06, (key, said)

    # The ledger agrees with the files on disk.
    recordings = {row["key"]: row for row in rows(out, "recordings")}
    assert set(recordings) == set(durations)
    for key, row in recordings.items():
        assert row["outcome"] == "done", row
        hashes = json.loads(row["output_hashes"])
        assert list(hashes) == [Path(key).with_suffix(".txt").as_posix()]
        for rel, digest in hashes.items():
            assert content_hash((out / rel).read_text(encoding="utf-8")) == digest
        assert json.loads(row["result"])["text"] == (out / Path(key).with_suffix(".txt")).read_text().strip()
    done_events = [event["key"] for event in rows(out, "events") if event["outcome"] == "done"]
    assert sorted(done_events) == sorted(durations)  # each recorded once

    log = (out / ".asrbatch" / "asrbatch.log").read_text(encoding="utf-8")
    assert f"event=server_down url={slow.url}" in log
    assert f"event=failover url={slow.url}" in log  # work in flight on it went to the other server
    assert sorted(e["path"] for e in log_events(log, "file") if e["outcome"] == "done") == sorted(durations)

    # The next hour's run has nothing to send, with one server still down.
    again = run_cli(str(inp), "-o", str(out), env=env)
    _, stderr = again.communicate(timeout=60)
    assert again.returncode == 0 and stderr == ""


def test_no_server_answers_exit_3_nothing_blamed(tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    build_corpus(inp)
    urls = f"http://127.0.0.1:{free_port()},http://127.0.0.1:{free_port()}"
    env = {"ASRBATCH_SERVER_URLS": urls, "ASRBATCH_SERVER_RETRY_ATTEMPTS": "2", **FAST_RETRIES}
    process = run_cli(str(inp), "-o", str(out), "--workers", "3", env=env)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 3, stderr
    assert "server unavailable" in stderr and "all 2 servers unavailable" in stderr
    assert all(row["outcome"] != "failed" for row in rows(out, "recordings"))
    assert not list(out.rglob("*.txt"))
