"""Helpers of the operations tests: recordings in place, the CLI as cron runs it, the ledger, polling,
and a stand-in for a monitoring service (healthchecks pings, webhooks).

The receiver is a small stdlib HTTP server on ``127.0.0.1``: it records every request and
answers 200, or holds requests without answering (``hang``) until it is stopped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RECOGNITION = r"/api/predict|/call/"
OLD = time.time() - 3600


def place(root: Path, key: str, source: Path | bytes, *, mtime: float = OLD) -> Path:
    """Put *source* (a file or bytes) at ``root/key`` with an old mtime (ready for a run)."""
    target = root / key
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, bytes):
        target.write_bytes(source)
    else:
        shutil.copyfile(source, target)
    os.utime(target, (mtime, mtime))
    return target


_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def log_events(text: str, event: str | None = None) -> list[dict[str, str]]:
    """The ``key=value`` events of a log (values unquoted), optionally only those named *event*."""
    found = []
    for line in text.splitlines():
        at = line.find("event=")
        if at < 0:
            continue
        fields = {key: json.loads(value) if value.startswith('"') else value
                  for key, value in _FIELD.findall(line[at:])}
        if event is None or fields.get("event") == event:
            found.append(fields)
    return found


def on_folders(config: Any, inp: Path, out: Path, **settings: Any) -> Any:
    """*config* for a job over *inp* into *out* (what INPUT_DIR and ``-o`` set), with other settings
    given as ``section__key=value``."""
    import dataclasses

    config = dataclasses.replace(config, input=dataclasses.replace(config.input, dir=inp),
                                 output=dataclasses.replace(config.output, dir=out))
    for name, value in settings.items():
        section, key = name.split("__")
        config = dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **{key: value})})
    return config


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The CLI as cron runs it: a subprocess whose stderr is not a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "asrbatch", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=REPO,
    )


def ledger_rows(state: Path) -> dict[str, dict[str, Any]]:
    """The ``recordings`` rows of the ledger in *state* (the .asrbatch folder), by key."""
    db = sqlite3.connect(state / "ledger.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return {row["key"]: dict(row) for row in db.execute("SELECT * FROM recordings")}
    finally:
        db.close()


def runs(state: Path) -> list[dict[str, Any]]:
    """The ``runs`` rows, oldest first, with their summaries decoded."""
    db = sqlite3.connect(state / "ledger.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        rows = [dict(row) for row in db.execute("SELECT * FROM runs ORDER BY id")]
    finally:
        db.close()
    for row in rows:
        row["summary"] = json.loads(row["summary"] or "{}")
    return rows


def wait_for(condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05,
             message: str = "condition") -> Any:
    """Poll *condition* until it returns something true; fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")
        pause.wait(interval)


def free_port() -> int:
    """A port nothing listens on (a monitoring service that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# A monitoring service stand-in


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    content_type: str

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Records requests; ``hang=True`` holds each one unanswered until :meth:`stop`."""

    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base class name
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urllib.parse.urlsplit(self.path)
                with receiver.lock:
                    receiver.requests.append(Request(self.command, parts.path, dict(urllib.parse.parse_qsl(parts.query)),
                                                     body, self.headers.get("Content-Type", "")))
                if receiver.hang:
                    receiver.stopping.wait(60)
                    return
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def paths(self) -> list[str]:
        with self.lock:
            return [r.path for r in self.requests]

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
