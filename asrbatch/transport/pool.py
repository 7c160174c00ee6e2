"""Several servers sharing the work: least-busy choice, failover of work in flight, re-probing.

A :class:`ServerPool` is a :class:`~asrbatch.transport.base.Recognizer` (``probe``,
``transcribe``, ``capacity``, ``close``) over the servers of ``server.urls``, whatever
protocol each speaks:

- each server has its own limit of requests in flight (:func:`~asrbatch.transport.base.request_limit`:
  ``server.concurrency`` or ``--workers``, else the limit the server reports, else 1);
  ``capacity`` is their sum;
- a request goes to the healthy server with the lowest share of its limit in use;
- a server that stays unreachable (the one retry policy gave up on it) is taken out of rotation
  and the request is sent again to another server at once; a server that keeps failing on
  recordings other servers manage is taken out too;
- a server out of rotation is probed again (one ``GET /config``, in the background) after
  :data:`REPROBE_AFTER` seconds, then twice as long after each failed probe, up to
  :data:`REPROBE_MAX`; when it answers it gets work again;
- :class:`ServerUnavailableError` is raised only when no server answers.

Each server is talked to by its own guarded client (:func:`asrbatch.transport.connect_one`), so
each keeps its own protocol, login, retries and health checks.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from asrbatch.config import RetryConfig, ServerConfig
from asrbatch.errors import AsrbatchError, EndpointError, RecognitionError, ServerUnavailableError
from asrbatch.log import kv
from asrbatch.transport.base import Closing, Recognition, Recognizer, ServerInfo, request_limit
from asrbatch.transport.codecs import AudioSource, send_audio

log = logging.getLogger(__name__)

REPROBE_AFTER = 10.0
"""Seconds before a server taken out of rotation is probed again (doubled after each failure)."""
REPROBE_MAX = 300.0
"""Longest wait between two probes of a server out of rotation."""
FAILURES_BEFORE_REST = 3
"""Recordings in a row a server failed on (that another server then managed) before it is rested."""

ADMITTED_PER_SLOT = 2
"""Requests handed to a server per recognition slot: one recognised, one being prepared or uploaded."""

MemberFactory = Callable[[ServerConfig], Recognizer]
"""Builds the recognizer of one server from its settings."""


@dataclass(frozen=True)
class ServerState:
    """A snapshot of one server of the pool (for logs, status and tests)."""

    url: str
    healthy: bool
    """In rotation: it answered its last probe and has not failed since."""
    retired: bool
    """Unusable for this run (its recognition function is missing or the login is refused)."""
    in_flight: int
    limit: int
    served: int
    """Recognitions it completed."""
    error: str | None
    """Why it is out of rotation."""
    probing: bool = False
    """A probe of it is running (it is out of rotation and due)."""
    next_probe: float | None = None
    """Clock time of its next probe while it is out of rotation."""


@dataclass(eq=False)
class _Member:
    index: int
    settings: ServerConfig
    client: Recognizer
    info: ServerInfo | None = None
    healthy: bool = False
    retired: bool = False
    probing: bool = False
    in_flight: int = 0
    served: int = 0
    failed_probes: int = 0
    errors_in_a_row: int = 0
    retry_at: float = 0.0
    error: str | None = None

    @property
    def url(self) -> str:
        return self.settings.url


class ServerPool(Closing):
    """Several ASR servers behind one :class:`~asrbatch.transport.base.Recognizer`; thread-safe.

    *settings* gives the servers (``urls``, or ``url`` alone) and everything else each
    server's client uses.  ``sleep`` and ``clock`` are injected for tests, ``client_factory``
    builds the recognizer of one server from its settings (default:
    :func:`asrbatch.transport.connect_one`).
    """

    def __init__(
        self,
        settings: ServerConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        client_factory: MemberFactory | None = None,
        reprobe_after: float = REPROBE_AFTER,
        reprobe_max: float = REPROBE_MAX,
    ) -> None:
        urls = tuple(dict.fromkeys(settings.urls or (settings.url,)))
        self.settings = settings
        self._clock = clock
        if client_factory is None:
            from asrbatch.transport import connect_one

            def client_factory(member_settings: ServerConfig) -> Recognizer:
                return connect_one(member_settings, sleep=sleep, clock=clock)

        self._factory: MemberFactory = client_factory
        self._reprobe_after = reprobe_after
        self._reprobe_max = max(reprobe_max, reprobe_after)
        self._cond = threading.Condition()
        self._probe_lock = threading.Lock()
        self._closed = False
        self._info: ServerInfo | None = None
        self._old_clients: list[Recognizer] = []
        self._members = []
        for index, url in enumerate(urls):
            member_settings = dataclasses.replace(settings, url=url, urls=())
            self._members.append(_Member(index, member_settings, self._factory(member_settings)))

    def __repr__(self) -> str:
        return f"ServerPool(urls={[m.url for m in self._members]!r})"

    def close(self) -> None:
        """Close every server's client; probes still running are ignored from now on."""
        with self._cond:
            self._closed = True
            clients = [m.client for m in self._members] + self._old_clients
            self._old_clients = []
            self._cond.notify_all()
        for client in clients:
            client.close()

    # -- what the runner uses ---------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Requests in flight at once over all usable servers (the sum of their limits)."""
        with self._cond:
            return sum(self._limit(m) for m in self._members if not m.retired) or 1

    @property
    def servers(self) -> tuple[ServerState, ...]:
        with self._cond:
            return tuple(
                ServerState(m.url, m.healthy, m.retired, m.in_flight, self._limit(m), m.served, m.error, m.probing,
                            None if m.healthy or m.retired or m.probing else m.retry_at)
                for m in self._members
            )

    def probe(self) -> ServerInfo:
        """Probe every server (in parallel) and return what the first one that answers reports.

        With several servers, a quick round (one try each) decides as soon as one answers; the
        others are probed again later.  When none answers (or there is only one), a round with
        the configured retries gives a server that is just restarting the usual patience.  Raises
        :class:`EndpointError` when the servers that answer cannot be used (and none can),
        :class:`ServerUnavailableError` when none answers.  Cached.
        """
        with self._probe_lock:
            if self._info is not None:
                return self._info
            if len(self._members) > 1:
                self._probe_all(quick=True)
            if not self._any_healthy() and any(not m.retired for m in self._members):
                self._probe_all(quick=False)
            with self._cond:
                healthy = [m for m in self._members if m.healthy]
                if not healthy:
                    raise self._none_usable()
                info = healthy[0].info
                assert info is not None
                self._info = info
                return info

    def transcribe(
        self,
        path: Path,
        *,
        name: str | None = None,
        mime: str | None = None,
        duration: float | None = None,
        hotwords: Sequence[str] | str = (),
        proceed: Callable[[], bool] | None = None,
    ) -> Recognition:
        """Send *path* to the least busy healthy server, moving to another one when it fails.

        Raises what :meth:`Client.transcribe` raises for the file itself (the last server's
        error when every server tried failed on it), :class:`ServerUnavailableError` when no
        server answers, :class:`EndpointError` when no server can be used.
        """
        return self._dispatch(
            lambda client: client.transcribe(path, name=name, mime=mime, duration=duration, hotwords=hotwords,
                                             proceed=proceed),
            name or path.name,
        )

    def transcribe_audio(
        self,
        audio: AudioSource,
        *,
        hotwords: Sequence[str] | str = (),
        proceed: Callable[[], bool] | None = None,
    ) -> Recognition:
        """Like :meth:`transcribe` for a chunk each server gets in the codec it takes
        (:class:`~asrbatch.transport.codecs.CodecLadder`)."""
        return self._dispatch(lambda client: send_audio(client, audio, hotwords=hotwords, proceed=proceed),
                              audio.name)

    def _dispatch(self, send: Callable[[Recognizer], Recognition], label: str) -> Recognition:
        self.probe()
        tried: set[int] = set()
        failed_on: list[_Member] = []
        file_error: RecognitionError | None = None
        while True:
            member = self._acquire(avoid=tried)
            if member is None:  # every server in rotation failed on this file
                assert file_error is not None
                raise file_error
            client = member.client
            try:
                recognition = send(client)
            except ServerUnavailableError as exc:
                self._take_out(member, exc.message, client=client)
                log.warning(kv("failover", url=member.url, name=label, reason="unavailable"))
                continue
            except EndpointError as exc:
                self._retire(member, exc)
                continue
            except RecognitionError as exc:
                # The server kept failing on this file: another server may manage it.
                tried.add(member.index)
                failed_on.append(member)
                file_error = exc
                if not self._has_alternative(tried):
                    raise
                log.warning(kv("failover", url=member.url, name=label, reason=exc.message))
                continue
            finally:
                self._release(member)
            self._count_success(member)
            # A server that failed on a recording another one managed may be unwell: count it.
            for other in failed_on:
                self._count_error(other, file_error.message if file_error else "failed")
            return recognition

    # -- choosing a server ------------------------------------------------------------------------

    def _limit(self, member: _Member) -> int:
        return request_limit(self.settings, member.info.concurrency_limit if member.info is not None else None)

    def _acquire(self, *, avoid: set[int]) -> _Member | None:
        """A slot on the least busy healthy server not in *avoid*; waits while all are full.

        Returns None when the only servers in rotation are in *avoid*; raises
        :class:`ServerUnavailableError` (or :class:`EndpointError`) when none is.
        """
        with self._cond:
            while True:
                if self._closed:
                    raise ServerUnavailableError("the server pool is closed")
                now = self._clock()
                self._start_due_probes(now)
                usable = [m for m in self._members if m.healthy and m.index not in avoid]
                if not usable:
                    if any(m.probing and m.index not in avoid for m in self._members):
                        self._cond.wait(timeout=1.0)
                        continue
                    if any(m.healthy for m in self._members):
                        return None
                    raise self._none_usable()
                # Admitted: twice a server's limit, so the next request is prepared and uploaded while the
                # server works; its client holds the recognitions themselves to the limit.
                free = [m for m in usable if m.in_flight < ADMITTED_PER_SLOT * self._limit(m)]
                if free:
                    chosen = min(free, key=lambda m: (m.in_flight / self._limit(m), m.in_flight, m.served, m.index))
                    chosen.in_flight += 1
                    return chosen
                self._cond.wait(timeout=self._next_probe_wait(now))

    def _release(self, member: _Member) -> None:
        with self._cond:
            member.in_flight -= 1
            self._cond.notify_all()

    def _has_alternative(self, tried: set[int]) -> bool:
        with self._cond:
            return any(m.index not in tried and (m.healthy or m.probing) for m in self._members)

    def _any_healthy(self) -> bool:
        with self._cond:
            return any(m.healthy for m in self._members)

    def _next_probe_wait(self, now: float) -> float | None:
        due = [m.retry_at for m in self._members if not m.healthy and not m.retired and not m.probing]
        if not due:
            return None
        return max(0.05, min(due) - now)

    def _none_usable(self) -> AsrbatchError:
        retired = [m for m in self._members if m.retired]
        if retired and len(retired) == len(self._members):
            first = retired[0]
            return EndpointError(f"no server can be used: {first.url}: {first.error}",
                                 hint="check server.urls, fn_index/api_name and the login")
        reasons = "; ".join(f"{m.url}: {m.error or 'failed'}" for m in self._members)
        noun = "server" if len(self._members) == 1 else f"all {len(self._members)} servers"
        return ServerUnavailableError(f"{noun} unavailable: {reasons}", hint="check that they are running: asrbatch ping")

    # -- health -----------------------------------------------------------------------------------

    def _count_success(self, member: _Member) -> None:
        with self._cond:
            member.served += 1
            member.errors_in_a_row = 0

    def _count_error(self, member: _Member, reason: str) -> None:
        with self._cond:
            member.errors_in_a_row += 1
            rest = member.errors_in_a_row >= FAILURES_BEFORE_REST and member.healthy
        if rest:
            self._take_out(member, f"failed on {member.errors_in_a_row} recordings in a row: {reason}")

    def _take_out(self, member: _Member, reason: str, *, client: Recognizer | None = None) -> None:
        """Take *member* out of rotation; a failure seen through *client* counts only while it
        still is the member's client (not replaced since by a successful re-probe)."""
        with self._cond:
            if not member.healthy or (client is not None and client is not member.client):
                return
            member.healthy = False
            member.error = reason
            member.failed_probes = 0
            member.retry_at = self._clock() + self._reprobe_after
            self._cond.notify_all()
        log.error(kv("server_down", url=member.url, reason=reason, reprobe_s=f"{self._reprobe_after:.0f}"))

    def _retire(self, member: _Member, exc: EndpointError) -> None:
        with self._cond:
            member.healthy = False
            member.retired = True
            member.error = str(exc)
            self._cond.notify_all()
        log.error(kv("server_unusable", url=member.url, reason=str(exc)))

    def _start_due_probes(self, now: float) -> None:
        """Start a background probe of every server out of rotation whose wait is over (lock held)."""
        for member in self._members:
            if not member.healthy and not member.retired and not member.probing and member.retry_at <= now:
                member.probing = True
                threading.Thread(target=self._reprobe, args=(member,), name=f"asrbatch-probe-{member.index}",
                                 daemon=True).start()

    def _reprobe(self, member: _Member) -> None:
        client = self._probe_member(member, quick=True, fresh=True)
        with self._cond:
            member.probing = False
            if client is None or self._closed:
                if not member.retired:
                    member.failed_probes += 1
                    wait = min(self._reprobe_max, self._reprobe_after * 2 ** member.failed_probes)
                    member.retry_at = self._clock() + wait
                self._cond.notify_all()
                if client is not None:
                    client.close()
                return
            self._old_clients.append(member.client)
            member.client = client
            member.healthy = True
            member.errors_in_a_row = 0
            member.error = None
            self._cond.notify_all()
        log.info(kv("server_up", url=member.url))

    def _probe_all(self, *, quick: bool) -> None:
        members = [m for m in self._members if not m.retired]
        threads = [threading.Thread(target=self._initial_probe, args=(m, quick), daemon=True) for m in members]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _initial_probe(self, member: _Member, quick: bool) -> None:
        client = self._probe_member(member, quick=quick, fresh=False)
        with self._cond:
            if client is None:
                member.retry_at = self._clock() + self._reprobe_after
                return
            member.healthy = True
            member.error = None

    def _probe_member(self, member: _Member, *, quick: bool, fresh: bool) -> Recognizer | None:
        """A client of *member* that has probed it successfully, or None (the reason is recorded).

        *quick* tries once first, so a server that is down costs no retry waits; *fresh* builds a
        new client (a re-probe: the old one's probe, login and connections may be stale).
        """
        if quick:
            once = dataclasses.replace(member.settings, retry=RetryConfig(attempts=1, initial_wait=0.0,
                                                                          max_wait=0.0, jitter=0.0))
            checker = self._factory(once)
            try:
                checker.probe()
            except ServerUnavailableError as exc:
                self._record_probe_failure(member, exc.message)
                return None
            except EndpointError as exc:
                self._retire(member, exc)
                return None
            finally:
                checker.close()
        client = self._factory(member.settings) if fresh else member.client
        try:
            info = client.probe()
        except (ServerUnavailableError, EndpointError) as exc:
            if isinstance(exc, EndpointError):
                self._retire(member, exc)
            else:
                self._record_probe_failure(member, exc.message)
            if fresh:
                client.close()
            return None
        with self._cond:
            member.info = info
        return client

    def _record_probe_failure(self, member: _Member, reason: str) -> None:
        with self._cond:
            member.healthy = False
            member.error = reason
        log.warning(kv("probe_failed", url=member.url, reason=reason))


__all__: Sequence[str] = ("ServerPool", "ServerState")
