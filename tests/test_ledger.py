import sqlite3

import pytest

from asrbatch.ledger import MIGRATIONS, ChunkResult, Identity, LedgerError, SqliteLedger

pytestmark = pytest.mark.unit


def success(ledger, key, sha="h1", text="hello", outcome="done", run_id=None):
    ledger.record_success(
        Identity(key, 10, 20, sha), outcome=outcome, outputs={"base": key}, output_hashes={key + ".txt": "x"},
        result={"source": key, "text": text}, audio_seconds=3.0, server_seconds=0.5, attempts=1, run_id=run_id,
    )


def test_migrations_applied_once_and_recorded(tmp_path):
    path = tmp_path / "l.sqlite3"
    with SqliteLedger.open(path) as ledger:
        assert ledger.migrations() == [name for name, _ in MIGRATIONS]
    with SqliteLedger.open(path) as ledger:
        assert ledger.migrate() == []


def test_newer_ledger_is_refused(tmp_path):
    path = tmp_path / "l.sqlite3"
    SqliteLedger.open(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO migrations VALUES ('999_future', 'x')")
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match="newer asrbatch"):
        SqliteLedger.open(path)


def test_success_failure_and_counts(tmp_path):
    with SqliteLedger.open(tmp_path / "l.sqlite3") as ledger:
        run = ledger.begin_run(tmp_path)
        success(ledger, "a.wav", run_id=run)
        success(ledger, "b.wav", sha="h2", text="", outcome="empty", run_id=run)
        ledger.record_failure(Identity("c.wav", 1, 2, "h3"), error="bad", permanent=True, attempts=0,
                              audio_seconds=None, run_id=run)
        ledger.record_failure(Identity("c.wav", 1, 2, "h3"), error="bad", permanent=True, attempts=2,
                              audio_seconds=None, run_id=run)
        assert ledger.counts() == {"done": 1, "empty": 1, "failed": 1}
        failure = ledger.failures()[0]
        assert (failure.key, failure.attempts, failure.failed_runs, failure.permanent) == ("c.wav", 2, 2, True)
        assert ledger.stats_by_key()["a.wav"] == (10, 20, "done")
        assert ledger.find_by_hash("h1").key == "a.wav"
        assert ledger.find_by_hash("h1", exclude_key="a.wav") is None
        ledger.finish_run(run, status="finished", exit_code=1, summary={"found": 3})
        assert ledger.last_run().summary == {"found": 3}
        day = ledger.daily()[0]
        assert (day["done"], day["empty"], day["failed"]) == (1, 1, 2)
        assert day["failures"] == {"bad": 2}


def test_retry_and_forget_with_folder_prefix(tmp_path):
    with SqliteLedger.open(tmp_path / "l.sqlite3") as ledger:
        for key in ("x/1.wav", "x/2.wav", "x_y/3.wav"):
            ledger.record_failure(Identity(key, 1, 1, None), error="e", permanent=False, attempts=1,
                                  audio_seconds=None, run_id=None)
        assert ledger.retry(["x"]) == ["x/1.wav", "x/2.wav"]
        assert ledger.get("x/1.wav").outcome == "pending"
        assert ledger.get("x/1.wav").failed_runs == 0
        assert ledger.retry() == ["x_y/3.wav"]
        assert ledger.forget(["x_y"]) == ["x_y/3.wav"]
        assert ledger.get("x_y/3.wav") is None


def test_chunks_saved_and_cleared_on_success(tmp_path):
    with SqliteLedger.open(tmp_path / "l.sqlite3") as ledger:
        ledger.record_pending(Identity("a.wav", 1, 1, "h"), changed=True)
        ledger.save_chunk("a.wav", "h", "plan", ChunkResult(-1, 0, 0.0, 50.0, "one", 1.0, 1))
        assert list(ledger.load_chunks("a.wav", "h", "plan")) == [(-1, 0)]
        assert ledger.load_chunks("a.wav", "h", "other-plan") == {}
        success(ledger, "a.wav", sha="h")
        assert ledger.load_chunks("a.wav", "h", "plan") == {}


def test_interrupted_runs_are_marked(tmp_path):
    with SqliteLedger.open(tmp_path / "l.sqlite3") as ledger:
        first = ledger.begin_run(tmp_path)
        ledger.begin_run(tmp_path)
        assert {r.id: r.status for r in ledger.runs()}[first] == "interrupted"
