"""The processed-ledger: the state of every recording, chunk, run and claim.

One row per recording, keyed by its path relative to the input root (an
:class:`Identity`: key, size, mtime and content hash).  Success is recorded only
after the transcript files are in place; before they are written, the expected
output hashes are stored so that a crash between the rename and the record is
recognised by the next run as our own file.

Two backends satisfy the :class:`Ledger` protocol, with the same tables and the same
queries (:class:`SqlLedger`), each with its own ordered migrations:

- :class:`SqliteLedger` (``state.ledger: sqlite``, the default): a file in the state
  folder, used by one process at a time (the run lock).  Beside it a journal
  (``transcripts.jsonl``, one JSON line per finished recording, appended and fsynced after
  each success) survives a damaged database: a new ledger created where a journal exists
  is rebuilt from it, so recordings already transcribed are not sent again.
- ``asrbatch.postgres.PostgresLedger`` (``state.ledger: postgresql://...``): one database
  shared by several workers on several hosts.  Workers split the work through *claims*
  with leases (:meth:`SqlLedger.claim`), timed by the database's clock.

:func:`open_ledger` is the one place that chooses the backend from the config.

Every database failure becomes an operator's error: a file that is not a database
(:class:`~asrbatch.errors.LedgerDamagedError`, never overwritten), a full disk, a
lock held too long, a read-only folder, a database server out of reach.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from asrbatch.config import LEDGER_SCHEMES, Config, ledger_url_problem, redact_url
from asrbatch.errors import AsrbatchError, ConfigError, LedgerDamagedError, OperatorError
from asrbatch.log import kv
from asrbatch.outcomes import Outcome
from asrbatch.output import Segment

if TYPE_CHECKING:
    from asrbatch.paths import JobPaths

log = logging.getLogger(__name__)

DONE = Outcome.DONE.value
EMPTY = Outcome.EMPTY.value
FAILED = Outcome.FAILED.value
PENDING = Outcome.PENDING.value
FINISHED_OUTCOMES = (DONE, EMPTY)
JOURNAL_SUFFIX = "transcripts.jsonl"
SQLITE = "sqlite"
"""``state.ledger`` for the file in the state folder."""

TABLE_COLUMNS: Mapping[str, tuple[str, ...]] = {
    # The tables a ledger copy carries, with their columns (the same in every backend).  Claims are
    # a running worker's and are not copied; migrations belong to each database.
    "recordings": ("key", "size", "mtime_ns", "sha256", "outcome", "permanent", "attempts", "failed_runs", "error",
                   "outputs", "output_hashes", "result", "audio_seconds", "server_seconds", "first_seen",
                   "updated_at", "done_at", "last_run"),
    "chunks": ("key", "sha256", "plan", "channel", "idx", "start", '"end"', "text", "server_seconds", "attempts",
               "segments"),
    "runs": ("id", "started_at", "finished_at", "status", "exit_code", "input_dir", "pid", "host", "summary",
             "worker", "heartbeat"),
    "events": ("id", "run_id", "at", "key", "outcome", "error", "audio_seconds", "server_seconds", "attempts"),
}
TABLE_ORDER: Mapping[str, str] = {"recordings": "key", "chunks": "key, sha256, plan, channel, idx", "runs": "id",
                                  "events": "id"}


@dataclass(frozen=True)
class Identity:
    """Which recording, and which content of it: what every record is made for."""

    key: str
    """Path relative to the input root, ``/``-separated."""
    size: int
    mtime_ns: int
    sha256: str | None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def worker_name() -> str:
    """This process as a worker: ``<host>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Entry:
    """What the ledger knows about one recording."""

    key: str
    size: int
    mtime_ns: int
    sha256: str | None
    outcome: str
    permanent: bool
    attempts: int
    failed_runs: int
    error: str | None
    outputs: dict[str, str]
    """Format -> output path relative to the output folder."""
    output_hashes: dict[str, str]
    """Output path -> sha256 of the content written (or about to be written)."""
    result: dict[str, Any] | None
    audio_seconds: float | None
    server_seconds: float | None
    updated_at: str
    done_at: str | None

    @property
    def finished(self) -> bool:
        return self.outcome in FINISHED_OUTCOMES


@dataclass(frozen=True)
class RunRecord:
    id: int
    started_at: str
    finished_at: str | None
    status: str
    exit_code: int | None
    input_dir: str
    summary: dict[str, Any] = field(default_factory=dict)
    host: str | None = None
    worker: str | None = None


@dataclass(frozen=True)
class ChunkResult:
    """What the server made of one chunk, kept until the recording is finished."""

    channel: int
    index: int
    start: float
    """Where the chunk's speech begins, in seconds from the start of the recording."""
    end: float
    text: str
    server_seconds: float
    attempts: int
    segments: tuple[Segment, ...] = ()
    """Timings the server returned, already placed in the recording (seconds from its start)."""


@dataclass(frozen=True)
class Claim:
    """Who holds a recording for now, and for how much longer (by the ledger's clock)."""

    key: str
    worker: str
    seconds_left: float
    taken_from: str | None = None
    """The worker whose expired claim this one replaced (it died, or stalled past its lease)."""


class Ledger(Protocol):
    """What the run, the reports and the operator's commands need of a ledger (every backend)."""

    location: str
    """Where it is, for people: a path, or a URL without a password."""
    shared: bool
    """Several workers may use it at once (claims split the work); False: one run at a time."""
    worker: str
    lease: float

    def close(self) -> None: ...
    def __enter__(self) -> Ledger: ...
    def __exit__(self, *exc: object) -> None: ...
    def migrate(self) -> list[str]: ...
    def migrations(self) -> list[str]: ...
    def get(self, key: str) -> Entry | None: ...
    def stats_by_key(self) -> dict[str, tuple[int, int, str]]: ...
    def entries(self, keys: Iterable[str] | None = None) -> dict[str, Entry]: ...
    def find_by_hash(self, sha256: str, *, exclude_key: str | None = None) -> Entry | None: ...
    def begin_run(self, input_dir: Path) -> int: ...
    def finish_run(self, run_id: int, *, status: str, exit_code: int, summary: dict[str, Any]) -> None: ...
    def last_run(self) -> RunRecord | None: ...
    def runs(self, limit: int | None = None) -> list[RunRecord]: ...
    def record_pending(self, identity: Identity, *, changed: bool) -> None: ...
    def record_intent(self, key: str, outputs: dict[str, str], output_hashes: dict[str, str]) -> None: ...
    def record_success(self, identity: Identity, *, outcome: str, outputs: dict[str, str],
                       output_hashes: dict[str, str], result: dict[str, Any] | None, audio_seconds: float | None,
                       server_seconds: float | None, attempts: int, run_id: int | None) -> None: ...
    def record_failure(self, identity: Identity, *, error: str, permanent: bool, attempts: int,
                       audio_seconds: float | None, run_id: int | None) -> None: ...
    def update_stat(self, identity: Identity) -> None: ...
    def save_chunk(self, key: str, sha256: str, plan: str, chunk: ChunkResult) -> None: ...
    def load_chunks(self, key: str, sha256: str, plan: str) -> dict[tuple[int, int], ChunkResult]: ...
    def claim(self, key: str, *, run_id: int | None) -> Claim: ...
    def renew_claims(self, keys: Iterable[str], *, run_id: int | None) -> set[str]: ...
    def release_claim(self, key: str) -> None: ...
    def claims(self) -> list[Claim]: ...
    def retry(self, keys: Iterable[str] | None = None) -> list[str]: ...
    def forget(self, keys: Iterable[str]) -> list[str]: ...
    def counts(self) -> dict[str, int]: ...
    def failures(self) -> list[Entry]: ...
    def totals(self) -> dict[str, float]: ...
    def daily(self, days: int = 30) -> list[dict[str, Any]]: ...
    def row_counts(self) -> dict[str, int]: ...
    def export_tables(self) -> AbstractContextManager[Iterator[tuple[str, Iterator[Sequence[Sequence[Any]]]]]]: ...
    def import_tables(self, tables: Iterator[tuple[str, Iterator[Sequence[Sequence[Any]]]]], *,
                      replace: bool, expected: Mapping[str, int]) -> dict[str, int]: ...


class Session(Protocol):
    """One database connection inside a transaction (``?`` placeholders, rows by name and index)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...
    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...


class LedgerError(OperatorError):
    """The ledger cannot be used by this asrbatch (written by a newer version)."""


class LedgerMissingError(AsrbatchError):
    """A command that only reads a ledger found none."""


# ----------------------------------------------------------------------------------------------
# Choosing the backend


def is_shared(config: Config) -> bool:
    """True when ``state.ledger`` names a database several workers share."""
    return config.state.ledger != SQLITE


def open_ledger(config: Config, paths: JobPaths | None, *, create: bool = True) -> Ledger:
    """The job's ledger: the SQLite file of ``paths`` or the PostgreSQL database of ``state.ledger``
    (which needs no *paths*).

    With *create* False a ledger that does not exist yet raises :class:`LedgerMissingError`
    (commands that only read).  Raises :class:`~asrbatch.errors.OperatorError` when it
    cannot be opened, :class:`~asrbatch.errors.ConfigError` when the PostgreSQL driver is
    missing.
    """
    if is_shared(config):
        location: str | Path = config.state.ledger
    else:
        assert paths is not None, "the SQLite ledger lives in the state folder"
        location = paths.ledger
    return open_location(location, create=create, password=config.state.ledger_password, lease=config.state.lease)


def open_existing_ledger(config: Config, paths: JobPaths | None) -> Ledger | None:
    """The job's ledger if there is one yet, else None (what ``--dry-run`` and the metrics read)."""
    try:
        return open_ledger(config, paths, create=False)
    except LedgerMissingError:
        return None


def open_location(location: str | Path, *, create: bool = True, password: str | None = None,
                  lease: float = 300.0) -> Ledger:
    """The ledger at *location*: a ``postgresql://`` URL, else the path of an SQLite file."""
    if isinstance(location, str) and location.startswith(LEDGER_SCHEMES):
        try:
            from asrbatch.postgres import PostgresLedger
        except ImportError as exc:
            raise ConfigError(f"state.ledger: {redact_url(location)} needs the PostgreSQL driver ({exc})",
                              hint="install it: pip install 'asrbatch[postgres]'") from None
        return PostgresLedger.open(location, password=password, lease=lease, create=create)
    path = Path(location)
    if not create and not path.exists():
        raise LedgerMissingError(f"no ledger at {path}", hint="has `asrbatch run` been run with this output folder?")
    return SqliteLedger.open(path, lease=lease)


def copy_ledger(source: Ledger, target: Ledger, *, replace: bool = False) -> dict[str, int]:
    """Copy every recording, chunk, run and event of *source* into *target*; return the rows per table.

    Refuses (:class:`~asrbatch.errors.OperatorError`) while workers hold claims in *source*
    and when *target* already holds rows, unless *replace*.  The copy is one transaction in
    *target*, checked against the counts of *source* before it commits: a copy that does not
    add up leaves *target* as it was.
    """
    _refuse_in_use(source)
    with source.export_tables() as tables:
        expected = source.row_counts()
        return target.import_tables(tables, replace=replace, expected=expected)


def _refuse_in_use(source: Ledger) -> None:
    live = source.claims()
    if live:
        holders = ", ".join(sorted({c.worker for c in live}))
        raise OperatorError(f"{source.location} is in use: {len(live)} recording(s) claimed by {holders}",
                            hint="stop the workers (their claims are released when they finish), then copy")


@dataclass(frozen=True)
class Copied:
    source: str
    destination: str
    counts: dict[str, int]


def copy_between(source: str, destination: str, *, replace: bool = False) -> Copied:
    """``asrbatch ledger copy``: copy the ledger at *source* into *destination* (each a ``postgresql://``
    URL, an SQLite file, or a state folder holding ``ledger.sqlite3``).

    An SQLite ledger in a state folder is copied under that folder's run lock
    (:class:`~asrbatch.errors.LockedError` while a run holds it).  Raises
    :class:`~asrbatch.errors.ConfigError` for a URL with a password or a copy onto itself,
    :class:`LedgerMissingError` when *source* does not exist, and what :func:`copy_ledger` raises.
    """
    from asrbatch.lock import RunLock
    from asrbatch.paths import LEDGER_NAME

    def resolve(where: str) -> str | Path:
        if where.startswith(LEDGER_SCHEMES) or "://" in where:
            problem = ledger_url_problem(where)
            if problem:
                raise ConfigError(f"{redact_url(where)}: {problem}")
            return where
        path = Path(where).expanduser().resolve()
        # A folder (or a new path without a file suffix) is a state folder holding ledger.sqlite3.
        return path / LEDGER_NAME if path.is_dir() or (not path.exists() and not path.suffix) else path

    origin, target = resolve(source), resolve(destination)
    if str(origin) == str(target):
        raise ConfigError(f"source and destination are the same ledger ({redact_url(str(origin))})")
    with ExitStack() as stack:
        if isinstance(origin, Path) and not origin.exists():
            raise LedgerMissingError(f"no ledger at {origin}", hint="give the ledger file or its state folder")
        for where in (origin, target):
            if isinstance(where, Path) and where.name == LEDGER_NAME:
                try:
                    where.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise OperatorError(f"cannot create the state folder {where.parent}: {exc.strerror or exc}",
                                        hint="check the path and its permissions") from None
                stack.enter_context(RunLock(where.parent / "lock"))
        reader = stack.enter_context(open_location(origin, create=False))
        _refuse_in_use(reader)
        writer = stack.enter_context(open_location(target))
        counts = copy_ledger(reader, writer, replace=replace)
        log.info(kv("ledger_copied", source=reader.location, destination=writer.location, **counts))
        return Copied(reader.location, writer.location, counts)


# ----------------------------------------------------------------------------------------------
# The queries every backend shares


_CLAIM = """
    INSERT INTO claims (key, worker, run_id, claimed_at, expires_at, taken_from)
    VALUES (?, ?, ?, {now}, {now} + ?, NULL)
    ON CONFLICT (key) DO UPDATE SET
        taken_from = CASE WHEN claims.worker = excluded.worker THEN claims.taken_from ELSE claims.worker END,
        worker = excluded.worker, run_id = excluded.run_id, claimed_at = excluded.claimed_at,
        expires_at = excluded.expires_at
    WHERE claims.expires_at < {now} OR claims.worker = excluded.worker
    RETURNING taken_from
"""


class SqlLedger:
    """The ledger's queries, written once for every backend.

    A backend supplies the connection (:meth:`_tx`, :meth:`_read`, :meth:`_snapshot`),
    its migrations, and :attr:`NOW`: an SQL expression for the database's clock in
    seconds since the epoch, which times the claims, so that workers on hosts whose
    clocks differ agree on when a lease runs out.
    """

    NOW = "0"
    location: str = ""
    shared: bool = False
    worker: str = ""
    lease: float = 300.0

    # -- what a backend provides --------------------------------------------------------------

    def _tx(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _snapshot(self) -> AbstractContextManager[Session]:
        """A read of several statements that sees one consistent state."""
        raise NotImplementedError

    def _stream(self, db: Any, sql: str, size: int) -> Iterator[Sequence[Any]]:
        """The rows of *sql* in batches of *size*."""
        cursor = db.execute(sql)
        while batch := cursor.fetchmany(size):
            yield batch

    def _stale_runs(self) -> tuple[str, tuple[Any, ...]]:
        """The condition (and its parameters) on ``runs`` rows left 'running' by a process gone."""
        raise NotImplementedError

    def _after_success(self, record: dict[str, Any]) -> None:
        """A recording finished (the journal of the SQLite backend)."""

    def _after_forget(self, keys: Sequence[str]) -> None:
        """Records were dropped (the journal of the SQLite backend)."""

    def _after_import(self, db: Session) -> None:
        """Rows were copied in with their ids (sequences to move on, a journal to write)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> SqlLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lookups ------------------------------------------------------------------------------

    @staticmethod
    def _entry(row: Any) -> Entry:
        return Entry(
            key=row["key"],
            size=row["size"],
            mtime_ns=row["mtime_ns"],
            sha256=row["sha256"],
            outcome=row["outcome"],
            permanent=bool(row["permanent"]),
            attempts=row["attempts"],
            failed_runs=row["failed_runs"],
            error=row["error"],
            outputs=json.loads(row["outputs"]),
            output_hashes=json.loads(row["output_hashes"]),
            result=json.loads(row["result"]) if row["result"] else None,
            audio_seconds=row["audio_seconds"],
            server_seconds=row["server_seconds"],
            updated_at=row["updated_at"],
            done_at=row["done_at"],
        )

    def get(self, key: str) -> Entry | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM recordings WHERE key = ?", (key,)).fetchone()
        return self._entry(row) if row else None

    def stats_by_key(self) -> dict[str, tuple[int, int, str]]:
        """``key -> (size, mtime_ns, outcome)`` for every recording, in one query (cheap skip)."""
        with self._read() as db:
            rows = db.execute("SELECT key, size, mtime_ns, outcome FROM recordings").fetchall()
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    def entries(self, keys: Iterable[str] | None = None) -> dict[str, Entry]:
        with self._read() as db:
            if keys is None:
                rows = db.execute("SELECT * FROM recordings ORDER BY key").fetchall()
            else:
                wanted = list(keys)
                rows = []
                for start in range(0, len(wanted), 500):
                    batch = wanted[start : start + 500]
                    marks = ",".join("?" * len(batch))
                    rows.extend(db.execute(f"SELECT * FROM recordings WHERE key IN ({marks})", batch).fetchall())
        return {row["key"]: self._entry(row) for row in rows}

    def find_by_hash(self, sha256: str, *, exclude_key: str | None = None) -> Entry | None:
        """A finished recording with this content and a stored result, if any."""
        sql = "SELECT * FROM recordings WHERE sha256 = ? AND outcome IN (?, ?) AND result IS NOT NULL"
        parameters: tuple[Any, ...] = (sha256, DONE, EMPTY)
        if exclude_key is not None:
            sql += " AND key <> ?"
            parameters += (exclude_key,)
        with self._read() as db:
            row = db.execute(sql + " ORDER BY done_at LIMIT 1", parameters).fetchone()
        return self._entry(row) if row else None

    # -- runs ---------------------------------------------------------------------------------

    def begin_run(self, input_dir: Path) -> int:
        """Start a run; runs left 'running' by a process that is gone are marked 'interrupted'."""
        stale, parameters = self._stale_runs()
        with self._tx() as db:
            db.execute(f"UPDATE runs SET status = 'interrupted' WHERE status = 'running' AND {stale}", parameters)
            row = db.execute(
                "INSERT INTO runs (started_at, status, input_dir, pid, host, worker, heartbeat)"
                f" VALUES (?, 'running', ?, ?, ?, ?, {self.NOW}) RETURNING id",
                (_now(), str(input_dir), os.getpid(), socket.gethostname(), self.worker),
            ).fetchall()
        return int(row[0][0])

    def finish_run(self, run_id: int, *, status: str, exit_code: int, summary: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, exit_code = ?, summary = ? WHERE id = ?",
                (_now(), status, exit_code, json.dumps(summary, sort_keys=True), run_id),
            )

    def last_run(self) -> RunRecord | None:
        runs = self.runs(limit=1)
        return runs[0] if runs else None

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        sql = "SELECT * FROM runs ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._read() as db:
            rows = db.execute(sql).fetchall()
        return [
            RunRecord(
                id=row["id"],
                started_at=row["started_at"],
                finished_at=row["finished_at"],
                status=row["status"],
                exit_code=row["exit_code"],
                input_dir=row["input_dir"],
                summary=json.loads(row["summary"] or "{}"),
                host=row["host"],
                worker=row["worker"],
            )
            for row in rows
        ]

    # -- recording outcomes ---------------------------------------------------------------------

    def _upsert(self, db: Session, key: str, values: dict[str, Any]) -> None:
        now = _now()
        values = {**values, "updated_at": now}
        row = {"outcome": PENDING, "size": 0, "mtime_ns": 0, **values, "key": key, "first_seen": now}
        cols = ", ".join(row)
        marks = ", ".join("?" * len(row))
        sets = ", ".join(f"{k} = excluded.{k}" for k in values)
        db.execute(f"INSERT INTO recordings ({cols}) VALUES ({marks}) ON CONFLICT (key) DO UPDATE SET {sets}",
                   tuple(row.values()))

    def _event(self, db: Session, run_id: int | None, key: str, outcome: str, **values: Any) -> None:
        db.execute(
            "INSERT INTO events (run_id, at, key, outcome, error, audio_seconds, server_seconds, attempts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                _now(),
                key,
                outcome,
                values.get("error"),
                values.get("audio_seconds"),
                values.get("server_seconds"),
                values.get("attempts"),
            ),
        )

    def record_pending(self, identity: Identity, *, changed: bool) -> None:
        """Note a recording about to be processed; a changed file starts again from zero."""
        values: dict[str, Any] = _stat_values(identity)
        if changed:
            values.update(outcome=PENDING, permanent=0, failed_runs=0, error=None, result=None)
        with self._tx() as db:
            self._upsert(db, identity.key, values)

    def record_intent(self, key: str, outputs: dict[str, str], output_hashes: dict[str, str]) -> None:
        """Store the paths and hashes of outputs about to be written (before the rename)."""
        with self._tx() as db:
            row = db.execute("SELECT output_hashes FROM recordings WHERE key = ?", (key,)).fetchone()
            known = json.loads(row[0]) if row else {}
            known.update(output_hashes)
            self._upsert(db, key, {"output_hashes": json.dumps(known, sort_keys=True)})

    def record_success(
        self,
        identity: Identity,
        *,
        outcome: str,
        outputs: dict[str, str],
        output_hashes: dict[str, str],
        result: dict[str, Any] | None,
        audio_seconds: float | None,
        server_seconds: float | None,
        attempts: int,
        run_id: int | None,
    ) -> None:
        """Record a finished recording; call only once its outputs are durably in place."""
        assert outcome in FINISHED_OUTCOMES
        done_at = _now()
        with self._tx() as db:
            row = db.execute("SELECT attempts FROM recordings WHERE key = ?", (identity.key,)).fetchone()
            total = (row[0] if row else 0) + attempts
            self._upsert(
                db,
                identity.key,
                {
                    **_stat_values(identity),
                    "outcome": outcome,
                    "permanent": 0,
                    "failed_runs": 0,
                    "error": None,
                    "attempts": total,
                    "outputs": json.dumps(outputs, sort_keys=True),
                    "output_hashes": json.dumps(output_hashes, sort_keys=True),
                    "result": json.dumps(result, ensure_ascii=False, sort_keys=True) if result is not None else None,
                    "audio_seconds": audio_seconds,
                    "server_seconds": server_seconds,
                    "done_at": done_at,
                    "last_run": run_id,
                },
            )
            db.execute("DELETE FROM chunks WHERE key = ?", (identity.key,))
            self._event(db, run_id, identity.key, outcome, audio_seconds=audio_seconds,
                        server_seconds=server_seconds, attempts=attempts)
        self._after_success({"key": identity.key, "size": identity.size, "mtime_ns": identity.mtime_ns,
                             "sha256": identity.sha256, "outcome": outcome, "outputs": outputs,
                             "output_hashes": output_hashes, "audio_seconds": audio_seconds,
                             "server_seconds": server_seconds, "done_at": done_at})

    def record_failure(
        self,
        identity: Identity,
        *,
        error: str,
        permanent: bool,
        attempts: int,
        audio_seconds: float | None,
        run_id: int | None,
    ) -> None:
        with self._tx() as db:
            row = db.execute("SELECT attempts, failed_runs FROM recordings WHERE key = ?", (identity.key,)).fetchone()
            total, runs = (row[0], row[1]) if row else (0, 0)
            self._upsert(
                db,
                identity.key,
                {
                    **_stat_values(identity),
                    "outcome": FAILED,
                    "permanent": int(permanent),
                    "error": error,
                    "attempts": total + attempts,
                    "failed_runs": runs + 1,
                    "audio_seconds": audio_seconds,
                    "last_run": run_id,
                },
            )
            self._event(db, run_id, identity.key, FAILED, error=error, audio_seconds=audio_seconds, attempts=attempts)

    def update_stat(self, identity: Identity) -> None:
        """Same content under a new size/mtime (e.g. touched): remember the new stat, so the next
        run skips the file without hashing it again."""
        with self._tx() as db:
            self._upsert(db, identity.key, _stat_values(identity))

    # -- chunks ---------------------------------------------------------------------------------

    def save_chunk(self, key: str, sha256: str, plan: str, chunk: ChunkResult) -> None:
        with self._tx() as db:
            db.execute(
                'INSERT INTO chunks (key, sha256, plan, channel, idx, start, "end", text, server_seconds, attempts,'
                " segments) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key, sha256, plan, channel, idx)"
                ' DO UPDATE SET start = excluded.start, "end" = excluded."end", text = excluded.text,'
                " server_seconds = excluded.server_seconds, attempts = excluded.attempts,"
                " segments = excluded.segments",
                (
                    key,
                    sha256,
                    plan,
                    chunk.channel,
                    chunk.index,
                    chunk.start,
                    chunk.end,
                    chunk.text,
                    chunk.server_seconds,
                    chunk.attempts,
                    json.dumps([s.to_dict() for s in chunk.segments], ensure_ascii=False),
                ),
            )

    def load_chunks(self, key: str, sha256: str, plan: str) -> dict[tuple[int, int], ChunkResult]:
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM chunks WHERE key = ? AND sha256 = ? AND plan = ?", (key, sha256, plan)
            ).fetchall()
        return {
            (row["channel"], row["idx"]): ChunkResult(
                row["channel"], row["idx"], row["start"], row["end"], row["text"], row["server_seconds"],
                row["attempts"], tuple(Segment.from_dict(s) for s in json.loads(row["segments"] or "[]")),
            )
            for row in rows
        }

    # -- claims -----------------------------------------------------------------------------------

    def claim(self, key: str, *, run_id: int | None) -> Claim:
        """Claim *key* for this worker for :attr:`lease` seconds, unless another worker's claim on it
        is still live; return the claim that holds it now (``claim.worker == self.worker``: ours).

        A claim whose lease has run out is taken over (``taken_from`` names its worker).
        """
        for _ in range(3):
            with self._tx() as db:
                taken = db.execute(_CLAIM.format(now=self.NOW), (key, self.worker, run_id, self.lease)).fetchall()
                if taken:
                    return Claim(key, self.worker, self.lease, taken[0][0])
                held = db.execute(f"SELECT worker, expires_at - {self.NOW} FROM claims WHERE key = ?",
                                  (key,)).fetchone()
            if held is not None:
                return Claim(key, held[0], float(held[1]))
            # Released between the two statements: try again.
        raise OperatorError(f"the ledger {self.location} keeps changing the claim on {key}",
                            hint="the next run tries again")

    def renew_claims(self, keys: Iterable[str], *, run_id: int | None) -> set[str]:
        """Extend this worker's claims on *keys* by a lease from now; return the keys still ours.

        Also the heartbeat of run *run_id* (a run whose heartbeat stops was interrupted).
        """
        wanted = list(keys)
        renewed: set[str] = set()
        with self._tx() as db:
            for start in range(0, len(wanted), 500):
                batch = wanted[start : start + 500]
                marks = ",".join("?" * len(batch))
                rows = db.execute(f"UPDATE claims SET expires_at = {self.NOW} + ? WHERE worker = ? AND key IN ({marks})"
                                  " RETURNING key", (self.lease, self.worker, *batch)).fetchall()
                renewed.update(row[0] for row in rows)
            if run_id is not None:
                db.execute(f"UPDATE runs SET heartbeat = {self.NOW} WHERE id = ?", (run_id,))
        return renewed

    def release_claim(self, key: str) -> None:
        """Let go of this worker's claim on *key* (its outcome is recorded)."""
        with self._tx() as db:
            db.execute("DELETE FROM claims WHERE key = ? AND worker = ?", (key, self.worker))

    def claims(self) -> list[Claim]:
        """The live claims, by worker: the recordings being worked on right now."""
        with self._read() as db:
            rows = db.execute(f"SELECT key, worker, expires_at - {self.NOW}, taken_from FROM claims"
                              f" WHERE expires_at > {self.NOW} ORDER BY worker, key").fetchall()
        return [Claim(row[0], row[1], float(row[2]), row[3]) for row in rows]

    # -- operator actions -----------------------------------------------------------------------

    def retry(self, keys: Iterable[str] | None = None) -> list[str]:
        """Put failed recordings back in line (all when *keys* is None); return the keys reset."""
        with self._tx() as db:
            if keys is None:
                rows = db.execute("SELECT key FROM recordings WHERE outcome = ?", (FAILED,)).fetchall()
            else:
                rows = []
                for key in keys:
                    rows.extend(
                        db.execute(
                            "SELECT key FROM recordings WHERE outcome = ? AND (key = ? OR key LIKE ? ESCAPE '\\')",
                            (FAILED, key, _prefix_pattern(key)),
                        ).fetchall()
                    )
            reset = sorted({row[0] for row in rows})
            for key in reset:
                db.execute(
                    "UPDATE recordings SET outcome = ?, permanent = 0, failed_runs = 0, updated_at = ?"
                    " WHERE key = ?",
                    (PENDING, _now(), key),
                )
        return reset

    def forget(self, keys: Iterable[str]) -> list[str]:
        """Drop the records of *keys* (a key may be a folder prefix); return the keys dropped."""
        dropped: set[str] = set()
        with self._tx() as db:
            for key in keys:
                rows = db.execute(
                    "SELECT key FROM recordings WHERE key = ? OR key LIKE ? ESCAPE '\\'", (key, _prefix_pattern(key))
                ).fetchall()
                dropped.update(row[0] for row in rows)
            for key in dropped:
                db.execute("DELETE FROM recordings WHERE key = ?", (key,))
                db.execute("DELETE FROM chunks WHERE key = ?", (key,))
        self._after_forget(sorted(dropped))
        return sorted(dropped)

    # -- reporting ------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self._read() as db:
            rows = db.execute("SELECT outcome, COUNT(*) FROM recordings GROUP BY outcome").fetchall()
        return {row[0]: row[1] for row in rows}

    def failures(self) -> list[Entry]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM recordings WHERE outcome = ? ORDER BY key", (FAILED,)).fetchall()
        return [self._entry(row) for row in rows]

    def totals(self) -> dict[str, float]:
        with self._read() as db:
            row = db.execute(
                "SELECT COALESCE(SUM(audio_seconds), 0), COALESCE(SUM(server_seconds), 0) FROM recordings"
                " WHERE outcome IN (?, ?)",
                FINISHED_OUTCOMES,
            ).fetchone()
        return {"audio_seconds": row[0], "server_seconds": row[1]}

    def daily(self, days: int = 30) -> list[dict[str, Any]]:
        """Per-day figures from the event log, newest first."""
        with self._read() as db:
            rows = db.execute(
                """
                SELECT substr(at, 1, 10) AS day,
                       COUNT(*) AS files,
                       SUM(CASE WHEN outcome = 'done' THEN 1 ELSE 0 END) AS done,
                       SUM(CASE WHEN outcome = 'empty' THEN 1 ELSE 0 END) AS empty,
                       SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END) AS failed,
                       COALESCE(SUM(CASE WHEN outcome != 'failed' THEN audio_seconds END), 0) AS audio_seconds,
                       COALESCE(SUM(server_seconds), 0) AS server_seconds
                FROM events GROUP BY day ORDER BY day DESC LIMIT ?
                """,
                (days,),
            ).fetchall()
            reasons = db.execute(
                "SELECT substr(at, 1, 10) AS day, error, COUNT(*) FROM events WHERE outcome = 'failed'"
                " GROUP BY day, error"
            ).fetchall()
        by_day: dict[str, dict[str, int]] = {}
        for day, error, count in reasons:
            by_day.setdefault(day, {})[error or "unknown"] = count
        return [{**dict(row), "failures": by_day.get(row["day"], {})} for row in rows]

    # -- copying between backends ---------------------------------------------------------------

    def row_counts(self) -> dict[str, int]:
        """Rows per copied table."""
        with self._read() as db:
            return {table: int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]) for table in TABLE_COLUMNS}

    @contextmanager
    def export_tables(self) -> Iterator[Iterator[tuple[str, Iterator[Sequence[Sequence[Any]]]]]]:
        """Every copied table as ``(name, batches of rows)``, in :data:`TABLE_COLUMNS` order, from
        one consistent read."""
        with self._snapshot() as db:

            def batches(table: str) -> Iterator[Sequence[Sequence[Any]]]:
                sql = f"SELECT {', '.join(TABLE_COLUMNS[table])} FROM {table} ORDER BY {TABLE_ORDER[table]}"
                for batch in self._stream(db, sql, 1000):
                    yield [tuple(row) for row in batch]

            yield ((table, batches(table)) for table in TABLE_COLUMNS)

    def import_tables(self, tables: Iterator[tuple[str, Iterator[Sequence[Sequence[Any]]]]], *,
                      replace: bool, expected: Mapping[str, int]) -> dict[str, int]:
        """Write the rows of :meth:`export_tables` (another ledger's) into this one, in one
        transaction; return the rows per table.

        Raises :class:`~asrbatch.errors.OperatorError` when this ledger holds rows and not
        *replace*, or when the rows written do not add up to *expected*.
        """
        with self._tx() as db:
            present = {table: int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                       for table in TABLE_COLUMNS}
            if any(present.values()) and not replace:
                held = ", ".join(f"{table}={count}" for table, count in present.items() if count)
                raise OperatorError(f"{self.location} is not empty ({held})",
                                    hint="copy into an empty ledger, or add --replace to overwrite what it holds")
            for table in (*TABLE_COLUMNS, "claims"):
                db.execute(f"DELETE FROM {table}")
            for table, batches in tables:
                columns = TABLE_COLUMNS[table]
                sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
                for batch in batches:
                    db.executemany(sql, batch)
            written = {table: int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                       for table in TABLE_COLUMNS}
            if written != dict(expected):
                raise OperatorError(f"the copy into {self.location} does not add up: wrote {written}, expected "
                                    f"{dict(expected)}; nothing was changed", hint="run the copy again")
            self._after_import(db)
        return written


def _stat_values(identity: Identity) -> dict[str, Any]:
    return {"size": identity.size, "mtime_ns": identity.mtime_ns, "sha256": identity.sha256}


def _prefix_pattern(key: str) -> str:
    escaped = key.rstrip("/").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "/%"


def file_sha256(path: Path, *, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# SQLite: migrations append only, never edit one that has shipped.


def _script(db: sqlite3.Connection, sql: str) -> None:
    # executescript() would COMMIT the migration's transaction half-way; run statement by statement.
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _m001_initial(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE recordings (
            key            TEXT PRIMARY KEY,
            size           INTEGER NOT NULL,
            mtime_ns       INTEGER NOT NULL,
            sha256         TEXT,
            outcome        TEXT NOT NULL,
            permanent      INTEGER NOT NULL DEFAULT 0,
            attempts       INTEGER NOT NULL DEFAULT 0,
            failed_runs    INTEGER NOT NULL DEFAULT 0,
            error          TEXT,
            outputs        TEXT NOT NULL DEFAULT '{}',
            output_hashes  TEXT NOT NULL DEFAULT '{}',
            result         TEXT,
            audio_seconds  REAL,
            server_seconds REAL,
            first_seen     TEXT NOT NULL,
            updated_at     TEXT NOT NULL,
            done_at        TEXT,
            last_run       INTEGER
        );
        CREATE INDEX recordings_sha256 ON recordings (sha256);
        CREATE INDEX recordings_outcome ON recordings (outcome);
        CREATE TABLE runs (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            started_at  TEXT NOT NULL,
            finished_at TEXT,
            status      TEXT NOT NULL,
            exit_code   INTEGER,
            input_dir   TEXT NOT NULL,
            pid         INTEGER,
            host        TEXT,
            summary     TEXT NOT NULL DEFAULT '{}'
        );
        """
    )


def _m002_chunks(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE chunks (
            key            TEXT NOT NULL,
            sha256         TEXT NOT NULL,
            plan           TEXT NOT NULL,
            channel        INTEGER NOT NULL,
            idx            INTEGER NOT NULL,
            start          REAL NOT NULL,
            end            REAL NOT NULL,
            text           TEXT NOT NULL,
            server_seconds REAL NOT NULL,
            attempts       INTEGER NOT NULL,
            PRIMARY KEY (key, sha256, plan, channel, idx)
        );
        """
    )


def _m003_events(db: sqlite3.Connection) -> None:
    # One row per file outcome per run: the per-day report reads it.
    _script(
        db,
        """
        CREATE TABLE events (
            id             INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id         INTEGER,
            at             TEXT NOT NULL,
            key            TEXT NOT NULL,
            outcome        TEXT NOT NULL,
            error          TEXT,
            audio_seconds  REAL,
            server_seconds REAL,
            attempts       INTEGER
        );
        CREATE INDEX events_at ON events (at);
        """
    )


def _m004_workers(db: sqlite3.Connection) -> None:
    # Which worker ran a run and when it was last seen alive, and the claims of shared ledgers
    # (here only so that every backend has the same tables).
    _script(
        db,
        """
        ALTER TABLE runs ADD COLUMN worker TEXT;
        ALTER TABLE runs ADD COLUMN heartbeat REAL;
        CREATE TABLE claims (
            key        TEXT PRIMARY KEY,
            worker     TEXT NOT NULL,
            run_id     INTEGER,
            claimed_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            taken_from TEXT
        );
        """
    )


def _m005_chunk_segments(db: sqlite3.Connection) -> None:
    # The timings a server returned for a chunk (JSON list of segments), kept with its text.
    db.execute("ALTER TABLE chunks ADD COLUMN segments TEXT NOT NULL DEFAULT '[]'")


MIGRATIONS: Sequence[tuple[str, Callable[[sqlite3.Connection], None]]] = (
    ("001_initial", _m001_initial),
    ("002_chunks", _m002_chunks),
    ("003_events", _m003_events),
    ("004_workers", _m004_workers),
    ("005_chunk_segments", _m005_chunk_segments),
)


def damaged_hint(path: Path) -> str:
    return (f"move it aside (mv {path} {path}.damaged) and run again: the transcripts already written stay, "
            f"and the new ledger is rebuilt from {path.with_name(JOURNAL_SUFFIX)} without sending them again")


def sqlite_problem(exc: sqlite3.Error, path: Path) -> OperatorError:
    """The operator's error an SQLite failure on the ledger at *path* stands for."""
    text = str(exc)
    lower = text.lower()
    if not isinstance(exc, sqlite3.OperationalError) or "malformed" in lower or "not a database" in lower:
        return LedgerDamagedError(f"the ledger {path} is damaged ({text})", hint=damaged_hint(path))
    if "full" in lower:
        return OperatorError(f"cannot write the ledger {path}: no space left on the device ({text})",
                             hint="free some space; the next run continues where this one stopped")
    if "locked" in lower or "busy" in lower:
        return OperatorError(f"the ledger {path} stayed locked by another process ({text})",
                             hint="is another asrbatch (or an sqlite3 shell) holding it? the next run tries again")
    if "readonly" in lower or "read-only" in lower or "unable to open" in lower:
        return OperatorError(f"cannot write the ledger {path} ({text})",
                             hint="check the state folder's permissions and that its filesystem is writable")
    return OperatorError(f"the ledger {path} failed: {text}", hint="check the state folder and its disk")


class SqliteLedger(SqlLedger):
    """SQLite ledger: one file in the state folder, one run at a time; safe to share between the
    run's threads."""

    NOW = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path, *, lease: float = 300.0) -> None:
        self.path = path
        self.location = str(path)
        self.worker = worker_name()
        self.lease = lease
        self.journal_path = path.with_name(JOURNAL_SUFFIX)
        self._lock = threading.RLock()
        created = not path.exists()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OperatorError(f"cannot create the state folder {path.parent}: {exc.strerror or exc}",
                                hint="check the path and its permissions") from None
        try:
            self._db = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise sqlite_problem(exc, path) from None
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self.migrate()
            if created and self.journal_path.exists():
                self._rebuild_from_journal()
        except sqlite3.Error as exc:
            self._db.close()
            raise sqlite_problem(exc, path) from None
        except BaseException:
            self._db.close()
            raise

    # -- plumbing ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, lease: float = 300.0) -> SqliteLedger:
        return cls(path, lease=lease)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteLedger:
        return self

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                else:
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise sqlite_problem(exc, self.path) from None

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise sqlite_problem(exc, self.path) from None

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN")
                try:
                    yield self._db
                finally:
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise sqlite_problem(exc, self.path) from None

    def _stale_runs(self) -> tuple[str, tuple[Any, ...]]:
        return "1 = 1", ()  # the run lock is held: any run still 'running' is a dead one

    def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded; return their names."""
        applied: list[str] = []
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            done = {row[0] for row in db.execute("SELECT name FROM migrations")}
            known = {name for name, _ in MIGRATIONS}
            unknown = done - known
            if unknown:
                raise LedgerError(
                    f"{self.path}: written by a newer asrbatch (migrations {', '.join(sorted(unknown))}); upgrade asrbatch"
                )
            for name, migration in MIGRATIONS:
                if name not in done:
                    migration(db)
                    db.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, _now()))
                    applied.append(name)
        return applied

    def migrations(self) -> list[str]:
        with self._read() as db:
            return [row[0] for row in db.execute("SELECT name FROM migrations ORDER BY name")]

    # -- journal --------------------------------------------------------------------------------

    def _after_success(self, record: dict[str, Any]) -> None:
        self._journal([record])

    def _after_forget(self, keys: Sequence[str]) -> None:
        self._journal([{"key": key, "forgotten": True} for key in keys])

    def _after_import(self, db: Session) -> None:
        """The copied finished recordings go into the journal too, so that it can rebuild this ledger."""
        rows = db.execute("SELECT * FROM recordings WHERE outcome IN (?, ?) ORDER BY key", FINISHED_OUTCOMES)
        self._journal({"key": row["key"], "size": row["size"], "mtime_ns": row["mtime_ns"], "sha256": row["sha256"],
                       "outcome": row["outcome"], "outputs": json.loads(row["outputs"]),
                       "output_hashes": json.loads(row["output_hashes"]), "audio_seconds": row["audio_seconds"],
                       "server_seconds": row["server_seconds"], "done_at": row["done_at"]} for row in rows)

    def _journal(self, records: Iterable[dict[str, Any]]) -> None:
        """Append *records* to the journal and fsync it; a failure only costs a warning."""
        text = "".join(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n" for record in records)
        if not text:
            return
        try:
            with open(self.journal_path, "a", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            log.warning(kv("journal_failed", path=self.journal_path, reason=exc.strerror or str(exc)))

    def _rebuild_from_journal(self) -> int:
        """Fill a new, empty ledger with the finished recordings the journal lists; return how many."""
        latest: dict[str, dict[str, Any]] = {}
        try:
            with open(self.journal_path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a crash
                    if isinstance(record, dict) and isinstance(record.get("key"), str):
                        latest[record["key"]] = record
        except OSError as exc:
            log.warning(kv("journal_unreadable", path=self.journal_path, reason=exc.strerror or str(exc)))
            return 0
        restored = 0
        with self._tx() as db:
            for key, record in latest.items():
                if record.get("forgotten") or record.get("outcome") not in FINISHED_OUTCOMES:
                    continue
                try:
                    values = {
                        "size": int(record["size"]),
                        "mtime_ns": int(record["mtime_ns"]),
                        "sha256": record.get("sha256"),
                        "outcome": record["outcome"],
                        "outputs": json.dumps(record.get("outputs") or {}, sort_keys=True),
                        "output_hashes": json.dumps(record.get("output_hashes") or {}, sort_keys=True),
                        "audio_seconds": record.get("audio_seconds"),
                        "server_seconds": record.get("server_seconds"),
                        "done_at": record.get("done_at"),
                    }
                except (KeyError, TypeError, ValueError):
                    continue
                self._upsert(db, key, values)
                restored += 1
        log.warning(kv("ledger_rebuilt", path=self.path, journal=self.journal_path, recordings=restored))
        return restored
