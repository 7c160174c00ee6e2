"""The scheduling files pass their own tools' checks, and what `asrbatch cron-line` prints runs as cron runs it.

crontab(1) -n, systemd-analyze verify and logrotate -d are the checkers; the asrbatch command
lines inside are parsed by the CLI itself.
"""

from __future__ import annotations

import fcntl
import getpass
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from asrbatch.cli import cli as asrbatch_cli
from tests.support import speech
from tests.support.jobs import REPO, cli, ledger_rows, place
from tests.support.servers import ServerProcess, start_server

DEPLOY = REPO / "deploy"
ASRBATCH = Path(sys.executable).parent / "asrbatch"


def tool(name: str) -> str:
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None)
    if found is None:
        pytest.skip(f"{name} is not installed (scripts/bootstrap.sh --test installs it)")
    return found


def cron_entries(text: str) -> list[tuple[list[str], str | None, str]]:
    """(schedule fields, user, command) of every entry of a cron.d file (or a personal crontab)."""
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or re.match(r"^[A-Z_]+=", line):
            continue
        fields = line.split(None, 6)
        if len(fields) == 7 and not fields[5].startswith(("flock", "/")):
            entries.append((fields[:5], fields[5], fields[6]))
        else:
            fields = line.split(None, 5)
            entries.append((fields[:5], None, fields[5]))
    return entries


def check_with_crontab(text: str, tmp_path: Path) -> None:
    """Hand the entries to crontab -n (a personal crontab has no user field: drop it)."""
    lines = [line for line in text.splitlines() if line.startswith(("SHELL=", "PATH=", "MAILTO="))]
    lines += [" ".join(when) + " " + command for when, _, command in cron_entries(text)]
    candidate = tmp_path / "crontab"
    candidate.write_text("\n".join(lines) + "\n", encoding="utf-8")
    checked = subprocess.run([tool("crontab"), "-n", str(candidate)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr + checked.stdout


def asrbatch_arguments(command: str) -> list[str]:
    """The arguments after `asrbatch` in a command line (flock and redirections removed)."""
    words = shlex.split(command.replace("\\%", "%"))
    start = next(i for i, word in enumerate(words) if Path(word).name == "asrbatch")
    return [w for w in words[start + 1:] if not w.startswith((">", "2>"))]


def parses(arguments: list[str]) -> None:
    """The CLI accepts *arguments* (options known, values valid), without running anything."""
    name, *rest = arguments
    command = asrbatch_cli.commands[name]
    with click.Context(asrbatch_cli) as parent:
        command.make_context(name, list(rest), parent=parent)


def test_shipped_cron_file(tmp_path: Path) -> None:
    text = (DEPLOY / "cron" / "asrbatch").read_text(encoding="utf-8")
    entries = cron_entries(text)
    assert len(entries) == 1
    when, user, command = entries[0]
    assert when == ["5", "*", "*", "*", "*"] and user == "asrbatch"
    assert command.startswith("flock -n /run/lock/asrbatch.lock asrbatch run ")
    check_with_crontab(text, tmp_path)
    arguments = asrbatch_arguments(command)
    assert arguments[-1] == "-q" and "--max-runtime" in arguments
    parses(arguments)
    # The commented alternative (output to a log file) is a valid entry too.
    alternative = next(line[1:].strip() for line in text.splitlines() if line.startswith("# 5 * * * *"))
    check_with_crontab(alternative, tmp_path)
    assert alternative.endswith(">>/var/log/asrbatch/cron.log 2>&1")
    logrotated = (DEPLOY / "cron" / "asrbatch.logrotate").read_text(encoding="utf-8")
    assert "/var/log/asrbatch/cron.log {" in logrotated


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start_server("6.31.0", log_dir=tmp_path_factory.mktemp("deploy-server")) as process:
        yield process


def test_cron_line_prints_an_entry_cron_accepts_and_that_runs(server: ServerProcess, tmp_path: Path) -> None:
    inp, out = tmp_path / "rec 50%" / "in", tmp_path / "rec 50%" / "out"
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[8]))
    config = tmp_path / "config.yaml"
    config.write_text(f"server:\n  url: {server.url}\n", encoding="utf-8")
    lock = tmp_path / "cron.lock"
    printed = cli("cron-line", str(inp), "-o", str(out), "-c", str(config), "--user", "asrbatch",
                  "--lock-file", str(lock), "--minute", "17")
    assert printed.returncode == 0, printed.stderr
    check_with_crontab(printed.stdout, tmp_path)
    (when, user, command), = cron_entries(printed.stdout)
    assert when == ["17", "*", "*", "*", "*"] and user == "asrbatch"
    assert "\\%" in command  # cron would turn a bare % into a newline
    arguments = asrbatch_arguments(command)
    assert arguments[:2] == ["run", str(inp)] and arguments[-1] == "-q"
    assert arguments[arguments.index("-c") + 1] == str(config)
    assert arguments[arguments.index("--max-runtime") + 1] == "3000"
    parses(arguments)

    # Run the command the way cron does: /bin/sh -c with cron's PATH, % unescaped.
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    ran = subprocess.run(["/bin/sh", "-c", command.replace("\\%", "%")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "" and ran.stderr == ""
    assert ledger_rows(out / ".asrbatch")["a.wav"]["outcome"] == "done"

    # While the lock is held (last hour's run still going), the entry is skipped without a word.
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        skipped = subprocess.run(["/bin/sh", "-c", command.replace("\\%", "%")], capture_output=True, text=True,
                                 env=env, timeout=60)
    assert skipped.returncode == 1 and skipped.stdout == "" and skipped.stderr == ""


def test_cron_line_variants(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text("run:\n  max_runtime: 1200\nserver:\n  username: asr\n", encoding="utf-8")
    printed = cli("cron-line", str(inp), "-c", str(config), "--crontab", "--log", str(tmp_path / "cron.log"),
                  env={"ASRBATCH_SERVER_PASSWORD": "secret"})
    assert printed.returncode == 0, printed.stderr
    check_with_crontab(printed.stdout, tmp_path)
    (when, user, command), = cron_entries(printed.stdout)
    assert user is None and when[0] == "5"
    assert "--max-runtime" not in command  # the config bounds the run already
    assert command.endswith(f">>{tmp_path / 'cron.log'} 2>&1")
    assert re.search(r"flock -n /run/lock/asrbatch-in_transcripts-[0-9a-f]{8}\.lock ", command)
    assert "ASRBATCH_SERVER_PASSWORD=..." in printed.stdout and "secret" not in printed.stdout
    default_user = cli("cron-line", str(inp))
    assert cron_entries(default_user.stdout)[0][1] == getpass.getuser()


def systemd_units(tmp_path: Path) -> list[Path]:
    """The shipped units, with ExecStart pointing at this checkout's asrbatch (verify checks it exists)."""
    copies = []
    for unit in sorted((DEPLOY / "systemd").glob("asrbatch*.*")):
        if unit.suffix not in (".service", ".timer"):
            continue
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text(encoding="utf-8").replace("/usr/local/bin/asrbatch", str(ASRBATCH)),
                        encoding="utf-8")
        copies.append(copy)
    return copies


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    units = systemd_units(tmp_path)
    assert [u.name for u in units] == ["asrbatch-watch.service", "asrbatch.service", "asrbatch.timer"]
    verified = subprocess.run([analyze, "verify", "--man=no", *map(str, units)], capture_output=True, text=True,
                              timeout=60)
    assert verified.returncode == 0, verified.stderr
    # Unknown keys and bad values are only warnings to verify: there must be none about our units.
    complaints = [line for line in (verified.stdout + verified.stderr).splitlines()
                  if any(unit.name in line for unit in units)]
    assert complaints == []

    timer = (tmp_path / "asrbatch.timer").read_text(encoding="utf-8")
    calendar = re.search(r"^OnCalendar=(.+)$", timer, re.M)
    assert calendar is not None and "Persistent=true" in timer and "RandomizedDelaySec=" in timer
    next_runs = subprocess.run([analyze, "calendar", "--iterations=2", calendar.group(1)], capture_output=True,
                               text=True, timeout=30)
    assert next_runs.returncode == 0, next_runs.stderr
    elapses = re.findall(r"\d\d:(\d\d):00", next_runs.stdout)
    assert elapses[:2] == ["05", "05"]  # hourly, at five past

    for unit in units:
        text = unit.read_text(encoding="utf-8")
        exec_start = re.search(r"^ExecStart=(.+)$", text, re.M)
        if exec_start is None:
            continue
        parses(asrbatch_arguments(exec_start.group(1)))
        assert "EnvironmentFile=-/etc/asrbatch/asrbatch.env" in text and "ProtectSystem=strict" in text
    service = (tmp_path / "asrbatch.service").read_text(encoding="utf-8")
    assert "Type=oneshot" in service and "SuccessExitStatus=4" in service


def test_systemd_verify_would_notice_a_broken_unit(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    unit = systemd_units(tmp_path)[1]
    unit.write_text(unit.read_text(encoding="utf-8").replace("ProtectSystem=strict", "ProtectSistem=strict"),
                    encoding="utf-8")
    verified = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert "ProtectSistem" in verified.stdout + verified.stderr


def test_logrotate_file(tmp_path: Path) -> None:
    logrotate = tool("logrotate")
    me = getpass.getuser()
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True, check=True).stdout.strip()
    log = tmp_path / "log" / "cron.log"
    log.parent.mkdir()
    log.write_text("asrbatch: server unavailable\n", encoding="utf-8")
    conf = tmp_path / "asrbatch.logrotate"
    text = (DEPLOY / "cron" / "asrbatch.logrotate").read_text(encoding="utf-8")
    conf.write_text(text.replace("/var/log/asrbatch/cron.log", str(log)).replace("asrbatch asrbatch", f"{me} {group}"),
                    encoding="utf-8")
    state = tmp_path / "state"
    checked = subprocess.run([logrotate, "--debug", "--state", str(state), str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0 and "error" not in checked.stderr.lower(), checked.stderr
    forced = subprocess.run([logrotate, "--force", "--state", str(state), str(conf)], capture_output=True, text=True)
    assert forced.returncode == 0, forced.stderr
    assert (log.parent / "cron.log.1").read_text(encoding="utf-8") == "asrbatch: server unavailable\n"
    assert log.exists() and log.stat().st_size == 0


def cron_environment(text: str) -> dict[str, str]:
    """The variable lines of a crontab, as cron reads them (one pair of quotes stripped)."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line)
        if match:
            value = match.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            found[match.group(1)] = value
    return found


def test_cron_line_reproduces_every_run_option_and_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from asrbatch.cli import JOB_FLAGS, RUN_FLAGS, load_job
    from asrbatch.paths import JobPaths

    # One value for every run flag, none of them a default; floats that a short format would round.
    values = {"output_dir": "out dir", "url": "http://gpu-host:7860", "hotwords": "Paraformer, FunASR",
              "min_age": 0.30000000000000004, "formats": "txt,srt", "workers": 3, "max_files": 7,
              "max_runtime": 1234.5678901, "ledger": "postgresql://asr@db-host:5433/asrbatch"}
    assert set(values) == set(RUN_FLAGS), "a new run flag needs a value in this test"
    # Every option of `run` is either a job flag cron-line repeats or per invocation, not for a schedule.
    run_options = {param.name for param in asrbatch_cli.commands["run"].params}
    assert run_options - set(RUN_FLAGS) == {"input_dir", "config_path", "dry_run", "force", "verbose", "quiet"}
    assert set(RUN_FLAGS) <= {param.name for param in asrbatch_cli.commands["cron-line"].params}

    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("ASRBATCH_")]:
        monkeypatch.delenv(name)
    (tmp_path / "rec 100%").mkdir()
    Path("job.yaml").write_text("hotwords: [SeACo]\nserver:\n  retry:\n    attempts: 2\n", encoding="utf-8")
    environment = {"ASRBATCH_STATE_MAX_RUNS": "5", "ASRBATCH_AUDIO_SPLIT_ABOVE": "600",
                   "ASRBATCH_INPUT_HOTWORDS_FILE": " words.txt"}
    arguments = ["cron-line", "rec 100%", "-c", "job.yaml", "--user", "asrbatch"]
    for name, value in values.items():
        arguments += [JOB_FLAGS[name].long, str(value)]
    printed = CliRunner().invoke(asrbatch_cli, arguments, env=environment, catch_exceptions=False)
    assert printed.exit_code == 0, printed.output
    check_with_crontab(printed.output, tmp_path)
    (_, user, command), = cron_entries(printed.output)
    assert user == "asrbatch"
    words = asrbatch_arguments(command)
    assert words[-1] == "-q"
    parses(words)

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    original = load_job(Path("job.yaml"), Path("rec 100%"), {k: _parsed(k, v) for k, v in values.items()})
    for name in environment:
        monkeypatch.delenv(name)

    # Cron's view: another folder, only the crontab's variables.
    monkeypatch.chdir("/")
    for name, value in cron_environment(printed.output).items():
        if name.startswith("ASRBATCH_"):
            monkeypatch.setenv(name, value)
    with click.Context(asrbatch_cli) as parent:
        context = asrbatch_cli.commands["run"].make_context("run", words[1:], parent=parent)
    params = context.params
    assert not params["dry_run"] and not params["force"] and params["quiet"]
    scheduled = load_job(params["config_path"], params["input_dir"], {k: params[k] for k in RUN_FLAGS})

    assert _absolute(scheduled, tmp_path) == _absolute(original, tmp_path)
    assert JobPaths.for_run(scheduled) == JobPaths.for_run(_absolute(original, tmp_path))
    assert scheduled.hotwords == ("SeACo", "Paraformer", "FunASR")
    assert scheduled.input.min_age == 0.30000000000000004 and scheduled.run.max_runtime == 1234.5678901
    assert (scheduled.state.max_runs, scheduled.audio.split_above, scheduled.server.retry.attempts) == (5, 600.0, 2)
    assert scheduled.output.dir == tmp_path / "out dir" and scheduled.source == tmp_path / "job.yaml"


def _parsed(name: str, value: object) -> object:
    """The value click hands the command for the text *value* of flag *name*."""
    option = next(p for p in asrbatch_cli.commands["run"].params if p.name == name)
    with click.Context(asrbatch_cli) as context:
        return option.type_cast_value(context, str(value))


def _absolute(config, folder: Path):  # type: ignore[no-untyped-def]
    """*config* with its relative paths made absolute as seen from *folder* (absolute ones kept)."""
    import dataclasses

    def absolute(path: Path | None) -> Path | None:
        return None if path is None else (folder / path).resolve()

    return dataclasses.replace(config, source=absolute(config.source),
                               input=dataclasses.replace(config.input, dir=absolute(config.input.dir)),
                               output=dataclasses.replace(config.output, dir=absolute(config.output.dir)))
