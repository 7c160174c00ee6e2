"""The unattended batch run, end to end: real reference servers, real speech, the real CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from asrbatch.cli import main
from tests.support import jobs, speech
from tests.support.faultproxy import FaultProxy, forward, hang, respond
from tests.support.jobs import OLD, RECOGNITION, cli, place
from tests.support.servers import ServerProcess, start_server
from tests.support.wer import wer

REPO = Path(__file__).resolve().parent.parent
WER_BOUND = 0.25

GOOD = {
    "meetings/week one/standup.wav": (speech.SENTENCES[0], "wav", 16000, 1),
    "meetings/会议 记录.mp3": (speech.SENTENCES[1], "mp3", 44100, 2),
    'calls/call "17".flac': (speech.SENTENCES[2], "flac", 8000, 1),
    "calls/deep/it's.m4a": (speech.SENTENCES[3], "m4a", 48000, 2),
    "top.ogg": (speech.SENTENCES[4], "ogg", 16000, 1),
}


def build_corpus(root: Path) -> None:
    for key, (text, fmt, rate, channels) in GOOD.items():
        place(root, key, speech.synthesize(text, fmt=fmt, rate=rate, channels=channels))
    wav = speech.synthesize(speech.SENTENCES[5])
    place(root, "bad/empty.wav", b"")
    place(root, "bad/truncated.wav", speech.truncate(speech.synthesize(speech.SENTENCES[6], fmt="m4a"), 0.5))
    place(root, "bad/notes.mp3", b"These are my meeting notes, not audio.\n" * 20)
    place(root, "quiet.wav", speech.silence(3.0))
    place(root, ".hidden.wav", wav)
    place(root, "incoming.wav.part", wav)


def assert_close(pairs: dict[str, tuple[str, str]]) -> None:
    """Each transcript within a loose word error rate of what was said, and all of them on average within a tight one.

    The engine (PocketSphinx) misses a word now and then, more at 8 kHz; mix-ups between
    recordings or garbage would blow both bounds.
    """
    rates = {key: wer(said, heard) for key, (said, heard) in pairs.items()}
    assert max(rates.values()) <= 0.5 and sum(rates.values()) / len(rates) <= WER_BOUND, rates


def transcript(out: Path, key: str) -> str:
    return (out / Path(key).with_suffix(".txt")).read_text(encoding="utf-8")


def ledger_rows(out: Path) -> dict[str, dict]:
    return jobs.ledger_rows(out / ".asrbatch")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start_server("6.31.0", log_dir=tmp_path_factory.mktemp("run-server")) as process:
        yield process


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[FaultProxy]:
    with FaultProxy(server.url) as p:
        yield p


def test_mixed_folder_against_every_gradio_generation(gradio_server: ServerProcess, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    build_corpus(inp)
    with FaultProxy(gradio_server.url) as proxy:
        result = cli("run", str(inp), "-o", str(out), "--url", proxy.url)
        sent = proxy.count("POST", RECOGNITION)
    assert result.returncode == 1, result.stderr
    assert all(transcript(out, key).endswith("\n") for key in GOOD)
    assert_close({key: (text, transcript(out, key)) for key, (text, *_rest) in GOOD.items()})
    rows = ledger_rows(out)
    assert {k: rows[k]["outcome"] for k in GOOD} == dict.fromkeys(GOOD, "done")
    assert rows["quiet.wav"]["outcome"] == "empty"
    assert (out / "quiet.txt").read_bytes() == b""
    for key, reason in [("bad/empty.wav", "empty"), ("bad/truncated.wav", ""), ("bad/notes.mp3", "")]:
        assert rows[key]["outcome"] == "failed" and rows[key]["permanent"] == 1, key
        assert reason in rows[key]["error"].lower()
        assert not (out / Path(key).with_suffix(".txt")).exists()
    assert ".hidden.wav" not in rows and "incoming.wav.part" not in rows
    # Bad and silent files never reach the server: one request per good recording.
    assert sent == len(GOOD)
    # Cron sees the failures and the summary on stderr, nothing on stdout.
    assert result.stdout == ""
    assert "asrbatch: error: bad/notes.mp3: " in result.stderr and " recordings found: " in result.stderr
    assert "3 failed" in result.stderr and "event=" not in result.stderr
    log = (out / ".asrbatch" / "asrbatch.log").read_text(encoding="utf-8")
    assert "event=file path=top.ogg outcome=done" in log
    # Transcript text stays out of the log at the default level.
    for key in GOOD:
        assert transcript(out, key).strip() not in log


def test_second_run_sends_nothing_changed_file_redone_copy_reused_force_redoes(
    server: ServerProcess, proxy: FaultProxy, tmp_path: Path
) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    first = place(inp, "a.wav", speech.synthesize(speech.SENTENCES[7]))
    place(inp, "sub/b.mp3", speech.synthesize(speech.SENTENCES[8], fmt="mp3"))
    assert cli("run", str(inp), "-o", str(out), "--url", proxy.url).returncode == 0
    assert proxy.count("POST", RECOGNITION) == 2

    again = cli("run", str(inp), "-o", str(out), "--url", proxy.url)
    assert again.returncode == 0 and again.stderr == "" and again.stdout == ""
    assert proxy.count("POST", RECOGNITION) == 2
    # A touched file with the same content is not sent either.
    os.utime(first, (OLD + 5, OLD + 5))
    assert cli("run", str(inp), "-o", str(out), "--url", proxy.url).returncode == 0
    assert proxy.count("POST", RECOGNITION) == 2

    # New content under the same name is transcribed again.
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[9]))
    os.utime(first, (OLD + 10, OLD + 10))
    assert cli("run", str(inp), "-o", str(out), "--url", proxy.url).returncode == 0
    assert proxy.count("POST", RECOGNITION) == 3
    assert wer(speech.SENTENCES[9], transcript(out, "a.wav")) <= WER_BOUND

    # A copy of a finished recording under a new name is served from the ledger.
    place(inp, "copies/b copy.mp3", inp / "sub/b.mp3")
    assert cli("run", str(inp), "-o", str(out), "--url", proxy.url).returncode == 0
    assert proxy.count("POST", RECOGNITION) == 3
    assert transcript(out, "copies/b copy.mp3") == transcript(out, "sub/b.mp3")
    assert ledger_rows(out)["copies/b copy.mp3"]["outcome"] == "done"

    # --force redoes everything.
    assert cli("run", str(inp), "-o", str(out), "--url", proxy.url, "--force").returncode == 0
    assert proxy.count("POST", RECOGNITION) == 6


def test_existing_transcript_not_overwritten_without_force(server: ServerProcess, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[10]))
    (out).mkdir()
    (out / "a.txt").write_text("typed by hand\n")
    result = cli("run", str(inp), "-o", str(out), "--url", server.url)
    assert result.returncode == 1
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert (out / "a.txt").read_text() == "typed by hand\n"
    assert cli("run", str(inp), "-o", str(out), "--url", server.url, "--force").returncode == 0
    assert wer(speech.SENTENCES[10], transcript(out, "a.wav")) <= WER_BOUND


def test_server_down_at_start_then_back(tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[11]))
    place(inp, "b.flac", speech.synthesize(speech.SENTENCES[12], fmt="flac"))
    server = start_server("6.31.0", log_dir=tmp_path / "server")
    url = server.url
    server.stop()
    down = cli("run", str(inp), "-o", str(out), "--url", url, env={"ASRBATCH_SERVER_RETRY_ATTEMPTS": "2",
                                                                      "ASRBATCH_SERVER_RETRY_INITIAL_WAIT": "0.01",
                                                                      "ASRBATCH_SERVER_RETRY_JITTER": "0"})
    assert down.returncode == 3, down.stderr
    assert "server unavailable" in down.stderr
    assert all(row["outcome"] != "failed" for row in ledger_rows(out).values())
    assert not list(out.glob("*.txt"))
    server.restart()
    try:
        up = cli("run", str(inp), "-o", str(out), "--url", url)
    finally:
        server.stop()
    assert up.returncode == 0, up.stderr
    assert {row["outcome"] for row in ledger_rows(out).values()} == {"done"}


def test_kill_9_mid_run_then_rerun_finishes_exactly_once(server: ServerProcess, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    keys = [f"r{i:02d}.wav" for i in range(8)]
    for i, key in enumerate(keys):
        place(inp, key, speech.synthesize(speech.SENTENCES[i]))
    with FaultProxy(server.url) as proxy:
        # Three recognitions go through, the fourth hangs: the run is killed while it is in flight.
        proxy.add("POST", RECOGNITION, forward(), forward(), forward(), hang(), times=None)
        process = subprocess.Popen(
            [sys.executable, "-m", "asrbatch", "run", str(inp), "-o", str(out), "--url", proxy.url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
        )
        def done() -> set[str]:
            if not (out / ".asrbatch" / "ledger.sqlite3").exists():
                return set()
            try:
                return {k for k, row in ledger_rows(out).items() if row["outcome"] == "done"}
            except sqlite3.OperationalError:  # the run is still creating its tables
                return set()

        try:
            deadline = time.monotonic() + 60
            # A transcript is renamed into place, then recorded: wait for the third record, not its file.
            while len(done()) < 3 or proxy.count("POST", RECOGNITION) < 4:
                assert time.monotonic() < deadline and process.poll() is None, "run did not progress"
                time.sleep(0.02)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    done_before = done()
    assert done_before == set(keys[:3])
    rerun = cli("run", str(inp), "-o", str(out), "--url", server.url)
    assert rerun.returncode == 0, rerun.stderr
    rows = ledger_rows(out)
    assert {rows[k]["outcome"] for k in keys} == {"done"}
    assert_close({key: (speech.SENTENCES[i], transcript(out, key)) for i, key in enumerate(keys)})
    leftovers = [p.name for p in out.rglob("*") if p.is_file() and p.suffix != ".txt" and ".asrbatch" not in p.parts]
    assert leftovers == []
    assert sorted(p.name for p in out.glob("*.txt")) == sorted(Path(k).with_suffix(".txt").name for k in keys)
    assert json.loads(rows[keys[0]]["outputs"])["base"] == "r00"


def test_overlapping_run_exits_4_at_once(server: ServerProcess, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[13]))
    with FaultProxy(server.url) as proxy:
        proxy.add("POST", RECOGNITION, hang(), times=None)
        first = subprocess.Popen(
            [sys.executable, "-m", "asrbatch", "run", str(inp), "-o", str(out), "--url", proxy.url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
        )
        try:
            deadline = time.monotonic() + 60
            while proxy.count("POST", RECOGNITION) < 1:
                assert time.monotonic() < deadline and first.poll() is None
                time.sleep(0.02)
            started = time.monotonic()
            second = cli("run", str(inp), "-o", str(out), "--url", proxy.url)
            assert second.returncode == 4
            assert "another asrbatch run holds" in second.stderr
            assert time.monotonic() - started < 10
        finally:
            first.kill()
            first.wait()


def test_lock_of_a_killed_run_does_not_block(server: ServerProcess, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[14]))
    state = out / ".asrbatch"
    state.mkdir(parents=True)
    (state / "lock").write_text("99999\n")  # a stale lock file left by a dead process
    assert cli("run", str(inp), "-o", str(out), "--url", server.url).returncode == 0


def test_file_still_growing_is_not_picked_up(server: ServerProcess, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "ready.wav", speech.synthesize(speech.SENTENCES[15]))
    data = speech.synthesize(speech.SENTENCES[16]).read_bytes()
    growing = inp / "growing.wav"
    stop = threading.Event()

    def copy_slowly() -> None:
        with open(growing, "wb") as sink:
            position = 0
            while not stop.is_set():
                sink.write(data[position % len(data): position % len(data) + 512])
                sink.flush()
                position += 512
                stop.wait(0.002)

    writer = threading.Thread(target=copy_slowly)
    writer.start()
    try:
        deadline = time.monotonic() + 10
        while not growing.exists() or growing.stat().st_size < 4096:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        result = cli("run", str(inp), "-o", str(out), "--url", server.url, "--min-age", "0", "-v")
    finally:
        stop.set()
        writer.join()
    assert result.returncode == 0, result.stderr
    rows = ledger_rows(out)
    assert rows["ready.wav"]["outcome"] == "done"
    assert rows.get("growing.wav", {}).get("outcome") != "done"
    assert not (out / "growing.txt").exists()


def test_dry_run_lists_and_sends_nothing(server: ServerProcess, proxy: FaultProxy, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[17]))
    place(inp, "notes.txt", b"hello")
    place(inp, "x.wav.part", b"partial")
    code = main(["run", str(inp), "-o", str(out), "--url", proxy.url, "--dry-run"])
    printed = capsys.readouterr().out
    assert code == 0
    assert re.search(r"^send +a\.wav +new$", printed, re.M), printed
    assert re.search(r"^ignore +notes\.txt +not a recording extension$", printed, re.M), printed
    assert re.search(r"^skip +x\.wav\.part +temporary name", printed, re.M), printed
    assert proxy.hits == []
    assert not out.exists()


def test_status_retry_forget(server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "good.wav", speech.synthesize(speech.SENTENCES[18]))
    place(inp, "broken.mp3", b"not audio at all")
    assert main(["run", str(inp), "-o", str(out), "--url", server.url, "-q"]) == 1
    capsys.readouterr()
    assert main(["status", "-o", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "done=1" in shown and "failed=1" in shown and "broken.mp3" in shown and "permanent" in shown
    assert main(["status", "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {"done": 1, "failed": 1}
    assert report["last_run"]["exit_code"] == 1
    assert main(["retry", "-o", str(out)]) == 0
    assert "retry broken.mp3" in capsys.readouterr().out
    assert ledger_rows(out)["broken.mp3"]["outcome"] == "pending"
    assert main(["forget", "-o", str(out), "good.wav"]) == 0
    assert "good.wav" not in ledger_rows(out)
    assert main(["forget", "-o", str(out), "nothing-here.wav"]) == 2


def test_usage_errors_exit_2_and_send_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  url: ftp://x\n  timeout: 3\n")
    (tmp_path / "in").mkdir()
    assert main(["run", str(tmp_path / "in"), "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "server.url: must start with http" in err and "server.timeout: unknown key" in err


def test_server_failing_on_a_file_is_retried_on_later_runs_then_waits_for_retry(tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[19]))
    config = tmp_path / "c.yaml"
    config.write_text("state:\n  max_runs: 2\nserver:\n  retry:\n    attempts: 2\n    initial_wait: 0.01\n"
                      "    jitter: 0\n")
    with start_server("3.50.2", log_dir=tmp_path / "server") as server, FaultProxy(server.url) as proxy:
        args = ("run", str(inp), "-o", str(out), "-c", str(config), "--url", proxy.url)
        # A bare 500 without a message on every try of this recording: the server fails on it. The
        # server still works (the health check's clip goes through), so the file fails for now.
        proxy.add("POST", r"/api/predict", respond(500, '{"error": null}', "application/json"), times=None,
                  when=lambda request: b"ping.wav" not in request)
        for attempt in (1, 2):
            result = cli(*args)
            assert result.returncode == 1, result.stderr
            assert "without saying why" in result.stderr and "(failed as wav too)" in result.stderr
            row = ledger_rows(out)["a.wav"]
            assert (row["failed_runs"], row["permanent"]) == (attempt, 0)
        # Per run: two tries as Vorbis, a health check, two tries as WAV, a health check.
        assert proxy.count("POST", RECOGNITION) == 2 * 6
        given_up = cli(*args)
        assert given_up.returncode == 0 and proxy.count("POST", RECOGNITION) == 12
        assert main(["status", "-o", str(out)]) == 0
        proxy.clear()
        assert main(["retry", "-o", str(out)]) == 0
        assert cli(*args).returncode == 0
    assert ledger_rows(out)["a.wav"]["outcome"] == "done"
    assert_close({"a.wav": (speech.SENTENCES[19], transcript(out, "a.wav"))})


def test_server_dying_mid_run_stops_the_run_with_the_rest_pending(tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    keys = [f"m{i}.wav" for i in range(8)]
    for i, key in enumerate(keys):
        place(inp, key, speech.synthesize(speech.SENTENCES[i]))
    server = start_server("6.31.0", log_dir=tmp_path / "server")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "asrbatch", "run", str(inp), "-o", str(out), "--url", server.url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env={**os.environ, "ASRBATCH_SERVER_RETRY_ATTEMPTS": "2", "ASRBATCH_SERVER_RETRY_INITIAL_WAIT": "0.05",
                 "ASRBATCH_SERVER_RETRY_JITTER": "0"},
        )
        deadline = time.monotonic() + 60
        while len(list(out.glob("m*.txt"))) < 2:
            assert time.monotonic() < deadline and process.poll() is None, "run did not progress"
            time.sleep(0.01)
        server.kill()
        _, stderr = process.communicate(timeout=120)
    finally:
        server.stop()
    assert process.returncode == 3, stderr
    assert "server unavailable" in stderr
    rows = ledger_rows(out)
    done = {k for k in keys if rows.get(k, {}).get("outcome") == "done"}
    assert 2 <= len(done) < len(keys)
    assert all(rows.get(k, {}).get("outcome") in (None, "pending") for k in keys if k not in done)
    assert len(list(out.glob("m*.txt"))) == len(done)


def test_terminal_gets_a_progress_bar_and_the_summary(server: ServerProcess, tmp_path: Path) -> None:
    import pty

    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[3]))
    place(inp, "b.wav", speech.synthesize(speech.SENTENCES[4]))
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "asrbatch", "run", str(inp), "-o", str(out), "--url", server.url],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal, cwd=REPO,
        )
        os.close(terminal)
        shown = b""
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:  # the run closed the terminal
                break
            if not data:
                break
            shown += data
        assert process.wait(timeout=120) == 0
    finally:
        os.close(controller)
    text = shown.decode("utf-8", "replace")
    assert "] 2/2 " in text and "2 recordings found: 2 transcribed." in text


def test_sigterm_finishes_the_recording_in_flight_and_leaves_the_rest_pending(
    server: ServerProcess, tmp_path: Path
) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    keys = [f"t{i}.wav" for i in range(6)]
    for i, key in enumerate(keys):
        place(inp, key, speech.synthesize(speech.SENTENCES[i]))
    process = subprocess.Popen(
        [sys.executable, "-m", "asrbatch", "run", str(inp), "-o", str(out), "--url", server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    deadline = time.monotonic() + 60
    while not list(out.glob("t*.txt")):
        assert time.monotonic() < deadline and process.poll() is None, "run did not progress"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "asrbatch: interrupted: the recordings in flight were finished; " in stderr
    rows = ledger_rows(out)
    done = [k for k in keys if rows.get(k, {}).get("outcome") == "done"]
    assert 1 <= len(done) < len(keys)
    assert sorted(p.name for p in out.glob("t*.txt")) == sorted(Path(k).with_suffix(".txt").name for k in done)
    assert not list(out.rglob("*.part"))
    assert cli("run", str(inp), "-o", str(out), "--url", server.url).returncode == 0
    assert {ledger_rows(out)[k]["outcome"] for k in keys} == {"done"}
