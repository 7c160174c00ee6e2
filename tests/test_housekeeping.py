"""Input housekeeping (housekeeping.mode: move) end to end through `asrbatch run`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import speech
from tests.support.faultproxy import FaultProxy, respond
from tests.support.jobs import RECOGNITION, cli, free_port, ledger_rows, log_events, place, runs
from tests.support.servers import ServerProcess, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start_server("6.31.0", log_dir=tmp_path_factory.mktemp("housekeeping-server")) as process:
        yield process


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[FaultProxy]:
    with FaultProxy(server.url) as p:
        yield p


def move_config(tmp_path: Path, done: Path, failed: Path | None = None, **server: object) -> Path:
    path = tmp_path / "config.yaml"
    housekeeping = {"mode": "move", "done_dir": str(done), **({"failed_dir": str(failed)} if failed else {})}
    path.write_text(json.dumps({"housekeeping": housekeeping, "server": server}), encoding="utf-8")
    return path


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_moved_after_success_tree_preserved_failed_apart_next_run_has_nothing_to_do(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    inp, out, done, failed = (tmp_path / name for name in ("in", "out", "done", "failed"))
    place(inp, "2024-05/monday standup.wav", speech.synthesize(speech.SENTENCES[0]))
    place(inp, "calls/会议.mp3", speech.synthesize(speech.SENTENCES[1], fmt="mp3"))
    place(inp, "bad/notes.mp3", b"meeting notes, not audio\n" * 10)
    place(done, "calls/会议.mp3", b"an older recording of the same name")  # taken: numbered, not overwritten
    config = move_config(tmp_path, done, failed)

    result = cli("run", str(inp), "-o", str(out), "--url", proxy.url, "-c", str(config))
    assert result.returncode == 1, result.stderr
    assert files(inp) == set()
    assert files(done) == {"2024-05/monday standup.wav", "calls/会议.mp3", "calls/会议.1.mp3"}
    assert (done / "calls/会议.mp3").read_bytes() == b"an older recording of the same name"
    assert files(failed) == {"bad/notes.mp3"}
    assert files(out) >= {"2024-05/monday standup.txt", "calls/会议.txt"}
    rows = ledger_rows(out / ".asrbatch")
    assert rows["2024-05/monday standup.wav"]["outcome"] == "done" and rows["bad/notes.mp3"]["permanent"] == 1
    log = (out / ".asrbatch" / "asrbatch.log").read_text(encoding="utf-8")
    for key in ("2024-05/monday standup.wav", "calls/会议.mp3", "bad/notes.mp3"):
        assert any(e["path"] == key and e["to"] for e in log_events(log, "moved"))
    assert proxy.count("POST", RECOGNITION) == 2

    again = cli("run", str(inp), "-o", str(out), "--url", proxy.url, "-c", str(config))
    assert again.returncode == 0 and again.stderr == ""
    assert runs(out / ".asrbatch")[-1]["summary"]["found"] == 0
    assert proxy.count("POST", RECOGNITION) == 2


def test_done_folder_inside_the_input_is_never_scanned(proxy: FaultProxy, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[2]))
    config = move_config(tmp_path, inp / "done", inp / "failed")
    assert cli("run", str(inp), "-o", str(out), "--url", proxy.url, "-c", str(config)).returncode == 0
    assert files(inp) == {"done/a.wav"}
    for _ in range(2):
        assert cli("run", str(inp), "-o", str(out), "--url", proxy.url, "-c", str(config)).returncode == 0
    assert files(inp) == {"done/a.wav"}  # not moved again into done/done
    assert set(ledger_rows(out / ".asrbatch")) == {"a.wav"}
    assert proxy.count("POST", RECOGNITION) == 1


def test_nothing_moves_before_the_transcript_and_ledger_are_safe(proxy: FaultProxy, tmp_path: Path) -> None:
    inp, out, done, failed = (tmp_path / name for name in ("in", "out", "done", "failed"))
    place(inp, "a.wav", speech.synthesize(speech.SENTENCES[3]))
    config = move_config(tmp_path, done, failed, retry={"attempts": 1})

    # Server down: the run stops, the recording stays.
    down = cli("run", str(inp), "-o", str(out), "--url", f"http://127.0.0.1:{free_port()}", "-c", str(config))
    assert down.returncode == 3
    assert files(inp) == {"a.wav"} and files(done) == files(failed) == set()

    # The server fails on it (transient, tried again next run): it stays, even with failed_dir set.
    # (Only on the recording, as Vorbis and as WAV: the health check's clip goes through, so the server
    # is not down.)
    proxy.add("POST", RECOGNITION, respond(500), times=None, when=lambda request: b"ping.wav" not in request)
    transient = cli("run", str(inp), "-o", str(out), "--url", proxy.url, "-c", str(config))
    assert transient.returncode == 1
    assert ledger_rows(out / ".asrbatch")["a.wav"]["permanent"] == 0
    assert files(inp) == {"a.wav"} and files(done) == files(failed) == set()
    assert not (out / "a.txt").exists()

    proxy.clear()
    assert cli("run", str(inp), "-o", str(out), "--url", proxy.url, "-c", str(config)).returncode == 0
    assert files(inp) == set() and files(done) == {"a.wav"} and (out / "a.txt").exists()


def test_turning_move_on_later_moves_what_was_finished_before(proxy: FaultProxy, tmp_path: Path) -> None:
    inp, out, done = tmp_path / "in", tmp_path / "out", tmp_path / "done"
    place(inp, "old/a.wav", speech.synthesize(speech.SENTENCES[4]))
    assert cli("run", str(inp), "-o", str(out), "--url", proxy.url).returncode == 0
    assert files(inp) == {"old/a.wav"}  # keep (the default): recordings stay
    config = move_config(tmp_path, done)
    assert cli("run", str(inp), "-o", str(out), "--url", proxy.url, "-c", str(config)).returncode == 0
    assert files(inp) == set() and files(done) == {"old/a.wav"}
    assert proxy.count("POST", RECOGNITION) == 1
