"""The plan of a run: what `decide` makes of each scanned recording, against a real ledger (no server)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from asrbatch.config import InputConfig
from asrbatch.ledger import Identity, Ledger, SqliteLedger
from asrbatch.plan import Action, decide
from asrbatch.scan import scan_directory

pytestmark = pytest.mark.unit

OLD = time.time() - 3600


def put(root: Path, key: str, data: bytes) -> Path:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (OLD, OLD))
    return path


def plan(root: Path, ledger: Ledger | None, out: Path, *, force: bool = False, max_runs: int = 3,
         hashed: list[str] | None = None) -> dict[str, tuple[str, str]]:
    def hasher(path: Path) -> str:
        if hashed is not None:
            hashed.append(path.name)
        return hashlib.sha256(path.read_bytes()).hexdigest()

    scan = scan_directory(root, InputConfig(min_age=0))
    decisions = decide(scan, ledger, force=force, max_runs=max_runs, output_dir=out, hasher=hasher)
    return {d.recording.key: (str(d.action), d.reason) for d in decisions}


def finish(ledger: Ledger, root: Path, out: Path, key: str, *, result: bool = True) -> None:
    path = root / key
    st = path.stat()
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    rel = Path(key).with_suffix(".txt").as_posix()
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    (out / rel).write_text("text\n")
    ledger.record_success(Identity(key, st.st_size, st.st_mtime_ns, sha), outcome="done", outputs={"base": key},
                          output_hashes={rel: "h"}, result={"source": key, "text": "text"} if result else None,
                          audio_seconds=1.0, server_seconds=0.1, attempts=1, run_id=None)


def test_new_recordings_are_sent_and_same_content_reuses(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    put(root, "a.wav", b"one")
    with SqliteLedger(tmp_path / "l.sqlite3") as ledger:
        assert plan(root, ledger, out) == {"a.wav": ("send", "new")}
        finish(ledger, root, out, "a.wav")
        put(root, "copy of a.wav", b"one")
        decided = plan(root, ledger, out)
        assert decided["a.wav"] == ("skip", "done, unchanged")
        assert decided["copy of a.wav"] == ("reuse", "same content as a.wav, transcript reused")


def test_unchanged_finished_recordings_are_not_even_hashed(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    put(root, "a.wav", b"one")
    with SqliteLedger(tmp_path / "l.sqlite3") as ledger:
        finish(ledger, root, out, "a.wav")
        hashed: list[str] = []
        assert plan(root, ledger, out, hashed=hashed) == {"a.wav": ("skip", "done, unchanged")}
        assert hashed == []


def test_a_touched_recording_is_hashed_once_then_its_new_stat_is_remembered(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    path = put(root, "a.wav", b"one")
    with SqliteLedger(tmp_path / "l.sqlite3") as ledger:
        finish(ledger, root, out, "a.wav")
        os.utime(path, (OLD + 60, OLD + 60))
        scan = scan_directory(root, InputConfig(min_age=0))
        decision, = decide(scan, ledger, force=False, max_runs=3, output_dir=out)
        assert (decision.action, decision.touched) == (Action.SKIP, True)
        ledger.update_stat(decision.identity)  # what the runner does with a touched decision
        hashed: list[str] = []
        assert plan(root, ledger, out, hashed=hashed) == {"a.wav": ("skip", "done, unchanged")}
        assert hashed == []


def test_changed_content_is_sent_again(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    put(root, "a.wav", b"one")
    with SqliteLedger(tmp_path / "l.sqlite3") as ledger:
        finish(ledger, root, out, "a.wav")
        put(root, "a.wav", b"two!")
        assert plan(root, ledger, out)["a.wav"] == ("send", "content changed since last run")


def test_missing_transcripts_are_rewritten_from_the_ledger_or_sent_when_it_has_no_text(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    put(root, "kept.wav", b"one")
    put(root, "rebuilt.wav", b"two")
    with SqliteLedger(tmp_path / "l.sqlite3") as ledger:
        finish(ledger, root, out, "kept.wav")
        finish(ledger, root, out, "rebuilt.wav", result=False)  # a record rebuilt from the journal
        for txt in out.glob("*.txt"):
            txt.unlink()
        os.utime(root / "kept.wav", (OLD + 1, OLD + 1))  # touched, so the record is looked at
        os.utime(root / "rebuilt.wav", (OLD + 1, OLD + 1))
        decided = plan(root, ledger, out)
        assert decided["kept.wav"][0] == "rewrite"
        assert decided["rebuilt.wav"] == ("send", "transcript missing and not kept in the ledger")


def test_failures_are_retried_up_to_max_runs_unless_permanent(tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    for key in ("flaky.wav", "broken.wav"):
        put(root, key, key.encode())
    with SqliteLedger(tmp_path / "l.sqlite3") as ledger:
        for key, permanent in (("flaky.wav", False), ("broken.wav", True)):
            st = (root / key).stat()
            identity = Identity(key, st.st_size, st.st_mtime_ns, hashlib.sha256(key.encode()).hexdigest())
            ledger.record_failure(identity, error="why", permanent=permanent, attempts=1, audio_seconds=None,
                                  run_id=None)
        decided = plan(root, ledger, out, max_runs=2)
        assert decided["flaky.wav"] == ("send", "retry 2/2 after: why")
        assert decided["broken.wav"][0] == "skip" and "asrbatch retry" in decided["broken.wav"][1]
        ledger.record_failure(Identity("flaky.wav", *_stat(root / "flaky.wav"), hashlib.sha256(b"flaky.wav").hexdigest()),
                              error="why", permanent=False, attempts=1, audio_seconds=None, run_id=None)
        assert plan(root, ledger, out, max_runs=2)["flaky.wav"][0] == "skip"
        assert plan(root, ledger, out, max_runs=2, force=True)["flaky.wav"] == ("send", "--force")


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def test_without_a_ledger_everything_is_new(tmp_path: Path) -> None:
    root = tmp_path / "in"
    put(root, "a.wav", b"one")
    assert plan(root, None, tmp_path / "out") == {"a.wav": ("send", "new")}
