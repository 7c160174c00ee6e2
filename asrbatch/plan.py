"""The plan of a run: for every scanned recording, send it, reuse a transcript, rewrite one, or skip it.

:func:`decide` is pure apart from hashing (and reading the ledger): the cheap stat
comparison comes first, and a file is hashed only when it is new or its size or mtime
moved.  The ledger itself is not changed here; the runner applies what the plan says
(e.g. :attr:`Decision.touched` stats are stored so the next run does not hash again).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asrbatch.ledger import FAILED, FINISHED_OUTCOMES, Entry, Identity, Ledger, file_sha256
from asrbatch.outcomes import StrEnum
from asrbatch.scan import Recording, ScanResult


class Action(StrEnum):
    SEND = "send"
    """Transcribe it (new, changed, pending or worth another try)."""
    REUSE = "reuse"
    """Same content as a finished recording: copy its transcript, no request."""
    REWRITE = "rewrite"
    """Finished, but its transcript files are gone: write them again from the ledger."""
    SKIP = "skip"


@dataclass(frozen=True)
class Decision:
    recording: Recording
    action: Action
    reason: str
    new: bool = False
    """Not in the ledger before, or its content changed."""
    changed: bool = False
    sha256: str | None = None
    entry: Entry | None = None
    source: Entry | None = None
    """For REUSE: the finished recording with the same content."""
    touched: bool = False
    """Same content under a new size or mtime: the ledger should learn the new stat."""
    failure: str | None = None
    """``--dry-run`` only: why the run's local checks would fail this recording."""

    @property
    def identity(self) -> Identity:
        r = self.recording
        return Identity(r.key, r.size, r.mtime_ns, self.sha256)


def decide(
    scan: ScanResult,
    ledger: Ledger | None,
    *,
    force: bool,
    max_runs: int,
    output_dir: Path,
    hasher: Callable[[Path], str] = file_sha256,
) -> list[Decision]:
    """Decide for every scanned recording whether to send, reuse, rewrite or skip it."""
    stats = ledger.stats_by_key() if ledger is not None else {}
    entries: dict[str, Entry] = {}
    # Only rows that are not plainly "finished and unchanged" need their full record.
    interesting = [
        r.key
        for r in scan.recordings
        if r.key in stats
        and (force or stats[r.key][2] not in FINISHED_OUTCOMES or stats[r.key][:2] != (r.size, r.mtime_ns))
    ]
    if ledger is not None and interesting:
        entries = ledger.entries(interesting)
    decisions: list[Decision] = []
    for recording in scan.recordings:
        known = stats.get(recording.key)
        if known is None:
            decisions.append(_decide_new(recording, hasher(recording.path), ledger, force=force))
            continue
        size, mtime_ns, outcome = known
        same_stat = (size, mtime_ns) == (recording.size, recording.mtime_ns)
        if same_stat and outcome in FINISHED_OUTCOMES and not force:
            decisions.append(Decision(recording, Action.SKIP, "done, unchanged"))
            continue
        entry = entries.get(recording.key) or (ledger.get(recording.key) if ledger else None)
        assert entry is not None
        decisions.append(decide_one(recording, entry, ledger, force=force, max_runs=max_runs,
                                    output_dir=output_dir, hasher=hasher))
    return decisions


def decide_one(
    recording: Recording,
    entry: Entry | None,
    ledger: Ledger | None,
    *,
    force: bool,
    max_runs: int,
    output_dir: Path,
    hasher: Callable[[Path], str] = file_sha256,
) -> Decision:
    """:func:`decide` for one recording whose ledger *entry* (None: not in the ledger) is known."""
    if entry is None:
        return _decide_new(recording, hasher(recording.path), ledger, force=force)
    same_stat = (entry.size, entry.mtime_ns) == (recording.size, recording.mtime_ns)
    if same_stat and entry.finished and not force:
        return Decision(recording, Action.SKIP, "done, unchanged", entry=entry)
    return _decide_known(recording, entry, same_stat, ledger, hasher, force=force, max_runs=max_runs,
                         output_dir=output_dir)


def _decide_known(
    recording: Recording,
    entry: Entry,
    same_stat: bool,
    ledger: Ledger | None,
    hasher: Callable[[Path], str],
    *,
    force: bool,
    max_runs: int,
    output_dir: Path,
) -> Decision:
    sha = entry.sha256 if same_stat and entry.sha256 else hasher(recording.path)
    if sha != entry.sha256:
        decision = _decide_new(recording, sha, ledger, force=force)
        return dataclasses.replace(decision, new=True, changed=True, entry=entry,
                                   reason="content changed since last run")
    touched = not same_stat
    if force:
        return Decision(recording, Action.SEND, "--force", sha256=sha, entry=entry, touched=touched)
    if entry.finished:
        missing = [rel for rel in entry.output_hashes if not (output_dir / rel).exists()]
        if missing and entry.result is not None:
            return Decision(recording, Action.REWRITE, "transcript missing, rewritten from the ledger",
                            sha256=sha, entry=entry, touched=touched)
        if missing:
            return Decision(recording, Action.SEND, "transcript missing and not kept in the ledger",
                            sha256=sha, entry=entry, touched=touched)
        return Decision(recording, Action.SKIP, "done, unchanged (touched)" if touched else "done, unchanged",
                        sha256=sha, entry=entry, touched=touched)
    if entry.outcome == FAILED and entry.permanent:
        return Decision(recording, Action.SKIP,
                        f"failed earlier, waits for a change to the file or asrbatch retry: {entry.error}",
                        sha256=sha, entry=entry, touched=touched)
    if entry.outcome == FAILED and entry.failed_runs >= max_runs:
        return Decision(recording, Action.SKIP,
                        f"gave up after {entry.failed_runs} runs, waits for asrbatch retry: {entry.error}",
                        sha256=sha, entry=entry, touched=touched)
    if entry.outcome == FAILED:
        return Decision(recording, Action.SEND, f"retry {entry.failed_runs + 1}/{max_runs} after: {entry.error}",
                        sha256=sha, entry=entry, touched=touched)
    return Decision(recording, Action.SEND, "pending from an earlier run", sha256=sha, entry=entry,
                    touched=touched)


def _decide_new(recording: Recording, sha: str, ledger: Ledger | None, *, force: bool) -> Decision:
    if not force and ledger is not None:
        source = ledger.find_by_hash(sha, exclude_key=recording.key)
        if source is not None:
            return Decision(recording, Action.REUSE, f"same content as {source.key}, transcript reused",
                            new=True, sha256=sha, source=source)
    return Decision(recording, Action.SEND, "new", new=True, sha256=sha)
