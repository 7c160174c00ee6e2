"""The console's mechanics and words, on streams of our own: the status line, colour, the event wording."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pytest

from asrbatch.console import ERASE_LINE, Console, ConsoleHandler, cells, clip
from asrbatch.display import RunProgress, counts_line, duration, plan_lines
from asrbatch.log import kv
from asrbatch.outcomes import FileOutcome, Outcome, RunSummary

pytestmark = pytest.mark.unit

SGR = re.compile(r"\x1b\[[0-9;]*m")


class Screen:
    """Plays what a terminal is sent onto a grid of lines: carriage return, newline, erase to the end
    of the line and colour codes (dropped) are all a status line needs."""

    def __init__(self) -> None:
        self.lines = [""]
        self.column = 0

    def feed(self, data: str) -> None:
        data = SGR.sub("", data)
        i = 0
        while i < len(data):
            if data.startswith("\x1b[K", i):
                self.lines[-1] = self.lines[-1][: self.column]
                i += 3
                continue
            char = data[i]
            if char == "\r":
                self.column = 0
            elif char == "\n":
                self.lines.append("")
                self.column = 0
            else:
                line = self.lines[-1].ljust(self.column)
                self.lines[-1] = line[: self.column] + char + line[self.column + 1:]
                self.column += 1
            i += 1


class TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def terminal(columns: int = 60, **environ: str) -> tuple[Console, TerminalStream]:
    stream = TerminalStream()
    return Console(stream, environ={"TERM": "xterm", **environ}, columns=lambda: columns), stream


def test_messages_never_share_a_line_with_the_status_line() -> None:
    console, stream = terminal()
    console.status("[####----] 1/2")
    console.print("asrbatch: error: a.wav: empty file")
    console.status("[########] 2/2")
    console.print("done")
    console.clear()
    screen = Screen()
    screen.feed(stream.getvalue())
    assert screen.lines == ["asrbatch: error: a.wav: empty file", "done", ""]
    # Each message starts on a line of its own: the status line is erased first.
    assert stream.getvalue().count(ERASE_LINE + "asrbatch: error:") == 1


def test_status_line_is_cut_to_the_terminal_width_counting_wide_characters() -> None:
    console, stream = terminal(columns=20)
    console.status("done 会议 meeting/weekly standup.mp3")
    shown = stream.getvalue().rsplit(ERASE_LINE, 1)[-1]
    assert cells(shown) <= 19 and shown.endswith("...")
    assert cells("会议") == 4 and cells("é") == 1 and clip("abc", 10) == "abc"
    # Colour codes take no column and are never cut in half; a cut ends the colour.
    coloured = "[##--] 1/2  done a.wav  \x1b[31m3 failed\x1b[0m"
    assert cells(coloured) == len("[##--] 1/2  done a.wav  3 failed")
    assert clip(coloured, 28) == "[##--] 1/2  done a.wav  \x1b[31m3\x1b[0m..."
    assert clip(coloured, 40) == coloured


def test_a_note_follows_the_status_until_the_next_one_and_is_cleared() -> None:
    console, stream = terminal(columns=100)
    console.status("[----] 0/1")
    console.note("http://gpu:7860: connection refused; trying again in 1.0 s (try 2)")
    assert stream.getvalue().endswith("[----] 0/1  http://gpu:7860: connection refused; trying again in 1.0 s (try 2)")
    console.clear()
    assert stream.getvalue().endswith(ERASE_LINE)


def test_no_status_line_and_no_colour_off_a_terminal() -> None:
    stream = io.StringIO()
    console = Console(stream, environ={"TERM": "xterm"})
    assert not console.interactive and not console.color
    console.status("[----] 0/1")
    console.print(console.style("error:", "red"))
    assert stream.getvalue() == "error:\n"


def test_no_colour_with_no_color_set_and_no_status_line_on_a_dumb_terminal() -> None:
    console, _ = terminal(NO_COLOR="1")
    assert console.interactive and not console.color and console.style("x", "red") == "x"
    coloured, _ = terminal()
    assert coloured.style("x", "red") == "\x1b[31mx\x1b[0m"
    dumb = Console(TerminalStream(), environ={"TERM": "dumb"})
    assert not dumb.interactive


def records(handler: ConsoleHandler, *items: tuple[int, object]) -> list[str]:
    out = []
    for level, message in items:
        record = logging.LogRecord("asrbatch.test", level, __file__, 1, message, None, None)
        shown = handler.words(record)
        if shown is not None:
            out.append(f"{shown[0]}: {shown[1]}")
    return out


RETRY = kv("retry", url="http://gpu:7860", attempt=2, reason="connection refused", wait_s="1.0")
FILE = kv("file", path="a.wav", outcome="done", audio_s="12.30", server_s="0.84", attempts=1, chunks=1)
SUMMARY = "event=summary found=1 new=1 done=1 empty=0 failed=0 skipped=0 reused=0 pending=0 exit=0"
MONITORING = kv("monitoring_failed", hook="finish", url="https://hc/x", reason="timed out")


def test_events_read_as_words_and_key_value_lines_stay_in_the_log_file() -> None:
    quiet_pipe = ConsoleHandler(Console(io.StringIO()), -1)
    pipe = ConsoleHandler(Console(io.StringIO()), 0)
    verbose = ConsoleHandler(Console(io.StringIO()), 1)
    tty = ConsoleHandler(terminal()[0], 0)
    items = [(logging.WARNING, RETRY), (logging.INFO, FILE), (logging.INFO, SUMMARY),
             (logging.WARNING, MONITORING), (logging.ERROR, "a.wav: empty file (0 bytes)")]
    assert records(quiet_pipe, *items[-1:]) == ["line: asrbatch: error: a.wav: empty file (0 bytes)"]
    # Cron: the warning that matters and the error; retries that worked are no news.
    assert records(pipe, *items) == [
        "line: asrbatch: warning: monitoring: the finish call to https://hc/x failed (timed out); "
        "the run itself is not affected",
        "line: asrbatch: error: a.wav: empty file (0 bytes)",
    ]
    # -v: the retries and the files too, in words; the summary line is never repeated.
    shown = records(verbose, *items)
    assert shown[0] == "line: asrbatch: warning: http://gpu:7860: connection refused; trying again in 1.0 s (try 2)"
    assert shown[1] == "line: done    a.wav (12.30 s of audio, 0.84 s on the server)"
    assert len(shown) == 4 and not any("event=" in line for line in shown)
    # A terminal: the retry is a passing note on the status line.
    assert records(tty, *items[:1]) == ["note: http://gpu:7860: connection refused; trying again in 1.0 s (try 2)"]


def test_the_summary_counts_add_up_and_say_why_files_were_skipped(tmp_path: Path) -> None:
    from asrbatch.scan import Skipped

    summary = RunSummary(tmp_path / "in", tmp_path / "out", tmp_path / "out/.asrbatch", found=7, done=2, failed=1,
                         pending=1, skipped=3,
                         skipped_by_scan=(Skipped("young.wav", "changed 3s ago, younger than min_age=60s"),
                                          Skipped(".hidden.wav", "hidden file"),
                                          Skipped("sub/", "cannot list folder: Permission denied", recording=False),
                                          Skipped("old.wav", "temporary name (still being written?)")))
    line = counts_line(summary)
    assert line == ("7 recordings found: 2 transcribed, 1 failed, 1 left for the next run, "
                    "3 skipped (2 not ready yet, 1 left out)")
    numbers = [int(n) for n in re.findall(r"(\d+) (?:transcribed|failed|left for|skipped)", re.sub(r"\(.*?\)", "", line))]
    assert sum(numbers) == summary.found
    assert counts_line(RunSummary(tmp_path, tmp_path, tmp_path)) == f"no recordings found in {tmp_path}"
    assert [duration(s) for s in (4.25, 187, 3723)] == ["4.2 s", "3:07", "1:02:03"]


def test_progress_display_counts_finished_files_and_leaves_nothing_behind() -> None:
    console, stream = terminal(columns=100)
    now = [0.0]
    progress = RunProgress(console, clock=lambda: now[0], tick=3600)
    progress("start", total=2)
    now[0] = 75.0
    progress("file", outcome=FileOutcome("b.wav", Outcome.FAILED, "empty file"))
    assert progress.line().startswith("[############------------] 1/2  1:15  failed b.wav  ")
    assert progress.line().endswith("\x1b[31m1 failed\x1b[0m")
    progress("file", outcome=FileOutcome("a.wav", Outcome.DONE))
    progress("end")
    screen = Screen()
    screen.feed(stream.getvalue())
    assert screen.lines == [""]


def test_plan_counts_add_up_to_what_was_found(tmp_path: Path) -> None:
    from asrbatch.plan import Action, Decision
    from asrbatch.scan import Recording, Skipped

    def decision(key: str, action: Action, reason: str, failure: str | None = None) -> Decision:
        return Decision(Recording(tmp_path / key, key, 1, 1), action, reason, failure=failure)

    summary = RunSummary(
        tmp_path / "in", tmp_path / "out", tmp_path / "state", found=4, failed=1, skipped=2, pending=1,
        plan=(decision("a.wav", Action.SEND, "new"), decision("b.wav", Action.SEND, "new", "empty file (0 bytes)"),
              decision("c.wav", Action.SKIP, "done, unchanged")),
        skipped_by_scan=(Skipped("d.wav", "changed 1s ago, younger than min_age=60s"),
                         Skipped("notes.txt", "not a recording extension", recording=False)),
        dry_run=True,
    )
    lines = plan_lines(summary)
    assert lines[1:-1] == [
        "send    a.wav      new",
        "fail    b.wav      empty file (0 bytes)",
        "skip    c.wav      done, unchanged",
        "skip    d.wav      changed 1s ago, younger than min_age=60s",
        "ignore  notes.txt  not a recording extension",
    ]
    assert lines[-1] == "4 recordings found: the run would send 1, reuse 0, fail 1 and skip 2"
