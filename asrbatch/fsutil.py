"""Files written atomically, advisory locks, and what an ``OSError`` means for the operator.

Every file asrbatch produces (transcripts, the metrics textfile, the HTML report) goes
through :func:`atomic_write`: the bytes go to a short hidden temporary name beside the
target, are fsynced, and are renamed over it, so a crash, ``kill -9`` or a full disk
leaves the old file or the new one, never half of one.  The temporary name is derived
from the target's name but short, so any name the filesystem accepts for a target can
be written.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from asrbatch.errors import OperatorError

TEMPORARY_SUFFIX = ".asrbatch-part"
NAME_MAX = 255
"""Longest file name, in bytes, on the filesystems asrbatch is used on (ext4, xfs, btrfs, tmpfs)."""

# errno -> what the operator should read.  Anything here is the machine's problem, never a
# recording's: a run that meets one stops and leaves the rest pending.
OPERATOR_ERRNOS = {
    errno.ENOSPC: ("no space left on the device", "free some space"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or raise the quota"),
    errno.EROFS: ("read-only filesystem", "mount it read-write or choose another folder"),
    errno.EACCES: ("permission denied", "check the owner and permissions (asrbatch runs as {user})"),
    errno.EPERM: ("operation not permitted", "check the owner and permissions (asrbatch runs as {user})"),
    errno.ENOTDIR: ("a file is in the way where a folder should be", "move the file away or choose another path"),
    errno.EISDIR: ("a folder is in the way where a file should be", "move the folder away or choose another path"),
    errno.EIO: ("input/output error", "check the disk (dmesg)"),
    errno.EMFILE: ("too many open files", "raise the open-file limit (ulimit -n)"),
    errno.ENFILE: ("too many open files on the system", "raise the system's open-file limit"),
}


def temporary_path(target: Path) -> Path:
    """The hidden temporary name :func:`atomic_write` uses for *target* (always short)."""
    digest = hashlib.sha1(os.fsencode(target.name)).hexdigest()[:16]
    return target.with_name(f".{digest}{TEMPORARY_SUFFIX}")


def atomic_write(target: Path, content: str | bytes) -> None:
    """Write *content* (text as UTF-8) to *target* atomically and durably; raises ``OSError``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(target)
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with _ignored_os_error():
            temporary.unlink(missing_ok=True)
        raise
    fsync_folder(target.parent)


def remove_temporary(target: Path) -> bool:
    """Remove the temporary file a killed run may have left for *target*; True if one was there.

    Never raises: a leftover that cannot be removed is harmless (it is hidden and
    replaced by the next write).
    """
    try:
        temporary_path(target).unlink()
    except OSError:
        return False
    return True


def fsync_folder(folder: Path) -> None:
    """Make a rename in *folder* durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def locked(path: Path, *, blocking: bool = True) -> Iterator[int | None]:
    """Hold an exclusive ``flock`` on *path* (created if needed) for the block.

    Yields the descriptor, or None when *blocking* is false and another process holds
    the lock.  The kernel releases the lock when the process dies.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            acquired = True
        except BlockingIOError:
            acquired = False
        if not acquired:
            yield None
            return
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def operator_error(exc: OSError, path: Path | str, doing: str) -> OperatorError | None:
    """The :class:`OperatorError` for *exc* when it is the machine's problem, else None.

    *doing* says what asrbatch was doing (``writing the transcript``).
    """
    known = OPERATOR_ERRNOS.get(exc.errno or 0)
    if known is None:
        return None
    what, hint = known
    where = exc.filename or path
    return OperatorError(f"{doing}: {where}: {what}", hint=hint.format(user=_user()))


def is_operator_errno(code: int | None) -> bool:
    """True for the errno values :func:`operator_error` turns into an operator's problem."""
    return code in OPERATOR_ERRNOS


def fits_name_max(name: str) -> bool:
    """True when *name* is short enough to be a file name."""
    return len(os.fsencode(name)) <= NAME_MAX


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):  # pragma: no cover - not POSIX
        return "this user"


@contextmanager
def _ignored_os_error() -> Iterator[None]:
    with suppress(OSError):
        yield
