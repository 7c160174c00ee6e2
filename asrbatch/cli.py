"""The ``asrbatch`` command line: parse, call one library function, render, map errors to exit codes."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

import asrbatch
from asrbatch.config import Config, LogConfig, config_variables, load_config
from asrbatch.console import Console, ConsoleHandler
from asrbatch.display import RunProgress, WatchDisplay, plan_lines, summary_lines
from asrbatch.errors import (
    AsrbatchError,
    ConfigError,
    EndpointError,
    ExitCode,
    FileError,
    ServerUnavailableError,
)
from asrbatch.fsutil import operator_error
from asrbatch.job import run_job, stop_on_signals
from asrbatch.log import close_logging, setup_logging
from asrbatch.outcomes import RunSummary, StopReason
from asrbatch.paths import JobPaths
from asrbatch.runner import RunOptions

log = logging.getLogger(__name__)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


@dataclass(frozen=True)
class JobFlag:
    """A command-line flag that is a config key (one road for settings: flags are key paths)."""

    name: str
    """The click parameter name."""
    decls: tuple[str, ...]
    key: str
    """The config key path it sets."""
    help: str
    options: Mapping[str, Any] = field(default_factory=dict)
    to_config: Callable[[Any], Any] = lambda value: value
    adds: bool = False
    """Appends to a list key instead of replacing it (``--hotwords``)."""

    @property
    def long(self) -> str:
        return next(d for d in self.decls if d.startswith("--"))

    def decorate(self, func: Any) -> Any:
        return click.option(*self.decls, self.name, help=self.help, **self.options)(func)


JOB_FLAGS = {flag.name: flag for flag in (
    JobFlag("output_dir", ("-o", "--output"), "output.dir",
            "Transcript folder (default: output.dir, else <INPUT_DIR>_transcripts beside the input).",
            {"type": click.Path(path_type=Path, file_okay=False)}, to_config=lambda p: str(Path(p).expanduser())),
    JobFlag("url", ("--url",), "server.url", "Server URL (overrides server.url)."),
    JobFlag("hotwords", ("--hotwords",), "hotwords", "Extra hotwords for every recording, comma-separated.",
            to_config=_split, adds=True),
    JobFlag("min_age", ("--min-age",), "input.min_age", "Skip files changed less than this many seconds ago.",
            {"type": click.FloatRange(0)}),
    JobFlag("formats", ("--formats",), "output.formats", "Outputs to write, comma-separated: txt,json,srt,vtt.",
            to_config=_split),
    JobFlag("workers", ("--workers",), "server.concurrency",
            "Requests in flight per server (default: server.concurrency, else what the server reports, else 1).",
            {"type": click.IntRange(1, 64)}),
    JobFlag("max_files", ("--max-files",), "run.max_files", "Send at most this many recordings; the rest wait.",
            {"type": click.IntRange(1)}),
    JobFlag("max_runtime", ("--max-runtime",), "run.max_runtime",
            "Start no new recording after this many seconds.", {"type": click.FloatRange(1)}),
    JobFlag("settle", ("--settle",), "watch.settle", "Seconds a closed file must stay unchanged (watch.settle).",
            {"type": click.FloatRange(0)}),
    JobFlag("rescan_interval", ("--rescan-interval",), "watch.rescan_interval",
            "Seconds between full rescans (watch.rescan_interval).", {"type": click.FloatRange(1)}),
    JobFlag("ledger", ("--ledger",), "state.ledger",
            "sqlite (the file in the state folder), or a postgresql:// URL (no password) that several workers "
            "share (state.ledger)."),
)}
RUN_FLAGS = ("output_dir", "url", "hotwords", "min_age", "formats", "workers", "max_files", "max_runtime", "ledger")
WATCH_FLAGS = ("output_dir", "url", "hotwords", "formats", "workers", "settle", "rescan_interval", "ledger")


def job_flags(names: Sequence[str]) -> Callable[[Any], Any]:
    """Add the flags *names* of :data:`JOB_FLAGS` to a command."""

    def decorate(func: Any) -> Any:
        for name in reversed(names):
            func = JOB_FLAGS[name].decorate(func)
        return func

    return decorate


def flag_arguments(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(overrides, additions)`` for :func:`~asrbatch.config.load_config` from the given flag values."""
    overrides: dict[str, Any] = {}
    additions: dict[str, Any] = {}
    for name, value in values.items():
        flag = JOB_FLAGS.get(name)
        if flag is None or value is None:
            continue
        (additions if flag.adds else overrides)[flag.key] = flag.to_config(value)
    return overrides, additions


def load_job(config_path: Path | None, input_dir: Path | None, values: Mapping[str, Any]) -> Config:
    """The Config of a job: the file, the environment, then INPUT_DIR and the flags as key paths."""
    overrides, additions = flag_arguments(values)
    if input_dir is not None:
        overrides["input.dir"] = str(input_dir.expanduser())
    return load_config(config_path, overrides=overrides, additions=additions)


def _load(config_path: Path | None, overrides: dict[str, Any]) -> Config:
    return load_config(config_path, overrides=overrides)


def _verbosity(verbose: int, quiet: bool) -> int:
    return -1 if quiet else verbose


config_option = click.option(
    "-c", "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
    help="YAML config file (default: $ASRBATCH_CONFIG).",
)
verbose_option = click.option("-v", "--verbose", count=True, help="More detail on the console (-vv: debug).")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="Print errors only.")


@click.group(context_settings=CONTEXT)
@click.version_option(asrbatch.__version__, prog_name="asrbatch")
def cli() -> None:
    """Turn folders of recordings into text on your own Gradio speech-recognition server.

    \b
    Typical use:
      asrbatch ping --url http://gpu-host:7860
      asrbatch run /data/recordings -o /data/transcripts
      asrbatch status -o /data/transcripts
    """


# ----------------------------------------------------------------------------------------------
# run


input_argument = click.argument("input_dir", required=False, type=click.Path(path_type=Path, file_okay=False))


@cli.command(context_settings=CONTEXT)
@input_argument
@config_option
@job_flags(RUN_FLAGS)
@click.option("--dry-run", is_flag=True, help="Show what the run would do, with its local checks; send nothing.")
@click.option("--force", is_flag=True, help="Redo finished recordings and overwrite existing transcripts.")
@verbose_option
@quiet_option
def run(input_dir: Path | None, config_path: Path | None, dry_run: bool, force: bool, verbose: int, quiet: bool,
        **flags: Any) -> int:
    """Transcribe new recordings under INPUT_DIR (or input.dir) once, then exit (the cron job).

    \b
    Example:
      asrbatch run /data/recordings -o /data/transcripts --hotwords "Paraformer,FunASR"
    """
    config = load_job(config_path, input_dir, flags)
    options = RunOptions(force=force, dry_run=dry_run)
    if dry_run:
        summary = run_job(config, options)
        for line in plan_lines(summary):
            click.echo(line)
        return int(ExitCode.OK)

    console = _setup_console(config, verbose, quiet)
    progress = RunProgress(console) if not quiet else None
    try:
        # SIGTERM (systemd stop) or Ctrl-C: finish the recordings in flight, leave the rest pending.
        with stop_on_signals() as stop:
            summary = run_job(config, options, progress=progress, stop=stop)
    finally:
        if progress is not None:
            progress.close()
    _print_summary(summary, console, quiet=quiet, verbose=verbose, server=_server_text(config))
    return int(summary.exit_code)


def _setup_console(config: Config | None, verbose: int, quiet: bool) -> Console:
    """The console of a command (stderr, a status line on a terminal) and, for a job, its log file.

    The log file is left out when the job's folders are not valid (a mistyped input folder
    creates no folder; the command then says what is wrong)."""
    log_file: Path | None = None
    if config is not None:
        try:
            log_file = JobPaths.for_run(config).log_file
        except ConfigError:
            log_file = None
    settings = config.log if config is not None else LogConfig()
    console = Console()
    setup_logging(
        log_file=log_file,
        file_level=settings.level,
        verbosity=_verbosity(verbose, quiet),
        max_bytes=settings.max_bytes,
        backups=settings.backups,
        console=ConsoleHandler(console, _verbosity(verbose, quiet)),
    )
    return console


def _server_text(config: Config) -> str:
    return ",".join(config.server.urls) if config.server.urls else config.server.url


def _print_summary(summary: RunSummary, console: Console, *, quiet: bool, verbose: int,
                   server: str | None = None) -> None:
    """The end-of-run summary: on a terminal always, in full; elsewhere (cron) only when something
    failed or the run was interrupted, or with -v; with -q only when something failed."""
    code = summary.exit_code
    if quiet and code == ExitCode.OK:
        return
    detailed = console.interactive and not quiet
    # An interrupted run says so: whoever stopped it learns what is left pending.
    if detailed or verbose or code != ExitCode.OK or summary.stopped == StopReason.INTERRUPTED:
        for line in summary_lines(summary, console, detailed=detailed, server=server):
            console.print(line)


# ----------------------------------------------------------------------------------------------
# watch / cron-line


@cli.command(context_settings=CONTEXT)
@input_argument
@config_option
@job_flags(WATCH_FLAGS)
@verbose_option
@quiet_option
def watch(input_dir: Path | None, config_path: Path | None, verbose: int, quiet: bool, **flags: Any) -> int:
    """Watch INPUT_DIR and transcribe each recording once it is complete, until stopped.

    A recording is sent once its writer has closed it and it stayed unchanged for
    --settle seconds; a full rescan every --rescan-interval seconds catches anything
    missed.  Same ledger, lock and outputs as `asrbatch run`, so both can share a
    folder.  SIGTERM or Ctrl-C stops after the recordings in flight (exit 0).

    \b
    Example:
      asrbatch watch /data/recordings -o /data/transcripts -c /etc/asrbatch/config.yaml
    """
    from asrbatch.watch import run_watch

    config = load_job(config_path, input_dir, flags)
    JobPaths.for_run(config)  # a bad input folder is a usage error before anything starts
    console = _setup_console(config, verbose, quiet)
    display = WatchDisplay(console, verbose=verbose > 0) if not quiet else None
    try:
        return run_watch(config, RunOptions(), on_pass=display)
    finally:
        console.clear()


@cli.command("cron-line", context_settings=CONTEXT)
@input_argument
@config_option
@job_flags(RUN_FLAGS)
@click.option("--user", help="User the job runs as (the /etc/cron.d user field; default: you).")
@click.option("--crontab", "personal", is_flag=True, help="Print a personal crontab entry (no user field).")
@click.option("--minute", type=click.IntRange(0, 59), default=5, show_default=True, help="Minute of every hour.")
@click.option("--lock-file", type=click.Path(path_type=Path, dir_okay=False),
              help="flock file (default: /run/lock/asrbatch-<output>-<hash>.lock).")
@click.option("--log", "log_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Append the job's output to this file instead of having cron mail it.")
def cron_line(
    input_dir: Path | None,
    config_path: Path | None,
    user: str | None,
    personal: bool,
    minute: int,
    lock_file: Path | None,
    log_file: Path | None,
    **flags: Any,
) -> int:
    """Print the crontab entry that runs this job every hour (for /etc/cron.d/asrbatch).

    Every run option given here is repeated in the entry, with absolute paths, and so
    are the ASRBATCH_* settings of your environment (as crontab variable lines); the
    entry adds `flock -n` (a run still going makes the next one skip quietly), `-q`
    (cron mails real errors only) and a --max-runtime bound (50 minutes unless given
    or set as run.max_runtime).  --force and --dry-run are not for a schedule.

    \b
    Example:
      asrbatch cron-line /data/recordings -o /data/transcripts -c /etc/asrbatch/config.yaml \\
          --user asrbatch | sudo tee /etc/cron.d/asrbatch
    """
    import getpass

    from asrbatch import schedule

    config = load_job(config_path, input_dir, flags)
    flag_args: list[str] = []
    for name in RUN_FLAGS:
        value = flags.get(name)
        if value is None or name in ("output_dir", "max_runtime"):  # the entry has these in any case
            continue
        flag_args += [JOB_FLAGS[name].long, schedule.number_text(value) if isinstance(value, float) else str(value)]
    job = schedule.plan(config, user=None if personal else (user or getpass.getuser()), minute=minute,
                        max_runtime=flags.get("max_runtime"), lock_file=lock_file, log_file=log_file,
                        flags=tuple(flag_args), environment=config_variables())
    click.echo(schedule.render(job), nl=False)
    return 0


# ----------------------------------------------------------------------------------------------
# status / report / retry / forget


@dataclass(frozen=True)
class StateJob:
    """The job a state command looks at: its config, and its folders where they are known (a shared
    ledger needs none)."""

    config: Config
    paths: JobPaths | None


def _state_job(config_path: Path | None, output_dir: Path | None, state_dir: Path | None,
               ledger: str | None) -> StateJob:
    overrides = {"output.dir": str(output_dir) if output_dir else None,
                 "state.dir": str(state_dir) if state_dir else None, "state.ledger": ledger}
    config = _load(config_path, overrides)
    try:
        return StateJob(config, JobPaths.for_state(config))
    except ConfigError as exc:
        if config.state.ledger != "sqlite":
            return StateJob(config, None)
        raise click.UsageError(exc.message) from None


state_options = [
    click.option("-o", "--output", "output_dir", type=click.Path(path_type=Path, file_okay=False),
                 help="The run's output folder (its state is in <OUTPUT>/.asrbatch)."),
    click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False), help="The state folder itself."),
    click.option("--ledger", help="The shared ledger's postgresql:// URL (state.ledger), or sqlite."),
    config_option,
]


def with_state_options(func: Any) -> Any:
    for option in reversed(state_options):
        func = option(func)
    return func


def _open_ledger(job: StateJob) -> Any:
    from asrbatch.ledger import open_ledger

    return open_ledger(job.config, job.paths, create=False)


@cli.command(context_settings=CONTEXT)
@with_state_options
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--days", type=click.IntRange(0), default=7, show_default=True, help="Days in the per-day view.")
def status(output_dir: Path | None, state_dir: Path | None, ledger: str | None, config_path: Path | None,
           as_json: bool, days: int) -> int:
    """Show what the ledger knows: counts by outcome, the last run, failed files, runs by host.

    \b
    Example:
      asrbatch status -o /data/transcripts
      asrbatch status --ledger postgresql://asrbatch@db-host/transcripts
    """
    from asrbatch.report import build_status

    job = _state_job(config_path, output_dir, state_dir, ledger)
    with _open_ledger(job) as opened:
        report = build_status(opened, days=days)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    counts = report["counts"]
    click.echo(f"ledger: {report['ledger']}")
    click.echo("recordings: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none")
               + f" (audio {report['audio_hours']:.2f} h)")
    last = report["last_run"]
    if last:
        s = last["summary"]
        click.echo(
            f"last run: #{last['id']} {last['started_at']} {last['status']} exit={last['exit_code']}"
            + (f" found={s.get('found')} done={s.get('done')} failed={s.get('failed')}" if "found" in s else "")
        )
    else:
        click.echo("last run: none")
    click.echo(f"last success: {report['last_success_at'] or 'never'}")
    if len(report["hosts"]) > 1 or report["shared"]:
        click.echo("runs by host: " + (", ".join(
            f"{h['host']} {h['runs']} (last {h['last_started_at']} {h['last_status']}"
            + (f" exit={h['last_exit_code']}" if h["last_exit_code"] is not None else "") + ")"
            for h in report["hosts"]) or "none"))
    if report["claims"]:
        by_worker: dict[str, int] = {}
        for claim in report["claims"]:
            by_worker[claim["worker"]] = by_worker.get(claim["worker"], 0) + 1
        click.echo(f"in progress: {len(report['claims'])} recording(s), claimed by "
                   + ", ".join(f"{worker} ({n})" for worker, n in sorted(by_worker.items())))
    period = report["period"]
    if days:
        click.echo(
            f"last {days} day(s): files={period['files']} done={period['done']} empty={period['empty']} "
            f"failed={period['failed']} audio_h={period['audio_hours']:.2f}"
        )
    if report["daily"]:
        click.echo("per day (UTC):")
        for day in report["daily"]:
            reasons = "; ".join(f"{n}x {r}" for r, n in sorted(day["failures"].items(), key=lambda x: -x[1])[:3])
            click.echo(
                f"  {day['day']}  files={day['files']} done={day['done']} empty={day['empty']} "
                f"failed={day['failed']} audio_h={day['audio_seconds'] / 3600:.2f}"
                + (f"  ({reasons})" if reasons else "")
            )
    if report["failed"]:
        click.echo("failed:")
        for f in report["failed"]:
            kind = "permanent" if f["permanent"] else f"runs={f['failed_runs']}"
            click.echo(f"  {f['path']}  attempts={f['attempts']} {kind}  {f['error']}")
    return 0


@cli.command(context_settings=CONTEXT)
@with_state_options
@click.option("--html", "html_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write the page (default: <state>/report.html).")
@click.option("--days", type=click.IntRange(1), default=30, show_default=True, help="Days in the chart and tables.")
def report(output_dir: Path | None, state_dir: Path | None, ledger: str | None, config_path: Path | None,
           html_path: Path | None, days: int) -> int:
    """Write an HTML page of what the job has done: totals, a chart of throughput per day, failures, runs.

    The page is self-contained (no scripts, no external files): open it in a browser,
    mail it, or serve it.

    \b
    Example:
      asrbatch report -o /data/transcripts --html /var/www/asrbatch/index.html
    """
    from asrbatch.report import write_html_report

    job = _state_job(config_path, output_dir, state_dir, ledger)
    target = html_path or (job.paths.report if job.paths is not None else None)
    if target is None:
        raise click.UsageError("say where the page goes: --html FILE (or -o OUTPUT_DIR for <state>/report.html)")
    with _open_ledger(job) as opened:
        written = write_html_report(opened, target, days=days)
    click.echo(str(written))
    return 0


@cli.command(context_settings=CONTEXT)
@with_state_options
@click.argument("paths", nargs=-1)
def retry(output_dir: Path | None, state_dir: Path | None, ledger: str | None, config_path: Path | None,
          paths: Sequence[str]) -> int:
    """Put failed recordings back in line for the next run (all of them, or PATHS).

    PATHS are relative to the input folder, as `asrbatch status` shows them; a folder
    means everything under it.

    \b
    Example:
      asrbatch retry -o /data/transcripts
    """
    job = _state_job(config_path, output_dir, state_dir, ledger)
    with _open_ledger(job) as opened:
        reset = opened.retry([p.strip("/") for p in paths] if paths else None)
    for key in reset:
        click.echo(f"retry {key}")
    click.echo(f"{len(reset)} recording(s) will be tried again on the next run")
    return 0


@cli.command(context_settings=CONTEXT)
@with_state_options
@click.argument("paths", nargs=-1, required=True)
def forget(output_dir: Path | None, state_dir: Path | None, ledger: str | None, config_path: Path | None,
           paths: Sequence[str]) -> int:
    """Drop the ledger records of PATHS (relative to the input folder; a folder drops everything under it).

    The next run treats them as new. Transcript files are left where they are.

    \b
    Example:
      asrbatch forget -o /data/transcripts "2024-05/call 17.wav"
    """
    job = _state_job(config_path, output_dir, state_dir, ledger)
    with _open_ledger(job) as opened:
        dropped = opened.forget([p.strip("/") for p in paths])
    for key in dropped:
        click.echo(f"forgot {key}")
    if not dropped:
        click.echo("no matching records", err=True)
        return int(ExitCode.USAGE)
    return 0


@cli.group("ledger", context_settings=CONTEXT)
def ledger_group() -> None:
    """Look after the ledger itself: move a job's records between SQLite and PostgreSQL.

    \b
    Example:
      asrbatch ledger copy /data/transcripts/.asrbatch postgresql://asrbatch@db-host/transcripts
    """


@ledger_group.command("copy", context_settings=CONTEXT)
@click.argument("source")
@click.argument("destination")
@click.option("--replace", is_flag=True, help="Overwrite a destination that already holds records.")
def ledger_copy(source: str, destination: str, replace: bool) -> int:
    """Copy every recording, chunk, run and event from SOURCE into DESTINATION, and check the counts.

    SOURCE and DESTINATION are each an SQLite ledger (the ledger.sqlite3 file, or the
    state folder holding it) or a postgresql:// URL (password from PGPASSWORD or
    ~/.pgpass, never in the URL).  Stop the job's runs first: the copy refuses a
    source whose workers hold claims, and a destination that is not empty unless
    --replace.  The source is left as it was.

    \b
    Example:
      asrbatch ledger copy /data/transcripts/.asrbatch postgresql://asrbatch@db-host/transcripts
      asrbatch ledger copy postgresql://asrbatch@db-host/transcripts /data/transcripts/.asrbatch --replace
    """
    from asrbatch.ledger import copy_between

    copied = copy_between(source, destination, replace=replace)
    click.echo(f"copied {', '.join(f'{table}={count}' for table, count in copied.counts.items())}: "
               f"{copied.source} -> {copied.destination} (counts checked)")
    return 0


# ----------------------------------------------------------------------------------------------
# ping / serve / demo


@cli.command(context_settings=CONTEXT)
@click.option("--url", help="Server URL (overrides server.url).")
@config_option
@click.option("--deep", is_flag=True, help="Also transcribe a short clip end to end and time it.")
def ping(url: str | None, config_path: Path | None, deep: bool) -> int:
    """Check the server: reachable, its protocol and kind (Gradio version and recognition function,
    funasr-server and its models, the FunASR runtime), usable.

    Prints one line and exits 0 when everything is right; otherwise the error and what
    to try, and exits 3 (not reachable) or 2 (reachable but not usable).

    \b
    Example:
      asrbatch ping --url http://127.0.0.1:7860 --deep
      asrbatch ping --url wss://gpu-host:10095
    """
    from asrbatch.transport import ping as ping_server

    config = _load(config_path, {"server.url": url})
    clip = Path(__file__).parent / "data" / "ping.wav" if deep else None
    console = _setup_console(None, 0, False)  # retries: a passing note on a terminal, else nothing
    try:
        result = ping_server(config.server, deep=deep, clip=clip)
    except ServerUnavailableError as exc:
        raise ServerUnavailableError(
            exc.message, hint="is the server running, and reachable from here (its address, port, firewall)?",
        ) from exc
    except FileError as exc:  # a deep ping's clip: known good audio, so this is the server's trouble
        known = f"the server at {config.server.url} answers but did not transcribe a known test clip: {exc.message}"
        if exc.permanent:
            raise EndpointError(known, hint="the server refused the clip: check server.* (the function, "
                                            "its arguments, the codec) against what the server takes") from exc
        raise ServerUnavailableError(known, hint="look at the server's log (GPU memory, a backend it "
                                                 "depends on), then ping again") from exc
    finally:
        console.clear()
    click.echo(result.line())
    return 0


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("server_args", nargs=-1, type=click.UNPROCESSED)
def serve(server_args: Sequence[str]) -> int:
    """Start the reference Gradio ASR WebUI (needs `pip install 'asrbatch[server]'`).

    Arguments go to the server; `asrbatch serve --help` lists them.

    \b
    Example:
      asrbatch serve --engine sphinx --host 127.0.0.1 --port 7860
    """
    try:
        from asrbatch.server import main as server_main
    except ImportError as exc:
        raise AsrbatchError(f"the reference server cannot start: {exc}",
                            hint="install it with: pip install 'asrbatch[server]'") from exc
    return int(server_main(list(server_args)))


@cli.command(context_settings=CONTEXT)
@click.option("--samples", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Folder of recordings (default: the samples shipped with asrbatch).")
@click.option("-o", "--output", "output_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where the transcripts go (default: ./demo-output).")
@click.option("--engine", default="sphinx", show_default=True, help="Engine of the local reference server.")
def demo(samples: Path | None, output_dir: Path | None, engine: str) -> int:
    """Run the whole job on its embedded default: a local reference server over the sample recordings.

    Starts the server (sphinx engine, CPU), transcribes the samples, prints each
    transcript and the run summary, and stops the server.  The ledger and the log are
    in <output>/.asrbatch, as for every run.

    \b
    Example:
      asrbatch demo
    """
    from asrbatch.demo import run_demo

    progress: RunProgress | None = None
    log_file: Path | None = None

    def prepare(config: Config) -> RunProgress:
        nonlocal progress, log_file
        log_file = JobPaths.for_run(config).log_file
        progress = RunProgress(_setup_console(config, 0, False))
        return progress

    try:
        result = run_demo(samples=samples, output_dir=output_dir or Path("demo-output"), engine=engine,
                          echo=click.echo, prepare=prepare)
    finally:
        if progress is not None:
            progress.close()
    for line in summary_lines(result.summary, Console(sys.stdout, interactive=False), detailed=True):
        click.echo(line)
    click.echo(f"The log of this run: {log_file}")
    return int(result.exit_code)


# ----------------------------------------------------------------------------------------------
# entry point and the one place errors become exit codes


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (see :class:`asrbatch.errors.ExitCode`)."""
    try:
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="asrbatch", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort as exc:
        if isinstance(exc.__context__, EOFError):  # click turns any EOFError into Abort: not a Ctrl-C
            code = _bug(exc.__context__)
        else:
            click.echo("asrbatch: interrupted", err=True)
            code = 130
    except click.ClickException as exc:
        exc.show()
        code = ExitCode.USAGE
    except AsrbatchError as exc:
        label = Console().style("error:", "red", "bold")
        for line in getattr(exc, "problems", None) or [exc.message]:
            click.echo(f"asrbatch: {label} {line}", err=True)
        if exc.hint:
            click.echo(f"asrbatch: {exc.hint}", err=True)
        log.debug("traceback", exc_info=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("asrbatch: interrupted", err=True)
        code = 130
    except OSError as exc:
        # The machine in the way somewhere no expected error was raised for: still the operator's.
        problem = operator_error(exc, exc.filename or "?", "cannot go on")
        if problem is None:
            code = _bug(exc)
        else:
            click.echo(f"asrbatch: error: {problem.message}", err=True)
            click.echo(f"asrbatch: {problem.hint}", err=True)
            log.debug("traceback", exc_info=True)
            code = problem.exit_code
    except Exception as exc:
        code = _bug(exc)
    finally:
        close_logging()
    return int(code or 0)


def _bug(exc: BaseException) -> int:
    """A bug: crash loudly, with a code that no expected outcome uses."""
    traceback.print_exception(exc)
    click.echo("asrbatch: internal error (this is a bug; please report it with the traceback above)", err=True)
    return int(ExitCode.INTERNAL)


def entry() -> None:
    sys.exit(main())
