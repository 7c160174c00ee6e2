"""The command line as users and cron see it: ping, demo, help texts, docs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from asrbatch.cli import cli, main
from asrbatch.errors import ExitCode
from tests.support.servers import ServerProcess, free_port
from tests.support.wer import wer

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
PROTOCOLS = {"3": "legacy", "4": "sse", "6": "sse-prefixed"}


def asrbatch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asrbatch", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_ping_reports_version_and_protocol(gradio_server: ServerProcess) -> None:
    result = asrbatch("ping", "--url", gradio_server.url)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert "\n" not in line
    protocol = PROTOCOLS[gradio_server.version[0]]
    assert re.fullmatch(
        rf"ok url={re.escape(gradio_server.url)} gradio={re.escape(gradio_server.version)} "
        rf"protocol={protocol} fn_index=0( api_name=recognize)?"
        rf'( template=\[null,"<audio>","<batch_size>","<hotwords>"\] output_index=0)? latency_ms=\d+',
        line,
    ), line


def test_deep_ping_transcribes_a_clip(gradio_server: ServerProcess) -> None:
    result = asrbatch("ping", "--url", gradio_server.url, "--deep")
    assert result.returncode == 0, result.stderr
    fields = dict(part.split("=", 1) for part in result.stdout.split()[1:])
    assert int(fields["roundtrip_ms"]) > 0 and int(fields["text_chars"]) > 10


def test_ping_of_a_dead_server_says_what_to_try() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "asrbatch", "ping", "--url", url], capture_output=True, text=True, timeout=60,
        cwd=REPO, env={"PATH": "/usr/bin:/bin", "ASRBATCH_SERVER_RETRY_ATTEMPTS": "1"},
    )
    assert result.returncode == ExitCode.SERVER_UNAVAILABLE
    assert result.stdout == ""
    assert url in result.stderr and "running" in result.stderr


def test_ping_with_a_missing_function_is_a_configuration_error(gradio_server: ServerProcess, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("server:\n  fn_index: 9\n")
    result = asrbatch("ping", "--url", gradio_server.url, "-c", str(config))
    assert result.returncode == ExitCode.USAGE
    assert "fn_index 9" in result.stderr


def test_demo_runs_the_embedded_default_and_writes_the_log_every_run_writes(tmp_path: Path) -> None:
    result = asrbatch("demo", "-o", str(tmp_path / "demo"), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 recordings found: 5 transcribed." in result.stdout.splitlines()
    log = tmp_path / "demo" / ".asrbatch" / "asrbatch.log"
    assert f"The log of this run: {log}" in result.stdout
    assert "event=summary found=5 new=5 done=5" in log.read_text(encoding="utf-8")
    assert "every run" in README and "<state>/asrbatch.log" in README
    greeting = (tmp_path / "demo" / "greeting.txt").read_text()
    assert wer("Good morning everyone and welcome to the meeting. I think we should start the meeting now.",
               greeting) <= 0.2
    assert (tmp_path / "demo" / "会议 meeting" / "weekly standup.txt").exists()


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help_with_an_example_and_is_in_the_readme(name: str) -> None:
    assert f"asrbatch {name}" in README
    if name == "serve":
        return  # its --help is the server's own
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output


def test_every_exit_code_is_in_the_readme_table() -> None:
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \| ", README, re.MULTILINE), code


def test_version() -> None:
    assert main(["--version"]) == 0


def test_serve_help_names_the_command_people_type() -> None:
    result = asrbatch("serve", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: asrbatch serve ")


def test_the_server_does_not_suggest_a_public_share_link(gradio_server: ServerProcess) -> None:
    shown = gradio_server.log_path.read_text(encoding="utf-8", errors="replace")  # from its start
    assert "share=True" not in shown and "public link" not in shown
    assert f"asrbatch server: listening on 127.0.0.1:{gradio_server.port} (Ctrl-C stops it)" in shown


def test_readme_says_how_to_run_asrbatch_after_the_set_up() -> None:
    setup = README[README.index("## Set-up"):README.index("## Usage")]
    assert ".venv/bin/asrbatch" in setup and "source .venv/bin/activate" in setup
    # What it promises is what the scripts do: the command is in .venv/bin, and they say so.
    assert (REPO / ".venv" / "bin" / "asrbatch").exists() or Path(sys.executable).with_name("asrbatch").exists()
    bootstrap = (REPO / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    assert "source $venv/bin/activate" in bootstrap and "$venv/bin/asrbatch" in bootstrap
    assert "source" in (REPO / "scripts" / "demo.sh").read_text(encoding="utf-8")
    # The test set-up says what it costs, with the figure the build itself prints.
    from tests.support.servers import FRESH_BUILD

    development = README[README.index("## Development"):]
    assert FRESH_BUILD.split(" on ")[0].removeprefix("about ") in development


def test_readme_ping_line_matches_what_ping_prints() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| `asrbatch ping"))
    assert "one line" in row and "the error and what to try" in row
