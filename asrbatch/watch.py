"""``asrbatch watch``: react to new recordings instead of polling for them.

File events (inotify through watchdog) tell which recordings changed.  A recording is
*ready* once its writer has closed it and nothing has touched it for ``watch.settle``
seconds.  "Closed" comes from the close events and, on Linux, from the open files of the
processes this user may see (``/proc/<pid>/fd``: all of them for root), which also covers
writes the events missed (a folder created and filled at once).  Then a pass runs through :func:`asrbatch.job.run_job`, the very pass ``asrbatch
run`` makes: same scan, ledger, lock, outputs, hooks.  Recordings still open or settling are
held back from that pass.  A full pass also runs at start and every
``watch.rescan_interval`` seconds, which catches whatever the events missed (network
filesystems, files that arrived while nothing was watching).

A pass that finds the lock taken (the cron job is running) is tried again a few seconds
later.  A server that is down leaves the files pending and is tried again after a while.
SIGTERM or SIGINT stops the watch after the recordings in flight; a second signal
abandons them (nothing is half-written: outputs are written atomically and recorded last).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from asrbatch.config import Config
from asrbatch.errors import ExitCode, LockedError
from asrbatch.job import run_job, stop_on_signals
from asrbatch.log import kv
from asrbatch.media import is_recording_name, normalise_extensions
from asrbatch.outcomes import RunSummary, StopReason
from asrbatch.paths import JobPaths
from asrbatch.runner import RunOptions

log = logging.getLogger(__name__)

LOCK_RETRY_SECONDS = 5.0
"""Wait before trying again when another run holds the lock."""
SERVER_RETRY_SECONDS = 60.0
"""Wait before trying again when the server was unavailable (at most watch.rescan_interval)."""
POLL_SECONDS = 1.0
"""Longest idle wait: how soon a stop request is noticed."""
FOLDER = ""
"""Tracker key standing for "a folder was created or moved in": its files are found by a pass."""


@dataclass
class _Seen:
    changed_at: float
    writing: bool


class Tracker(FileSystemEventHandler):
    """Recordings that changed recently: when they last changed and whether a writer has them open.

    *closes*: the event source reports closed files (inotify).  Without that, settling
    (no change for ``settle`` seconds) is all there is to go by.
    """

    def __init__(
        self,
        root: Path,
        *,
        extensions: tuple[str, ...],
        recursive: bool,
        exclude: tuple[Path, ...],
        closes: bool,
        wake: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.extensions = normalise_extensions(extensions)
        self.recursive = recursive
        self.exclude = exclude
        self.closes = closes
        self.wake = wake
        self.clock = clock
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    # -- events (watchdog's thread) --------------------------------------------------------------

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if event.event_type in ("created", "moved") and self._inside(_text(getattr(event, "dest_path", "")
                                                                              or event.src_path)):
                with self._lock:
                    self._seen[FOLDER] = _Seen(self.clock(), False)
                self.wake.set()
            return
        kind = event.event_type
        if kind == "moved":
            self._forget(_text(event.src_path))
            self._note(_text(event.dest_path), writing=False)  # renamed into place: complete
        elif kind == "deleted":
            self._forget(_text(event.src_path))
        elif kind == "modified":  # data written
            self._note(_text(event.src_path), writing=self.closes)
        elif kind == "closed":  # closed after writing
            self._note(_text(event.src_path), writing=False)
        elif kind in ("created", "attrib"):
            # Not "writing" until data is written: watchdog also reports the files of a folder
            # moved in as created, and those are never closed.  Opens and reads change nothing.
            self._note(_text(event.src_path), writing=None)

    def _inside(self, path: str) -> bool:
        """*path* is under the root, not hidden and not in an excluded folder."""
        candidate = Path(path)
        try:
            parts = candidate.relative_to(self.root).parts
        except ValueError:
            return False
        if not parts or any(part.startswith(".") for part in parts):
            return False
        return not any(candidate == folder or folder in candidate.parents for folder in self.exclude)

    def _key(self, path: str) -> str | None:
        """The ledger key of *path* when it is a candidate recording, else None."""
        if not self._inside(path):
            return None
        relative = Path(path).relative_to(self.root)
        if not self.recursive and len(relative.parts) > 1:
            return None
        if not is_recording_name(relative.name, self.extensions):
            return None
        return relative.as_posix()

    def _note(self, path: str, *, writing: bool | None) -> None:
        """Record a change of *path*; *writing* None keeps what was known (False for a new entry)."""
        key = self._key(path)
        if key is None:
            return
        with self._lock:
            known = self._seen.get(key)
            if writing is None:
                writing = known.writing if known is not None else False
            self._seen[key] = _Seen(self.clock(), writing)
        log.debug(kv("watch_change", path=key, writing=writing))
        self.wake.set()

    def _forget(self, path: str) -> None:
        key = self._key(path)
        if key is not None:
            with self._lock:
                self._seen.pop(key, None)

    # -- the watch loop's questions ---------------------------------------------------------------

    def ready(self, settle: float, *, now: float | None = None) -> list[str]:
        """Recordings closed and unchanged for *settle* seconds (:data:`FOLDER` for a folder moved in)."""
        now = self.clock() if now is None else now
        with self._lock:
            return sorted(k for k, s in self._seen.items() if not s.writing and now - s.changed_at >= settle)

    def held_back(self, settle: float, *, now: float | None = None) -> frozenset[str]:
        """Recordings still open or settling: a pass leaves them alone."""
        ready = set(self.ready(settle, now=now))
        with self._lock:
            return frozenset(k for k in self._seen if k and k not in ready)

    def next_due(self, settle: float) -> float | None:
        """When the next recording that is not open settles (clock time), if any."""
        with self._lock:
            times = [s.changed_at + settle for s in self._seen.values() if not s.writing]
        return min(times) if times else None

    def still_open(self, keys: frozenset[str]) -> None:
        """*keys* are open for writing after all: they settle again from now."""
        now = self.clock()
        with self._lock:
            for key in keys:
                if key in self._seen:
                    self._seen[key] = _Seen(now, self._seen[key].writing)

    def done(self, keys: list[str], *, before: float) -> None:
        """Forget *keys*, unless they changed again after *before*."""
        with self._lock:
            for key in keys:
                seen = self._seen.get(key)
                if seen is not None and seen.changed_at <= before:
                    del self._seen[key]


def open_for_writing(root: Path) -> frozenset[str]:
    """Paths (relative, ``/``-separated) of the files under *root* that a process has open for writing.

    Reads ``/proc/<pid>/fd`` and ``fdinfo``: Linux only (elsewhere: empty), and only the
    processes this user may look into (all of them as root).
    """
    proc = "/proc"
    if not os.path.isdir(f"{proc}/self/fdinfo"):
        return frozenset()
    prefix = str(root).rstrip(os.sep) + os.sep
    found: set[str] = set()
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:
            descriptors = os.listdir(f"{proc}/{pid}/fd")
        except OSError:
            continue
        for fd in descriptors:
            try:
                target = os.readlink(f"{proc}/{pid}/fd/{fd}")
                if not target.startswith(prefix):
                    continue
                with open(f"{proc}/{pid}/fdinfo/{fd}", encoding="ascii") as info:
                    flags = next((int(line.split()[1], 8) for line in info if line.startswith("flags:")), 0)
            except (OSError, ValueError, IndexError):
                continue
            if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                found.add(target[len(prefix):].replace(os.sep, "/"))
    return frozenset(found)


def _text(path: str | bytes) -> str:
    return path.decode(errors="surrogateescape") if isinstance(path, bytes) else path


def watch_folder(
    config: Config,
    options: RunOptions,
    *,
    stop: threading.Event,
    on_pass: Callable[[RunSummary], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    lock_retry: float = LOCK_RETRY_SECONDS,
) -> int:
    """Watch ``config.input.dir`` and transcribe recordings as they arrive, until *stop* is set.

    Returns the exit code (0 after a clean stop).  Raises what a pass raises, except
    :class:`~asrbatch.errors.LockedError` (the pass is tried again *lock_retry* seconds later).
    """
    paths = JobPaths.for_run(config)
    assert paths.input_dir is not None
    input_dir = paths.input_dir
    settle = config.watch.settle
    # Each pass takes what settled: a recording is ready after watch.settle, not input.min_age.
    pass_config = dataclasses.replace(config, input=dataclasses.replace(config.input, min_age=settle))
    wake = threading.Event()
    observer = Observer()
    tracker = Tracker(
        input_dir,
        extensions=config.input.extensions,
        recursive=config.input.recursive,
        exclude=paths.excluded(config),
        closes=sys.platform.startswith("linux") and type(observer).__name__ == "InotifyObserver",
        wake=wake,
        clock=clock,
    )
    observer.schedule(tracker, str(input_dir), recursive=config.input.recursive)
    observer.start()
    log.info(kv("watch_start", input=input_dir, output=paths.output_dir, settle=f"{settle:g}",
                rescan_s=f"{config.watch.rescan_interval:g}"))
    rescan_at = clock()  # a first pass catches up on whatever arrived while nothing watched
    retry_at: float | None = None
    try:
        while not stop.is_set():
            now = clock()
            ready = tracker.ready(settle, now=now)
            busy: frozenset[str] = frozenset()
            if ready:
                busy = open_for_writing(input_dir)
                tracker.still_open(busy & frozenset(ready))
                ready = [key for key in ready if key not in busy]
            waiting = retry_at is not None and now < retry_at
            if not waiting and (ready or now >= rescan_at or (retry_at is not None and now >= retry_at)):
                retry_at = None
                if not busy:
                    busy = open_for_writing(input_dir)
                pass_options = dataclasses.replace(options, exclude_keys=tracker.held_back(settle, now=now) | busy)
                try:
                    summary = run_job(pass_config, pass_options, stop=stop)
                except LockedError:
                    log.info(kv("watch_locked", retry_s=f"{lock_retry:g}"))
                    retry_at = clock() + lock_retry
                else:
                    tracker.done(ready, before=now)
                    rescan_at = clock() + config.watch.rescan_interval
                    if summary.stopped is not None and summary.stopped.bounded:
                        retry_at = clock()
                    elif summary.stopped in (StopReason.SERVER_UNAVAILABLE, StopReason.OPERATOR_ERROR):
                        retry_at = clock() + min(SERVER_RETRY_SECONDS, config.watch.rescan_interval)
                    if on_pass is not None:
                        on_pass(summary)
                continue
            wake_at = [rescan_at]
            if retry_at is not None:
                wake_at.append(retry_at)
            elif (due := tracker.next_due(settle)) is not None:
                wake_at.append(due)
            wake.wait(min(POLL_SECONDS, max(0.05, min(wake_at) - clock())))
            wake.clear()
    finally:
        observer.stop()
        observer.join(timeout=10)
    log.info(kv("watch_stop"))
    return int(ExitCode.OK)


def run_watch(config: Config, options: RunOptions, *, on_pass: Callable[[RunSummary], None] | None = None) -> int:
    """:func:`watch_folder` until SIGTERM or SIGINT; the ``asrbatch watch`` command."""
    with stop_on_signals() as stop:
        return watch_folder(config, options, stop=stop, on_pass=on_pass)
