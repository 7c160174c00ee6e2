"""A run in words for people: the progress display, the end-of-run summary, the dry-run plan, watch's lines.

Everything here reads what the runner already hands out (the progress listener's ``start`` /
``file`` / ``end`` events and the :class:`~asrbatch.outcomes.RunSummary`) and prints through a
:class:`~asrbatch.console.Console`; the log file keeps its ``key=value`` lines.

The counts a summary prints always add up: ``found = done + empty + reused + failed + pending +
skipped``, and the skipped ones are broken down by why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from asrbatch.console import Console, cells
from asrbatch.log import printable
from asrbatch.outcomes import FileOutcome, Outcome, RunSummary, StopReason

FAILED_SHOWN = 20
"""Failed recordings listed by name in a terminal's summary (the rest: ``asrbatch status``)."""
NAMES_SHOWN = 5
BAR_WIDTH = 24
TICK_SECONDS = 1.0

NOT_READY = ("changed ", "still ", "temporary name", "disappeared")
"""Scan reasons that mean "not ready yet": a later run picks the file up."""
SKIP_GROUPS = ("already done", "failed earlier", "not ready yet", "left out", "nothing to do")


def duration(seconds: float) -> str:
    """``42.0 s``, ``3:07``, ``1:02:03``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# ------------------------------------------------------------------------------------------------
# The progress display


class RunProgress:
    """The run's progress listener: one status line on a terminal, redrawn as files finish.

    ``[#########-----------] 3/6  0:12  done greeting.wav  1 failed``; the elapsed time moves
    every second even while a long recording is on the server.  Nothing at all when the
    console is not a terminal.
    """

    def __init__(self, console: Console, *, clock: Callable[[], float] = time.monotonic,
                 tick: float = TICK_SECONDS) -> None:
        self.console = console
        self.clock = clock
        self.tick = tick
        self.total = 0
        self.finished = 0
        self.failed = 0
        self.last: FileOutcome | None = None
        self.started = clock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __call__(self, event: str, *, total: int = 0, outcome: FileOutcome | None = None) -> None:
        if not self.console.interactive:
            return
        if event == "start":
            with self._lock:
                self.total, self.finished, self.failed, self.last = total, 0, 0, None
                self.started = self.clock()
            if total:
                self._draw()
                self._start_ticker()
        elif event == "file" and outcome is not None:
            with self._lock:
                if outcome.outcome != Outcome.PENDING:
                    self.finished += 1
                    self.last = outcome
                if outcome.outcome == Outcome.FAILED:
                    self.failed += 1
            self._draw()
        elif event == "end":
            self.close()

    def line(self) -> str:
        """The status line as it stands."""
        with self._lock:
            total, finished, failed, last = self.total, self.finished, self.failed, self.last
            elapsed = self.clock() - self.started
        filled = BAR_WIDTH * min(finished, total) // total if total else 0
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        text = f"[{bar}] {finished}/{total}  {duration(elapsed) if elapsed >= 60 else f'{elapsed:.0f} s'}"
        if last is not None:
            text += f"  {last.outcome} {printable(last.key)}"
        if failed:
            text += "  " + self.console.style(f"{failed} failed", "red")
        return text

    def _draw(self) -> None:
        if self.total:
            self.console.status(self.line())

    def _start_ticker(self) -> None:
        if self._ticker is not None:
            return
        self._stop.clear()

        def tick() -> None:
            while not self._stop.wait(self.tick):
                self._draw()

        self._ticker = threading.Thread(target=tick, name="asrbatch-progress", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        """Stop redrawing and take the status line off the screen."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
            self._ticker = None
        self.console.clear()


# ------------------------------------------------------------------------------------------------
# The end-of-run summary


def skipped_breakdown(summary: RunSummary) -> dict[str, int]:
    """Why the skipped recordings were skipped: ``{"already done": 118, "not ready yet": 2, ...}``.

    The counts add up to ``summary.skipped`` (the scan's skipped recordings and the plan's skips).
    """
    groups: dict[str, int] = {}

    def add(group: str) -> None:
        groups[group] = groups.get(group, 0) + 1

    for decision in summary.plan:
        if decision.action != "skip":
            continue
        reason = decision.reason
        if reason.startswith("done"):
            add("already done")
        elif reason.startswith(("failed", "gave up")):
            add("failed earlier")
        else:
            add("nothing to do")
    for skipped in summary.skipped_by_scan:
        if skipped.recording:
            add("not ready yet" if skipped.reason.startswith(NOT_READY) else "left out")
    return {group: groups[group] for group in SKIP_GROUPS if group in groups}


def counts_line(summary: RunSummary) -> str:
    """``6 recordings found: 2 transcribed, 3 failed, 1 skipped (not ready yet)``."""
    if not summary.found:
        return f"no recordings found in {summary.input_dir}"
    parts = []
    for count, words in (
        (summary.done, "transcribed"),
        (summary.empty, "silent (empty transcript)"),
        (summary.reused, "reused (same content as a finished one)"),
        (summary.failed, "failed"),
        (summary.pending, "left for the next run"),
        (summary.skipped, "skipped"),
    ):
        if count:
            parts.append(f"{count} {words}")
    why = skipped_breakdown(summary)
    if parts and summary.skipped and sum(why.values()) == summary.skipped:
        if len(why) == 1:
            parts[-1] += f" ({next(iter(why))})"
        else:
            parts[-1] += " (" + ", ".join(f"{n} {group}" for group, n in why.items()) + ")"
    return f"{_plural(summary.found, 'recording')} found: " + ", ".join(parts)


def stop_line(summary: RunSummary) -> str | None:
    """Why the run stopped early, when it did."""
    left = _plural(summary.pending, "recording")
    reason = summary.stopped
    if reason is None:
        return None
    if reason == StopReason.SERVER_UNAVAILABLE:
        return f"stopped: server unavailable: {summary.stop_message}; {left} left for the next run, none blamed"
    if reason == StopReason.OPERATOR_ERROR:
        return f"stopped: {summary.stop_message}; {left} left for the next run"
    if reason == StopReason.MAX_FILES:
        return f"stopped at the --max-files bound (run.max_files); {left} left for the next run"
    if reason == StopReason.MAX_RUNTIME:
        return f"stopped at the --max-runtime bound (run.max_runtime); {left} left for the next run"
    if reason == StopReason.INTERRUPTED:
        return f"interrupted: the recordings in flight were finished; {left} left for the next run"
    return f"stopped: {summary.stop_message or reason}"


def next_steps(summary: RunSummary, *, server: str | None = None) -> list[str]:
    """What to do next, if anything: one short line per point."""
    steps: list[str] = []
    output = summary.output_dir
    if summary.stopped == StopReason.SERVER_UNAVAILABLE:
        steps.append(f"check the server: asrbatch ping{f' --url {server}' if server else ''}; "
                     "then run again (nothing was lost)")
    elif summary.stopped == StopReason.OPERATOR_ERROR:
        steps.append("fix what the message says, then run again (nothing was lost)")
    if summary.failed:
        steps.append("fix or replace the failed files: the next run sends a changed file again; when the "
                     f"cause was elsewhere, asrbatch retry -o {output} puts them back in line")
    if summary.stopped in (StopReason.MAX_FILES, StopReason.MAX_RUNTIME, StopReason.INTERRUPTED) and summary.pending:
        steps.append("the next run goes on with the recordings left")
    if not summary.found:
        steps.append(f"asrbatch run --dry-run {summary.input_dir} lists every file there and why it is left out")
    elif skipped_breakdown(summary).get("not ready yet") and not (summary.done or summary.failed or summary.empty):
        steps.append("recordings still being copied in (or changed a moment ago) are picked up by a later run")
    return steps


def summary_lines(summary: RunSummary, console: Console, *, detailed: bool, server: str | None = None) -> list[str]:
    """The end-of-run summary.

    *detailed* (a terminal): the counts, audio and time, where the transcripts are, why the
    run stopped, the failed recordings by name and reason, the recordings not ready yet, and
    what to do next.  Otherwise (cron mail, after the error lines of the failed files): the
    counts with the exit code, why the run stopped, and what to do next.
    """
    code = int(summary.exit_code)
    counts = counts_line(summary)
    if summary.failed:
        counts = counts.replace(f"{summary.failed} failed", console.style(f"{summary.failed} failed", "red", "bold"),
                                1)
    lines: list[str] = []
    stop = stop_line(summary)
    if not detailed:
        lines.append(f"asrbatch: {counts}; exit status {code}")
        if stop:
            lines.append(f"asrbatch: {stop}")
        lines += [f"asrbatch: next: {step}" for step in next_steps(summary, server=server)]
        return lines
    lines.append(counts[0].upper() + counts[1:] + ".")
    transcribed = summary.done + summary.empty + summary.reused
    if transcribed:
        if summary.audio_seconds and summary.wall_seconds:
            lines.append(f"{duration(summary.audio_seconds)} of audio in {duration(summary.wall_seconds)} "
                         f"({summary.speed:.1f}x real time); transcripts in {summary.output_dir}")
        else:
            lines.append(f"Transcripts in {summary.output_dir}")
    if stop:
        lines.append(stop[0].upper() + stop[1:] + ".")
    failures = summary.failures
    if failures:
        lines.append("Failed:")
        width = min(40, max(cells(printable(o.key)) for o in failures[:FAILED_SHOWN]))
        for o in failures[:FAILED_SHOWN]:
            name = printable(o.key)
            lines.append(f"  {name}{' ' * max(0, width - cells(name))}  {o.detail}")
        if len(failures) > FAILED_SHOWN:
            lines.append(f"  ... and {len(failures) - FAILED_SHOWN} more (asrbatch status -o {summary.output_dir})")
    waiting = [s for s in summary.skipped_by_scan if s.recording and s.reason.startswith(NOT_READY)]
    if waiting:
        names = ", ".join(printable(s.key) for s in waiting[:NAMES_SHOWN])
        more = f" and {len(waiting) - NAMES_SHOWN} more" if len(waiting) > NAMES_SHOWN else ""
        lines.append(f"Not ready yet (still being written or changed a moment ago): {names}{more}.")
    lines += [f"Next: {step}." for step in next_steps(summary, server=server)]
    return lines


# ------------------------------------------------------------------------------------------------
# --dry-run


def plan_lines(summary: RunSummary) -> list[str]:
    """What a run would do with each file, sorted by path, then the counts (which add up to ``found``).

    ``send`` / ``reuse`` / ``rewrite``: what the run would do; ``fail``: a local check (decoding,
    a transcript in the way) that the run would fail it on without asking the server; ``skip``:
    counted as found but left alone; ``ignore``: not a recording at all.
    """
    rows: list[tuple[str, str, str]] = []
    for decision in summary.plan:
        verb = "fail" if decision.failure else str(decision.action)
        rows.append((decision.recording.key, verb, decision.failure or decision.reason))
    for skipped in summary.skipped_by_scan:
        rows.append((skipped.key, "skip" if skipped.recording else "ignore", skipped.reason))
    rows.sort(key=lambda row: row[0])
    width = min(40, max((cells(printable(key)) for key, _, _ in rows), default=0))
    lines = [f"dry run: {summary.input_dir} -> {summary.output_dir}; nothing is sent and nothing changes"]
    for key, verb, reason in rows:
        name = printable(key)
        lines.append(f"{verb:7} {name}{' ' * max(0, width - cells(name))}  {reason}")
    sends = sum(d.action == "send" and not d.failure for d in summary.plan)
    reuses = sum(d.action in ("reuse", "rewrite") and not d.failure for d in summary.plan)
    lines.append(f"{_plural(summary.found, 'recording')} found: the run would send {sends}, reuse {reuses}, "
                 f"fail {summary.failed} and skip {summary.skipped}")
    return lines


# ------------------------------------------------------------------------------------------------
# watch


class WatchDisplay:
    """What ``asrbatch watch`` prints after each pass: a line per recording it finished, by name
    and time, and on a terminal a status line with the totals so far.  The failures come as error
    lines from the log, as they happen."""

    def __init__(self, console: Console, *, verbose: bool = False,
                 now: Callable[[], datetime] = datetime.now) -> None:
        self.console = console
        self.verbose = verbose
        self.now = now
        self.since = now()
        self.totals = {"done": 0, "empty": 0, "reused": 0, "failed": 0}

    def __call__(self, summary: RunSummary) -> None:
        stamp = self.now().strftime("%H:%M:%S")
        show = self.console.interactive or self.verbose
        # With -v the log's own line for each file is on the console already.
        name_files = self.console.interactive and not self.verbose
        for o in summary.outcomes:
            if o.outcome in self.totals:
                self.totals[o.outcome] += 1
            if name_files and o.outcome in (Outcome.DONE, Outcome.EMPTY, Outcome.REUSED):
                audio = f" ({duration(o.audio_seconds)} of audio)" if o.audio_seconds else ""
                self.console.print(f"{stamp} {o.outcome:7} {printable(o.key)}{audio}")
        stop = stop_line(summary)
        if stop and summary.stopped != StopReason.INTERRUPTED and (show or summary.exit_code != 0):
            self.console.print(f"{stamp} {stop}" if show else f"asrbatch: {stop}")
        if self.console.interactive:
            done = self.totals["done"] + self.totals["empty"] + self.totals["reused"]
            text = f"watching: {done} transcribed"
            if self.totals["failed"]:
                text += ", " + self.console.style(f"{self.totals['failed']} failed", "red")
            self.console.status(f"{text} since {self.since.strftime('%H:%M')}; waiting for recordings")
