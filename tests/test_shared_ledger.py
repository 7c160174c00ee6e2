"""Several workers, one ledger on PostgreSQL: the work is split, every recording is transcribed and written once.

A real PostgreSQL server (tests/support/postgres.py), the reference server with the simulate
engine (``--simulate-text "heard {seconds}"``: every transcript names the duration of the audio it
came from, and every recording here has its own duration), the fault proxy in front of it only
counting requests, and the workers as real processes (``python -m asrbatch run``), killed with
SIGKILL where a host would die.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from asrbatch import postgres
from asrbatch.config import load_config
from asrbatch.errors import ConfigError, OperatorError
from asrbatch.ledger import ChunkResult, Identity, SqliteLedger, open_ledger, open_location
from asrbatch.output import content_hash
from tests.support import speech
from tests.support.faultproxy import FaultProxy
from tests.support.jobs import log_events, wait_for
from tests.support.postgres import PASSWORD_ROLE, Cluster
from tests.support.servers import ServerProcess, start_server

REPO = Path(__file__).resolve().parent.parent
OLD = time.time() - 3600
RECOGNITION = r"/call/"
UPLOAD = r"/upload$"
WAV_BYTES_PER_SECOND = 16000 * 2
HOST = socket.gethostname()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # 0.2 s of work per audio second, 8 at once: enough for four workers with two requests each.
    with start_server("6.31.0", engine="simulate", log_dir=tmp_path_factory.mktemp("shared-server"),
                      extra_args=["--simulate-rtf", "0.2", "--simulate-text", "heard {seconds}",
                                  "--concurrency", "8"]) as process:
        yield process


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[FaultProxy]:
    with FaultProxy(server.url) as counting:
        yield counting


def corpus(root: Path, count: int, *, first: float = 1.0, step: float = 0.05) -> dict[str, float]:
    """*count* short tones of distinct durations, in a few folders; returns key -> seconds."""
    durations = {}
    for index in range(count):
        seconds = round(first + step * index, 2)
        key = f"day {index % 3}/rec {index:03d}.wav"
        place(root, key, speech.tone(seconds, frequency=300.0 + 10 * index))
        durations[key] = seconds
    return durations


def place(root: Path, key: str, source: Path) -> None:
    target = root / key
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    os.utime(target, (OLD, OLD))


def worker(inp: Path, out: Path, url: str, ledger: str, *args: str, env: dict[str, str] | None = None,
           command: str = "run") -> subprocess.Popen[str]:
    """``asrbatch run`` (or watch) as a host would start it, against the shared ledger."""
    return subprocess.Popen(
        [sys.executable, "-m", "asrbatch", command, str(inp), "-o", str(out), "--url", url, "--ledger", ledger,
         *args],
        cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stderr


def rows(url: str, sql: str, *parameters: Any) -> list[dict[str, Any]]:
    """The rows of *sql* in the ledger database (none while the first worker has not created its tables)."""
    with psycopg.connect(url, autocommit=True) as connection:
        try:
            cursor = connection.execute(sql, parameters or None)  # type: ignore[arg-type]
        except psycopg.errors.UndefinedTable:
            return []
        names = [column.name for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def samples(path: Path) -> dict[tuple[str, str, str], float]:
    """The textfile's samples by (name, label other than output_dir, its value), as Prometheus parses them."""
    found: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "output_dir"}
            (label, value), = labels.items() if labels else [("", "")]
            found[(sample.name, label, value)] = sample.value
    return found


def heard(text: str) -> list[float]:
    """The durations a transcript names (one per chunk)."""
    found = re.findall(r"heard (\d+\.\d\d)", text)
    assert found and re.fullmatch(r"(heard \d+\.\d\d ?)+\n", text), repr(text)
    return [float(value) for value in found]


def assert_complete(url: str, out: Path, durations: dict[str, float]) -> None:
    """Every recording done once, its transcript its own, the ledger agreeing with the files."""
    transcripts = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.txt") if ".asrbatch" not in p.parts)
    assert transcripts == sorted(Path(key).with_suffix(".txt").as_posix() for key in durations)
    recordings = {row["key"]: row for row in rows(url, "SELECT * FROM recordings")}
    assert set(recordings) == set(durations)
    for key, seconds in durations.items():
        target = out / Path(key).with_suffix(".txt")
        text = target.read_text(encoding="utf-8")
        if seconds <= 20:
            assert heard(text) == [seconds], (key, text)
        row = recordings[key]
        assert row["outcome"] == "done", row
        assert json.loads(row["output_hashes"]) == {target.relative_to(out).as_posix(): content_hash(text)}
        assert json.loads(row["result"])["text"] == text.strip()
    done = [event["key"] for event in rows(url, "SELECT key FROM events WHERE outcome = 'done'")]
    assert sorted(done) == sorted(durations)  # each recorded once
    assert rows(url, "SELECT * FROM claims") == []  # every claim released


# ----------------------------------------------------------------------------------------------
# The ledger's API on both backends


@pytest.fixture(params=["sqlite", "postgresql"])
def any_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        with SqliteLedger.open(tmp_path / "ledger.sqlite3") as ledger:
            yield ledger
    else:
        with open_location(request.getfixturevalue("pg_url")) as ledger:
            yield ledger


def test_both_backends_keep_the_same_records(any_ledger: Any, tmp_path: Path) -> None:
    ledger = any_ledger
    run = ledger.begin_run(tmp_path)
    ledger.record_pending(Identity("x/a.wav", 10, 20, "h1"), changed=True)
    ledger.save_chunk("x/a.wav", "h1", "plan", ChunkResult(-1, 0, 0.0, 50.0, "one", 1.0, 1))
    ledger.save_chunk("x/a.wav", "h1", "plan", ChunkResult(-1, 0, 0.0, 50.0, "one again", 1.5, 2))
    assert ledger.load_chunks("x/a.wav", "h1", "plan")[(-1, 0)].text == "one again"
    ledger.record_intent("x/a.wav", {"x/a.txt": "x/a.txt"}, {"x/a.txt": "c1"})
    assert ledger.get("x/a.wav").output_hashes == {"x/a.txt": "c1"}
    ledger.record_success(Identity("x/a.wav", 10, 20, "h1"), outcome="done", outputs={"base": "x/a"},
                          output_hashes={"x/a.txt": "c1"}, result={"source": "x/a.wav", "text": "one again"},
                          audio_seconds=50.0, server_seconds=1.5, attempts=2, run_id=run)
    for attempt in (1, 2):
        ledger.record_failure(Identity("x_y/b.wav", 1, 2, "h2"), error="bad", permanent=False, attempts=attempt,
                              audio_seconds=None, run_id=run)
    assert ledger.load_chunks("x/a.wav", "h1", "plan") == {}
    assert ledger.counts() == {"done": 1, "failed": 1}
    assert ledger.totals() == {"audio_seconds": 50.0, "server_seconds": 1.5}
    assert ledger.stats_by_key() == {"x/a.wav": (10, 20, "done"), "x_y/b.wav": (1, 2, "failed")}
    assert ledger.find_by_hash("h1").key == "x/a.wav" and ledger.find_by_hash("h1", exclude_key="x/a.wav") is None
    failure = ledger.failures()[0]
    assert (failure.key, failure.attempts, failure.failed_runs) == ("x_y/b.wav", 3, 2)
    day = ledger.daily()[0]
    assert (day["files"], day["done"], day["failed"], day["audio_seconds"], day["failures"]) == (3, 1, 2, 50.0,
                                                                                                {"bad": 2})
    ledger.finish_run(run, status="finished", exit_code=1, summary={"found": 2})
    last = ledger.last_run()
    assert (last.id, last.exit_code, last.summary, last.host) == (run, 1, {"found": 2}, HOST)
    assert ledger.begin_run(tmp_path) == run + 1
    assert ledger.retry(["x"]) == [] and ledger.retry(["x_y"]) == ["x_y/b.wav"]
    assert ledger.forget(["x"]) == ["x/a.wav"] and ledger.get("x/a.wav") is None
    assert ledger.row_counts() == {"recordings": 1, "chunks": 0, "runs": 2, "events": 3}


def test_a_claim_excludes_the_others_until_its_lease_runs_out(pg_url: str) -> None:
    with open_location(pg_url, lease=1.0) as first, open_location(pg_url, lease=1.0) as second:
        first.worker, second.worker = "host-a:1", "host-b:2"
        mine = first.claim("a.wav", run_id=None)
        assert (mine.worker, mine.taken_from) == ("host-a:1", None)
        held = second.claim("a.wav", run_id=None)
        assert held.worker == "host-a:1" and 0 < held.seconds_left <= 1.0
        assert first.renew_claims(["a.wav"], run_id=None) == {"a.wav"}
        assert [c.key for c in second.claims()] == ["a.wav"]
        # host-a stops renewing (it died): once the lease has run out, host-b takes the recording over.
        taken = wait_for(lambda: (c := second.claim("a.wav", run_id=None)).worker == "host-b:2" and c,
                         timeout=10, message="the lease to run out")
        assert taken.taken_from == "host-a:1"
        assert first.renew_claims(["a.wav"], run_id=None) == set()  # host-a learns it has lost it
        first.release_claim("a.wav")  # releasing what is no longer its own changes nothing
        assert second.claim("a.wav", run_id=None).worker == "host-b:2"
        second.release_claim("a.wav")
        assert second.claims() == [] and first.claim("a.wav", run_id=None).worker == "host-a:1"


def test_concurrent_claims_grant_every_recording_to_exactly_one_worker(pg_url: str) -> None:
    import threading

    keys = [f"rec {n:03d}.wav" for n in range(300)]
    granted: dict[str, list[str]] = {}
    ledgers = [open_location(pg_url) for _ in range(4)]
    start = threading.Barrier(len(ledgers))

    def claim_all(ledger: Any) -> None:
        start.wait()
        mine = [key for key in keys if ledger.claim(key, run_id=None).worker == ledger.worker]
        granted[ledger.worker] = mine

    try:
        for n, ledger in enumerate(ledgers):
            ledger.worker = f"host-{n}:{n}"
        threads = [threading.Thread(target=claim_all, args=(ledger,)) for ledger in ledgers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for ledger in ledgers:
            ledger.close()
    every = [key for mine in granted.values() for key in mine]
    assert sorted(every) == keys  # each key granted once, none lost
    assert len(granted) == 4


# ----------------------------------------------------------------------------------------------
# Configuration and passwords


def test_a_password_in_the_ledger_url_is_a_configuration_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("state:\n  ledger: postgresql://asr:s3cret@db/transcripts\n")
    with pytest.raises(ConfigError) as info:
        load_config(config, env={})
    assert "state.ledger: holds a password" in str(info.value) and "s3cret" not in str(info.value)
    for env in ({"ASRBATCH_STATE_LEDGER": "postgresql://db/t?password=s3cret"},
                {"ASRBATCH_STATE_LEDGER": "mysql://db/t"}):
        with pytest.raises(ConfigError) as info:
            load_config(None, env=env)
        assert "state.ledger:" in str(info.value) and "s3cret" not in str(info.value)
    with pytest.raises(ConfigError, match="state.ledger_password_env: set, but the variable LEDGER_PW is not"):
        load_config(None, env={"ASRBATCH_STATE_LEDGER": "postgresql://db/t",
                               "ASRBATCH_STATE_LEDGER_PASSWORD_ENV": "LEDGER_PW"})
    with pytest.raises(ConfigError, match="state.lease: must be >= 1"):
        load_config(None, env={"ASRBATCH_STATE_LEASE": "0.5"})
    result = subprocess.run([sys.executable, "-m", "asrbatch", "run", str(tmp_path), "--ledger",
                             "postgresql://asr:s3cret@db/transcripts"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "holds a password" in result.stderr and "s3cret" not in result.stderr


def test_the_password_comes_from_a_named_variable_or_pgpass_never_the_url(
    postgres_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "correct horse battery"
    postgres_cluster.add_password_role(secret)
    url = postgres_cluster.create_database("password", owner=PASSWORD_ROLE)
    assert url.startswith(f"postgresql://{PASSWORD_ROLE}@")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    env = {"ASRBATCH_STATE_LEDGER": url, "ASRBATCH_STATE_LEDGER_PASSWORD_ENV": "LEDGER_PW"}

    config = load_config(None, env={**env, "LEDGER_PW": secret})
    assert secret not in repr(config)
    with open_ledger(config, None) as ledger:
        assert ledger.migrations() == [name for name, _ in postgres.MIGRATIONS] and secret not in ledger.location

    wrong = load_config(None, env={**env, "LEDGER_PW": "wrong"})
    with pytest.raises(OperatorError, match="refused the login") as info:
        open_ledger(wrong, None)
    assert "wrong" not in str(info.value) and secret not in str(info.value)

    pgpass = tmp_path / "pgpass"
    port = url.split(":")[2].split("/")[0]
    pgpass.write_text(f"127.0.0.1:{port}:*:{PASSWORD_ROLE}:{secret}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    with open_ledger(load_config(None, env={"ASRBATCH_STATE_LEDGER": url}), None) as ledger:
        assert ledger.counts() == {}

    # PGPASSWORD, as a cron line or a systemd EnvironmentFile gives it to the command.
    inp = tmp_path / "in"
    inp.mkdir()
    base = {**os.environ, "PGPASSFILE": str(tmp_path / "none")}
    ok = subprocess.run([sys.executable, "-m", "asrbatch", "run", str(inp), "--ledger", url],
                        capture_output=True, text=True, cwd=REPO, env={**base, "PGPASSWORD": secret})
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run([sys.executable, "-m", "asrbatch", "status", "--ledger", url],
                             capture_output=True, text=True, cwd=REPO, env={**base, "PGPASSWORD": "nope"})
    assert refused.returncode == 2 and "refused the login" in refused.stderr and "PGPASSWORD" in refused.stderr
    assert "nope" not in refused.stderr


# ----------------------------------------------------------------------------------------------
# Workers as processes


@pytest.mark.parametrize("workers, count", [(2, 24), (4, 40)])
def test_workers_split_the_work_and_transcribe_every_recording_once(
    workers: int, count: int, proxy: FaultProxy, pg_url: str, tmp_path: Path
) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    durations = corpus(inp, count)
    textfile = tmp_path / "metrics" / "asrbatch.prom"
    env = {"ASRBATCH_MONITORING_TEXTFILE": str(textfile)}
    processes = [worker(inp, out, proxy.url, pg_url, "--workers", "2", env=env) for _ in range(workers)]
    results = [finish(process) for process in processes]
    assert [code for code, _ in results] == [0] * workers, results

    assert proxy.count("POST", RECOGNITION) == count  # nothing sent twice
    assert_complete(pg_url, out, durations)
    runs = rows(pg_url, "SELECT worker, host, summary FROM runs ORDER BY id")
    assert sorted(r["worker"] for r in runs) == sorted(f"{HOST}:{p.pid}" for p in processes)
    done = [json.loads(r["summary"])["done"] for r in runs]
    assert sum(done) == count and all(n > 0 for n in done), done  # every worker had a share

    # status, report and metrics read the shared ledger.
    shown = subprocess.run([sys.executable, "-m", "asrbatch", "status", "--ledger", pg_url],
                           capture_output=True, text=True, cwd=REPO)
    assert shown.returncode == 0, shown.stderr
    assert f"recordings: done={count}" in shown.stdout
    assert f"runs by host: {HOST} {workers} (last " in shown.stdout
    # Each worker writes the textfile after its run, under the metrics lock: the last one counts every run.
    metrics = samples(textfile)
    assert metrics[("asrbatch_files_total", "outcome", "done")] == count
    assert metrics[("asrbatch_host_runs_total", "host", HOST)] == workers
    assert metrics[("asrbatch_recordings", "outcome", "done")] == count
    assert not any(name == "asrbatch_claimed_recordings" for name, *_ in metrics)  # nothing in progress

    again = worker(inp, out, proxy.url, pg_url)
    assert finish(again) == (0, "")
    assert proxy.count("POST", RECOGNITION) == count


def long_corpus(inp: Path) -> tuple[str, dict[str, float]]:
    """One 29 s recording (first in the order: the first worker to start takes it) and six short ones.

    Cut hard every 5 s with 1 s of overlap (a tone has no pauses): seven chunks of 5 s."""
    place(inp, "a-long.wav", speech.tone(29.0, frequency=250.0))
    durations = {"a-long.wav": 29.0}
    for index in range(6):
        seconds = round(1.0 + 0.1 * index, 2)
        key = f"b-short {index}.wav"
        place(inp, key, speech.tone(seconds, frequency=500.0 + 20 * index))
        durations[key] = seconds
    return "a-long.wav", durations


CHUNKED = {"ASRBATCH_AUDIO_SPLIT_ABOVE": "20", "ASRBATCH_AUDIO_MAX_CHUNK": "5",
           "ASRBATCH_AUDIO_CODEC": "wav"}  # chunks travel as WAV: their uploads are told apart by size


def long_uploads(proxy: FaultProxy) -> list[int]:
    """Indexes in the proxy's hits of the uploads of a long recording's chunks (5 s: 160 kB)."""
    return [n for n, hit in enumerate(proxy.hits)
            if hit.method == "POST" and re.search(UPLOAD, hit.path) and hit.size > 3 * WAV_BYTES_PER_SECOND]


def test_a_worker_killed_in_the_middle_of_a_chunk_is_taken_over_after_its_lease(
    proxy: FaultProxy, pg_url: str, tmp_path: Path
) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    long_key, durations = long_corpus(inp)
    env = {**CHUNKED, "ASRBATCH_STATE_LEASE": "3"}
    first = worker(inp, out, proxy.url, pg_url, "--workers", "1", env=env)
    second = worker(inp, out, proxy.url, pg_url, "--workers", "1", env=env)
    by_worker = {f"{HOST}:{p.pid}": p for p in (first, second)}
    try:
        holder = wait_for(lambda: rows(pg_url, "SELECT worker FROM claims WHERE key = %s", long_key),
                          timeout=60, message="a worker to claim the long recording")[0]["worker"]
        victim = by_worker[holder]
        # Mid-recording and mid-chunk: two chunks saved, and the next one uploaded and being recognised.
        wait_for(lambda: len(rows(pg_url, "SELECT idx FROM chunks WHERE key = %s", long_key)) >= 2
                 and (up := long_uploads(proxy)) and len(up) >= 3
                 and any(h.method == "POST" and re.search(RECOGNITION, h.path) for h in proxy.hits[up[-1]:]),
                 timeout=60, message="the long recording's third chunk to be on the server")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        saved = len(rows(pg_url, "SELECT idx FROM chunks WHERE key = %s", long_key))
        survivor = second if victim is first else first
        code, stderr = finish(survivor)
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert code == 0, stderr
    # The survivor finished what it could and left the dead worker's recordings: their lease was live.
    log = (out / ".asrbatch" / "asrbatch.log").read_text(encoding="utf-8")
    skipped = [e for e in log_events(log, "skip") if e.get("reason") == f"claimed by {holder}"]
    assert long_key in {e["path"] for e in skipped}
    assert rows(pg_url, "SELECT outcome FROM recordings WHERE key = %s", long_key)[0]["outcome"] == "pending"

    # Once the lease has run out (by the database's clock), the next worker takes the claims over.
    wait_for(lambda: not rows(pg_url, "SELECT key FROM claims WHERE expires_at > "
                                      "EXTRACT(EPOCH FROM clock_timestamp())"),
             timeout=15, message="the dead worker's leases to run out")
    uploads_before = len(long_uploads(proxy))
    third = worker(inp, out, proxy.url, pg_url, env=env)
    code, stderr = finish(third)
    assert code == 0, stderr
    log = (out / ".asrbatch" / "asrbatch.log").read_text(encoding="utf-8")
    takeovers = [e for e in log_events(log, "takeover") if e.get("worker") == holder]
    assert long_key in {e["path"] for e in takeovers}

    assert_complete(pg_url, out, durations)
    said = heard((out / "a-long.txt").read_text(encoding="utf-8"))
    chunks = len(said)
    assert said == [5.0] * 7
    # The chunks saved before the kill were not sent again; the one on the server when it died was.
    assert len(long_uploads(proxy)) - uploads_before == chunks - saved
    assert len(long_uploads(proxy)) >= chunks + 1


def test_a_lease_renewed_during_a_long_recording_is_never_taken_over(
    proxy: FaultProxy, pg_url: str, tmp_path: Path
) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "long.wav", speech.tone(39.0, frequency=260.0))
    # Two chunks of 20 s (cut hard with 1 s of overlap): each request takes 4 s on the server, two leases.
    env = {"ASRBATCH_AUDIO_SPLIT_ABOVE": "30", "ASRBATCH_AUDIO_MAX_CHUNK": "20", "ASRBATCH_STATE_LEASE": "2",
           "ASRBATCH_AUDIO_CODEC": "wav"}
    holder = worker(inp, out, proxy.url, pg_url, env=env)
    watcher: subprocess.Popen[str] | None = None
    log_path = out / ".asrbatch" / "asrbatch.log"

    def refused() -> int:
        text = log_path.read_text(encoding="utf-8") if log_path.exists() else ""
        return sum(e.get("reason") == f"claimed by {HOST}:{holder.pid}" for e in log_events(text, "skip"))

    try:
        wait_for(lambda: rows(pg_url, "SELECT worker FROM claims WHERE key = 'long.wav'"), timeout=60,
                 message="the first worker to claim the recording")
        # A second worker keeps trying while the first one works: a pass every second or so.
        watcher = worker(inp, out, proxy.url, pg_url, "--settle", "0", "--rescan-interval", "1", env=env,
                         command="watch")
        wait_for(lambda: refused() >= 2 or "event=takeover" in log_path.read_text(encoding="utf-8"), timeout=30,
                 message="the watcher to try twice")
        assert "event=takeover" not in log_path.read_text(encoding="utf-8")
        assert holder.poll() is None  # while the first worker was still at it
        code, stderr = finish(holder)
        assert code == 0, stderr
        watcher.send_signal(signal.SIGTERM)
        code, stderr = finish(watcher, timeout=60)
        assert code == 0, stderr
    finally:
        for process in (holder, watcher):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    log = (out / ".asrbatch" / "asrbatch.log").read_text(encoding="utf-8")
    skips = [e for e in log_events(log, "skip") if e.get("reason") == f"claimed by {HOST}:{holder.pid}"]
    assert len(skips) >= 2  # the watcher tried while the first worker held it...
    assert log_events(log, "takeover") == [] and log_events(log, "claim_lost") == []  # ...and never took it
    runs = rows(pg_url, "SELECT worker, summary FROM runs ORDER BY id")
    first = json.loads(runs[0]["summary"])
    assert runs[0]["worker"] == f"{HOST}:{holder.pid}" and first["done"] == 1
    assert first["wall_seconds"] > 2 * 2  # it worked for longer than two leases
    assert all(json.loads(r["summary"]).get("done", 0) == 0 for r in runs[1:])
    assert len(long_uploads(proxy)) == 2 and proxy.count("POST", RECOGNITION) == 2
    assert heard((out / "long.txt").read_text(encoding="utf-8")) == [20.0, 20.0]
    assert len(rows(pg_url, "SELECT key FROM events WHERE outcome = 'done'")) == 1


# ----------------------------------------------------------------------------------------------
# Moving a ledger


def dump(ledger: Any) -> dict[str, list[tuple[Any, ...]]]:
    with ledger.export_tables() as tables:
        return {table: [row for batch in batches for row in batch] for table, batches in tables}


def test_copy_sqlite_to_postgresql_and_back_keeps_everything(proxy: FaultProxy, pg_url: str, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    durations = corpus(inp, 5)
    place(inp, "broken.wav", speech.tone(1.0))
    (inp / "broken.wav").write_bytes(b"not audio at all" * 20)
    os.utime(inp / "broken.wav", (OLD, OLD))
    # A job that grew up on SQLite: two runs, one failure, a long recording's chunks left by a killed run.
    first = subprocess.run([sys.executable, "-m", "asrbatch", "run", str(inp), "-o", str(out), "--url", proxy.url],
                           capture_output=True, text=True, cwd=REPO)
    assert first.returncode == 1, first.stderr
    state = out / ".asrbatch"
    with SqliteLedger.open(state / "ledger.sqlite3") as ledger:
        ledger.record_pending(Identity("later.wav", 5, 6, "h9"), changed=True)
        ledger.save_chunk("later.wav", "h9", "plan", ChunkResult(-1, 0, 0.0, 60.0, "first minute", 3.0, 1))
        before = dump(ledger)
    assert {table: len(rows_) for table, rows_ in before.items()} == {"recordings": 7, "chunks": 1, "runs": 1,
                                                                      "events": 6}

    copied = subprocess.run([sys.executable, "-m", "asrbatch", "ledger", "copy", str(state), pg_url],
                            capture_output=True, text=True, cwd=REPO)
    assert copied.returncode == 0, copied.stderr
    assert "copied recordings=7, chunks=1, runs=1, events=6" in copied.stdout and "counts checked" in copied.stdout
    with open_location(pg_url) as shared:
        assert dump(shared) == before
    refused = subprocess.run([sys.executable, "-m", "asrbatch", "ledger", "copy", str(state), pg_url],
                             capture_output=True, text=True, cwd=REPO)
    assert refused.returncode == 2 and "is not empty" in refused.stderr and "--replace" in refused.stderr

    # The site moves to PostgreSQL without redoing anything: the next run sends nothing new.
    proxy_before = proxy.count("POST", RECOGNITION)
    moved = subprocess.run([sys.executable, "-m", "asrbatch", "run", str(inp), "-o", str(out), "--url", proxy.url,
                            "--ledger", pg_url], capture_output=True, text=True, cwd=REPO)
    assert moved.returncode == 0, moved.stderr
    assert proxy.count("POST", RECOGNITION) == proxy_before
    assert_complete_subset = {r["key"]: r["outcome"] for r in rows(pg_url, "SELECT key, outcome FROM recordings")}
    assert all(assert_complete_subset[key] == "done" for key in durations)

    # And back: into a new state folder, then over the old SQLite ledger with --replace.
    back = tmp_path / "back"
    returned = subprocess.run([sys.executable, "-m", "asrbatch", "ledger", "copy", pg_url, str(back)],
                              capture_output=True, text=True, cwd=REPO)
    assert returned.returncode == 0, returned.stderr
    with open_location(pg_url) as shared, SqliteLedger.open(back / "ledger.sqlite3") as restored:
        assert dump(restored) == dump(shared)
        assert restored.begin_run(tmp_path) == max(r[0] for r in dump(shared)["runs"]) + 1
    journal = [json.loads(line) for line in (back / "transcripts.jsonl").read_text().splitlines()]
    assert sorted(record["key"] for record in journal) == sorted(durations)  # it can rebuild the copy
    replaced = subprocess.run([sys.executable, "-m", "asrbatch", "ledger", "copy", pg_url, str(state), "--replace"],
                              capture_output=True, text=True, cwd=REPO)
    assert replaced.returncode == 0, replaced.stderr
    with open_location(pg_url) as shared, SqliteLedger.open(state / "ledger.sqlite3") as old:
        assert dump(old) == dump(shared)


def test_recordings_in_progress_show_everywhere_and_stop_a_copy(pg_url: str, tmp_path: Path) -> None:
    with open_location(pg_url) as shared:
        run = shared.begin_run(tmp_path)
        shared.claim("busy.wav", run_id=run)
        worker_name = shared.worker
        shown = subprocess.run([sys.executable, "-m", "asrbatch", "status", "--ledger", pg_url],
                               capture_output=True, text=True, cwd=REPO)
        assert shown.returncode == 0, shown.stderr
        assert f"in progress: 1 recording(s), claimed by {worker_name} (1)" in shown.stdout
        assert f"runs by host: {HOST} 1 (last " in shown.stdout and " running)" in shown.stdout
        page = tmp_path / "report.html"
        made = subprocess.run([sys.executable, "-m", "asrbatch", "report", "--ledger", pg_url, "--html", str(page)],
                              capture_output=True, text=True, cwd=REPO)
        assert made.returncode == 0, made.stderr
        hosts = page.read_text(encoding="utf-8").split('<table id="hosts">')[1].split("</table>")[0]
        assert f"<td>{HOST}</td>" in hosts and hosts.rstrip().endswith('<td class="n">1</td></tr>')
        textfile = tmp_path / "asrbatch.prom"
        from asrbatch import metrics

        metrics.write_textfile(shared, textfile, output_dir=tmp_path)
        assert samples(textfile)[("asrbatch_claimed_recordings", "worker", worker_name)] == 1
        no_dir = subprocess.run([sys.executable, "-m", "asrbatch", "report", "--ledger", pg_url],
                                capture_output=True, text=True, cwd=REPO)
        assert no_dir.returncode == 2 and "--html FILE" in no_dir.stderr

        result = subprocess.run([sys.executable, "-m", "asrbatch", "ledger", "copy", pg_url, str(tmp_path / "x")],
                                capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 2 and "in use: 1 recording(s) claimed by" in result.stderr
    assert not (tmp_path / "x" / "ledger.sqlite3").exists()
