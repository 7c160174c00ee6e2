"""The ``asrbatch`` command line: parse, call one library function, render, map errors to exit codes."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

import asrbatch
from asrbatch.config import Config, load_config
from asrbatch.errors import AsrbatchError, ExitCode
from asrbatch.job import run_job, stop_on_signals
from asrbatch.log import close_logging, setup_logging
from asrbatch.runner import FileOutcome, RunOptions, RunSummary

log = logging.getLogger(__name__)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _load(config_path: Path | None, overrides: dict[str, Any]) -> Config:
    return load_config(config_path, overrides=overrides)


def _verbosity(verbose: int, quiet: bool) -> int:
    return -1 if quiet else verbose


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


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


@cli.command(context_settings=CONTEXT)
@click.argument("input_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("-o", "--output", "output_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Transcript folder (default: <INPUT_DIR>_transcripts beside the input).")
@config_option
@click.option("--url", help="Server URL (overrides server.url).")
@click.option("--hotwords", help="Extra hotwords for every recording, comma-separated.")
@click.option("--min-age", type=float, help="Skip files changed less than this many seconds ago.")
@click.option("--formats", help="Outputs to write, comma-separated: txt,json,srt,vtt.")
@click.option("--workers", type=click.IntRange(1, 64), help="Requests in flight per server (default: server.concurrency, else 1).")
@click.option("--max-files", type=click.IntRange(1), help="Send at most this many recordings; the rest wait.")
@click.option("--max-runtime", type=click.FloatRange(1), help="Start no new recording after this many seconds.")
@click.option("--dry-run", is_flag=True, help="List what would be sent and why the rest is skipped; send nothing.")
@click.option("--force", is_flag=True, help="Redo finished recordings and overwrite existing transcripts.")
@verbose_option
@quiet_option
def run(
    input_dir: Path,
    output_dir: Path | None,
    config_path: Path | None,
    url: str | None,
    hotwords: str | None,
    min_age: float | None,
    formats: str | None,
    workers: int | None,
    max_files: int | None,
    max_runtime: float | None,
    dry_run: bool,
    force: bool,
    verbose: int,
    quiet: bool,
) -> int:
    """Transcribe new recordings under INPUT_DIR once, then exit (the cron job).

    \b
    Example:
      asrbatch run /data/recordings -o /data/transcripts --hotwords "Paraformer,FunASR"
    """
    overrides: dict[str, Any] = {
        "server.url": url,
        "output.dir": str(output_dir) if output_dir else None,
        "output.formats": [f.strip() for f in formats.split(",") if f.strip()] if formats else None,
    }
    config = _load(config_path, overrides)
    options = RunOptions(
        input_dir=input_dir,
        output_dir=output_dir,
        force=force,
        dry_run=dry_run,
        min_age=min_age,
        hotwords=tuple(w.strip() for w in (hotwords or "").split(",") if w.strip()),
        max_files=max_files,
        max_runtime=max_runtime,
        workers=workers,
    )
    if dry_run:
        summary = run_job(config, options)
        _print_plan(summary)
        return int(ExitCode.OK)

    _setup_logging(config, input_dir, verbose, quiet)
    progress = _Progress(enabled=_stderr_is_tty() and not quiet)
    try:
        # SIGTERM (systemd stop) or Ctrl-C: finish the recordings in flight, leave the rest pending.
        with stop_on_signals() as stop:
            summary = run_job(config, options, progress=progress, stop=stop)
    finally:
        progress.close()
    _print_summary(summary, quiet=quiet, verbose=verbose)
    return int(summary.exit_code)


def _setup_logging(config: Config, input_dir: Path, verbose: int, quiet: bool) -> None:
    output_root = config.output_dir_for(input_dir)
    state_dir = config.state_dir_for(output_root.expanduser().resolve())
    setup_logging(
        log_file=config.log_file_for(state_dir),
        file_level=config.log.level,
        verbosity=_verbosity(verbose, quiet),
        max_bytes=config.log.max_bytes,
        backups=config.log.backups,
    )


class _Progress:
    """A progress bar on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, event: str, *, total: int = 0, outcome: FileOutcome | None = None) -> None:
        if not self.enabled:
            return
        if event == "start" and total:
            self.bar = click.progressbar(length=total, label="transcribing", file=sys.stderr,
                                         item_show_func=lambda item: item)
            self.bar.__enter__()
        elif event == "file" and self.bar is not None and outcome is not None:
            self.bar.update(1, f"{outcome.outcome} {outcome.key}"[:60])
        elif event == "end":
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _print_plan(summary: RunSummary) -> None:
    click.echo(f"dry run: {summary.input_dir} -> {summary.output_dir} (nothing is sent)")
    for decision in summary.plan:
        verb = {"send": "send", "reuse": "reuse", "rewrite": "rewrite", "skip": "skip"}[decision.action]
        click.echo(f"{verb:7} {decision.recording.key}  ({decision.reason})")
    for key, reason in summary.skipped_by_scan:
        click.echo(f"{'skip':7} {key}  ({reason})")
    click.echo(
        f"would send {sum(d.action == 'send' for d in summary.plan)}, "
        f"reuse {sum(d.action in ('reuse', 'rewrite') for d in summary.plan)}, skip {summary.skipped}"
    )


def _print_summary(summary: RunSummary, *, quiet: bool, verbose: int) -> None:
    code = summary.exit_code
    interactive = _stderr_is_tty()
    if summary.stopped == "server_unavailable":
        click.echo(f"asrbatch: server unavailable, run stopped with {summary.pending} recording(s) pending: "
                   f"{summary.stop_message}", err=True)
    if quiet and code == ExitCode.OK:
        return
    # An interrupted run says so: whoever stopped it learns what is left pending.
    if interactive or verbose or code != ExitCode.OK or summary.stopped == "interrupted":
        click.echo(summary.line(), err=True)


# ----------------------------------------------------------------------------------------------
# watch / cron-line


@cli.command(context_settings=CONTEXT)
@click.argument("input_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("-o", "--output", "output_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Transcript folder (default: <INPUT_DIR>_transcripts beside the input).")
@config_option
@click.option("--url", help="Server URL (overrides server.url).")
@click.option("--hotwords", help="Extra hotwords for every recording, comma-separated.")
@click.option("--formats", help="Outputs to write, comma-separated: txt,json,srt,vtt.")
@click.option("--workers", type=click.IntRange(1, 64), help="Requests in flight at once.")
@click.option("--settle", type=click.FloatRange(0), help="Seconds a closed file must stay unchanged (watch.settle).")
@click.option("--rescan-interval", type=click.FloatRange(1), help="Seconds between full rescans (watch.rescan_interval).")
@verbose_option
@quiet_option
def watch(
    input_dir: Path,
    output_dir: Path | None,
    config_path: Path | None,
    url: str | None,
    hotwords: str | None,
    formats: str | None,
    workers: int | None,
    settle: float | None,
    rescan_interval: float | None,
    verbose: int,
    quiet: bool,
) -> int:
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

    overrides: dict[str, Any] = {
        "server.url": url,
        "output.dir": str(output_dir) if output_dir else None,
        "output.formats": [f.strip() for f in formats.split(",") if f.strip()] if formats else None,
        "watch.settle": settle,
        "watch.rescan_interval": rescan_interval,
    }
    config = _load(config_path, overrides)
    options = RunOptions(
        input_dir=input_dir,
        output_dir=output_dir,
        hotwords=tuple(w.strip() for w in (hotwords or "").split(",") if w.strip()),
        workers=workers,
    )
    _setup_logging(config, input_dir, verbose, quiet)
    show = (_stderr_is_tty() or verbose > 0) and not quiet

    def on_pass(summary: RunSummary) -> None:
        if show and (summary.done or summary.empty or summary.failed or summary.reused or summary.stopped):
            click.echo(summary.line(), err=True)

    return run_watch(config, options, on_pass=on_pass)


@cli.command("cron-line", context_settings=CONTEXT)
@click.argument("input_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("-o", "--output", "output_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Transcript folder (default: output.dir, or <INPUT_DIR>_transcripts).")
@config_option
@click.option("--user", help="User the job runs as (the /etc/cron.d user field; default: you).")
@click.option("--crontab", "personal", is_flag=True, help="Print a personal crontab entry (no user field).")
@click.option("--minute", type=click.IntRange(0, 59), default=5, show_default=True, help="Minute of every hour.")
@click.option("--max-runtime", type=click.FloatRange(1),
              help="Start no new recording after this many seconds (default: 3000 unless run.max_runtime is set).")
@click.option("--lock-file", type=click.Path(path_type=Path, dir_okay=False),
              help="flock file (default: /run/lock/asrbatch-<output>-<hash>.lock).")
@click.option("--log", "log_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Append the job's output to this file instead of having cron mail it.")
def cron_line(
    input_dir: Path,
    output_dir: Path | None,
    config_path: Path | None,
    user: str | None,
    personal: bool,
    minute: int,
    max_runtime: float | None,
    lock_file: Path | None,
    log_file: Path | None,
) -> int:
    """Print the crontab entry that runs this job every hour (for /etc/cron.d/asrbatch).

    The entry uses absolute paths, `flock -n` (a run still going makes the next one
    skip quietly), `-q` (cron mails real errors only) and a --max-runtime bound.

    \b
    Example:
      asrbatch cron-line /data/recordings -o /data/transcripts -c /etc/asrbatch/config.yaml \\
          --user asrbatch | sudo tee /etc/cron.d/asrbatch
    """
    import getpass

    from asrbatch import schedule

    config = _load(config_path, {"output.dir": str(output_dir) if output_dir else None})
    job = schedule.plan(config, input_dir, output_dir=output_dir,
                        user=None if personal else (user or getpass.getuser()), minute=minute,
                        max_runtime=max_runtime, lock_file=lock_file, log_file=log_file)
    click.echo(schedule.render(job), nl=False)
    return 0


# ----------------------------------------------------------------------------------------------
# status / report / retry / forget


def _state_dir(config_path: Path | None, output_dir: Path | None, state_dir: Path | None) -> Path:
    overrides = {"output.dir": str(output_dir) if output_dir else None,
                 "state.dir": str(state_dir) if state_dir else None}
    config = _load(config_path, overrides)
    if config.state.dir is not None:
        return config.state.dir.expanduser().resolve()
    if config.output.dir is None:
        raise click.UsageError("say which run to look at: -o OUTPUT_DIR, --state-dir DIR, or -c CONFIG "
                               "with output.dir or state.dir set")
    return config.state_dir_for(config.output.dir.expanduser().resolve())


state_options = [
    click.option("-o", "--output", "output_dir", type=click.Path(path_type=Path, file_okay=False),
                 help="The run's output folder (its state is in <OUTPUT>/.asrbatch)."),
    click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False), help="The state folder itself."),
    config_option,
]


def with_state_options(func: Any) -> Any:
    for option in reversed(state_options):
        func = option(func)
    return func


def _open_ledger(state: Path) -> Any:
    from asrbatch.ledger import Ledger

    path = state / "ledger.sqlite3"
    if not path.exists():
        raise AsrbatchError(f"no ledger at {path}", hint="has `asrbatch run` been run with this output folder?")
    return Ledger.open(path)


@cli.command(context_settings=CONTEXT)
@with_state_options
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--days", type=click.IntRange(0), default=7, show_default=True, help="Days in the per-day view.")
def status(output_dir: Path | None, state_dir: Path | None, config_path: Path | None, as_json: bool,
           days: int) -> int:
    """Show what the ledger knows: counts by outcome, the last run, failed files.

    \b
    Example:
      asrbatch status -o /data/transcripts
    """
    from asrbatch.report import build_status

    state = _state_dir(config_path, output_dir, state_dir)
    with _open_ledger(state) as ledger:
        report = build_status(ledger, days=days)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    counts = report["counts"]
    click.echo(f"ledger: {state / 'ledger.sqlite3'}")
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
def report(output_dir: Path | None, state_dir: Path | None, config_path: Path | None, html_path: Path | None,
           days: int) -> int:
    """Write an HTML page of what the job has done: totals, a chart of throughput per day, failures, runs.

    The page is self-contained (no scripts, no external files): open it in a browser,
    mail it, or serve it.

    \b
    Example:
      asrbatch report -o /data/transcripts --html /var/www/asrbatch/index.html
    """
    from asrbatch.report import write_html_report

    state = _state_dir(config_path, output_dir, state_dir)
    with _open_ledger(state) as ledger:
        written = write_html_report(ledger, html_path or state / "report.html", days=days)
    click.echo(str(written))
    return 0


@cli.command(context_settings=CONTEXT)
@with_state_options
@click.argument("paths", nargs=-1)
def retry(output_dir: Path | None, state_dir: Path | None, config_path: Path | None, paths: Sequence[str]) -> int:
    """Put failed recordings back in line for the next run (all of them, or PATHS).

    PATHS are relative to the input folder, as `asrbatch status` shows them; a folder
    means everything under it.

    \b
    Example:
      asrbatch retry -o /data/transcripts
    """
    state = _state_dir(config_path, output_dir, state_dir)
    with _open_ledger(state) as ledger:
        reset = ledger.retry([p.strip("/") for p in paths] if paths else None)
    for key in reset:
        click.echo(f"retry {key}")
    click.echo(f"{len(reset)} recording(s) will be tried again on the next run")
    return 0


@cli.command(context_settings=CONTEXT)
@with_state_options
@click.argument("paths", nargs=-1, required=True)
def forget(output_dir: Path | None, state_dir: Path | None, config_path: Path | None, paths: Sequence[str]) -> int:
    """Drop the ledger records of PATHS (relative to the input folder; a folder drops everything under it).

    The next run treats them as new. Transcript files are left where they are.

    \b
    Example:
      asrbatch forget -o /data/transcripts "2024-05/call 17.wav"
    """
    state = _state_dir(config_path, output_dir, state_dir)
    with _open_ledger(state) as ledger:
        dropped = ledger.forget([p.strip("/") for p in paths])
    for key in dropped:
        click.echo(f"forgot {key}")
    if not dropped:
        click.echo("no matching records", err=True)
        return int(ExitCode.USAGE)
    return 0


# ----------------------------------------------------------------------------------------------
# ping / serve / demo


@cli.command(context_settings=CONTEXT)
@click.option("--url", help="Server URL (overrides server.url).")
@config_option
@click.option("--deep", is_flag=True, help="Also transcribe a short clip end to end and time it.")
def ping(url: str | None, config_path: Path | None, deep: bool) -> int:
    """Check the server: reachable, Gradio version and protocol, recognition function present.

    Prints one line and exits 0 when everything is right.

    \b
    Example:
      asrbatch ping --url http://127.0.0.1:7860 --deep
    """
    from asrbatch.transport import ping as ping_server

    config = _load(config_path, {"server.url": url})
    clip = Path(__file__).parent / "data" / "ping.wav" if deep else None
    result = ping_server(config.server, deep=deep, clip=clip)
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
    transcript and the run summary, and stops the server.

    \b
    Example:
      asrbatch demo
    """
    from asrbatch.demo import run_demo

    result = run_demo(samples=samples, output_dir=output_dir or Path("demo-output"), engine=engine,
                      echo=click.echo)
    return int(result.exit_code)


# ----------------------------------------------------------------------------------------------
# entry point and the one place errors become exit codes


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (see :class:`asrbatch.errors.ExitCode`)."""
    try:
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="asrbatch", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo("asrbatch: interrupted", err=True)
        code = 130
    except click.ClickException as exc:
        exc.show()
        code = ExitCode.USAGE
    except AsrbatchError as exc:
        for line in getattr(exc, "problems", None) or [exc.message]:
            click.echo(f"asrbatch: error: {line}", err=True)
        if exc.hint:
            click.echo(f"asrbatch: {exc.hint}", err=True)
        log.debug("traceback", exc_info=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("asrbatch: interrupted", err=True)
        code = 130
    except Exception:  # a bug: crash loudly, with a code that no expected outcome uses
        traceback.print_exc()
        click.echo("asrbatch: internal error (this is a bug; please report it with the traceback above)", err=True)
        code = ExitCode.INTERNAL
    finally:
        close_logging()
    return int(code or 0)


def entry() -> None:
    sys.exit(main())
