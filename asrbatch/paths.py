"""Where a job keeps everything: one object computed once from the Config.

input (``input.dir``) -> output (``output.dir``, default ``<input>_transcripts`` beside it)
-> state (``state.dir``, default ``<output>/.asrbatch``) -> ledger, lock, log, temporary
files, metrics lock, report.  ``run``, ``watch``, ``status``, ``report``, ``cron-line``,
the metrics and the CLI all read them from a :class:`JobPaths`; nothing else derives them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from asrbatch import fsutil
from asrbatch.config import Config
from asrbatch.errors import ConfigError, OperatorError

LEDGER_NAME = "ledger.sqlite3"
JOURNAL_NAME = "transcripts.jsonl"
STATE_FOLDER_NAME = ".asrbatch"


@dataclass(frozen=True)
class JobPaths:
    """The folders and files of one job (absolute, resolved)."""

    input_dir: Path | None
    """The recordings; None for commands that only read the state (status, retry...)."""
    output_dir: Path | None
    state_dir: Path
    log_file: Path
    shared: bool = False
    """The ledger is shared by several workers (``state.ledger`` is a database URL): each worker
    keeps its temporary files apart, and no run lock is taken."""

    @property
    def ledger(self) -> Path:
        return self.state_dir / LEDGER_NAME

    @property
    def journal(self) -> Path:
        """One line per finished recording, beside the ledger: what rebuilds a lost ledger."""
        return self.state_dir / JOURNAL_NAME

    @property
    def lock(self) -> Path:
        return self.state_dir / "lock"

    @property
    def tmp(self) -> Path:
        """Decoded and chunked audio while a run works on it (emptied at every start); with a
        shared ledger one folder per worker process, ``tmp/<host>-<pid>``."""
        if self.shared:
            return self.state_dir / "tmp" / _worker_folder(socket.gethostname(), os.getpid())
        return self.state_dir / "tmp"

    @property
    def metrics_lock(self) -> Path:
        return self.state_dir / "metrics.lock"

    @property
    def report(self) -> Path:
        return self.state_dir / "report.html"

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def for_run(cls, config: Config) -> JobPaths:
        """The paths of a run over ``config.input.dir``.

        Raises :class:`ConfigError` when the input folder is not set or not a folder, or
        when the output folder would contain the input.  Creates nothing.
        """
        if config.input.dir is None:
            raise ConfigError("no input folder: give INPUT_DIR or set input.dir in the config")
        given = config.input.dir.expanduser()
        if not given.is_dir():
            what = "is not a folder" if given.exists() else "does not exist"
            raise ConfigError(f"input folder {given} {what}", hint="check the path of the recordings")
        input_dir = given.resolve()
        output_dir = _output_for(config, input_dir)
        if output_dir == input_dir or output_dir in input_dir.parents:
            raise ConfigError(
                f"output folder {output_dir} contains the input folder {input_dir}",
                hint="choose an output folder outside the recordings, e.g. -o "
                f"{input_dir.with_name(input_dir.name + '_transcripts')}",
            )
        state_dir = _state_for(config, output_dir)
        return cls(input_dir, output_dir, state_dir, _log_for(config, state_dir), _shared(config))

    @classmethod
    def for_state(cls, config: Config) -> JobPaths:
        """The paths of commands that read a job's state (``status``, ``report``, ``retry``...).

        Raises :class:`ConfigError` when neither ``output.dir`` nor ``state.dir`` (nor
        ``input.dir``, from which the default output follows) says which job.
        """
        input_dir = config.input.dir.expanduser().resolve() if config.input.dir else None
        output_dir: Path | None = None
        if config.output.dir is not None or input_dir is not None:
            output_dir = _output_for(config, input_dir)
        if config.state.dir is None and output_dir is None:
            raise ConfigError("say which job to look at: -o OUTPUT_DIR, --state-dir DIR, or -c CONFIG with "
                              "output.dir or state.dir set")
        state_dir = _state_for(config, output_dir)
        return cls(input_dir, output_dir, state_dir, _log_for(config, state_dir), _shared(config))

    def excluded(self, config: Config) -> tuple[Path, ...]:
        """Folders never scanned as input, even when they lie inside it."""
        folders = [p for p in (self.output_dir, self.state_dir) if p is not None]
        if config.housekeeping.mode == "move":
            folders += [p.expanduser().resolve() for p in (config.housekeeping.done_dir,
                                                            config.housekeeping.failed_dir) if p is not None]
        return tuple(folders)

    def prepare(self) -> None:
        """Create the output and state folders; raises :class:`OperatorError` naming the path.

        With a shared ledger, also removes the temporary folders of this host's worker
        processes that are gone (killed ones leave theirs).
        """
        if self.shared:
            self._remove_dead_workers_tmp()
        for folder in (self.output_dir, self.state_dir, self.log_file.parent):
            if folder is None:
                continue
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                raise OperatorError(f"cannot create the folder {folder}: a file is in the way",
                                    hint="move that file away or choose another output folder (-o)") from None
            except OSError as exc:
                raise fsutil.operator_error(exc, folder, "cannot create the folder") or OperatorError(
                    f"cannot create the folder {folder}: {exc.strerror or exc}",
                    hint="check the path and its permissions") from None


    def _remove_dead_workers_tmp(self) -> None:
        host = socket.gethostname()
        try:
            folders = list((self.state_dir / "tmp").iterdir())
        except OSError:
            return
        for folder in folders:
            name, _, pid = folder.name.rpartition("-")
            if name == _safe_host(host) and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)


def _worker_folder(host: str, pid: int) -> str:
    return f"{_safe_host(host)}-{pid}"


def _safe_host(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", host)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _shared(config: Config) -> bool:
    return config.state.ledger != "sqlite"


def _output_for(config: Config, input_dir: Path | None) -> Path:
    if config.output.dir is not None:
        return config.output.dir.expanduser().resolve()
    assert input_dir is not None
    return input_dir.with_name(input_dir.name + "_transcripts")


def _state_for(config: Config, output_dir: Path | None) -> Path:
    if config.state.dir is not None:
        return config.state.dir.expanduser().resolve()
    assert output_dir is not None
    return output_dir / STATE_FOLDER_NAME


def _log_for(config: Config, state_dir: Path) -> Path:
    return config.log.file.expanduser().resolve() if config.log.file is not None else state_dir / "asrbatch.log"
