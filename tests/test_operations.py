"""Operating the job unattended: run bounds, what is left stays pending, and the docs an operator follows."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from asrbatch.cli import cli as asrbatch_cli
from asrbatch.errors import ExitCode
from tests.support import speech
from tests.support.faultproxy import Action, FaultProxy
from tests.support.jobs import RECOGNITION, REPO, cli, ledger_rows, place, runs
from tests.support.servers import ServerProcess, start_server

README = (REPO / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start_server("6.31.0", log_dir=tmp_path_factory.mktemp("operations-server")) as process:
        yield process


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[FaultProxy]:
    with FaultProxy(server.url) as p:
        yield p


def corpus(inp: Path, count: int) -> list[str]:
    keys = [f"r{i:02d}.wav" for i in range(count)]
    for i, key in enumerate(keys):
        place(inp, key, speech.synthesize(speech.SENTENCES[i]))
    return keys


def outcomes(out: Path) -> dict[str, str]:
    return {k: r["outcome"] for k, r in ledger_rows(out / ".asrbatch").items()}


def test_max_files_leaves_the_rest_pending_for_the_next_runs(proxy: FaultProxy, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    keys = corpus(inp, 5)
    first = cli("run", str(inp), "-o", str(out), "--url", proxy.url, "--max-files", "2")
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""  # a bounded run is a normal run: nothing for cron to mail
    summary = runs(out / ".asrbatch")[-1]["summary"]
    assert (summary["done"], summary["pending"], summary["stopped"]) == (2, 3, "max_files")
    assert sorted(k for k, o in outcomes(out).items() if o == "done") == keys[:2]  # in path order
    assert proxy.count("POST", RECOGNITION) == 2
    log = (out / ".asrbatch" / "asrbatch.log").read_text(encoding="utf-8")
    assert "pending=3" in log and "stopped=max_files" in log

    assert cli("run", str(inp), "-o", str(out), "--url", proxy.url, "--max-files", "2").returncode == 0
    assert cli("run", str(inp), "-o", str(out), "--url", proxy.url, "--max-files", "2").returncode == 0
    assert outcomes(out) == dict.fromkeys(keys, "done")
    assert runs(out / ".asrbatch")[-1]["summary"]["stopped"] is None  # the last one finished everything
    assert proxy.count("POST", RECOGNITION) == 5  # each recording once


def test_bounded_run_with_a_failed_file_exits_1(proxy: FaultProxy, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    corpus(inp, 3)
    place(inp, "a-broken.mp3", b"not audio\n" * 30)  # first in path order
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"run": {"max_files": 2}}), encoding="utf-8")  # the bound from the config
    result = cli("run", str(inp), "-o", str(out), "--url", proxy.url, "-c", str(config), "-q")
    assert result.returncode == int(ExitCode.FILES_FAILED)
    assert "1 failed" in result.stderr and "stopped at the --max-files bound" in result.stderr
    summary = runs(out / ".asrbatch")[-1]["summary"]
    assert (summary["failed"], summary["done"], summary["pending"], summary["stopped"]) == (1, 1, 2, "max_files")


def delayed(seconds: float) -> Action:
    """Forward the request after *seconds* (a slow server)."""
    def act(handler, body: bytes) -> None:  # type: ignore[no-untyped-def]
        handler.state.stopping.wait(seconds)
        handler.forward(body)
    act.__name__ = "delayed"
    return act


def test_max_runtime_starts_nothing_new_after_the_bound(proxy: FaultProxy, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    keys = corpus(inp, 5)
    proxy.add("POST", RECOGNITION, delayed(1.2), times=None)
    result = cli("run", str(inp), "-o", str(out), "--url", proxy.url, "--max-runtime", "1", "--workers", "1")
    assert result.returncode == 0, result.stderr
    summary = runs(out / ".asrbatch")[-1]["summary"]
    assert summary["stopped"] == "max_runtime"
    # The recordings started before the bound finish (one sending, the next one prepared); no later one starts.
    assert 1 <= summary["done"] <= 2 and summary["done"] + summary["pending"] == len(keys)
    assert proxy.count("POST", RECOGNITION) == summary["done"]
    assert all(o == "done" for o in outcomes(out).values())  # nothing half-done, nothing failed

    proxy.clear()
    rest = cli("run", str(inp), "-o", str(out), "--url", proxy.url)
    assert rest.returncode == 0
    assert outcomes(out) == dict.fromkeys(keys, "done")
    assert proxy.count("POST", RECOGNITION) == len(keys)


def test_every_command_has_help_with_an_example_and_is_in_the_readme() -> None:
    for name, command in asrbatch_cli.commands.items():
        assert f"asrbatch {name}" in README, f"`asrbatch {name}` is not in README.md"
        assert command.help and "Example:" in command.help, f"asrbatch {name}: help without an example"


def test_every_exit_code_is_in_the_readme() -> None:
    table = README[README.index("### Exit codes"):]
    table = table[:table.index("\n## ")]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)}
    assert documented == {int(code) for code in ExitCode} | {130}
    assert "max-files" in table and "max-runtime" in table  # what a bounded run exits with


def test_readme_shows_the_shipped_schedule() -> None:
    cron_entry = next(line for line in (REPO / "deploy/cron/asrbatch").read_text(encoding="utf-8").splitlines()
                      if line.startswith("5 * * * *"))
    assert cron_entry.split(None, 6)[6] in README
    for unit in ("asrbatch.service", "asrbatch.timer", "asrbatch-watch.service", "asrbatch.logrotate"):
        assert unit in README
