"""Monitoring hooks: healthchecks-style pings and a JSON webhook that never fail the job.

A :class:`Monitor` sends, for one run:

- ``<healthchecks_url>/start`` once the run holds its lock (in the background: a slow
  monitoring service does not hold up the transcription);
- at the end, ``<healthchecks_url>`` on success or ``<healthchecks_url>/<exit code>`` on
  failure, with the tail of the log as the body, and the run summary as JSON to
  ``webhook_url`` (both at once).

Every call has ``monitoring.timeout`` for connecting and for each read.  A failing call
logs one warning and is not retried; nothing here raises, so a monitoring outage never
changes a run's outcome and adds at most about one timeout to its end (two when the run
itself is shorter than the timeout and the service hangs on the start ping too).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import urllib.parse
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

import asrbatch
from asrbatch.config import MonitoringConfig
from asrbatch.log import kv

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 100_000
"""healthchecks.io keeps the first 100 kB of a ping body; the tail end of the log matters most."""


def ping_url(base: str, suffix: str = "", run_id: str | None = None) -> str:
    """``base`` with ``/suffix`` appended to its path and ``rid=run_id`` added to its query."""
    parts = urllib.parse.urlsplit(base)
    path = parts.path.rstrip("/") + (f"/{suffix}" if suffix else "")
    query = parts.query
    if run_id:
        query = urllib.parse.urlencode([*urllib.parse.parse_qsl(query, keep_blank_values=True), ("rid", run_id)])
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path or "/", query, parts.fragment))


def log_tail(path: Path | None, lines: int) -> str:
    """The last *lines* lines of the file at *path* (empty when there is none)."""
    if path is None or lines <= 0:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            block = 8192
            data = b""
            position = end
            while position > 0 and data.count(b"\n") <= lines:
                step = min(block, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
                block *= 2
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    tail = "\n".join(text.splitlines()[-lines:])
    return tail[-MAX_BODY_BYTES:]


class Monitor:
    """The monitoring calls of one run (healthchecks pings, webhook); a no-op when nothing is configured."""

    def __init__(self, settings: MonitoringConfig, *, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.run_id = str(uuid.uuid4())
        self.enabled = bool(settings.healthchecks_url or settings.webhook_url)
        self._session = session
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._start: concurrent.futures.Future[bool] | None = None

    # -- the run's events ----------------------------------------------------------------------

    def start(self) -> None:
        """Send the start ping in the background; :meth:`finish` waits for it first."""
        if self.settings.healthchecks_url:
            url = ping_url(self.settings.healthchecks_url, "start", self.run_id)
            self._start = self._executor().submit(self._send, "start", url, None)

    def finish(self, exit_code: int, *, body: str = "", summary: Mapping[str, Any] | None = None) -> None:
        """Report the end of the run: the success or failure ping and the webhook, side by side.

        *body* (usually the log tail) goes with the ping; *summary* to the webhook.
        """
        if self._start is not None:
            self._start.result()
            self._start = None
        calls: list[concurrent.futures.Future[bool]] = []
        if self.settings.healthchecks_url:
            suffix = "" if exit_code == 0 else str(exit_code)
            url = ping_url(self.settings.healthchecks_url, suffix, self.run_id)
            event = "success" if exit_code == 0 else "failure"
            calls.append(self._executor().submit(self._send, event, url, body.encode("utf-8")[-MAX_BODY_BYTES:]))
        if self.settings.webhook_url and summary is not None:
            calls.append(self._executor().submit(self._send, "webhook", self.settings.webhook_url, dict(summary)))
        for call in calls:
            call.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="asrbatch-monitor")
        return self._pool

    def _http(self) -> requests.Session:
        if self._session is None:
            session = requests.Session()
            session.headers["User-Agent"] = f"asrbatch/{asrbatch.__version__}"
            self._session = session
        return self._session

    def _send(self, event: str, url: str, payload: bytes | dict[str, Any] | None) -> bool:
        """One call; True when it was answered with 2xx.  Never raises."""
        timeout = (self.settings.timeout, self.settings.timeout)
        shown = _redact(url)
        try:
            if isinstance(payload, dict):
                response = self._http().post(url, json=payload, timeout=timeout)
            else:
                response = self._http().post(url, data=payload or b"", timeout=timeout,
                                             headers={"Content-Type": "text/plain; charset=utf-8"})
            response.close()
        except requests.Timeout:
            log.warning(kv("monitoring_failed", hook=event, url=shown,
                           reason=f"no answer within {self.settings.timeout:g} s"))
            return False
        except (requests.RequestException, OSError, ValueError) as exc:
            log.warning(kv("monitoring_failed", hook=event, url=shown, reason=_reason(exc)))
            return False
        except Exception as exc:  # a monitoring hook must never take the run down
            log.warning(kv("monitoring_failed", hook=event, url=shown, reason=repr(exc)))
            return False
        if not 200 <= response.status_code < 300:
            log.warning(kv("monitoring_failed", hook=event, url=shown, reason=f"HTTP {response.status_code}"))
            return False
        log.debug(kv("monitoring", hook=event, url=shown, status=response.status_code))
        return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect"
    return f"{type(exc).__name__}: {exc}"[:200]


def _redact(url: str) -> str:
    """The URL for a log line: scheme and host only (ping keys live in paths, tokens in queries)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}"
