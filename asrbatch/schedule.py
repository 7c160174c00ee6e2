"""The crontab entry for a job (``asrbatch cron-line``), built from its configuration."""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from asrbatch.config import Config
from asrbatch.errors import ConfigError
from asrbatch.paths import JobPaths

DEFAULT_MINUTE = 5
DEFAULT_MAX_RUNTIME = 3000.0
"""50 minutes: an hourly run stops starting new recordings in time for the next hour."""
LOCK_FOLDER = Path("/run/lock")
"""Exists at boot on Debian and Ubuntu (tmpfs, writable by every user, sticky)."""


@dataclass(frozen=True)
class CronJob:
    """What goes into the crontab entry."""

    input_dir: Path
    output_dir: Path
    config_file: Path | None
    user: str | None
    """The user field of /etc/cron.d files; None for a personal crontab (``crontab -e``)."""
    minute: int = DEFAULT_MINUTE
    max_runtime: float | None = DEFAULT_MAX_RUNTIME
    lock_file: Path | None = None
    log_file: Path | None = None
    """Append the output there instead of letting cron mail it."""
    executable: str = "asrbatch"
    needs_password: str | None = None
    """The variable holding the server password, when the config logs in."""
    flags: tuple[str, ...] = ()
    """Further run flags, repeated as given (``--url``, ``--hotwords``...)."""
    environment: tuple[tuple[str, str], ...] = ()
    """``ASRBATCH_*`` settings from the environment, written as variable lines of the crontab."""


def plan(
    config: Config,
    *,
    user: str | None,
    minute: int = DEFAULT_MINUTE,
    max_runtime: float | None = None,
    lock_file: Path | None = None,
    log_file: Path | None = None,
    flags: tuple[str, ...] = (),
    environment: Mapping[str, str] | None = None,
) -> CronJob:
    """The cron job of *config* (``input.dir`` set): absolute paths, a lock file, a runtime bound.

    ``max_runtime`` defaults to 50 minutes unless the config sets ``run.max_runtime``.
    *flags* are further run flags, repeated in the entry as given; *environment* the
    ``ASRBATCH_*`` settings the config was loaded with, repeated as crontab variable lines.
    Raises :class:`~asrbatch.errors.ConfigError` for a value a crontab cannot hold (a newline).
    """
    paths = JobPaths.for_run(config)
    assert paths.input_dir is not None and paths.output_dir is not None
    if max_runtime is None and config.run.max_runtime is None:
        max_runtime = DEFAULT_MAX_RUNTIME
    return CronJob(
        input_dir=paths.input_dir,
        output_dir=paths.output_dir,
        config_file=config.source.expanduser().resolve() if config.source else None,
        user=user,
        minute=minute,
        max_runtime=max_runtime,
        lock_file=lock_file.expanduser().resolve() if lock_file else default_lock_file(paths.state_dir),
        log_file=log_file.expanduser().resolve() if log_file else None,
        executable=find_executable(),
        needs_password=config.server.password_env if config.server.username else None,
        flags=flags,
        environment=tuple(_checked_variables(environment or {})),
    )


def _checked_variables(environment: Mapping[str, str]) -> list[tuple[str, str]]:
    for name, value in environment.items():
        if "\n" in value or "\r" in value:
            raise ConfigError(f"{name}: a crontab variable cannot hold a line break",
                              hint="set that key in the config file instead")
    return sorted(environment.items())


def number_text(value: float) -> str:
    """*value* as a flag's text that reads back as the same number (``60``, ``12.5``, ``0.30000000000000004``)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def default_lock_file(state_dir: Path) -> Path:
    """One lock file per job, named after its output folder: ``/run/lock/asrbatch-<name>-<hash>.lock``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", state_dir.parent.name or "root")[:40]
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:8]
    return LOCK_FOLDER / f"asrbatch-{name}-{digest}.lock"


def find_executable() -> str:
    """The absolute path of the ``asrbatch`` command this Python runs (a virtualenv's, say)."""
    beside = Path(sys.executable).parent / "asrbatch"
    if beside.is_file():
        return str(beside)
    found = shutil.which("asrbatch")
    return str(Path(found).resolve()) if found else "asrbatch"


def command(job: CronJob) -> list[str]:
    """The job's command as an argument list (what flock runs)."""
    args = [job.executable, "run", str(job.input_dir), "-o", str(job.output_dir)]
    if job.config_file is not None:
        args += ["-c", str(job.config_file)]
    args += job.flags
    if job.max_runtime is not None:
        args += ["--max-runtime", number_text(job.max_runtime)]
    args.append("-q")
    return args


def render(job: CronJob) -> str:
    """The crontab text: a comment, the environment lines and the entry."""
    when = f"{job.minute} * * * *"
    shell = " ".join(_cron_quote(arg) for arg in ["flock", "-n", str(job.lock_file), *command(job)])
    if job.log_file is not None:
        shell += f" >>{_cron_quote(str(job.log_file))} 2>&1"
    entry = f"{when}  {job.user}  {shell}" if job.user else f"{when}  {shell}"
    where = "/etc/cron.d/asrbatch" if job.user else "your crontab (crontab -e)"
    lines = [
        f"# {where}: transcribe new recordings in {job.input_dir} at {job.minute} past every hour.",
        "# flock -n: an hour still running makes the next one skip quietly; -q: cron mails real errors only.",
    ]
    if job.needs_password:
        lines.append(f"# The server login reads ${job.needs_password}: add {job.needs_password}=... as a line "
                     "below and make this file readable by root only (chmod 600).")
    lines += ["SHELL=/bin/sh", "PATH=/usr/local/bin:/usr/bin:/bin"]
    if job.environment:
        lines.append("# Settings from the environment cron-line ran in (the job reads them as it reads the config):")
        lines += [f"{name}={_cron_value(value)}" for name, value in job.environment]
    lines.append(entry)
    return "\n".join(lines) + "\n"


def _cron_value(value: str) -> str:
    """A crontab variable's value: cron strips blanks around it and one pair of quotes."""
    if value == value.strip() and value[:1] not in ("'", '"'):
        return value
    return f"'{value}'" if "'" not in value else f'"{value}"'


def _cron_quote(arg: str) -> str:
    # cron turns an unescaped % into a newline.
    return shlex.quote(arg).replace("%", "\\%")
