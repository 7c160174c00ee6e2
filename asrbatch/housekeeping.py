"""Optional input housekeeping: move recordings out of the input folder once they are safe.

Off by default (``housekeeping.mode: keep``).  With ``mode: move`` a recording is moved to
``done_dir`` (mirroring the input tree) only after its transcript files are in place and its
success is recorded in the ledger, and a permanently failed one to ``failed_dir`` when that is
set.  A name already taken at the destination gets a numbered suffix; nothing is overwritten.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

from asrbatch.config import HousekeepingConfig
from asrbatch.log import kv

log = logging.getLogger(__name__)


def destination(root: Path, key: str) -> Path:
    """Where recording *key* goes under *root*: the same relative path, numbered if taken."""
    target = root / key
    if not target.exists():
        return target
    stem, suffix = target.stem, target.suffix
    for n in range(1, 10_000):
        candidate = target.with_name(f"{stem}.{n}{suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(target)


def move_recording(path: Path, key: str, settings: HousekeepingConfig, *, succeeded: bool) -> Path | None:
    """Move *path* per *settings*; return the new path, or None when it stays.

    Never raises for an I/O problem: the transcript is already safe, so a failed move only logs
    a warning and the recording stays (the ledger skips it next time).
    """
    if settings.mode != "move":
        return None
    root = settings.done_dir if succeeded else settings.failed_dir
    if root is None:
        return None
    try:
        target = destination(root.expanduser(), key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # Another filesystem: copy, fsync, then remove the original.
            shutil.copy2(path, target)
            with open(target, "rb") as handle:
                os.fsync(handle.fileno())
            path.unlink()
    except OSError as exc:
        log.warning(kv("housekeeping_failed", path=key, reason=str(exc), action="left_in_place"))
        return None
    log.info(kv("moved", path=key, to=target))
    return target
