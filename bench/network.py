"""asrbatch against the seed's sequential approach over a shaped link: wall time, server use, bytes, WER.

    sudo .venv/bin/python bench/network.py          # about 10 minutes; writes its section of bench/RESULTS.md
    sudo .venv/bin/python bench/network.py --quick  # a smaller corpus, prints only

The GPU host is usually another machine.  Here the link is a network namespace of its own whose
loopback is shaped by a token bucket (``tc qdisc add dev lo root tbf rate 20mbit burst 32kbit
latency 50ms``, MTU 1500): client and server both run inside it and every byte between them,
both ways, goes through the bucket.  netem (delay, loss) is not available here: the link has
its rate and the queueing the bucket adds, no extra latency.  Creating a namespace needs root;
without it (or without ``ip`` and ``tc``) the benchmark says so and stops, exit 0.

Cases, each in a fresh namespace and on a fresh reference server on Gradio 3.50 (the generation
the Paraformer WebUI is mostly found on):

- 20 Mbit/s, one server slot; 100 Mbit/s, four slots: the simulate engine at 20x real time
  (``--simulate-rtf 0.05``): wall time (client process start to exit), utilisation (the
  server's "Engine busy" counter / (wall x slots)) and the bytes the client process sent
  (counted in the process at its sockets: HTTP headers and bodies, uploads and calls);
- the sphinx engine (PocketSphinx, two slots) over the same corpus at 20 Mbit/s: the word error
  rate of each client's transcripts against the text the corpus was spoken from.

asrbatch runs with ``--workers`` equal to the server's slots (Gradio 3 reports none) and its
default settings (Ogg Vorbis at about 32 kbit/s), and in the speed cases once more with ``audio.codec:
wav`` and ``audio.codec: opus`` (what the codec costs the server per request); the seed baseline
(``bench/baseline_seed.py``) sends each whole file as a base64 data URL and waits, one at a time.
From the server's log, each run's idle slot time is split into the time before its first
recognition and the gaps between recognitions (each gap: what the server did for the next request
before its engine started, and whatever the client kept it waiting).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from bench import serverlog  # noqa: E402
from tests.support import speech  # noqa: E402
from tests.support.servers import ServerProcess, start_server  # noqa: E402
from tests.support.wer import edit_distance, normalise  # noqa: E402

GRADIO = "3.50.2"
SECONDS_PER_AUDIO_SECOND = 0.05
CASES = ((20, 1), (100, 4))
"""(link Mbit/s, server slots) of the speed cases."""
WER_CASE = (20, 2)
"""The sphinx run: link and slots (one per core)."""
TARGETS = {"utilisation": 0.95, "wall_ratio": 0.75, "bytes_ratio": 0.25, "wer_increase": 0.01}
SHORT_FORMATS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("mp3", ("-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k")),
    ("m4a", ("-ar", "44100", "-ac", "2", "-c:a", "aac", "-b:a", "128k")),
    ("wav", ("-ar", "44100", "-ac", "2", "-c:a", "pcm_s16le")),
    ("wav", ("-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le")),
    ("flac", ("-ar", "44100", "-ac", "2", "-c:a", "flac")),
    ("ogg", ("-ar", "48000", "-ac", "2", "-c:a", "libvorbis", "-q:a", "4")),
    ("opus", ("-ar", "48000", "-ac", "1", "-c:a", "libopus", "-b:a", "48k", "-f", "ogg")),
    ("m4a", ("-ar", "48000", "-ac", "1", "-c:a", "aac", "-b:a", "64k")),
)
"""The eight kinds of short recordings: what phones, recorders and exports produce."""
LONG_MINUTES = 6.0


def log(message: str) -> None:
    print(f"[network {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ffmpeg(*arguments: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *arguments], check=True)


# ----------------------------------------------------------------------------------------------
# Corpus: recordings whose text is known


@dataclass(frozen=True)
class Corpus:
    folder: Path
    references: dict[str, str]
    """Text of each recording, by its path relative to the folder."""
    audio_seconds: float
    long_minutes: float

    @property
    def files(self) -> int:
        return len(self.references)


def cache_dir() -> Path:
    base = os.environ.get("ASRBATCH_TEST_CACHE")
    folder = (Path(base) if base else REPO / ".cache") / "bench" / "network"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_corpus(short_count: int, long_minutes: float) -> Corpus:
    """*short_count* recordings of 3-5 sentences in the eight formats in turn, and one long 128 kbit/s
    MP3 of every sentence again and again; built once, then reused."""
    sentences = list(dict.fromkeys(speech.SENTENCES + speech.PHONE_SENTENCES))
    spec = {"short": short_count, "long": long_minutes, "formats": SHORT_FORMATS, "sentences": sentences,
            "version": 1}
    name = f"corpus-{short_count}-{long_minutes:g}"
    folder = cache_dir() / name
    marker = folder / ".corpus.json"
    if marker.exists() and json.loads(marker.read_text())["spec"] == json.loads(json.dumps(spec)):
        recorded = json.loads(marker.read_text())
        return Corpus(folder / "recordings", recorded["references"], recorded["audio_seconds"], long_minutes)
    log(f"building the corpus ({short_count} short recordings, {long_minutes:g} minutes long)")
    shutil.rmtree(folder, ignore_errors=True)
    recordings = folder / "recordings"
    recordings.mkdir(parents=True)
    voices = {s: speech.synthesize(s) for s in sentences}
    references: dict[str, str] = {}
    old = time.time() - 86400
    cursor = 0
    for index in range(short_count):
        count = 3 + index % 3
        chosen = [sentences[(cursor + n) % len(sentences)] for n in range(count)]
        cursor += count
        joined = speech.concat([voices[s] for s in chosen], [0.6, 0.9, 0.5])
        extension, options = SHORT_FORMATS[index % len(SHORT_FORMATS)]
        key = f"day {index // 10 + 1}/call {index:02d}.{extension}"
        target = recordings / key
        target.parent.mkdir(parents=True, exist_ok=True)
        ffmpeg("-i", str(joined), *options, str(target))
        os.utime(target, (old, old))
        references[key] = " ".join(chosen)
    spoken: list[str] = []
    pauses = [0.7, 1.2, 0.5, 2.0, 0.9]
    total = 0.0
    while total < long_minutes * 60:
        sentence = sentences[len(spoken) % len(sentences)]
        spoken.append(sentence)
        total += speech.duration(voices[sentence]) + pauses[(len(spoken) - 1) % len(pauses)]
    joined = speech.concat([voices[s] for s in spoken], pauses)
    key = "lectures/long lecture.mp3"
    (recordings / key).parent.mkdir(parents=True, exist_ok=True)
    ffmpeg("-i", str(joined), "-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k",
           str(recordings / key))
    os.utime(recordings / key, (old, old))
    references[key] = " ".join(spoken)
    audio_seconds = sum(speech.duration(recordings / k) for k in references)
    marker.write_text(json.dumps({"spec": spec, "references": references, "audio_seconds": audio_seconds}))
    return Corpus(recordings, references, audio_seconds, long_minutes)


# ----------------------------------------------------------------------------------------------
# The link


def namespaces_available() -> str | None:
    """Why shaped namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "not root: creating a network namespace needs root (run it with sudo)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} not found (Debian: apt-get install iproute2)"
    return None


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True, text=True)


@contextmanager
def shaped_namespace(mbit: int) -> Iterator[str]:
    """A new network namespace whose loopback (MTU 1500) runs through a *mbit* token bucket."""
    name = f"asrbatch-bench-{uuid.uuid4().hex[:8]}"
    _ip("netns", "add", name)
    try:
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "mtu", "1500", "up")
        # The bucket must hold at least a timer tick's worth of bytes, or the rate is not reached.
        burst_kbit = max(32, mbit * 1000 // 250)
        _ip("netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", f"{mbit}mbit",
            "burst", f"{burst_kbit}kbit", "latency", "50ms")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def measure_link(seconds: float = 2.0) -> float:
    """Mbit/s of one TCP stream over 127.0.0.1 (inside the namespace)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    received = [0]

    def drain() -> None:
        connection, _ = listener.accept()
        with connection:
            while data := connection.recv(1 << 16):
                received[0] += len(data)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    block = b"\0" * (1 << 16)
    with socket.create_connection(listener.getsockname()) as sender:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            sender.sendall(block)
    thread.join(timeout=30)
    elapsed = time.monotonic() - started
    listener.close()
    return received[0] * 8 / elapsed / 1e6


# ----------------------------------------------------------------------------------------------
# Clients and servers (inside the namespace)

# A client in its own process; at exit it reports the bytes it sent through its sockets.
WRAPPER = """
import atexit, json, runpy, socket, sys
report, kind, target = sys.argv[1:4]
sent = [0]
_sendall, _send = socket.socket.sendall, socket.socket.send
def sendall(self, data, *args):
    sent[0] += len(memoryview(data).cast("B"))
    return _sendall(self, data, *args)
def send(self, data, *args):
    count = _send(self, data, *args)
    sent[0] += count
    return count
socket.socket.sendall, socket.socket.send = sendall, send
def write():
    with open(report, "w") as handle:
        json.dump({"bytes_sent": sent[0]}, handle)
atexit.register(write)
sys.argv = [target, *sys.argv[4:]]
runpy.run_module(target, run_name="__main__", alter_sys=True) if kind == "module" else runpy.run_path(target, run_name="__main__")
"""


@dataclass
class ClientRun:
    label: str
    wall: float
    bytes_sent: int
    audio_seconds: float
    slots: int
    busy: float = 0.0
    requests: int = 0
    peak_in_progress: int = 0
    first_start: float | None = None
    """Seconds from the client's start to the server's first recognition."""
    median_gap: float | None = None
    """Median time between one recognition's end and the next one's start (one slot)."""
    wer: float | None = None
    words: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def utilisation(self) -> float:
        return self.busy / (self.wall * self.slots)

    @property
    def mb_per_audio_hour(self) -> float:
        return self.bytes_sent / 1e6 / (self.audio_seconds / 3600)


def slug(label: str) -> str:
    """*label* as a file name."""
    return re.sub(r"[^\w.]+", "-", label)


def system_info(server: ServerProcess) -> dict[str, str]:
    response = requests.post(server.url + "/api/predict/", json={"data": [], "fn_index": 3}, timeout=60)
    response.raise_for_status()
    lines = response.json()["data"][0].splitlines()
    return dict(line[2:].split(": ", 1) for line in lines if line.startswith("- ") and ": " in line)


def run_client(label: str, kind: str, target: str, arguments: Sequence[str], server: ServerProcess,
               corpus: Corpus, slots: int, workdir: Path, settings: dict[str, str] | None = None) -> ClientRun:
    name = slug(label)
    report = workdir / f"{name}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASRBATCH_") or k == "ASRBATCH_TEST_CACHE"}
    env.update(settings or {})
    before = system_info(server)
    with (workdir / f"{name}.stderr").open("w") as errors:
        started, began = time.monotonic(), time.time()
        completed = subprocess.run([sys.executable, "-c", WRAPPER, str(report), kind, target, *arguments],
                                   cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=errors, check=False)
        wall = time.monotonic() - started
    if completed.returncode != 0:
        tail = (workdir / f"{name}.stderr").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{label} exited {completed.returncode}:\n{tail}")
    after = system_info(server)
    run = ClientRun(
        label, wall, json.loads(report.read_text())["bytes_sent"], corpus.audio_seconds, slots,
        busy=float(after["Engine busy"].split()[0]) - float(before["Engine busy"].split()[0]),
        requests=int(after["Requests served"]) - int(before["Requests served"]),
        peak_in_progress=int(after.get("Peak requests in progress", "0")),
    )
    spans = recognitions(server, began, began + wall, options_rtf(server))
    if spans:
        run.first_start = spans[0][0] - began
        gaps = [later[0] - earlier[1] for earlier, later in itertools.pairwise(spans)]
        run.median_gap = statistics.median(gaps) if gaps and slots == 1 else None
    return run


def options_rtf(server: ServerProcess) -> float:
    """The simulate engine's seconds per audio second, from the server's command line (0 for sphinx)."""
    command = list(server.command)
    return float(command[command.index("--simulate-rtf") + 1]) if "--simulate-rtf" in command else 0.0


def recognitions(server: ServerProcess, began: float, ended: float, rtf: float) -> list[tuple[float, float]]:
    """(start, end) of each recognition in the server's log between *began* and *ended*, in order.

    The sphinx engine's runs are not timed this way (empty list).
    """
    if not rtf:
        return []
    return serverlog.recognitions(server.log_path, began, ended, rtf)


def asrbatch_client(corpus: Corpus, server: ServerProcess, slots: int, workdir: Path, label: str) -> ClientRun:
    out = workdir / f"out-{slug(label)}"
    run = run_client(label, "module", "asrbatch", ["run", str(corpus.folder), "-o", str(out), "--min-age", "0",
                                                   "--url", server.url, "--workers", str(slots), "-v"],
                     server, corpus, slots, workdir)
    run.extra["out"] = str(out)
    return run


def codec_client(codec: str) -> Any:
    """A client: asrbatch sending *codec* (``audio.codec``), to show what the codec costs the server per request."""
    def client(corpus: Corpus, server: ServerProcess, slots: int, workdir: Path, label: str) -> ClientRun:
        out = workdir / f"out-{slug(label)}"
        run = run_client(label, "module", "asrbatch", ["run", str(corpus.folder), "-o", str(out), "--min-age", "0",
                                                       "--url", server.url, "--workers", str(slots), "-v"],
                         server, corpus, slots, workdir, {"ASRBATCH_AUDIO_CODEC": codec})
        run.extra["out"] = str(out)
        return run
    client.__name__ = f"asrbatch_{codec}_client"
    return client


OTHER_CODECS = ("wav", "opus")
"""asrbatch's other codecs in the speed cases: 16 kHz WAV (no decoding on the server) and Ogg Opus."""


def seed_client(corpus: Corpus, server: ServerProcess, slots: int, workdir: Path, label: str) -> ClientRun:
    out = workdir / f"out-{slug(label)}"
    run = run_client(label, "path", str(REPO / "bench" / "baseline_seed.py"),
                     [str(corpus.folder), str(out), "--url", server.url], server, corpus, slots, workdir)
    run.extra["out"] = str(out)
    return run


def transcripts(run: ClientRun, corpus: Corpus) -> dict[str, str]:
    """Each recording's transcript as the client wrote it (both write <path minus extension>.txt)."""
    out = Path(run.extra["out"])
    found = {}
    for key in corpus.references:
        path = out / Path(key).with_suffix(".txt")
        if not path.exists():
            raise RuntimeError(f"{run.label}: no transcript for {key} in {out}")
        found[key] = path.read_text(encoding="utf-8").strip()
    return found


def score(run: ClientRun, corpus: Corpus) -> None:
    """The word error rate of *run*'s transcripts, all recordings together."""
    errors = words = 0
    for key, text in transcripts(run, corpus).items():
        reference = normalise(corpus.references[key])
        errors += edit_distance(reference, normalise(text))
        words += len(reference)
    run.wer, run.words = errors / words, words


def inside(options: argparse.Namespace) -> int:
    """Run one case's clients (we are inside its namespace) and write the results as JSON."""
    corpus = build_corpus(options.short, options.long_minutes)
    workdir = Path(tempfile.mkdtemp(prefix="asrbatch-network-"))
    results: dict[str, Any] = {"link_mbit": measure_link()}
    try:
        if options.engine == "simulate":
            extra = ["--simulate-rtf", str(SECONDS_PER_AUDIO_SECOND), "--concurrency", str(options.slots)]
        else:
            extra = ["--concurrency", str(options.slots)]
        runs = []
        clients = [(asrbatch_client, "asrbatch"), (seed_client, "seed")]
        if options.engine == "simulate":
            clients += [(codec_client(codec), f"asrbatch {codec}") for codec in OTHER_CODECS]
        for client, client_name in clients:
            # A fresh server for each client: its counters, upload folder and caches start empty.
            with start_server(GRADIO, engine=options.engine, log_dir=workdir / f"server-{client.__name__}",
                              extra_args=extra) as server:
                label = f"{client_name} {options.label}"
                log(f"{label}: {corpus.files} recordings, {corpus.audio_seconds / 60:.1f} min of audio")
                run = client(corpus, server, options.slots, workdir, label)
                if options.engine == "sphinx":
                    score(run, corpus)
                runs.append(run)
        results["runs"] = [asdict(r) for r in runs]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    Path(options.result).write_text(json.dumps(results))
    return 0


# ----------------------------------------------------------------------------------------------
# The report


def case(mbit: int, slots: int, engine: str, options: argparse.Namespace, label: str) -> dict[str, Any]:
    with shaped_namespace(mbit) as namespace, tempfile.NamedTemporaryFile(suffix=".json") as result:
        command = ["ip", "netns", "exec", namespace, sys.executable, __file__, "--inside", "--engine", engine,
                   "--slots", str(slots), "--label", label, "--result", result.name, "--short", str(options.short),
                   "--long-minutes", str(options.long_minutes)]
        subprocess.run(command, check=True)
        data: dict[str, Any] = json.loads(Path(result.name).read_text())
    data["mbit"], data["slots"], data["engine"] = mbit, slots, engine
    data["runs"] = [ClientRun(**r) for r in data["runs"]]
    return data


def detail_row(run: ClientRun, link_mbit: float) -> str:
    idle = (run.wall * run.slots - run.busy) / run.requests if run.requests else 0.0
    return (f"| {run.label} | {link_mbit:.1f} Mbit/s | {run.wall:.1f} | {run.busy:.1f} | {run.utilisation:.3f} | "
            f"{run.requests} | {idle:.2f} | {seconds(run.first_start)} | {seconds(run.median_gap, 3)} | "
            f"{run.peak_in_progress} | {run.bytes_sent / 1e6:.2f} | {run.mb_per_audio_hour:.1f} |")


def seconds(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def render(cases: list[dict[str, Any]], wer_case: dict[str, Any], corpus: Corpus, elapsed: float,
           quick: bool, load_start: float) -> str:
    rows = ["| link, server slots | measurement | asrbatch | seed baseline | asrbatch / seed | target | met |",
            "|---|---|---|---|---|---|---|"]
    detail = ["| run | link measured | wall s | server busy s | utilisation | requests | idle slot s per request | "
              "first recognition after s | median gap between recognitions s | peak in progress | MB sent | "
              "MB per audio hour |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for data in cases:
        ours, seed, *others = data["runs"]
        where = f"{data['mbit']} Mbit/s, {data['slots']} slot{'s' if data['slots'] > 1 else ''}"
        rows.append(f"| {where} | utilisation | {ours.utilisation:.3f} | {seed.utilisation:.3f} | - | "
                    f">= {TARGETS['utilisation']} | {mark(ours.utilisation >= TARGETS['utilisation'])} |")
        for other, codec in zip(others, OTHER_CODECS, strict=True):
            rows.append(f"| {where} | utilisation, asrbatch with `audio.codec: {codec}` ({other.mb_per_audio_hour:.0f} "
                        f"MB per audio hour) | {other.utilisation:.3f} | {seed.utilisation:.3f} | - | - | - |")
        if data["slots"] == 1 and ours.median_gap is not None:
            bound = ours.busy / (ours.busy + ours.requests * ours.median_gap)
            rows.append(f"| {where} | utilisation with nothing idle but the median gap before each recognition "
                        f"({1000 * ours.median_gap:.0f} ms, x {ours.requests} requests) | {bound:.3f} | - | - | - | - |")
        if data["slots"] == 1:
            wall_ratio = ours.wall / seed.wall
            bytes_ratio = ours.bytes_sent / seed.bytes_sent
            rows.append(f"| {where} | wall time | {ours.wall:.1f} s | {seed.wall:.1f} s | {wall_ratio:.2f} | "
                        f"<= {TARGETS['wall_ratio']} | {mark(wall_ratio <= TARGETS['wall_ratio'])} |")
            rows.append(f"| {where} | sent per audio hour | {ours.mb_per_audio_hour:.1f} MB | "
                        f"{seed.mb_per_audio_hour:.1f} MB | {bytes_ratio:.3f} | <= {TARGETS['bytes_ratio']} | "
                        f"{mark(bytes_ratio <= TARGETS['bytes_ratio'])} |")
        else:
            rows.append(f"| {where} | wall time | {ours.wall:.1f} s | {seed.wall:.1f} s | "
                        f"{ours.wall / seed.wall:.2f} | - | - |")
        for run in (ours, *others, seed):
            detail.append(detail_row(run, data["link_mbit"]))
    ours, seed = wer_case["runs"]
    assert ours.wer is not None and seed.wer is not None
    rows.append(f"| {wer_case['mbit']} Mbit/s, sphinx engine | word error rate | {ours.wer:.3f} | {seed.wer:.3f} | "
                f"{ours.wer - seed.wer:+.3f} | no higher than the seed's + {TARGETS['wer_increase']} | "
                f"{mark(ours.wer <= seed.wer + TARGETS['wer_increase'])} |")
    for run in (ours, seed):
        detail.append(detail_row(run, wer_case["link_mbit"]))
    short = corpus.files - 1
    long_minutes = corpus.long_minutes
    return f"""<!-- bench/network.py -->
# Over a shaped link: asrbatch and the seed baseline{' (quick mode: small corpus)' if quick else ''}

Measured {time.strftime('%Y-%m-%d')} by `bench/network.py` in {elapsed / 60:.1f} minutes ({os.cpu_count()} cores shared
by client and server, and with whatever else ran: load average (1 min) {load_start:.2f} at the start, {os.getloadavg()[0]:.2f}
at the end).  Reference server on Gradio {GRADIO}.

{chr(10).join(rows)}

Corpus: {short} short recordings ({', '.join(sorted({f'{e}' for e, _ in SHORT_FORMATS}))}: 44.1 kHz stereo MP3 and AAC at
128 kbit/s, 44.1 kHz stereo and 16 kHz mono WAV, 44.1 kHz stereo FLAC, 48 kHz Vorbis, Opus at 48 kbit/s, 48 kHz mono
AAC) of 3-5 sentences each, and one {long_minutes:g}-minute 128 kbit/s MP3; {corpus.audio_seconds / 60:.1f} minutes
of festival speech in all, whose text is known.

{chr(10).join(detail)}

How to read it:

- Link: a network namespace whose loopback (MTU 1500) runs through `tc ... tbf rate <N>mbit` (burst 32 kbit at
  20 Mbit/s); "link measured" is one TCP stream's rate through it.  Requests and answers share the one
  bucket.  No delay or loss is added (netem is not available): a real site link's latency would cost the
  seed's one-at-a-time requests more, and asrbatch's overlapped ones little.
- Utilisation is the server's "Engine busy" counter over wall time x slots (client process start to exit);
  with one slot it cannot pass the server's busy time / the seed's wall time, so the wall-time target of
  0.75 x the seed's is only reachable where the seed keeps the server busy less than 75 % of the time.
- Bytes are what the client process sent through its sockets (HTTP headers and bodies: uploads and calls).
  The seed sends each file as it is, base64-inflated (4/3) in the call; asrbatch sends Ogg Vorbis at
  about 32 kbit/s (its default) through `POST /upload`, outside the recognition slot.
- "peak in progress" is the reference server's most requests inside its recognition function at once: it
  never exceeds the slots.  "idle slot s per request" is (wall x slots - busy) / requests: the slot time
  each request cost beyond its recognition.  "first recognition after s" is the time from the client's
  start to the server's first engine run (the client starting, scanning, asking the server what it is,
  decoding and sending the first recording); the "median gap" is, with one slot, the time between one
  recognition's end and the next one's start, from the server's log: what the server did for the next
  request before its engine started, and anything the client kept it waiting.
- Where the idle time goes with one slot: uploads travel outside the slot, but what the server does per
  request before its engine starts happens inside it, and cannot overlap the previous recognition without
  a second request in the recognition function (more than its slots).  On Gradio 3 that is the
  `/api/predict/` call itself, Gradio decoding the upload (pydub runs ffprobe, then ffmpeg; a PCM WAV is
  read without either) and writing it out again as WAV, and the reference server resampling what is not
  16 kHz mono with ffmpeg: Vorbis decodes at 16 kHz, Opus always at 48 kHz (the `audio.codec: opus` rows).
  asrbatch also sends more requests than the seed (the lecture in chunks).  The `audio.codec: wav` rows
  show that cost: 16 kHz WAV needs no ffmpeg run on the server and keeps the slot busy, for about nine
  times the bytes.  With a compressed codec the median gap is the floor: the "utilisation with nothing
  idle but the median gap" row is what asrbatch would reach if it started instantly and never kept the
  server waiting.  Each such step costs far more on a loaded machine.
- With four slots those steps overlap across slots, and what limits the run is CPU: client and server
  share this machine's cores, and every request costs ffmpeg runs on both sides (decode and encode in
  the client, decode and resampling in the server).
- WER: PocketSphinx (the sphinx engine, two slots) over the same corpus, transcripts against the text they
  were spoken from, all words together; the seed sends the original files, asrbatch Vorbis chunks of the
  decoded 16 kHz audio (the long lecture in chunks cut at pauses).

Rerun: `sudo .venv/bin/python bench/network.py` (root for `ip netns`; writes this section, keeps the others).
<!-- end of bench/network.py -->
"""


def replace_section(output: Path, section: str) -> None:
    text = output.read_text(encoding="utf-8") if output.exists() else ""
    pattern = re.compile(r"(?ms)^<!-- bench/network\.py -->$.*?^<!-- end of bench/network\.py -->$\n?")
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    output.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small corpus; prints the section, writes no file")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="simulate", help=argparse.SUPPRESS)
    parser.add_argument("--slots", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--label", default="", help=argparse.SUPPRESS)
    parser.add_argument("--result", default="", help=argparse.SUPPRESS)
    parser.add_argument("--short", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--long-minutes", type=float, default=LONG_MINUTES, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.inside:
        return inside(options)
    problem = namespaces_available()
    if problem is not None:
        print(f"bench/network.py: skipped: {problem}", file=sys.stderr)
        return 0
    if options.quick:
        options.short, options.long_minutes = 6, 1.5
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    corpus = build_corpus(options.short, options.long_minutes)
    cases = [case(mbit, slots, "simulate", options, f"{mbit} Mbit/s c{slots}") for mbit, slots in CASES]
    wer_case = case(*WER_CASE, "sphinx", options, f"{WER_CASE[0]} Mbit/s sphinx")
    section = render(cases, wer_case, corpus, time.monotonic() - started, options.quick, load_start)
    print(section)
    if not options.quick:
        replace_section(options.output, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
