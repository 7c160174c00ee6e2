"""Shared ledger benchmark: 1, 2 and 4 workers splitting 5,000 short recordings through PostgreSQL.

    .venv/bin/python bench/ledger_claims.py            # writes its section of bench/RESULTS.md
    .venv/bin/python bench/ledger_claims.py --quick    # 500 recordings, prints only: to try the script

Two measurements, each with 1, 2 and 4 workers over the same 5,000 recordings and a fresh database
on a throwaway PostgreSQL cluster (tests/support/postgres.py):

1. The ledger alone: each worker is a process that goes through the recordings in order as a run
   does (claim; if it is ours, read the entry again; unless another worker finished it meanwhile,
   record it pending, record the success; release the claim), so the figure is what the claims
   cost, without audio or a server.
2. End to end: ``asrbatch run --ledger postgresql://...`` processes over 5,000 WAVs of 0.1-0.6 s
   against the reference server with the simulate engine at ``--simulate-rtf 0`` (no recognition
   time: what is left is the client, the server's request handling and the ledger).  The server's
   own request counter and the ledger's events say how many recordings were sent and recorded twice.

Duplicates must be 0.  The WAVs are written once (Python's wave module) and kept under
.cache/bench/ledger-claims.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
import requests  # noqa: E402

from tests.support.postgres import Cluster, find_bindir  # noqa: E402
from tests.support.servers import ServerProcess, start_server  # noqa: E402

COUNT = 5000
WORKERS = (1, 2, 4)
GRADIO = "6.31.0"
SERVER_CONCURRENCY = 8
REQUESTS_PER_WORKER = 2
"""--workers of every asrbatch run: requests each keeps in flight."""
MARKER = "bench/ledger_claims.py"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    base = os.environ.get("ASRBATCH_TEST_CACHE")
    folder = (Path(base) if base else REPO / ".cache") / "bench" / "ledger-claims"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def seconds_of(index: int) -> float:
    return round(0.10 + 0.01 * (index % 50), 2)


def corpus(count: int) -> tuple[Path, dict[str, float]]:
    """*count* short 16 kHz mono WAVs, each with content of its own (a hash would reuse a twin's transcript)."""
    folder = cache_dir() / f"corpus-{count}"
    durations = {f"{index // 500:02d}/rec {index:05d}.wav": seconds_of(index) for index in range(count)}
    ready = folder / ".complete"
    if ready.exists():
        return folder, durations
    log(f"writing {count} WAVs under {folder}")
    shutil.rmtree(folder, ignore_errors=True)
    old = time.time() - 3600
    for index, (key, seconds) in enumerate(durations.items()):
        target = folder / key
        target.parent.mkdir(parents=True, exist_ok=True)
        frames = int(16000 * seconds)
        frequency = 200.0 + index % 997
        samples = [int(8000 * math.sin(2 * math.pi * frequency * n / 16000)) for n in range(frames)]
        samples[0], samples[1] = index & 0x7FFF, index >> 15
        with wave.open(str(target), "wb") as audio:
            audio.setnchannels(1)
            audio.setsampwidth(2)
            audio.setframerate(16000)
            audio.writeframes(struct.pack(f"<{frames}h", *samples))
        os.utime(target, (old, old))
    ready.write_text("")
    return folder, durations


# ----------------------------------------------------------------------------------------------
# 1. The ledger alone


def ledger_worker(url: str, keys: list[str], start: Any, results: Any) -> None:
    """One worker process: the claims a run makes, recording by recording."""
    from asrbatch.ledger import Identity, open_location

    with open_location(url, lease=300.0) as ledger:
        run_id = ledger.begin_run(Path("/bench"))
        start.wait()
        began = time.monotonic()
        mine = attempts = 0
        for n, key in enumerate(keys):
            attempts += 1
            if ledger.claim(key, run_id=run_id).worker != ledger.worker:
                continue
            entry = ledger.get(key)  # another worker may have finished it and let go since
            if entry is not None and entry.finished:
                ledger.release_claim(key)
                continue
            identity = Identity(key, 100 + n, n, f"sha-{n}")
            ledger.record_pending(identity, changed=True)
            ledger.record_success(identity, outcome="done", outputs={"base": key}, output_hashes={key: "h"},
                                  result={"source": key, "text": "heard"}, audio_seconds=0.1, server_seconds=0.0,
                                  attempts=1, run_id=run_id)
            ledger.release_claim(key)
            mine += 1
        results.put({"worker": ledger.worker, "mine": mine, "attempts": attempts,
                     "seconds": time.monotonic() - began})


@dataclass
class LedgerRun:
    workers: int
    wall: float
    per_worker: list[int]
    attempts: int
    duplicates: int
    missing: int

    @property
    def claims_per_second(self) -> float:
        return sum(self.per_worker) / self.wall


def ledger_alone(cluster: Cluster, count: int, workers: int) -> LedgerRun:
    url = cluster.create_database(f"alone-{workers}")
    from asrbatch.ledger import open_location

    open_location(url).close()  # the schema, before the clock starts
    keys = [f"{n // 500:02d}/rec {n:05d}.wav" for n in range(count)]
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(workers + 1)
    results = context.Queue()
    processes = [context.Process(target=ledger_worker, args=(url, keys, start, results)) for _ in range(workers)]
    for process in processes:
        process.start()
    start.wait()
    began = time.monotonic()
    reports = [results.get(timeout=1800) for _ in processes]
    wall = time.monotonic() - began
    for process in processes:
        process.join()
    duplicates, missing = ledger_check(url, keys)
    return LedgerRun(workers, wall, [r["mine"] for r in reports], sum(r["attempts"] for r in reports),
                     duplicates, missing)


def ledger_check(url: str, keys: list[str]) -> tuple[int, int]:
    """(recordings recorded done more than once, recordings never recorded done)."""
    with psycopg.connect(url, autocommit=True) as connection:
        done = dict(connection.execute(
            "SELECT key, COUNT(*) FROM events WHERE outcome = 'done' GROUP BY key").fetchall())
    return sum(n - 1 for n in done.values() if n > 1), sum(1 for key in keys if key not in done)


# ----------------------------------------------------------------------------------------------
# 2. End to end


def system_info(url: str) -> dict[str, str]:
    response = requests.post(url + "/gradio_api/api/predict/", json={"data": [], "fn_index": 3}, timeout=30)
    response.raise_for_status()
    facts = {}
    for line in response.json()["data"][0].splitlines():
        if line.startswith("- ") and ": " in line:
            key, value = line[2:].split(": ", 1)
            facts[key] = value
    return facts


@dataclass
class EndToEnd:
    workers: int
    wall: float
    requests: int
    per_worker: list[int]
    duplicates: int
    missing: int
    wrong: int
    exit_codes: list[int]

    @property
    def per_second(self) -> float:
        return sum(self.per_worker) / self.wall


def end_to_end(cluster: Cluster, server: ServerProcess, folder: Path, durations: dict[str, float], workers: int,
               workdir: Path) -> EndToEnd:
    url = cluster.create_database(f"e2e-{workers}")
    out = workdir / f"out-{workers}"
    served_before = int(system_info(server.url)["Requests served"])
    command = [sys.executable, "-m", "asrbatch", "run", str(folder), "-o", str(out), "--url", server.url,
               "--ledger", url, "--workers", str(REQUESTS_PER_WORKER), "-q"]
    began = time.monotonic()
    processes = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(workers)]
    codes = []
    for process in processes:
        _, stderr = process.communicate(timeout=3600)
        codes.append(process.returncode)
        if process.returncode != 0:
            log(f"worker exited {process.returncode}: {stderr.strip()[-500:]}")
    wall = time.monotonic() - began
    served = int(system_info(server.url)["Requests served"]) - served_before
    duplicates, missing = ledger_check(url, list(durations))
    wrong = 0
    for key, seconds in durations.items():
        target = out / Path(key).with_suffix(".txt")
        text = target.read_text(encoding="utf-8") if target.exists() else ""
        wrong += text != f"heard {seconds:.2f}\n"
    with psycopg.connect(url, autocommit=True) as connection:
        summaries = [json.loads(row[0]) for row in connection.execute("SELECT summary FROM runs ORDER BY id")]
    shutil.rmtree(out, ignore_errors=True)
    return EndToEnd(workers, wall, served, [s.get("done", 0) for s in summaries], duplicates, missing, wrong, codes)


# ----------------------------------------------------------------------------------------------
# Report


def machine(cluster: Cluster) -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    version = cluster.execute("SHOW server_version")[0][0]
    import asrbatch

    return {
        "CPU": f"{cpu}, {os.cpu_count()} cores (shared by the workers, the server and PostgreSQL)",
        "System": f"{platform.platform()}, Python {platform.python_version()}",
        "PostgreSQL": f"{version}, on the same machine (127.0.0.1), fsync off (a throwaway cluster)",
        "psycopg": psycopg.__version__,
        "asrbatch": asrbatch.__version__,
        "Load average (1 min) at the start": f"{os.getloadavg()[0]:.2f}",
    }


def render(facts: dict[str, str], alone: list[LedgerRun], e2e: list[EndToEnd], count: int, elapsed: float) -> str:
    today = datetime.date.today().isoformat()
    lines = [f"<!-- {MARKER} -->", "# Shared ledger: workers splitting the work through PostgreSQL", "",
             f"Measured {today} by `bench/ledger_claims.py` in {elapsed / 60:.1f} minutes, on:", ""]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    base = alone[0].claims_per_second if alone else 0.0
    lines += ["", f"## The ledger alone: {count:,} recordings, claim / re-read / pending / success / release", "",
              "| workers | wall s | recordings claimed per second | scaling vs 1 worker | claim attempts | "
              "recordings per worker | duplicates | missing |", "|---|---|---|---|---|---|---|---|"]
    for run in alone:
        lines.append(f"| {run.workers} | {run.wall:.1f} | {run.claims_per_second:,.0f} | "
                     f"{run.claims_per_second / base:.2f}x | {run.attempts:,} | "
                     f"{' / '.join(map(str, run.per_worker))} | {run.duplicates} | {run.missing} |")
    if e2e:
        first = e2e[0].per_second
        lines += ["", f"## End to end: `asrbatch run` workers over {count:,} WAVs, simulate engine at rtf 0", "",
                  f"Each worker runs with `--workers {REQUESTS_PER_WORKER}`; the server runs "
                  f"`--concurrency {SERVER_CONCURRENCY}`.", "",
                  "| workers | wall s | recordings per second | scaling vs 1 worker | server requests | "
                  "recordings per worker | duplicates | missing | wrong transcript | exit codes |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for run in e2e:
            lines.append(f"| {run.workers} | {run.wall:.1f} | {run.per_second:.1f} | {run.per_second / first:.2f}x | "
                         f"{run.requests:,} | {' / '.join(map(str, run.per_worker))} | {run.duplicates} | "
                         f"{run.missing} | {run.wrong} | {' '.join(map(str, run.exit_codes))} |")
    lines += ["", "Duplicates: recordings recorded done more than once in the ledger (end to end also: server "
              "requests beyond one per recording). Missing: recordings never recorded done. Wrong transcript: "
              "a transcript that does not name its own recording's duration (`--simulate-text \"heard {seconds}\"`).",
              ""]
    if alone and e2e:
        lines += [f"Reading them: one worker's claims cost little next to its recordings: the ledger alone went "
                  f"through {alone[0].claims_per_second / e2e[0].per_second:.0f}x as many recordings per second "
                  "as a whole run, which probes, decodes, uploads and writes each one. Every worker here shares "
                  f"the same {os.cpu_count()} cores with the others, the server and PostgreSQL (and whatever else "
                  "runs on the machine), so more workers bring no more CPU and the figures show what the "
                  "sharing costs and that it is right (no duplicates, an even split), not the scaling of hosts "
                  "that each bring their own cores; with more workers the ledger-alone figure also counts the "
                  "claims each worker tries on recordings another one holds or has finished.", ""]
    lines += ["Rerun:", "", "```sh",
              ".venv/bin/python tests/support/servers.py --prepare 6.31.0   # the server's venv, once",
              ".venv/bin/python bench/ledger_claims.py                      # writes this section",
              "```", f"<!-- end of {MARKER} -->"]
    return "\n".join(lines) + "\n"


def write_section(output: Path, section: str) -> None:
    """Replace this script's section of *output* (or append it), keeping everything else."""
    text = output.read_text(encoding="utf-8") if output.exists() else ""
    pattern = re.compile(rf"(?ms)^<!-- {re.escape(MARKER)} -->$.*?^<!-- end of {re.escape(MARKER)} -->\n?")
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    output.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 recordings; prints the section, writes no file")
    parser.add_argument("--ledger-only", action="store_true", help="skip the end-to-end runs")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    options = parser.parse_args(argv)
    count = 500 if options.quick else COUNT
    started = time.monotonic()
    bindir = find_bindir()
    if bindir is None:
        log("PostgreSQL is not installed: scripts/bootstrap.sh --test installs it")
        return 2
    cluster = Cluster(bindir).start()
    workdir = Path(tempfile.mkdtemp(prefix="asrbatch-bench-claims-"))
    try:
        facts = machine(cluster)
        alone = []
        for workers in WORKERS:
            log(f"ledger alone, {workers} worker(s), {count} recordings")
            alone.append(ledger_alone(cluster, count, workers))
            log(f"  {alone[-1].claims_per_second:.0f} claims/s, duplicates {alone[-1].duplicates}")
        e2e: list[EndToEnd] = []
        if not options.ledger_only:
            folder, durations = corpus(count)
            with start_server(GRADIO, engine="simulate", log_dir=workdir / "server",
                              extra_args=["--simulate-rtf", "0", "--simulate-text", "heard {seconds}",
                                          "--concurrency", str(SERVER_CONCURRENCY)]) as server:
                for workers in WORKERS:
                    log(f"end to end, {workers} worker(s), {count} recordings")
                    e2e.append(end_to_end(cluster, server, folder, durations, workers, workdir))
                    log(f"  {e2e[-1].per_second:.1f} recordings/s, duplicates {e2e[-1].duplicates}, "
                        f"requests {e2e[-1].requests}")
        section = render(facts, alone, e2e, count, time.monotonic() - started)
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(section)
    if not options.quick:
        write_section(options.output, section)
        log(f"written to {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
