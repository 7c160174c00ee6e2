"""Monitoring hooks and metrics around real runs: healthchecks pings, the webhook, the Prometheus textfile.

A local HTTP receiver stands in for the monitoring service; the runs are the real CLI against
a real reference server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from asrbatch.lock import RunLock
from asrbatch.monitoring import log_tail, ping_url
from tests.support import speech
from tests.support.jobs import Receiver, cli, free_port, place, runs
from tests.support.servers import ServerProcess, start_server

HOOK_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start_server("6.31.0", log_dir=tmp_path_factory.mktemp("monitoring-server")) as process:
        yield process


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def config_file(tmp_path: Path, **monitoring: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"monitoring": {"timeout": HOOK_TIMEOUT, **monitoring}}), encoding="utf-8")
    return path


def test_start_success_and_failure_pings_carry_exit_code_and_log_tail(
    server: ServerProcess, receiver: Receiver, tmp_path: Path
) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "good.wav", speech.synthesize(speech.SENTENCES[0]))
    config = config_file(tmp_path, healthchecks_url=receiver.url + "/ping/abc", webhook_url=receiver.url + "/hook",
                         log_tail_lines=20)

    ok = cli("run", str(inp), "-o", str(out), "--url", server.url, "-c", str(config))
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""  # monitoring adds nothing to what cron mails
    pings = [r for r in receiver.requests if r.path.startswith("/ping/")]
    assert [r.path for r in pings] == ["/ping/abc/start", "/ping/abc"]
    assert pings[0].query["rid"] == pings[1].query["rid"]
    assert "event=summary" in pings[1].text and "exit=0" in pings[1].text
    assert len(pings[1].text.splitlines()) <= 20
    hook = next(r for r in receiver.requests if r.path == "/hook")
    assert hook.content_type.startswith("application/json")
    summary = hook.json()
    assert summary["exit_code"] == 0 and summary["done"] == 1 and summary["found"] == 1
    assert summary["error"] is None and summary["started_at"] <= summary["finished_at"]

    place(inp, "broken.mp3", b"not audio at all")
    receiver.requests.clear()
    failed = cli("run", str(inp), "-o", str(out), "--url", server.url, "-c", str(config))
    assert failed.returncode == 1
    pings = [r for r in receiver.requests if r.path.startswith("/ping/")]
    assert [r.path for r in pings] == ["/ping/abc/start", "/ping/abc/1"]
    tail = pings[1].text
    assert "broken.mp3" in tail and "exit=1" in tail
    summary = next(r for r in receiver.requests if r.path == "/hook").json()
    assert summary["exit_code"] == 1 and [f["path"] for f in summary["failures"]] == ["broken.mp3"]


def test_server_unavailable_pings_exit_code_3(receiver: Receiver, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[1]))
    config = config_file(tmp_path, healthchecks_url=receiver.url + "/ping/abc")
    result = cli("run", str(inp), "-o", str(out), "--url", f"http://127.0.0.1:{free_port()}", "-c", str(config),
                 env={"ASRBATCH_SERVER_RETRY_ATTEMPTS": "1"})
    assert result.returncode == 3
    assert receiver.paths() == ["/ping/abc/start", "/ping/abc/3"]
    assert "event=server_unavailable" in receiver.requests[1].text


def test_usage_error_during_the_run_pings_exit_code_2(receiver: Receiver, tmp_path: Path) -> None:
    config = config_file(tmp_path, healthchecks_url=receiver.url + "/ping/abc")
    result = cli("run", str(tmp_path / "missing"), "-o", str(tmp_path / "out"), "-c", str(config))
    assert result.returncode == 2
    assert receiver.paths() == ["/ping/abc/2"]
    assert "does not exist" in receiver.requests[0].text


def test_locked_run_reports_nothing(receiver: Receiver, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[2]))
    config = config_file(tmp_path, healthchecks_url=receiver.url + "/ping/abc", webhook_url=receiver.url + "/hook")
    with RunLock(out / ".asrbatch" / "lock"):
        result = cli("run", str(inp), "-o", str(out), "-c", str(config))
    assert result.returncode == 4
    assert receiver.requests == []


def test_monitoring_down_or_hanging_changes_the_outcome_in_nothing_and_the_duration_by_at_most_the_timeout(
    server: ServerProcess, tmp_path: Path
) -> None:
    sentence = speech.synthesize(speech.SENTENCES[3])

    def timed_run(name: str, **monitoring: object) -> tuple[float, int, str]:
        inp, out = tmp_path / name / "in", tmp_path / name / "out"
        place(inp, "a.wav", sentence)
        config = config_file(tmp_path / name, **monitoring)
        started = time.monotonic()
        result = cli("run", str(inp), "-o", str(out), "--url", server.url, "-c", str(config))
        elapsed = time.monotonic() - started
        return elapsed, result.returncode, (out / ".asrbatch" / "asrbatch.log").read_text(encoding="utf-8")

    baseline, code, _ = timed_run("baseline")
    assert code == 0
    down = f"http://127.0.0.1:{free_port()}"
    down_time, code, log = timed_run("down", healthchecks_url=down + "/ping/abc", webhook_url=down + "/hook")
    assert code == 0
    assert log.count("event=monitoring_failed") == 3 and "cannot connect" in log
    assert "abc" not in log  # the ping key stays out of the log
    with Receiver(hang=True) as hanging:
        hang_time, code, log = timed_run("hang", healthchecks_url=hanging.url + "/ping/abc",
                                         webhook_url=hanging.url + "/hook")
        assert sorted(hanging.paths()) == ["/hook", "/ping/abc", "/ping/abc/start"]
    assert code == 0
    assert f"no answer within {HOOK_TIMEOUT:g} s" in log
    print(f"run: {baseline:.2f} s; monitoring down: {down_time:.2f} s; monitoring hanging "
          f"(timeout {HOOK_TIMEOUT:g} s): {hang_time:.2f} s")
    assert down_time - baseline < 1.5
    # The start ping runs alongside the run; the end pings run side by side: about one timeout
    # in all, two at most when the run is shorter than the timeout.
    assert hang_time - baseline < 2 * HOOK_TIMEOUT + 1.5


def test_textfile_parses_and_counts_across_runs(server: ServerProcess, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[4]))
    place(inp, "b.flac", speech.synthesize(speech.SENTENCES[5], fmt="flac"))
    textfile = tmp_path / "textfile" / "asrbatch.prom"
    textfile.parent.mkdir()
    config = config_file(tmp_path, textfile=str(textfile))
    assert cli("run", str(inp), "-o", str(out), "--url", server.url, "-c", str(config)).returncode == 0
    first = samples(textfile)
    place(inp, "bad.wav", b"RIFF....not really")
    assert cli("run", str(inp), "-o", str(out), "--url", server.url, "-c", str(config)).returncode == 1
    second = samples(textfile)

    assert first[("asrbatch_files_total", "outcome", "done")] == 2
    assert first[("asrbatch_runs_total", "exit_code", "0")] == 1
    assert second[("asrbatch_files_total", "outcome", "done")] == 2
    assert second[("asrbatch_files_total", "outcome", "failed")] == 1
    assert second[("asrbatch_runs_total", "exit_code", "0")] == 1
    assert second[("asrbatch_runs_total", "exit_code", "1")] == 1
    audio = speech.duration(inp / "a.wav") + speech.duration(inp / "b.flac")
    assert second[("asrbatch_audio_seconds_total", "", "")] == pytest.approx(audio, abs=0.1)
    assert second[("asrbatch_last_run_exit_code", "", "")] == 1
    assert second[("asrbatch_last_run_files", "outcome", "failed")] == 1
    assert second[("asrbatch_last_run_files", "outcome", "skipped")] == 2
    assert second[("asrbatch_recordings", "outcome", "done")] == 2
    history = runs(out / ".asrbatch")
    success_at = first[("asrbatch_last_success_timestamp_seconds", "", "")]
    assert success_at == second[("asrbatch_last_success_timestamp_seconds", "", "")] > 0
    assert second[("asrbatch_last_run_timestamp_seconds", "", "")] >= success_at
    assert second[("asrbatch_run_seconds_total", "", "")] == pytest.approx(
        sum(r["summary"]["wall_seconds"] for r in history), abs=0.01)
    assert {name for name, *_ in second} >= {"asrbatch_server_seconds_total", "asrbatch_last_run_duration_seconds",
                                             "asrbatch_last_run_audio_seconds"}
    assert [p.name for p in textfile.parent.iterdir()] == ["asrbatch.prom"]  # no temporary file left


def samples(path: Path) -> dict[tuple[str, str, str], float]:
    """Samples of a textfile by (name, label other than output_dir, its value), as Prometheus parses them."""
    found: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        assert family.documentation, family.name
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "output_dir"}
            assert set(sample.labels) - set(labels) == {"output_dir"}
            (label, value), = labels.items() if labels else [("", "")]
            found[(sample.name, label, value)] = sample.value
    return found


def test_textfile_that_cannot_be_written_only_warns(server: ServerProcess, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[6]))
    (tmp_path / "a file").write_text("in the way of a folder")
    config = config_file(tmp_path, textfile=str(tmp_path / "a file" / "asrbatch.prom"))
    result = cli("run", str(inp), "-o", str(out), "--url", server.url, "-c", str(config))
    assert result.returncode == 0
    assert "event=metrics_failed" in (out / ".asrbatch" / "asrbatch.log").read_text(encoding="utf-8")


def test_ping_url_and_log_tail(tmp_path: Path) -> None:
    assert ping_url("https://hc-ping.com/uuid", "start", "r1") == "https://hc-ping.com/uuid/start?rid=r1"
    assert ping_url("https://hc.example/ping/key/slug/?create=1", "3") == "https://hc.example/ping/key/slug/3?create=1"
    assert ping_url("http://h", "") == "http://h/"
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(5000)), encoding="utf-8")
    assert log_tail(log, 3) == "line 4997\nline 4998\nline 4999"
    assert log_tail(log, 0) == "" and log_tail(tmp_path / "missing.log", 5) == ""
