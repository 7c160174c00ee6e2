"""Throughput benchmark: asrbatch against the seed's sequential approach, side by side, on one machine.

    .venv/bin/python bench/run.py            # about 10 minutes; prints the table, writes bench/RESULTS.md
    .venv/bin/python bench/run.py --quick    # small corpora, a minute or two: to try the script (no RESULTS.md)

What it measures (see bench/RESULTS.md for the figures and how to read them):

1. utilisation of the server, busy time / (wall time x concurrency), for asrbatch and for
   bench/baseline_seed.py (the seed's one-file-at-a-time approach) on the same corpus and server,
   at server concurrency 1 and 4;
2. the client's CPU seconds and peak memory per hour of audio (and, through bench/audio_memory.py,
   that peak memory does not grow with a recording's length);
3. one server against two (scaling ratio of wall times over the same corpus);
4. an hourly run with nothing to do over an archive of 100,000 finished recordings;
5. end-to-end speed against real time with the sphinx engine on samples/.

Over a shaped link (a network namespace, 20 and 100 Mbit/s: wall time, server utilisation, bytes per
audio hour and WER, asrbatch and the seed side by side) is bench/network.py (root); which codec
chunks travel in (bytes, WER, encoding CPU) is bench/codecs.py.  Each writes its own section of
bench/RESULTS.md, which this script keeps.

Servers are the project's reference server on Gradio 6.31 (tests/support/servers.py builds its
virtual environment under .cache/test-envs on first use), on 127.0.0.1.  Items 1-3 use the simulate
engine: it sleeps SECONDS_PER_AUDIO_SECOND per second of audio and the server counts the time its
engine slots are held ("Engine busy" on the system-information tab), so the busy time is measured by
the server, not assumed.  Wall time is the client process's, from start to exit.  Corpora are built
once (festival speech, ffmpeg) and kept in .cache/bench.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from bench import serverlog  # noqa: E402
from tests.support import speech  # noqa: E402
from tests.support.servers import ServerProcess, gradio_python, start_server  # noqa: E402

GRADIO = "6.31.0"
SECONDS_PER_AUDIO_SECOND = 0.05
"""The simulate engine's speed: 20x real time, a GPU-class recogniser.  Slow enough that the server's
time dominates on this machine (client and servers share its cores), fast enough that the seed's
per-file overheads show, as they do against a real GPU server."""
SMALL_ENGINE_SECONDS = 40.0
"""Engine seconds of work in the corpus of the concurrency-1 comparison."""
MEDIUM_ENGINE_SECONDS = 120.0
"""Engine seconds of work in the corpus of the scaling runs (the first recordings of the large one):
about a minute on one server of concurrency 2, half a minute on two."""
LARGE_ENGINE_SECONDS = 240.0
"""Engine seconds of work in the corpus of the concurrency-4 comparison: about a minute for asrbatch
(the baseline, one request at a time, takes four times as long)."""
DURATIONS = (20.0, 90.0)
"""Recordings last 20 s to 90 s (uniformly at random, fixed seed)."""
# (extension, ffmpeg options): what recorders and phones produce.
FORMATS = (
    ("mp3", ("-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k")),
    ("mp3", ("-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k")),
    ("m4a", ("-ar", "44100", "-ac", "1", "-c:a", "aac", "-b:a", "96k")),
    ("m4a", ("-ar", "48000", "-ac", "2", "-c:a", "aac", "-b:a", "128k")),
    ("wav", ("-ar", "44100", "-ac", "2", "-c:a", "pcm_s16le")),
    ("wav", ("-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le")),
)
ARCHIVE_SIZE = 100_000
TARGETS = {"utilisation": 0.95, "cpu_percent": 1.0, "scaling": 1.9, "idle_seconds": 5.0}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    base = os.environ.get("ASRBATCH_TEST_CACHE")
    folder = (Path(base) if base else REPO / ".cache") / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def ffmpeg(*arguments: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *arguments], check=True)


# ----------------------------------------------------------------------------------------------
# Corpora


def speech_source(folder: Path) -> Path:
    """About ten minutes of 44.1 kHz stereo speech with pauses: the material recordings are cut from."""
    source = folder / "source-44k-stereo.wav"
    if source.exists():
        return source
    folder.mkdir(parents=True, exist_ok=True)
    loop = folder / "sentences-loop.wav"
    inputs: list[str] = []
    for sentence in speech.SENTENCES:
        inputs += ["-i", str(speech.synthesize(sentence, fmt="wav", rate=44100))]
        inputs += ["-f", "lavfi", "-t", "0.7", "-i", "anullsrc=r=44100:cl=mono"]
    count = 2 * len(speech.SENTENCES)  # each sentence, then a pause
    graph = "".join(f"[{n}:a]aresample=44100,aformat=channel_layouts=mono[a{n}];" for n in range(count))
    graph += "".join(f"[a{n}]" for n in range(count)) + f"concat=n={count}:v=0:a=1[out]"
    ffmpeg(*inputs, "-filter_complex", graph, "-map", "[out]", "-c:a", "pcm_s16le", str(loop))
    partial = folder / "source.part.wav"
    ffmpeg("-stream_loop", "-1", "-i", str(loop), "-t", "600", "-ar", "44100", "-ac", "2", str(partial))
    os.replace(partial, source)
    return source


@dataclass(frozen=True)
class Corpus:
    folder: Path
    audio_seconds: float
    files: int

    @property
    def audio_hours(self) -> float:
        return self.audio_seconds / 3600


def build_corpus(engine_seconds: float, name: str) -> Corpus:
    """Recordings whose audio adds up to *engine_seconds* of simulated work; built once, then reused."""
    target_audio = engine_seconds / SECONDS_PER_AUDIO_SECOND
    spec = json.loads(json.dumps({"audio": target_audio, "durations": DURATIONS, "formats": FORMATS, "version": 1}))
    folder = cache_dir() / "throughput" / name
    marker = folder / ".corpus.json"
    if marker.exists() and json.loads(marker.read_text())["spec"] == spec:
        recorded = json.loads(marker.read_text())
        return Corpus(folder / "recordings", recorded["audio_seconds"], recorded["files"])
    log(f"building corpus {name} ({target_audio / 60:.0f} min of audio)")
    shutil.rmtree(folder, ignore_errors=True)
    recordings = folder / "recordings"
    recordings.mkdir(parents=True)
    source = speech_source(cache_dir() / "throughput")
    chooser = random.Random(6)
    total = 0.0
    index = 0
    old = time.time() - 86400
    while total < target_audio:
        seconds = round(min(chooser.uniform(*DURATIONS), target_audio - total + DURATIONS[0]), 1)
        extension, options = FORMATS[chooser.randrange(len(FORMATS))]
        start = chooser.uniform(0, 600 - seconds)
        target = recordings / f"{'day ' + str(index // 10 + 1):s}" / f"recording {index:03d}.{extension}"
        target.parent.mkdir(exist_ok=True)
        ffmpeg("-ss", f"{start:.2f}", "-t", str(seconds), "-i", str(source), *options, str(target))
        os.utime(target, (old, old))
        total += seconds
        index += 1
    marker.write_text(json.dumps({"spec": spec, "audio_seconds": total, "files": index}))
    return Corpus(recordings, total, index)


def subset(corpus: Corpus, engine_seconds: float, name: str) -> Corpus:
    """The first recordings of *corpus* (path order) adding up to about *engine_seconds* of work (hard links)."""
    folder = cache_dir() / "throughput" / name
    marker = folder / ".corpus.json"
    spec = {"of": str(corpus.folder), "engine_seconds": engine_seconds, "files": corpus.files}
    if marker.exists() and json.loads(marker.read_text())["spec"] == spec:
        recorded = json.loads(marker.read_text())
        return Corpus(folder / "recordings", recorded["audio_seconds"], recorded["files"])
    shutil.rmtree(folder, ignore_errors=True)
    total, count = 0.0, 0
    for path in sorted(p for p in corpus.folder.rglob("*") if p.is_file()):
        if total * SECONDS_PER_AUDIO_SECOND >= engine_seconds:
            break
        target = folder / "recordings" / path.relative_to(corpus.folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)
        total += speech.duration(path)
        count += 1
    marker.write_text(json.dumps({"spec": spec, "audio_seconds": total, "files": count}))
    return Corpus(folder / "recordings", total, count)


# ----------------------------------------------------------------------------------------------
# Servers and clients


@contextmanager
def simulate_servers(count: int, concurrency: int, log_dir: Path) -> Iterator[list[ServerProcess]]:
    with ExitStack() as stack:
        servers = []
        for n in range(count):
            folder = log_dir / f"simulate-c{concurrency}-{n}-{time.monotonic_ns()}"
            servers.append(stack.enter_context(start_server(
                GRADIO, engine="simulate", log_dir=folder,
                extra_args=["--simulate-rtf", str(SECONDS_PER_AUDIO_SECOND), "--concurrency", str(concurrency)],
            )))
        yield servers


def system_info(url: str) -> dict[str, str]:
    """The server's system-information report (fn_index 3) as ``{"Engine busy": "12.345 s", ...}``."""
    response = requests.post(url + "/gradio_api/api/predict/", json={"data": [], "fn_index": 3}, timeout=30)
    response.raise_for_status()
    facts = {}
    for line in response.json()["data"][0].splitlines():
        if line.startswith("- ") and ": " in line:
            key, value = line[2:].split(": ", 1)
            facts[key] = value
    return facts


def busy_seconds(servers: Sequence[ServerProcess]) -> float:
    return sum(float(system_info(s.url)["Engine busy"].split()[0]) for s in servers)


def requests_served(servers: Sequence[ServerProcess]) -> int:
    return sum(int(system_info(s.url)["Requests served"]) for s in servers)


# A client run in its own process, reporting its peak memory at exit.  VmHWM is the high-water mark of
# the process's own memory; getrusage's ru_maxrss is not used: on Linux it keeps the peak of the
# process image it replaced at exec, i.e. of this (larger) benchmark process.
WRAPPER = """
import atexit, json, runpy, sys
report, kind, target = sys.argv[1:4]
def write():
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    with open(report, "w") as handle:
        json.dump({"python_peak_mb": peak / 1024}, handle)
atexit.register(write)
sys.argv = [target, *sys.argv[4:]]
runpy.run_module(target, run_name="__main__", alter_sys=True) if kind == "module" else runpy.run_path(target, run_name="__main__")
"""
# ffmpeg and ffprobe run through GNU time, which logs each one's peak memory (only in the memory runs).
SHIM = """#!/bin/sh
exec /usr/bin/time -f "%M" -a -o "{log}" "{real}" "$@"
"""


def ffmpeg_shims(folder: Path, log_file: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for tool in ("ffmpeg", "ffprobe"):
        real = shutil.which(tool)
        assert real is not None, f"{tool} not found"
        shim = folder / tool
        shim.write_text(SHIM.format(log=log_file, real=real))
        shim.chmod(0o755)
    return folder


@dataclass
class ClientRun:
    label: str
    wall: float
    cpu: float
    python_peak_mb: float
    audio_seconds: float
    busy: float = 0.0
    slots: int = 0
    requests: int = 0
    summary: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    ffmpeg_peak_mb: float | None = None

    @property
    def utilisation(self) -> float:
        return self.busy / (self.wall * self.slots) if self.slots else 0.0

    @property
    def cpu_per_audio_hour(self) -> float:
        return self.cpu / (self.audio_seconds / 3600)

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu / self.audio_seconds


def run_summary(arguments: Sequence[str], errors: str) -> str:
    """The run's ``event=summary`` line: the last one in the log file of its ``-o`` folder (the console
    speaks in words), else in what it printed (the seed baseline)."""
    lines = errors.splitlines()
    if "-o" in arguments:
        log_file = Path(arguments[list(arguments).index("-o") + 1]) / ".asrbatch" / "asrbatch.log"
        if log_file.exists():
            lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    return next((line for line in reversed(lines) if "event=summary" in line), "")


def run_client(label: str, kind: str, target: str, arguments: Sequence[str], *, audio_seconds: float,
               env: dict[str, str] | None = None, workdir: Path, files: int = 0,
               measure_ffmpeg: bool = False) -> ClientRun:
    """Run a client to completion: wall time, CPU time (its own and its children's), peak memory."""
    name = label.replace(" ", "-")
    report, stdout, stderr = (workdir / f"{name}.{suffix}" for suffix in ("peak.json", "stdout", "stderr"))
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("ASRBATCH_") or k == "ASRBATCH_TEST_CACHE"}
    clean_env.update(env or {})
    peaks_log = workdir / f"{name}.ffmpeg-peaks"
    if measure_ffmpeg:
        shims = ffmpeg_shims(workdir / f"{name}.shims", peaks_log)
        clean_env["PATH"] = f"{shims}{os.pathsep}{clean_env.get('PATH', '')}"
    command = [sys.executable, "-c", WRAPPER, str(report), kind, target, *arguments]
    with stdout.open("w") as out, stderr.open("w") as err:
        started_at = time.time()
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=REPO, env=clean_env, stdout=out, stderr=err)
        # Reaped here rather than by Popen: wait4 also returns the CPU time of the process and of
        # the children it waited for (ffmpeg, ffprobe).
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    errors = stderr.read_text(encoding="utf-8", errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{label} exited {process.returncode}:\n{errors[-3000:]}")
    peaks = json.loads(report.read_text())
    summary = run_summary(arguments, errors)
    result = ClientRun(label, wall, usage.ru_utime + usage.ru_stime, peaks["python_peak_mb"], audio_seconds,
                       summary=summary, extra={"files": files, "started_at": started_at, "ended_at": started_at + wall})
    if measure_ffmpeg:
        kilobytes = [int(line) for line in peaks_log.read_text().split() if line.isdigit()]
        result.ffmpeg_peak_mb = max(kilobytes) / 1024
        result.extra["ffmpeg_runs"] = len(kilobytes)
    return result


def asrbatch_run(label: str, corpus: Corpus, servers: Sequence[ServerProcess], workers: int, workdir: Path,
                 *, slots: int, simulated: bool = True) -> ClientRun:
    out = workdir / f"out-{label.replace(' ', '-')}"
    busy_before, served_before = busy_seconds(servers), requests_served(servers)
    env = {"ASRBATCH_SERVER_URLS": ",".join(s.url for s in servers)}
    result = run_client(label, "module", "asrbatch", ["run", str(corpus.folder), "-o", str(out), "--min-age", "0",
                                                      "--workers", str(workers), "-v"],
                        audio_seconds=corpus.audio_seconds, env=env, workdir=workdir, files=corpus.files)
    result.busy = busy_seconds(servers) - busy_before
    result.requests = requests_served(servers) - served_before
    result.slots = slots
    check_transcripts(out, corpus, label)
    if simulated:
        idle_breakdown(result, servers)
    return result


def idle_breakdown(run: ClientRun, servers: Sequence[ServerProcess]) -> None:
    """Where a simulate run's idle slot time went, from the servers' logs: before the first recognition
    started, between, and after the last one started (fewer recordings left than slots).

    The log line of a recognition carries its end time; with the simulate engine its start is the
    end minus SECONDS_PER_AUDIO_SECOND x its audio.
    """
    began, ended = run.extra["started_at"], run.extra["ended_at"]
    spans = [span for server in servers
             for span in serverlog.recognitions(server.log_path, began, ended, SECONDS_PER_AUDIO_SECOND)]
    if not spans:
        return
    total = run.slots * (ended - began)
    first = min(start for start, _ in spans)
    last = max(start for start, _ in spans)
    at_start = run.slots * (first - began)
    busy_after_last = sum(end - max(start, last) for start, end in spans if end > last)
    at_end = run.slots * (ended - last) - busy_after_last
    between = total - sum(end - start for start, end in spans) - at_start - at_end
    run.extra.update(first_start=first - began, idle_start=at_start / total, idle_between=between / total,
                     idle_end=at_end / total)


def baseline_run(label: str, corpus: Corpus, server: ServerProcess, workdir: Path, *, slots: int,
                 simulated: bool = True) -> ClientRun:
    out = workdir / f"out-{label.replace(' ', '-')}"
    busy_before, served_before = busy_seconds([server]), requests_served([server])
    result = run_client(label, "path", str(REPO / "bench" / "baseline_seed.py"),
                        [str(corpus.folder), str(out), "--url", server.url],
                        audio_seconds=corpus.audio_seconds, workdir=workdir, files=corpus.files)
    result.busy = busy_seconds([server]) - busy_before
    result.requests = requests_served([server]) - served_before
    result.slots = slots
    check_transcripts(out, corpus, label)
    if simulated:
        idle_breakdown(result, [server])
    return result


def check_transcripts(out: Path, corpus: Corpus, label: str) -> None:
    written = [p for p in out.rglob("*.txt") if ".asrbatch" not in p.parts]
    if len(written) != corpus.files:
        raise RuntimeError(f"{label}: {len(written)} transcripts for {corpus.files} recordings in {out}")


# ----------------------------------------------------------------------------------------------
# The measurements


def utilisation(small: Corpus, large: Corpus, workdir: Path) -> dict[int, tuple[ClientRun, ClientRun]]:
    """Item 1: asrbatch, then the baseline, on one server of concurrency 1 (small corpus) and 4 (large)."""
    results = {}
    for concurrency, corpus in ((1, small), (4, large)):
        with simulate_servers(1, concurrency, workdir) as servers:
            log(f"concurrency {concurrency}: asrbatch over {corpus.files} recordings "
                f"({corpus.audio_seconds / 60:.0f} min of audio)")
            ours = asrbatch_run(f"asrbatch c{concurrency}", corpus, servers, concurrency, workdir, slots=concurrency)
            log(f"concurrency {concurrency}: baseline")
            theirs = baseline_run(f"baseline c{concurrency}", corpus, servers[0], workdir, slots=concurrency)
        results[concurrency] = (ours, theirs)
    return results


def scaling(medium: Corpus, workdir: Path) -> tuple[ClientRun, ClientRun]:
    """Item 3: two servers of concurrency 2 against one of them, same corpus, --workers 2."""
    concurrency = 2
    with simulate_servers(2, concurrency, workdir) as servers:
        log(f"scaling: one server of concurrency {concurrency}, {medium.files} recordings")
        one = asrbatch_run("asrbatch 1 server c2", medium, servers[:1], concurrency, workdir, slots=concurrency)
        log("scaling: two servers")
        two = asrbatch_run("asrbatch 2 servers c2", medium, servers, concurrency, workdir, slots=2 * concurrency)
    return one, two


def build_archive(size: int) -> Path:
    """*size* finished-looking recordings (empty files: the idle run only looks at their size and mtime)."""
    folder = cache_dir() / f"archive-{size}"
    marker = folder / ".complete"
    if marker.exists():
        return folder / "recordings"
    log(f"building an archive of {size} recordings (once)")
    shutil.rmtree(folder, ignore_errors=True)
    old = time.time() - 30 * 86400
    for index in range(size):
        directory = folder / "recordings" / f"{2021 + index // 40000}" / f"{index // 1000 % 40 + 1:02d}"
        if index % 1000 == 0:
            directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"call {index:06d}.mp3"
        path.touch()
        os.utime(path, (old, old))
    marker.touch()
    return folder / "recordings"


def fill_ledger(archive: Path, out: Path) -> None:
    """A ledger in which every recording of *archive* is done, as after a year of hourly runs."""
    from asrbatch.ledger import SqliteLedger

    state = out / ".asrbatch"
    with SqliteLedger.open(state / "ledger.sqlite3"):
        pass  # creates the schema through the migrations
    now = "2024-01-01T00:00:00+00:00"
    rows: list[tuple[Any, ...]] = []
    for folder, _, files in os.walk(archive):
        for name in files:
            path = Path(folder) / name
            st = path.stat()
            key = path.relative_to(archive).as_posix()
            base = key.rsplit(".", 1)[0]
            text = f"transcript of {name}"
            rows.append((key, st.st_size, st.st_mtime_ns, f"{hash(key) & (2**64 - 1):064x}", "done",
                         json.dumps({"base": base, f"{base}.txt": "txt"}), json.dumps({f"{base}.txt": "0" * 64}),
                         json.dumps({"text": text, "source": key}), 60.0, 1.0, now, now, now))
    db = sqlite3.connect(state / "ledger.sqlite3")
    with db:
        db.executemany(
            "INSERT INTO recordings (key, size, mtime_ns, sha256, outcome, outputs, output_hashes, result,"
            " audio_seconds, server_seconds, first_seen, updated_at, done_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    db.close()


def idle_archive(size: int, workdir: Path) -> list[ClientRun]:
    archive = build_archive(size)
    out = workdir / "archive-out"
    fill_ledger(archive, out)
    runs = []
    for attempt in range(3):
        log(f"idle run over {size} finished recordings ({attempt + 1}/3)")
        # No server is contacted when there is nothing to send: the URL is a closed port.
        run = run_client(f"idle {attempt}", "module", "asrbatch",
                         ["run", str(archive), "-o", str(out), "--url", "http://127.0.0.1:9", "-v"],
                         audio_seconds=1.0, workdir=workdir)
        if f"skipped={size}" not in run.summary:
            raise RuntimeError(f"the idle run did not skip everything: {run.summary}")
        runs.append(run)
    return runs


def sphinx_samples(workdir: Path) -> tuple[ClientRun, ClientRun, int]:
    samples = REPO / "samples"
    audio = sum(speech.duration(p) for p in samples.rglob("*") if p.suffix.lower() in (".wav", ".m4a", ".ogg", ".mp3",
                                                                                         ".flac", ".opus"))
    files = sum(1 for p in samples.rglob("*") if p.suffix.lower() in (".wav", ".m4a", ".ogg", ".mp3", ".flac", ".opus"))
    corpus = Corpus(samples, audio, files)
    concurrency = os.cpu_count() or 1
    with start_server(GRADIO, engine="sphinx", log_dir=workdir / "sphinx",
                      extra_args=["--concurrency", str(concurrency)]) as server:
        log(f"sphinx: asrbatch over samples/ ({files} recordings, {audio:.0f} s)")
        ours = asrbatch_run("asrbatch sphinx", corpus, [server], concurrency, workdir, slots=concurrency,
                            simulated=False)
        log("sphinx: baseline over samples/")
        theirs = baseline_run("baseline sphinx", corpus, server, workdir, slots=concurrency, simulated=False)
    return ours, theirs, concurrency


def memory_by_length(workdir: Path) -> list[ClientRun]:
    """asrbatch over a single 10-minute, then a single one-hour recording (bench/audio_memory.py's MP3s).

    A fast simulate server (2 ms per audio second) keeps this short; every chunk still goes through
    probe, decode, chunking, export, upload, recognition and the transcript.
    """
    from bench import audio_memory

    runs = []
    with start_server(GRADIO, engine="simulate", log_dir=workdir / "memory-server",
                      extra_args=["--simulate-rtf", "0.002"]) as server:
        for minutes in (10, 60):
            source = audio_memory.build_recording(minutes)
            folder = workdir / f"memory-{minutes}" / "in"
            folder.mkdir(parents=True)
            shutil.copyfile(source, folder / source.name)
            seconds = speech.duration(source)
            log(f"memory: asrbatch over one {minutes}-minute recording")
            run = run_client(f"memory {minutes} min", "module", "asrbatch",
                             ["run", str(folder), "-o", str(folder.parent / "out"), "--min-age", "0",
                              "--url", server.url, "-v"],
                             audio_seconds=seconds, workdir=workdir, files=1, measure_ffmpeg=True)
            if "done=1" not in run.summary:
                raise RuntimeError(f"memory run over {minutes} minutes failed: {run.summary}")
            runs.append(run)
    return runs


# ----------------------------------------------------------------------------------------------
# Report


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    system = platform.platform()
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                system = f"{line.split('=', 1)[1].strip(chr(34))}, Linux {platform.release()}"
    gradio = subprocess.run([str(gradio_python(GRADIO)), "-c", "import gradio; print(gradio.__version__)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    ffmpeg_version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    import asrbatch

    return {
        "CPU": f"{cpu}, {os.cpu_count()} cores (shared by the client and the servers)",
        "Memory": memory,
        "System": system,
        "Python": platform.python_version(),
        "asrbatch": asrbatch.__version__,
        "Server": f"reference server on Gradio {gradio}",
        "ffmpeg": ffmpeg_version.replace("ffmpeg version ", "").split(" Copyright")[0],
        "requests": requests.__version__,
    }


def mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def render(results: dict[str, Any], elapsed: float, quick: bool) -> str:
    util: dict[int, tuple[ClientRun, ClientRun]] = results["utilisation"]
    one, two = results["scaling"]
    idle: list[ClientRun] = results["idle"]
    sphinx_ours, sphinx_theirs, sphinx_concurrency = results["sphinx"]
    short, long = results["memory"]
    small, medium, large = results["corpora"]
    archive = results["archive_size"]
    idle_median = statistics.median(r.wall for r in idle)
    ratio = one.wall / two.wall
    flat_python = long.python_peak_mb <= short.python_peak_mb * 1.1 + 2
    flat_ffmpeg = (long.ffmpeg_peak_mb or 0) <= (short.ffmpeg_peak_mb or 0) * 1.1 + 2
    rows: list[tuple[str, str, str, str, bool | None]] = []
    for concurrency in (1, 4):
        ours, theirs = util[concurrency]
        rows.append((f"1 | utilisation, server concurrency {concurrency}", f"{ours.utilisation:.3f}",
                     f"{theirs.utilisation:.3f}", f">= {TARGETS['utilisation']}",
                     ours.utilisation >= TARGETS["utilisation"]))
    for concurrency in (1, 4):
        ours, theirs = util[concurrency]
        rows.append((f"2 | client CPU per hour of audio (concurrency {concurrency} run)",
                     f"{ours.cpu_per_audio_hour:.1f} s = {ours.cpu_percent:.2f} % of the audio",
                     f"{theirs.cpu_per_audio_hour:.1f} s = {theirs.cpu_percent:.2f} %", "< 1 %",
                     ours.cpu_percent < TARGETS["cpu_percent"]))
    for concurrency in (1, 4):
        ours, theirs = util[concurrency]
        rows.append((f"2 | client peak memory (concurrency {concurrency} run, {ours.audio_seconds / 3600:.2f} h of audio)",
                     f"{ours.python_peak_mb:.0f} MB", f"{theirs.python_peak_mb:.0f} MB", "-", None))
    rows.append(("2 | peak memory, one 10-min vs one 60-min recording: Python",
                 f"{short.python_peak_mb:.0f} MB vs {long.python_peak_mb:.0f} MB", "-", "flat", flat_python))
    rows.append(("2 | peak memory, one 10-min vs one 60-min recording: largest ffmpeg/ffprobe",
                 f"{short.ffmpeg_peak_mb:.0f} MB vs {long.ffmpeg_peak_mb:.0f} MB", "-", "flat", flat_ffmpeg))
    rows.append(("3 | 2 servers vs 1, same corpus (wall time ratio)",
                 f"{ratio:.2f}x ({one.wall:.1f} s -> {two.wall:.1f} s)", "-", f">= {TARGETS['scaling']}x",
                 ratio >= TARGETS["scaling"]))
    rows.append((f"4 | idle hourly run over {archive:,} finished recordings",
                 f"{idle_median:.2f} s (median of {len(idle)})", "-", f"< {TARGETS['idle_seconds']:.0f} s",
                 idle_median < TARGETS["idle_seconds"]))
    rows.append(("5 | sphinx engine over samples/, speed vs real time",
                 f"{sphinx_ours.audio_seconds / sphinx_ours.wall:.1f}x ({sphinx_ours.audio_seconds:.0f} s of audio "
                 f"in {sphinx_ours.wall:.1f} s)",
                 f"{sphinx_theirs.audio_seconds / sphinx_theirs.wall:.1f}x ({sphinx_theirs.wall:.1f} s)", "-", None))
    lines = ["| # | measurement | asrbatch | seed baseline | target | met |", "|---|---|---|---|---|---|"]
    for what, ours_text, theirs_text, target, met in rows:
        lines.append(f"| {what} | {ours_text} | {theirs_text} | {target} | {'-' if met is None else mark(met)} |")

    detail = [
        "| run | recordings | audio min | wall s | server busy s | slots | requests | utilisation | "
        "first recognition after s | idle: start / between / end | client CPU s | Python peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def idle_text(run: ClientRun) -> tuple[str, str]:
        if "first_start" not in run.extra:
            return "-", "-"
        return (f"{run.extra['first_start']:.2f}",
                " / ".join(f"{100 * run.extra[k]:.1f} %" for k in ("idle_start", "idle_between", "idle_end")))

    for run in [*util[1], *util[4], one, two, sphinx_ours, sphinx_theirs]:
        first, idle_split = idle_text(run)
        detail.append(f"| {run.label} | {run.extra.get('files', '')} | {run.audio_seconds / 60:.1f} | {run.wall:.1f} | "
                      f"{run.busy:.1f} | {run.slots} | {run.requests} | {run.utilisation:.3f} | {first} | {idle_split} | "
                      f"{run.cpu:.2f} | {run.python_peak_mb:.0f} |")
    for run in idle:
        detail.append(f"| {run.label}, {archive:,} finished | {archive} | - | {run.wall:.2f} | - | - | 0 | - | - | - | "
                      f"{run.cpu:.2f} | {run.python_peak_mb:.0f} |")
    memory = [
        "| recording | audio min | wall s | client CPU s | Python peak MB | largest ffmpeg/ffprobe MB | ffmpeg/ffprobe runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in (short, long):
        memory.append(f"| {run.label} | {run.audio_seconds / 60:.1f} | {run.wall:.1f} | {run.cpu:.2f} | "
                      f"{run.python_peak_mb:.1f} | {run.ffmpeg_peak_mb:.1f} | {run.extra.get('ffmpeg_runs')} |")
    machine_lines = "\n".join(f"- {key}: {value}" for key, value in results["machine"].items())
    corpora = "; ".join(f"{name}: {c.files} recordings, {c.audio_seconds / 60:.1f} min"
                        for name, c in (("small", small), ("medium", medium), ("large", large)))
    return TEMPLATE.format(
        quick=" (quick mode: small corpora, figures not comparable)" if quick else "",
        date=time.strftime("%Y-%m-%d"),
        elapsed=elapsed / 60,
        machine=machine_lines,
        table="\n".join(lines),
        detail="\n".join(detail),
        memory="\n".join(memory),
        rtf=SECONDS_PER_AUDIO_SECOND,
        corpora=corpora,
        sphinx_concurrency=sphinx_concurrency,
        archive=f"{archive:,}",
        load=results["load"],
    )


TEMPLATE = """# Throughput benchmark{quick}

Measured {date} by `bench/run.py` in {elapsed:.1f} minutes, on:

{machine}
- Load average (1 min) at the start and the end: {load}

## Results

{table}

asrbatch runs with `--workers` equal to each server's concurrency: as many requests in flight as
the server has recognition slots.  The seed baseline (`bench/baseline_seed.py`) sends one whole,
unconverted file at a time and waits.  Utilisation is the server's busy time (the time its engine
slots were held, counted by the server itself) divided by the client's wall time (process start to
exit) times the number of slots: the start of a run and its last recordings, when fewer remain than
there are slots, count in full.

## Reading the figures

- The seed's approach keeps one request in flight, so on a server with four slots it cannot use more
  than a quarter of them.  At concurrency 1 over loopback it loses little: sending to 127.0.0.1 is
  almost free, and what remains idle is the server decoding its MP3, AAC and 44.1 kHz files between
  recognitions.  asrbatch sends Ogg Vorbis chunks (`audio.codec: vorbis`, the default), which the server
  decodes with ffmpeg too before each recognition, inside the request's slot: over loopback that is
  most of asrbatch's idle time (with `audio.codec: wav` the server takes the 16 kHz WAV as it is: sending
  WAV, before a compressed codec was the default, asrbatch measured 0.979 and 0.964 on this benchmark;
  with Ogg Opus, the default before Vorbis, which the server decodes at 48 kHz and resamples, 0.926 and
  0.905).  Over a real network the seed's uploads add to its idle time; asrbatch's happen while earlier
  requests are being recognised, and are a seventh of the bytes (`bench/network.py`, below).
- The "idle" columns of the details split the slot time the server did not use: before its first
  recognition began (the client starting, scanning, probing and decoding the first recordings),
  between, and after the last recording began (fewer recordings left than slots).  The start and the
  end of a run count in full here, and weigh less in longer runs.
- Client CPU: asrbatch probes, decodes and resamples every recording itself (ffprobe and ffmpeg),
  encodes each chunk as Vorbis (ffmpeg) and writes a ledger; the baseline only reads and sends bytes.  The baseline's memory grows with the size
  of the largest file, which it reads whole; asrbatch's does not grow with a recording's length.

## How it was measured

- Servers: the reference server on Gradio 6.31 on 127.0.0.1, started fresh for each measurement.
  Items 1-3 use the `simulate` engine at {rtf} s per audio second (20x real time, a GPU-class
  recogniser): slow enough that the server's time dominates on this machine, where the client and
  the servers share the cores, and fast enough that the per-file overheads of a client show.  The
  busy time is the server's own counter ("Engine busy" on its system-information tab), read before
  and after each run.
- Corpora: recordings of 20-90 s cut from festival speech with pauses, as 44.1 kHz stereo MP3,
  44.1/48 kHz AAC (m4a), 44.1 kHz stereo WAV and 16 kHz mono WAV ({corpora}).  The
  concurrency-1 comparison uses the small corpus, the scaling runs the medium one (the first
  recordings of the large one), the concurrency-4 comparison the large one, so that asrbatch's runs
  last from half a minute to a minute.
- 1: one server with `--concurrency 1`, then one with `--concurrency 4`; asrbatch and the baseline
  on the same corpus and the same server, one after the other.
- 2: CPU time (user + system) of the client process and of the ffmpeg/ffprobe processes it ran, from
  `wait4`, divided by the duration of the audio.  Peak memory: the high-water mark (VmHWM) of the
  client's Python process.  Against a recording's length: asrbatch over a single 10-minute and a
  single one-hour MP3 (44.1 kHz stereo, from `bench/audio_memory.py`) against a simulate server at
  0.002 s per audio second, end to end (probe, decode, chunking at pauses, upload of every chunk,
  transcript, ledger); each ffmpeg/ffprobe process's peak from GNU time.
- 3: two servers with `--concurrency 2` each; asrbatch over the medium corpus with `server.urls`
  holding one of them, then both (`--workers 2`: two requests in flight per server).
- 4: {archive} empty `.mp3` files in a year/month tree and a ledger in which every one of them is
  done with its current size and mtime (rows written directly in the ledger's schema, as a year of
  hourly runs would leave them); `asrbatch run` then finds nothing to do.  Median of three runs,
  process start to exit.
- 5: the reference server with the sphinx (PocketSphinx) engine and `--concurrency
  {sphinx_concurrency}` (one per core), over the five recordings in `samples/`; asrbatch with
  `--workers {sphinx_concurrency}`.

## Details

{detail}

One recording of growing length, end to end:

{memory}

## Rerun

```sh
.venv/bin/python tests/support/servers.py --prepare 6.31.0   # the server's venv, once (scripts/test.sh does it too)
.venv/bin/python bench/run.py                                # writes bench/RESULTS.md; about 10 minutes on 2 cores
.venv/bin/python bench/run.py --quick                        # smaller corpora, prints only: to try changes
```

Corpora, the {archive}-file archive and the recordings of `bench/audio_memory.py` are built on the
first run and kept under `.cache/bench` (`$ASRBATCH_TEST_CACHE/bench` when set); later runs reuse
them.  Other work on the machine shows in the figures: run it on a quiet machine.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small corpora; prints the table, writes no file")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md", help="where the report goes")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (transcripts, server logs)")
    options = parser.parse_args(argv)
    started = time.monotonic()
    scale = 0.25 if options.quick else 1.0
    small = build_corpus(SMALL_ENGINE_SECONDS * scale, "small" + ("-quick" if options.quick else ""))
    large = build_corpus(LARGE_ENGINE_SECONDS * scale, "large" + ("-quick" if options.quick else ""))
    medium = subset(large, MEDIUM_ENGINE_SECONDS * scale, "medium" + ("-quick" if options.quick else ""))
    workdir = Path(tempfile.mkdtemp(prefix="asrbatch-bench-"))
    try:
        load_start = os.getloadavg()[0]
        results: dict[str, Any] = {"corpora": (small, medium, large), "machine": machine()}
        results["utilisation"] = utilisation(small, large, workdir)
        results["scaling"] = scaling(medium, workdir)
        results["archive_size"] = ARCHIVE_SIZE if not options.quick else 10_000
        results["idle"] = idle_archive(results["archive_size"], workdir)
        results["sphinx"] = sphinx_samples(workdir)
        results["memory"] = memory_by_length(workdir)
        results["load"] = f"{load_start:.2f}, {os.getloadavg()[0]:.2f}"
        report = render(results, time.monotonic() - started, options.quick)
    finally:
        if options.keep:
            log(f"working folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report)
    if not options.quick:
        options.output.write_text(report + kept_sections(options.output), encoding="utf-8")
        log(f"written to {options.output}")
    return 0


def kept_sections(output: Path) -> str:
    """The sections other bench scripts wrote into ``output`` (``<!-- bench/NAME.py -->`` to
    ``<!-- end of bench/NAME.py -->``), kept when this report replaces the rest."""
    if not output.exists():
        return ""
    text = output.read_text(encoding="utf-8")
    found = re.finditer(r"(?ms)^<!-- (bench/[\w.]+) -->$.*?^<!-- end of \1 -->$", text)
    return "".join("\n" + match.group(0) + "\n" for match in found)


if __name__ == "__main__":
    sys.exit(main())
