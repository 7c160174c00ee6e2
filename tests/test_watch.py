"""asrbatch watch: files picked up once complete, transcribed once, clean stops, side by side with cron runs."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from watchdog.events import (
    DirCreatedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

from asrbatch.config import load_config
from asrbatch.lock import RunLock
from asrbatch.runner import RunOptions
from asrbatch.watch import FOLDER, Tracker, watch_folder
from tests.support import speech
from tests.support.faultproxy import Action, FaultProxy
from tests.support.jobs import RECOGNITION, REPO, cli, ledger_rows, log_events, on_folders, place, wait_for
from tests.support.servers import ServerProcess, start_server
from tests.support.wer import wer

SETTLE = 0.5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start_server("6.31.0", log_dir=tmp_path_factory.mktemp("watch-server")) as process:
        yield process


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[FaultProxy]:
    with FaultProxy(server.url) as p:
        yield p


def start_watch(inp: Path, out: Path, url: str, *extra: str) -> subprocess.Popen[str]:
    """``asrbatch watch`` as systemd runs it: a subprocess, stderr not a terminal."""
    return subprocess.Popen(
        [sys.executable, "-m", "asrbatch", "watch", str(inp), "-o", str(out), "--url", url,
         "--settle", str(SETTLE), "--rescan-interval", "600", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )


def log_text(out: Path) -> str:
    path = out / ".asrbatch" / "asrbatch.log"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def outcome(out: Path, key: str) -> str | None:
    """The ledger's outcome for *key*, None while there is none (or no ledger yet)."""
    try:
        return ledger_rows(out / ".asrbatch").get(key, {}).get("outcome")
    except sqlite3.Error:
        return None


def stop(process: subprocess.Popen[str], *, timeout: float = 30) -> tuple[int, str, str]:
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def test_file_copied_in_slowly_is_transcribed_once_complete_then_sigterm_then_run_finds_nothing(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "before.wav", speech.synthesize(speech.SENTENCES[0]))  # there before the watch starts
    watcher = start_watch(inp, out, proxy.url)
    try:
        wait_for(lambda: outcome(out, "before.wav") == "done", message="the catch-up pass")
        assert proxy.count("POST", RECOGNITION) == 1

        # Copy a recording in slowly: pieces with pauses longer than the settle time, the file
        # open all along. Nothing may be sent before it is closed.
        data = speech.synthesize(speech.SENTENCES[1], fmt="mp3").read_bytes()
        target = inp / "talks" / "slow.mp3"
        target.parent.mkdir()
        pace = threading.Event()
        with open(target, "wb") as sink:
            for start in range(0, len(data), len(data) // 4 + 1):
                sink.write(data[start:start + len(data) // 4 + 1])
                sink.flush()
                pace.wait(SETTLE * 1.6)
                assert proxy.count("POST", RECOGNITION) == 1, "sent before the copy was complete"
        transcript = out / "talks" / "slow.txt"
        wait_for(transcript.exists, message="the transcript of the copied file")
        assert wer(speech.SENTENCES[1], transcript.read_text(encoding="utf-8")) <= 0.25
        assert any(e["path"] == "talks/slow.mp3" and e["reason"].startswith("still being written")
                   for e in log_events(log_text(out), "skip"))
    finally:
        code, stdout, stderr = stop(watcher)
    assert code == 0, stderr
    assert stdout == "" and stderr == ""  # as quiet as cron: nothing failed
    assert proxy.count("POST", RECOGNITION) == 2  # each recording exactly once
    assert "event=watch_stop" in log_text(out)
    rows = ledger_rows(out / ".asrbatch")
    assert {k: r["outcome"] for k, r in rows.items()} == {"before.wav": "done", "talks/slow.mp3": "done"}

    after = cli("run", str(inp), "-o", str(out), "--url", proxy.url)
    assert after.returncode == 0 and after.stderr == ""
    assert proxy.count("POST", RECOGNITION) == 2


def delayed(seconds: float) -> Action:
    """Forward the request after *seconds* (a slow server)."""
    def act(handler, body: bytes) -> None:  # type: ignore[no-untyped-def]
        handler.state.stopping.wait(seconds)
        handler.forward(body)
    act.__name__ = "delayed"
    return act


def test_sigterm_finishes_the_recording_in_flight_and_leaves_the_rest(proxy: FaultProxy, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    keys = [f"r{i}.wav" for i in range(4)]
    for i, key in enumerate(keys):
        place(inp, key, speech.synthesize(speech.SENTENCES[2 + i]))
    proxy.add("POST", RECOGNITION, delayed(1.5), times=None)
    watcher = start_watch(inp, out, proxy.url, "--workers", "1")
    try:
        wait_for(lambda: proxy.count("POST", RECOGNITION) >= 1, message="a recognition in flight")
    finally:
        code, _, stderr = stop(watcher)
    assert code == 0, stderr
    rows = ledger_rows(out / ".asrbatch")
    done = [k for k in keys if rows.get(k, {}).get("outcome") == "done"]
    assert len(done) == 1  # the one in flight was finished, no other was started
    assert proxy.count("POST", RECOGNITION) == 1
    assert "stopped=interrupted" in log_text(out)
    assert not [p for p in out.rglob("*.part")]

    proxy.clear()
    after = cli("run", str(inp), "-o", str(out), "--url", proxy.url)
    assert after.returncode == 0, after.stderr
    assert {k: r["outcome"] for k, r in ledger_rows(out / ".asrbatch").items()} == dict.fromkeys(keys, "done")
    assert proxy.count("POST", RECOGNITION) == len(keys)


def test_lock_held_by_a_cron_run_is_waited_for(proxy: FaultProxy, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    config = load_config(env={}, overrides={"server.url": proxy.url, "watch.settle": SETTLE,
                                            "watch.rescan_interval": 600})
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    watch_log = logging.getLogger("asrbatch.watch")
    watch_log.addHandler(handler)
    watch_log.setLevel(logging.INFO)
    stop_event = threading.Event()
    results: list[int] = []
    lock = RunLock(out / ".asrbatch" / "lock").acquire()  # a cron run is going
    thread = threading.Thread(target=lambda: results.append(watch_folder(
        on_folders(config, inp, out), RunOptions(), stop=stop_event, lock_retry=0.2)))
    thread.start()
    try:
        wait_for(lambda: any(m.startswith("event=watch_locked") for m in records), message="a locked pass")
        place(inp, "a.wav", speech.synthesize(speech.SENTENCES[7]))
        wait_for(lambda: sum(m.startswith("event=watch_locked") for m in records) >= 3, message="retries")
        assert proxy.count("POST", RECOGNITION) == 0
        lock.release()
        wait_for((out / "a.txt").exists, message="the transcript once the lock is free")
    finally:
        lock.release()
        stop_event.set()
        thread.join(timeout=30)
        watch_log.removeHandler(handler)
    assert results == [0]
    assert proxy.count("POST", RECOGNITION) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_tracker_decides_when_a_recording_is_complete(tmp_path: Path) -> None:
    clock = Clock()
    tracker = Tracker(tmp_path, extensions=("wav", "mp3"), recursive=True, exclude=(tmp_path / "out",), closes=True,
                      wake=threading.Event(), clock=clock)
    path = str(tmp_path / "a.wav")
    for event in (FileCreatedEvent(path), FileOpenedEvent(path), FileModifiedEvent(path)):
        tracker.dispatch(event)
    clock.now += 60
    assert tracker.ready(SETTLE) == [] and tracker.held_back(SETTLE) == {"a.wav"}  # written to, never closed
    tracker.dispatch(FileClosedEvent(path))
    assert tracker.ready(SETTLE) == []  # closed just now: settling
    assert tracker.next_due(SETTLE) == clock.now + SETTLE
    clock.now += SETTLE
    assert tracker.ready(SETTLE) == ["a.wav"]
    tracker.dispatch(FileAttribEvent(path))  # touched: settles again, still closed
    assert tracker.ready(SETTLE) == []
    clock.now += SETTLE
    tracker.done(["a.wav"], before=clock.now)
    assert tracker.held_back(SETTLE) == frozenset() and tracker.next_due(SETTLE) is None

    # Renamed into place (a download finished): complete, settling. Then deleted: forgotten.
    tracker.dispatch(FileMovedEvent(str(tmp_path / "b.mp3.part"), str(tmp_path / "sub" / "b.mp3")))
    assert tracker.held_back(SETTLE) == {"sub/b.mp3"}
    tracker.dispatch(FileDeletedEvent(str(tmp_path / "sub" / "b.mp3")))
    assert tracker.held_back(SETTLE) == frozenset()

    # Not candidates: other extensions, temporary and hidden names, excluded folders, outside the root.
    for ignored in ("notes.txt", "c.wav.part", ".hidden.wav", ".cache/d.wav", "out/e.wav", "../f.wav"):
        tracker.dispatch(FileClosedEvent(str(tmp_path / ignored)))
    assert tracker.held_back(SETTLE) == frozenset() and tracker.ready(0) == []

    # A folder created or moved in: one pass once it settled finds its files.
    tracker.dispatch(DirCreatedEvent(str(tmp_path / "batch")))
    clock.now += SETTLE
    assert tracker.ready(SETTLE) == [FOLDER]
    assert FOLDER not in tracker.held_back(SETTLE)
