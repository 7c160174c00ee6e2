"""The fault model, end to end: faults from outside never stall the hourly job or blame the wrong party.

Each test reproduces one fault with real parts (reference servers, festival speech, real files and
filesystems: tmpfs mounts for full and read-only disks, which need root; skipped with the reason
elsewhere), runs asrbatch the way cron does (a subprocess), checks the exit code, the message, the
ledger and the files, and then runs again with the fault removed: everything completes exactly once.
Faults no real server can be made to show on demand (a 500 carrying a CUDA message, every
recognition hanging after /config answered) come from the fault proxy in front of a real server.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asrbatch.config import load_config
from asrbatch.fsutil import NAME_MAX
from asrbatch.output import content_hash
from asrbatch.runner import run_batch
from tests.support import speech
from tests.support.faultproxy import FaultProxy, hang, respond
from tests.support.jobs import OLD, RECOGNITION, cli, ledger_rows, log_events, on_folders, place
from tests.support.servers import ServerProcess, start_server

FAST_RETRIES = ("server:\n  retry:\n    attempts: 2\n    initial_wait: 0.01\n    jitter: 0\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A quick real server: each transcript names its recording's duration."""
    with start_server("6.31.0", engine="simulate", log_dir=tmp_path_factory.mktemp("fault-server"),
                      extra_args=["--simulate-rtf", "0", "--simulate-text", "heard {seconds}",
                                  "--concurrency", "2"]) as process:
        yield process


def clips(count: int) -> list[Path]:
    return [speech.synthesize(speech.SENTENCES[i]) for i in range(count)]


def config_file(tmp_path: Path, text: str = FAST_RETRIES) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def assert_operator_message(stderr: str, *phrases: str) -> None:
    """An operator's problem: one clear line naming what to fix, never a traceback or a bug report."""
    assert "Traceback" not in stderr and "bug" not in stderr and "internal error" not in stderr, stderr
    for phrase in phrases:
        assert phrase in stderr, stderr


def outputs_agree_with_ledger(out: Path) -> None:
    """Every finished record's transcripts are on disk, whole, with the content recorded."""
    for key, row in ledger_rows(out / ".asrbatch").items():
        if row["outcome"] not in ("done", "empty"):
            continue
        for rel, digest in json.loads(row["output_hashes"]).items():
            assert content_hash((out / rel).read_text(encoding="utf-8")) == digest, (key, rel)


# ----------------------------------------------------------------------------------------------
# Names the filesystem accepts, whatever they are


def test_names_of_250_to_255_bytes_and_newlines_work_and_stay_one_log_line_each(server: ServerProcess,
                                                                                tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    keys = [("n" * (length - 4)) + ".wav" for length in range(250, NAME_MAX + 1)]
    keys += ["会" * 82 + ".mp3",  # 250 bytes of UTF-8
             "x" * 247 + ".wav", "x" * 247 + ".mp3",  # one stem, two recordings: the longest output names
             "a\nevent=file path=forged.wav outcome=done.wav"]
    for key, clip in zip(keys, clips(len(keys)) * 2, strict=False):
        place(inp, key, clip)
    for _ in (1, 2):
        result = cli("run", str(inp), "-o", str(out), "--url", server.url, "--formats", "txt,json,srt")
        assert result.returncode == 0, result.stderr
        rows = ledger_rows(out / ".asrbatch")
        assert {key: rows[key]["outcome"] for key in keys} == dict.fromkeys(keys, "done")
        outputs_agree_with_ledger(out)
    for name in os.listdir(out):
        assert len(os.fsencode(name)) <= NAME_MAX
    log = (out / ".asrbatch" / "asrbatch.log").read_text(encoding="utf-8")
    files = log_events(log, "file")
    assert sorted(e["path"] for e in files) == sorted(keys)  # the first run; the second had nothing to do
    assert not any(e.get("path") == "forged.wav" for e in files)
    # One event, one line: every line of the log starts with its timestamp.
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", line) for line in log.splitlines())


# ----------------------------------------------------------------------------------------------
# One recording can never crash the run, nor block the next ones


def test_an_unexpected_error_in_one_recording_fails_that_recording_only(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in preparation is that recording's outcome, counted against state.max_runs; the run
    goes on, and the next run finishes it.  (No real input is known to cause one, so it is injected.)"""
    from asrbatch import audio

    inp, out = tmp_path / "in", tmp_path / "out"
    for key, clip in zip(("a.wav", "b.wav", "c.wav"), clips(3), strict=True):
        place(inp, key, clip)
    config = on_folders(load_config(None, env={}, overrides={"server.url": server.url}), inp, out)
    real_prepare = audio.prepare

    def prepare(path: Path, *args: Any, **kwargs: Any) -> Any:
        if path.name == "b.wav":
            raise ValueError("an unexpected value")
        return real_prepare(path, *args, **kwargs)

    monkeypatch.setattr(audio, "prepare", prepare)
    summary = run_batch(config)
    assert (summary.done, summary.failed, summary.exit_code) == (2, 1, 1)
    failure = next(o for o in summary.outcomes if o.outcome == "failed")
    assert failure.key == "b.wav" and failure.detail.startswith("internal error: ValueError: an unexpected value")
    row = ledger_rows(out / ".asrbatch")["b.wav"]
    assert (row["outcome"], row["permanent"], row["failed_runs"]) == ("failed", 0, 1)
    assert "Traceback" in caplog.text and "an unexpected value" in caplog.text
    monkeypatch.undo()
    again = run_batch(config)
    assert (again.done, again.failed, again.exit_code) == (1, 0, 0)
    assert (out / "b.txt").read_text(encoding="utf-8").startswith("heard ")


# ----------------------------------------------------------------------------------------------
# The server's trouble is never blamed on the recordings


@pytest.mark.parametrize("version", ["3.50.2", "6.31.0"])
def test_a_gpu_out_of_memory_is_the_servers_fault_and_stops_the_run(version: str, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    keys = [f"call {n}.wav" for n in range(4)]
    for key, clip in zip(keys, clips(4), strict=True):
        place(inp, key, clip)
    cuda = json.dumps({"error": "CUDA out of memory. Tried to allocate 2.00 GiB"})
    with start_server(version, engine="simulate", log_dir=tmp_path / "server",
                      extra_args=["--simulate-rtf", "0", "--simulate-text", "heard {seconds}"]) as real, \
            FaultProxy(real.url) as proxy:
        proxy.add("POST", RECOGNITION, respond(500, cuda, "application/json"), times=None)
        args = ("run", str(inp), "-o", str(out), "--url", proxy.url, "-c", str(config_file(tmp_path)))
        broken = cli(*args)
        assert broken.returncode == 3, broken.stderr
        assert_operator_message(broken.stderr, "stopped doing work", "CUDA out of memory")
        rows = ledger_rows(out / ".asrbatch")
        assert all(row["outcome"] == "pending" and row["failed_runs"] == 0 for row in rows.values()), rows
        proxy.clear()
        sent_before = proxy.count("POST", RECOGNITION)
        fixed = cli(*args)
        assert fixed.returncode == 0, fixed.stderr
        assert proxy.count("POST", RECOGNITION) - sent_before == len(keys)  # each exactly once
    assert {k: r["outcome"] for k, r in ledger_rows(out / ".asrbatch").items()} == dict.fromkeys(keys, "done")


@pytest.mark.parametrize("version", ["3.50.2", "6.31.0"])
def test_a_server_that_hangs_on_every_recognition_ends_the_run_in_one_budget(version: str, tmp_path: Path) -> None:
    """/config answers, every recognition hangs: the run stops after one recording's tries and one
    health check, not one budget per file, and blames nothing."""
    inp, out = tmp_path / "in", tmp_path / "out"
    keys = [f"m{n}.wav" for n in range(6)]
    for key, clip in zip(keys, clips(6), strict=True):
        place(inp, key, clip)
    config = config_file(tmp_path, FAST_RETRIES + "  read_timeout: 1\n  read_timeout_per_audio_second: 0\n"
                                                  "  deadline: 2\n  concurrency: 1\n")
    with start_server(version, engine="simulate", log_dir=tmp_path / "server",
                      extra_args=["--simulate-rtf", "0", "--simulate-text", "heard {seconds}"]) as real, \
            FaultProxy(real.url) as proxy:
        proxy.add("POST", r"/api/predict|/call/|/queue/join", hang(), times=None)
        started = time.monotonic()
        hung = cli("run", str(inp), "-o", str(out), "--url", proxy.url, "-c", str(config))
        elapsed = time.monotonic() - started
        assert hung.returncode == 3, hung.stderr
        assert_operator_message(hung.stderr, "stopped doing work")
        # Two tries of the first recording (the second one in flight beside it may have started too),
        # and one health check; never the six recordings' worth of tries.
        assert proxy.count("POST", r"/api/predict|/call/") <= 2 + 2 + 1
        assert elapsed < 60, elapsed
        rows = ledger_rows(out / ".asrbatch")
        assert all(row["outcome"] == "pending" and row["failed_runs"] == 0 for row in rows.values())
        proxy.clear()
        assert cli("run", str(inp), "-o", str(out), "--url", proxy.url, "-c", str(config)).returncode == 0
    assert {k: r["outcome"] for k, r in ledger_rows(out / ".asrbatch").items()} == dict.fromkeys(keys, "done")


# ----------------------------------------------------------------------------------------------
# Truncated audio is caught locally


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.5, 0.99])
def test_a_wav_cut_short_is_never_transcribed_as_if_complete(server: ServerProcess, tmp_path: Path,
                                                             fraction: float) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    whole = speech.concat([speech.synthesize(s) for s in speech.SENTENCES[:3]], 0.5, fmt="wav")
    cut = speech.truncate(whole, fraction)
    young = place(inp, "copying.wav", cut, mtime=time.time() - 120)  # past min_age, still young
    place(inp, "cut long ago.wav", cut)
    with FaultProxy(server.url) as proxy:
        args = ("run", str(inp), "-o", str(out), "--url", proxy.url)
        first = cli(*args)
        assert first.returncode == 1, first.stderr
        assert proxy.count("POST", RECOGNITION) == 0  # nothing was sent
        rows = ledger_rows(out / ".asrbatch")
        assert rows["copying.wav"]["permanent"] == 0 and "still being copied" in rows["copying.wav"]["error"]
        assert rows["cut long ago.wav"]["permanent"] == 1 and "truncated" in rows["cut long ago.wav"]["error"]
        assert not (out / "copying.txt").exists() and not (out / "cut long ago.txt").exists()
        # The copy finishes: the whole file is transcribed once, the old cut one stays failed.
        shutil.copyfile(whole, young)
        os.utime(young, (OLD, OLD))
        second = cli(*args)
        assert second.returncode == 0, second.stderr
        assert proxy.count("POST", RECOGNITION) == 1
    duration = speech.duration(whole)
    assert (out / "copying.txt").read_text(encoding="utf-8") == f"heard {duration:.2f}\n"


# ----------------------------------------------------------------------------------------------
# The operator's problems are the operator's, said plainly


def test_an_output_path_under_a_regular_file(server: ServerProcess, tmp_path: Path) -> None:
    inp = tmp_path / "in"
    place(inp, "a.wav", clips(1)[0])
    (tmp_path / "notes").write_text("a file where a folder should be")
    result = cli("run", str(inp), "-o", str(tmp_path / "notes" / "out"), "--url", server.url)
    assert result.returncode == 2
    assert_operator_message(result.stderr, str(tmp_path / "notes"), "a file is in the way")
    assert (tmp_path / "notes").read_text() == "a file where a folder should be"


def test_a_mistyped_input_folder_creates_nothing(tmp_path: Path) -> None:
    result = cli("run", str(tmp_path / "recordigns"), "--url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert_operator_message(result.stderr, "recordigns", "does not exist")
    assert list(tmp_path.iterdir()) == []


def damage(path: Path, how: str) -> bytes:
    if how == "random bytes":
        data = os.urandom(path.stat().st_size or 4096)
    else:  # keep SQLite's header, break the pages after it
        original = path.read_bytes()
        data = original[:100] + os.urandom(len(original) - 100)
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("how", ["random bytes", "broken pages"])
def test_a_damaged_ledger_is_never_overwritten_and_is_rebuilt_without_sending_again(
    server: ServerProcess, tmp_path: Path, how: str
) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    keys = ["a.wav", "sub/b.wav"]
    for key, clip in zip(keys, clips(2), strict=True):
        place(inp, key, clip)
    with FaultProxy(server.url) as proxy:
        args = ("run", str(inp), "-o", str(out), "--url", proxy.url)
        assert cli(*args).returncode == 0
        texts = {key: (out / key).with_suffix(".txt").read_text(encoding="utf-8") for key in keys}
        ledger = out / ".asrbatch" / "ledger.sqlite3"
        for leftover in ledger.parent.glob("ledger.sqlite3-*"):  # the WAL, checkpointed at close
            leftover.unlink()
        damaged = damage(ledger, how)
        for command in (args, ("status", "-o", str(out))):
            result = cli(*command)
            assert result.returncode == 2, result.stderr
            assert_operator_message(result.stderr, str(ledger), "damaged", "mv ")
            assert ledger.read_bytes() == damaged  # never overwritten
        ledger.rename(ledger.with_name("ledger.sqlite3.damaged"))
        rebuilt = cli(*args)
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert proxy.count("POST", RECOGNITION) == len(keys)  # nothing sent again
    assert {k: r["outcome"] for k, r in ledger_rows(out / ".asrbatch").items()} == dict.fromkeys(keys, "done")
    assert {key: (out / key).with_suffix(".txt").read_text(encoding="utf-8") for key in keys} == texts


# -- filesystems that fill up or refuse writes (root: tmpfs mounts) ------------------------------


def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


needs_root = pytest.mark.skipif(not _can_mount(), reason="mounting a small tmpfs needs root (CI runs as root)")


@contextlib.contextmanager
def tmpfs(where: Path, size: str, *, read_only: bool = False) -> Iterator[Callable[[str], None]]:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)

    def remount(options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)

    try:
        if read_only:
            remount("ro")
        yield remount
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@needs_root
def test_a_read_only_output_folder(server: ServerProcess, tmp_path: Path) -> None:
    inp = tmp_path / "in"
    place(inp, "a.wav", clips(1)[0])
    with tmpfs(tmp_path / "ro", "1m", read_only=True):
        result = cli("run", str(inp), "-o", str(tmp_path / "ro" / "out"), "--url", server.url)
    assert result.returncode == 2
    assert_operator_message(result.stderr, "read-only filesystem")


@needs_root
def test_a_disk_that_fills_up_mid_run_stops_the_run_and_the_next_run_continues(server: ServerProcess,
                                                                                 tmp_path: Path) -> None:
    inp, disk = tmp_path / "in", tmp_path / "disk"
    out = disk / "out"
    place(inp, "a short one.wav", clips(1)[0])
    long_one = speech.concat([speech.synthesize(s) for s in speech.SENTENCES[:12]], 0.4, fmt="mp3")
    with tmpfs(disk, "3m") as remount, FaultProxy(server.url) as proxy:
        args = ("run", str(inp), "-o", str(out), "--url", proxy.url)
        assert cli(*args).returncode == 0
        place(inp, "the long one.mp3", long_one)  # decodes to over 1 MB
        filler = disk / "filler"
        free = shutil.disk_usage(disk).free
        filler.write_bytes(bytes(max(0, free - 300_000)))
        full = cli(*args)
        assert full.returncode == 3, full.stderr
        assert_operator_message(full.stderr, "no space left")
        rows = ledger_rows(out / ".asrbatch")
        assert rows["a short one.wav"]["outcome"] == "done"
        assert rows["the long one.mp3"]["outcome"] == "pending" and rows["the long one.mp3"]["failed_runs"] == 0
        outputs_agree_with_ledger(out)
        assert cli("status", "-o", str(out)).returncode == 0  # the ledger is intact
        filler.unlink()
        remount("size=20m")
        sent = proxy.count("POST", RECOGNITION)
        again = cli(*args)
        assert again.returncode == 0, again.stderr
        assert proxy.count("POST", RECOGNITION) - sent == 1  # only the long one, once
        rows = ledger_rows(out / ".asrbatch")
        assert {k: r["outcome"] for k, r in rows.items()} == {"a short one.wav": "done", "the long one.mp3": "done"}
        outputs_agree_with_ledger(out)


@needs_root
def test_a_full_disk_at_the_start_is_said_plainly(server: ServerProcess, tmp_path: Path) -> None:
    inp, disk = tmp_path / "in", tmp_path / "disk"
    place(inp, "a.wav", clips(1)[0])
    with tmpfs(disk, "1m"):
        (disk / "filler").write_bytes(bytes(shutil.disk_usage(disk).free))
        result = cli("run", str(inp), "-o", str(disk / "out"), "--url", server.url)
    assert result.returncode in (2, 3), result.stderr
    assert_operator_message(result.stderr, "no space left")
