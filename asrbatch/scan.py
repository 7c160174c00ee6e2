"""Directory -> candidate recordings.

The scanner walks the input folder in a stable order and keeps what looks like a
finished recording: a known extension, not hidden, not a temporary download
name, old enough, and not changing while it is looked at.  Everything left out
is reported with its reason so ``--dry-run`` can explain it.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from asrbatch.config import InputConfig
from asrbatch.log import kv
from asrbatch.media import extension, is_temporary_name, normalise_extensions, strip_temporary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recording:
    """One audio file found under the input root."""

    path: Path
    """Absolute path of the file (symlinks inside the root resolved to their target's stat)."""
    key: str
    """Path relative to the input root, with ``/`` separators: the ledger key."""
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skipped:
    key: str
    reason: str
    recording: bool = True
    """A file that looks like a recording (counted as found); False for folders and other files."""


@dataclass(frozen=True)
class ScanResult:
    root: Path
    recordings: tuple[Recording, ...]
    skipped: tuple[Skipped, ...]


def scan_directory(
    root: Path,
    settings: InputConfig,
    *,
    exclude: Iterable[Path] = (),
    min_age: float | None = None,
    clock: Callable[[], float] = time.time,
    report_ignored: bool = False,
) -> ScanResult:
    """Walk *root* and return the recordings ready to be transcribed.

    *exclude* lists folders never entered (the output and state folders when they
    sit inside the input).  Files younger than *min_age* seconds (default:
    ``settings.min_age``) or whose size or mtime changes between two looks are
    skipped.  Files with other extensions are listed as skipped only when
    *report_ignored* is set (``--dry-run``).
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise NotADirectoryError(root)
    age = settings.min_age if min_age is None else min_age
    excluded = {Path(p).resolve() for p in exclude}
    extensions = normalise_extensions(settings.extensions)
    hotwords_name = settings.hotwords_file
    now = clock()

    found: list[tuple[Recording, os.stat_result, str]] = []
    skipped: list[Skipped] = []
    visited: set[tuple[int, int]] = set()

    def key_of(path: Path) -> str:
        return path.relative_to(root).as_posix()

    def walk(folder: Path, prefix: str) -> None:
        """*prefix*: the key of *folder* with a trailing ``/`` ("" for the root).

        Keys are built by string concatenation: ``relative_to`` for every file of a
        100,000-recording archive would cost seconds on every run.
        """
        try:
            st = folder.stat()
        except OSError as exc:
            skipped.append(Skipped(key_of(folder) + "/", f"cannot read folder: {exc.strerror}", recording=False))
            return
        if (st.st_dev, st.st_ino) in visited:
            return
        visited.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            skipped.append(Skipped(key_of(folder) + "/", f"cannot list folder: {exc.strerror}", recording=False))
            return
        for entry in entries:
            path = folder / entry.name
            key = prefix + entry.name
            try:
                is_link = entry.is_symlink()
                if is_link:
                    target = path.resolve()
                    if target != root and root not in target.parents:
                        skipped.append(Skipped(key, "symlink pointing outside the input folder",
                                               recording=extension(entry.name) in extensions))
                        continue
                    if target in excluded:
                        continue
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError as exc:
                skipped.append(Skipped(key, f"cannot read: {exc.strerror or exc}",
                                       recording=extension(entry.name) in extensions))
                continue
            if is_dir:
                if path.resolve() in excluded:
                    continue
                if entry.name.startswith("."):
                    if report_ignored:
                        skipped.append(Skipped(key + "/", "hidden folder", recording=False))
                    continue
                if settings.recursive:
                    walk(path, key + "/")
                continue
            name = entry.name
            if is_temporary_name(name):
                looks = extension(strip_temporary(name)) in extensions
                if report_ignored or looks:
                    skipped.append(Skipped(key, "temporary name (still being written?)", recording=looks))
                continue
            if extension(name) not in extensions:
                if report_ignored and name != hotwords_name and not name.startswith("."):
                    skipped.append(Skipped(key, "not a recording extension", recording=False))
                continue
            if name.startswith("."):
                skipped.append(Skipped(key, "hidden file"))
                continue
            try:
                st = entry.stat()  # follows symlinks, like path.stat()
            except OSError as exc:
                skipped.append(Skipped(key, f"cannot read: {exc.strerror}"))
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped.append(Skipped(key, "not a regular file"))
                continue
            if now - st.st_mtime < age:
                skipped.append(Skipped(key, f"changed {now - st.st_mtime:.0f}s ago, younger than min_age={age:g}s"))
                continue
            found.append((Recording(path, key, st.st_size, st.st_mtime_ns), st, entry.path))

    walk(root, "")

    # Second look: anything whose size or mtime moved since the first look is still being written.
    recordings: list[Recording] = []
    for recording, first, path_text in found:
        try:
            again = os.stat(path_text)
        except OSError:
            skipped.append(Skipped(recording.key, "disappeared while scanning"))
            continue
        if (again.st_size, again.st_mtime_ns) != (first.st_size, first.st_mtime_ns):
            skipped.append(Skipped(recording.key, "still changing (size or mtime moved while scanning)"))
            continue
        recordings.append(recording)
    recordings.sort(key=lambda r: r.key)
    skipped.sort(key=lambda s: s.key)
    return ScanResult(root, tuple(recordings), tuple(skipped))


def is_unchanged(recording: Recording) -> bool:
    """True when the file still has the size and mtime seen by the scan."""
    try:
        st = recording.path.stat()
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (recording.size, recording.mtime_ns)


def read_hotwords_file(folder: Path, name: str) -> tuple[str, ...]:
    """Hotwords listed one per line in *folder*/*name*; blank lines and ``#`` comments ignored."""
    path = folder / name
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return ()
    except (OSError, UnicodeDecodeError) as exc:
        log.warning(kv("hotwords_unreadable", file=path, reason=str(exc), action="ignored"))
        return ()
    words = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.append(line)
    return tuple(words)
