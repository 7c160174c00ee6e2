"""What people see: `run`, `watch` and `ping` in a real terminal (tmux), what cron sees, what --dry-run
promises against what the run does, and summaries whose counts add up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from asrbatch.cli import main
from asrbatch.config import load_config
from asrbatch.runner import RunOptions, run_batch
from tests.support import speech
from tests.support.faultproxy import Action, FaultProxy
from tests.support.jobs import RECOGNITION, REPO, cli, ledger_rows, log_events, place, runs, wait_for
from tests.support.servers import ServerProcess, free_port, start_server
from tests.support.terminal import Terminal

README = (REPO / "README.md").read_text(encoding="utf-8")
BAR = re.compile(r"\[[#-]{10,}\] \d+/\d+")
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start_server("6.31.0", log_dir=tmp_path_factory.mktemp("terminal-server")) as process:
        yield process


def troubled_folder(root: Path) -> tuple[Path, Path]:
    """Recordings a new user has: two good ones, an empty file, a text file named .mp3, one whose
    transcript is already there (written by hand), and one still being copied in."""
    inp, out = root / "in", root / "out"
    place(inp, "greeting.wav", speech.synthesize(speech.SENTENCES[0]))
    place(inp, "calls/monday.mp3", speech.synthesize(speech.SENTENCES[1], fmt="mp3"))
    place(inp, "empty.wav", b"")
    place(inp, "notes.mp3", b"this is a text file, not a recording\n" * 5)
    place(inp, "blocked.wav", speech.synthesize(speech.SENTENCES[2]))
    place(inp, "young.wav", speech.synthesize(speech.SENTENCES[3]), mtime=time.time())
    out.mkdir(parents=True)
    (out / "blocked.txt").write_text("my own notes\n", encoding="utf-8")
    return inp, out


def python_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "asrbatch", *args]


def test_run_in_a_terminal_prints_errors_above_the_progress_display_and_ends_with_the_summary(
    server: ServerProcess, tmp_path: Path,
) -> None:
    inp, out = troubled_folder(tmp_path)
    with Terminal(columns=100, rows=40) as term:
        term.start(python_command("run", str(inp), "-o", str(out), "--url", server.url), env=ENV, cwd=REPO)
        assert term.exit_code() == 1
        lines = term.lines()
    shown = "\n".join(lines)
    errors = [line for line in lines if "error:" in line]
    assert sorted(line.split(": ")[2] for line in errors) == ["blocked.wav", "empty.wav", "notes.mp3"], errors
    # An error always starts a line of its own; the progress display never shares one, and is gone at the end.
    assert all(line.startswith("asrbatch: error: ") for line in errors), shown
    assert not any(str(inp) in line for line in errors), errors  # the recording's name once, not its path again
    assert not any(BAR.search(line) for line in lines), shown
    # The final screen: the summary, the failures by name and reason, what to do next; no log-file lines.
    assert "6 recordings found: 2 transcribed, 3 failed, 1 skipped (not ready yet)." in lines, shown
    failed = lines.index("Failed:")
    assert sorted(line.split()[0] for line in lines[failed + 1:failed + 4]) == ["blocked.wav", "empty.wav",
                                                                              "notes.mp3"]
    assert "empty file (0 bytes)" in shown and "not audio, or not a format ffmpeg can read" in shown
    assert any(line.startswith("Not ready yet") and "young.wav" in line for line in lines)
    assert any(line.startswith("Next: ") and f"asrbatch retry -o {out}" in line for line in lines)
    assert "event=" not in shown and "exit=" not in shown and "((" not in shown and "))" not in shown
    assert lines[-1] == "[exit 1]"


def test_the_terminal_gets_colour_unless_no_color_is_set(server: ServerProcess, tmp_path: Path) -> None:
    inp = tmp_path / "in"
    place(inp, "empty.wav", b"")
    screens = {}
    for name, extra in (("colour", {}), ("plain", {"NO_COLOR": "1"})):
        with Terminal() as term:
            term.start(python_command("run", str(inp), "-o", str(tmp_path / name), "--url", server.url),
                       env={**ENV, **extra}, cwd=REPO)
            assert term.exit_code() == 1
            screens[name] = term.screen(escapes=True)
    assert "\x1b[31" in screens["colour"] and "error:" in screens["colour"]
    assert "\x1b[31" not in screens["plain"] and "asrbatch: error: empty.wav: empty file" in screens["plain"]


def test_cron_sees_nothing_when_all_went_well_and_plain_lines_when_not(server: ServerProcess, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[4]))
    quiet = cli("run", str(inp), "-o", str(out), "--url", server.url)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    place(inp, "b.mp3", b"not audio\n" * 20)
    for name, extra in (("plain", ()), ("quiet", ("-q",))):
        failing = cli("run", str(inp), "-o", str(tmp_path / name), "--url", server.url, *extra)
        assert failing.returncode == 1 and failing.stdout == ""
        lines = failing.stderr.splitlines()
        assert lines[0].startswith("asrbatch: error: b.mp3: not audio, or not a format ffmpeg can read")
        assert lines[1] == "asrbatch: 2 recordings found: 1 transcribed, 1 failed; exit status 1"
        assert lines[2].startswith("asrbatch: next: fix or replace the failed files")
        assert len(lines) == 3 and "\x1b" not in failing.stderr and "event=" not in failing.stderr


def test_dry_run_decisions_are_the_runs_decisions(server: ServerProcess, tmp_path: Path) -> None:
    inp, out = troubled_folder(tmp_path)
    place(inp, "readme.txt", b"not a recording")
    dry = cli("run", str(inp), "-o", str(out), "--url", server.url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    planned = {}
    for line in dry.stdout.splitlines()[1:-1]:
        verb, key = line.split()[:2]
        planned[key] = verb
    assert dry.stdout.splitlines()[-1] == "6 recordings found: the run would send 2, reuse 0, fail 3 and skip 1"
    assert not (out / ".asrbatch").exists()  # a dry run changes nothing

    ran = cli("run", str(inp), "-o", str(out), "--url", server.url)
    assert ran.returncode == 1
    summary = runs(out / ".asrbatch")[-1]["summary"]
    outcomes = {e["path"]: e["outcome"] for e in log_events((out / ".asrbatch" / "asrbatch.log").read_text(), "file")}
    outcomes.update({e["path"]: "skipped" for e in log_events((out / ".asrbatch" / "asrbatch.log").read_text(), "skip")})
    expected = {"send": {"done", "empty"}, "fail": {"failed"}, "skip": {"skipped"}, "reuse": {"reused"},
                "ignore": {None}}
    assert {key: outcomes.get(key) in expected[verb] for key, verb in planned.items()} == dict.fromkeys(planned, True)
    assert planned == {"blocked.wav": "fail", "calls/monday.mp3": "send", "empty.wav": "fail", "greeting.wav": "send",
                       "notes.mp3": "fail", "readme.txt": "ignore", "young.wav": "skip"}
    assert (summary["done"], summary["failed"], summary["skipped"]) == (2, 3, 1)

    # The troubleshooting table quotes what the client prints for such files.
    table = README[README.index("## Troubleshooting"):]
    for quoted in ("empty file (0 bytes)", "not audio, or not a format ffmpeg can read",
                   "already exists and was not written by asrbatch"):
        assert f"`{quoted}" in table and quoted in ran.stderr, quoted


def test_summary_counts_add_up_run_after_run(server: ServerProcess, tmp_path: Path) -> None:
    inp, out = troubled_folder(tmp_path)
    place(inp, ".hidden.wav", speech.synthesize(speech.SENTENCES[5]))
    place(inp, "incoming.wav.part", b"partial")
    config = load_config(None, env={}, overrides={"server.url": server.url, "input.dir": str(inp),
                                                  "output.dir": str(out)})

    def adds_up(summary) -> None:  # type: ignore[no-untyped-def]
        parts = (summary.done, summary.empty, summary.failed, summary.reused, summary.pending, summary.skipped)
        assert summary.found == sum(parts), summary

    dry = run_batch(config, RunOptions(dry_run=True))
    adds_up(dry)
    first = run_batch(config)
    adds_up(first)
    # The files still being copied in are found and skipped (not ready yet); so is the hidden one (left out).
    assert (first.found, first.skipped, first.failed, first.done) == (8, 3, 3, 2)
    assert dry.found == first.found and dry.skipped == first.skipped and dry.failed == first.failed
    place(inp, "copy of greeting.wav", inp / "greeting.wav")
    second = run_batch(config)
    adds_up(second)
    assert (second.found, second.reused, second.skipped) == (9, 1, 8)
    # What the person reads adds up too.
    from asrbatch.display import counts_line

    line = counts_line(second)
    numbers = [int(n) for n in re.findall(r"(\d+) (?:transcribed|silent|reused|failed|left for|skipped)",
                                          re.sub(r"\([^)]*\)", "", line))]
    assert sum(numbers) == second.found, line
    why = re.search(r"skipped \((.*)\)$", line)
    assert why is not None and sum(int(part.split()[0]) for part in why.group(1).split(", ")) == second.skipped
    assert line.endswith("8 skipped (2 already done, 3 failed earlier, 2 not ready yet, 1 left out)"), line
    assert ledger_rows(out / ".asrbatch")["copy of greeting.wav"]["outcome"] == "done"


def test_watch_in_a_terminal_says_what_it_watches_and_names_each_recording(
    server: ServerProcess, tmp_path: Path,
) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    with Terminal(columns=120) as term:
        term.start(python_command("watch", str(inp), "-o", str(out), "--url", server.url, "--settle", "0.2"),
                   env=ENV, cwd=REPO)
        term.wait_for("watching ")
        place(inp, "arrived.wav", speech.synthesize(speech.SENTENCES[6]), mtime=time.time())
        term.wait_for(" done    arrived.wav (")
        term.wait_for("watching: 1 transcribed")
        term.send("C-c")
        assert term.exit_code(timeout=60) == 0
        lines = term.lines()
    shown = "\n".join(lines)
    assert lines[0].startswith(f"watching {inp} -> {out}: each recording is sent once closed and unchanged for 0.2 s")
    assert any(re.fullmatch(r"\d\d:\d\d:\d\d done    arrived\.wav \(\d+\.\d s of audio\)", line) for line in lines)
    assert "watch stopped" in lines
    assert "event=" not in shown and " INFO " not in shown


def test_watch_in_the_background_prints_only_failures(server: ServerProcess, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "good.wav", speech.synthesize(speech.SENTENCES[7]))
    place(inp, "broken.mp3", b"not audio\n" * 20)
    process = subprocess.Popen(python_command("watch", str(inp), "-o", str(out), "--url", server.url),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=REPO)
    try:
        wait_for(lambda: (out / "good.txt").exists() and "broken.mp3" in ledger_rows(out / ".asrbatch"),
                 timeout=60, message="the first pass")
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0
    assert stdout == ""
    (line,) = stderr.splitlines()  # one line: the failure; no "watching", no pass summaries, no log lines
    assert line.startswith("asrbatch: error: broken.mp3: not audio, or not a format ffmpeg can read")


def test_ping_that_fails_says_what_to_try_and_nothing_else(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = {**ENV, "ASRBATCH_SERVER_RETRY_ATTEMPTS": "3", "ASRBATCH_SERVER_RETRY_INITIAL_WAIT": "0.05",
           "ASRBATCH_SERVER_RETRY_JITTER": "0"}
    piped = subprocess.run(python_command("ping", "--url", url), capture_output=True, text=True, env=env, cwd=REPO,
                           timeout=60)
    assert piped.returncode == 3 and piped.stdout == ""
    assert piped.stderr.splitlines() == [
        f"asrbatch: error: server {url} unavailable after 3 attempts: connection refused on GET /config",
        "asrbatch: is the server running, and reachable from here (its address, port, firewall)?",
    ]
    with Terminal() as term:
        term.start(python_command("ping", "--url", url), env=env, cwd=REPO)
        assert term.exit_code() == 3
        lines = term.lines()
    # The retries showed as a passing note; the final screen holds the error and the hint only.
    assert lines == [line for line in piped.stderr.splitlines()] + ["[exit 3]"]


def slowly(seconds: float) -> Action:
    """Forward the request after *seconds*."""
    def act(handler, body: bytes) -> None:  # type: ignore[no-untyped-def]
        handler.state.stopping.wait(seconds)
        handler.forward(body)
    act.__name__ = "slowly"
    return act


def test_interrupted_run_in_a_terminal_says_what_is_left(server: ServerProcess, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(6):
        place(inp, f"r{i}.wav", speech.synthesize(speech.SENTENCES[8 + i]))
    with FaultProxy(server.url) as proxy, Terminal(columns=120) as term:
        proxy.add("POST", RECOGNITION, slowly(1.0), times=None)  # a busy server: time to press Ctrl-C
        term.start(python_command("run", str(inp), "-o", str(out), "--url", proxy.url, "--workers", "1"),
                   env=ENV, cwd=REPO)
        term.wait_for("] 1/6 ")
        term.send("C-c")
        code = term.exit_code()
        lines = term.lines()
    shown = "\n".join(lines)
    assert code == 0, shown
    assert any(line.startswith("SIGINT: finishing the recordings in flight") for line in lines), shown
    assert any(line.startswith("Interrupted: the recordings in flight were finished; ") and "left for the next run"
               in line for line in lines), shown
    assert not any(BAR.search(line) for line in lines), shown


def test_a_mistyped_input_folder_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "recordings").mkdir()
    for command in ("run", "watch"):
        assert main([command, str(tmp_path / "recordngs"), "--url", "http://127.0.0.1:9"]) == 2
        assert f"input folder {tmp_path / 'recordngs'} does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recordings"]
    assert os.listdir(tmp_path / "recordings") == []
