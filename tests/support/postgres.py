"""A throwaway PostgreSQL cluster for the tests: a real server, started once per session.

``initdb`` in a temporary folder, a free port on 127.0.0.1 (no Unix socket), ``trust``
authentication on 127.0.0.1, except for the role :data:`PASSWORD_ROLE`, which must give its
password (scram-sha-256), so that the ways a password reaches the server can be tested.
Durability is switched off (``fsync=off``): the cluster lives as long as the test session.
PostgreSQL refuses to run as root; as root, the cluster runs as the ``postgres`` user that
Debian's package creates (or, without it, a system user created here).

``scripts/bootstrap.sh --test`` installs PostgreSQL (``apt-get install postgresql``); without
it, the tests that need it are skipped, saying so.  In tests::

    def test_something(pg_url):          # a fresh, empty database of the session's cluster
        ...asrbatch run ... --ledger pg_url
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SUPERUSER = "postgres"
PASSWORD_ROLE = "secretive"
"""A role that must log in with a password (see :meth:`Cluster.add_password_role`)."""
SERVICE_USER = "asrbatch-pg"
"""The OS user created to run the cluster when root has no ``postgres`` user."""
START_TIMEOUT_SECONDS = 60


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb and pg_ctl, else one on the PATH."""
    found = []
    for folder in Path("/usr/lib/postgresql").glob("*/bin"):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            version = re.match(r"\d+", folder.parent.name)
            found.append((int(version.group()) if version else 0, folder))
    if found:
        return max(found)[1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _service_user() -> str | None:
    """The OS user the cluster runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in (SUPERUSER, SERVICE_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                   check=True, capture_output=True)
    return SERVICE_USER


class Cluster:
    """One running PostgreSQL server on 127.0.0.1; :meth:`stop` removes it and its files."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.user = _service_user()
        self.root = Path(tempfile.mkdtemp(prefix="asrbatch-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._names = itertools.count(1)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *command: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.user, "--"] if self.user is not None else []
        completed = subprocess.run([*prefix, *map(str, command)], capture_output=True, text=True,
                                   stdin=subprocess.DEVNULL, timeout=START_TIMEOUT_SECONDS + 30)
        if check and completed.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, command))} failed ({completed.returncode}):\n"
                               f"{completed.stdout}{completed.stderr}\n{self.log_tail()}")
        return completed

    def start(self) -> Cluster:
        self._run(self.bindir / "initdb", "-D", self.data, "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        settings = ("listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\nfsync = off\n"
                    "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n")
        hba = (f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
               "host all all 127.0.0.1/32 trust\n")
        # Both files exist (initdb wrote them): rewriting them keeps their owner.
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(settings)
        (self.data / "pg_hba.conf").write_text(hba, encoding="utf-8")
        for attempt in range(3):
            self.port = _free_port()
            started = self._run(self.bindir / "pg_ctl", "-D", self.data, "-l", self.log, "-w",
                                "-t", str(START_TIMEOUT_SECONDS), "-o", f"-p {self.port}", "start", check=False)
            if started.returncode == 0:
                return self
            if attempt == 2 or "already in use" not in self.log_tail():
                raise RuntimeError(f"PostgreSQL did not start:\n{started.stdout}{started.stderr}\n{self.log_tail()}")
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.data.exists():
            self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """Run *sql* as the superuser (autocommit); return its rows, if any."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as connection:
            cursor = connection.execute(sql)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []

    def create_database(self, hint: str = "test", owner: str = SUPERUSER) -> str:
        """A new, empty database; returns its URL (as *owner*)."""
        name = f"{re.sub(r'[^a-z0-9]+', '_', hint.lower())[:40]}_{next(self._names)}"
        self.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        return self.url(name, owner)

    def add_password_role(self, password: str) -> None:
        """Create :data:`PASSWORD_ROLE` (if needed) with *password*; it may create databases."""
        exists = self.execute(f"SELECT 1 FROM pg_roles WHERE rolname = '{PASSWORD_ROLE}'")
        verb = "ALTER" if exists else "CREATE"
        self.execute(f"{verb} ROLE {PASSWORD_ROLE} LOGIN CREATEDB PASSWORD '{password}'")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """The session's PostgreSQL server (skipped, saying why, where PostgreSQL is not installed)."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (scripts/bootstrap.sh --test installs it: apt-get install postgresql)")
    cluster = Cluster(bindir)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(postgres_cluster: Cluster, request: pytest.FixtureRequest) -> str:
    """The URL of a new, empty database for this test."""
    return postgres_cluster.create_database(request.node.name)
