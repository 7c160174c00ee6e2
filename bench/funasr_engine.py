"""The funasr engine's cost on this machine's CPU, with the tiny test models: load, memory, latency.

    .venv/bin/python bench/funasr_engine.py            # a minute or two; writes its section of bench/RESULTS.md
    .venv/bin/python bench/funasr_engine.py --quick    # fewer repetitions, prints only

The models are the tiny SeACo-Paraformer, FSMN-VAD and CT-Transformer folders of the tests
(tests/support/funasr_models.py: the published classes and frontends, dimensions scaled far down,
random weights), so the figures are FunASR's and the engine's own overhead, not what the real
models cost: those have about a thousand times the parameters and run on a GPU.

Measured, each in fresh processes of the funasr test venv (tests/support/funasr_probe.py):

1. importing FunASR, then loading the three models through the engine (``create_engine``);
2. the process's resident memory after loading and recognising, and its peak;
3. per-request latency of ``engine.transcribe`` on a 2 s sentence and on an 80 s recording with
   pauses (cut into 16 pieces by the VAD);
4. the same short request through the reference server (``asrbatch serve`` on Gradio 6.31,
   upload and SSE round trip on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from tests.server import gradio_http  # noqa: E402
from tests.support import speech  # noqa: E402
from tests.support.funasr_models import TinyModels, build_tiny_models, offline_environment  # noqa: E402
from tests.support.servers import (  # noqa: E402
    FUNASR_GRADIO_VERSION,
    FUNASR_VERSION,
    ServerProcess,
    free_port,
    funasr_python,
)

PROBE = REPO / "tests" / "support" / "funasr_probe.py"
SECTION_START = "<!-- bench/funasr_engine.py -->"
SECTION_END = "<!-- end of bench/funasr_engine.py -->"
LONG_PAUSES = (2.5, 3.0)
LONG_SENTENCES = 16


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def recordings() -> tuple[Path, Path]:
    """A 2 s sentence and about 80 s of sentences with pauses, 16 kHz mono WAV."""
    short = speech.synthesize(speech.SENTENCES[0])
    clips = [speech.synthesize(sentence) for sentence in speech.SENTENCES[:LONG_SENTENCES]]
    return short, speech.concat(clips, LONG_PAUSES)


def environment(scratch: Path) -> dict[str, str]:
    return {
        **os.environ,
        **offline_environment(),
        "MODELSCOPE_CACHE": str(scratch / "hub"),
        "PYTHONPATH": str(REPO),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }


def probe(python: Path, loads: list[dict[str, Any]], scratch: Path) -> dict[str, Any]:
    """One fresh probe process; its answer."""
    job, answer = scratch / "job.json", scratch / "answer.json"
    job.write_text(json.dumps({"loads": loads}), encoding="utf-8")
    completed = subprocess.run(
        [str(python), str(PROBE), str(job), str(answer)],
        capture_output=True, text=True, env=environment(scratch), cwd=REPO, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"probe failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(answer.read_text(encoding="utf-8"))
    return result


def engine_figures(python: Path, models: TinyModels, short: Path, long: Path, processes: int,
                   short_requests: int, long_requests: int, scratch: Path) -> dict[str, Any]:
    settings = {"name": "funasr", "model": str(models.asr), "vad_model": str(models.vad),
                "punc_model": str(models.punc), "device": "cpu"}
    requests_ = [{"wav": str(short)}] * short_requests + [{"wav": str(long)}] * long_requests
    imports, loads, rss, peaks, short_s, long_s = [], [], [], [], [], []
    for index in range(processes):
        log(f"engine process {index + 1}/{processes}")
        answer = probe(python, [{"settings": settings, "requests": requests_}], scratch)
        load = answer["loads"][0]
        imports.append(answer["import_seconds"])
        loads.append(load["load_seconds"])
        rss.append(load["rss_kib_after"] / 1024)
        peaks.append(answer["peak_rss_kib"] / 1024)
        timings = [result["seconds"] for result in load["results"]]
        # The first request of a process may pay one-off costs (lazy initialisation).
        short_s += timings[1:short_requests]
        long_s += timings[short_requests:]
        first = timings[0]
    return {
        "import_s": statistics.median(imports),
        "load_s": statistics.median(loads),
        "rss_mb": statistics.median(rss),
        "peak_mb": max(peaks),
        "first_request_s": first,
        "short_s": short_s,
        "long_s": long_s,
    }


def server_figures(python: Path, models: TinyModels, short: Path, count: int, scratch: Path) -> dict[str, Any]:
    port = free_port()
    command = [str(python), "-m", "asrbatch", "serve", "--engine", "funasr", *models.server_args(),
               "--device", "cpu", "--host", "127.0.0.1", "--port", str(port), "--temp-dir", str(scratch / "uploads")]
    server = ServerProcess(FUNASR_GRADIO_VERSION, command, environment(scratch), port, scratch / "server.log")
    started = time.perf_counter()
    with server.start():
        start_s = time.perf_counter() - started
        session = requests.Session()
        config = gradio_http.get_config(session, server.url)
        gradio_http.recognize(session, server.url, config, short)  # warm-up
        timings = []
        for _ in range(count):
            began = time.perf_counter()
            outcome = gradio_http.recognize(session, server.url, config, short)
            timings.append(time.perf_counter() - began)
            if not outcome.ok:
                raise RuntimeError(f"server request failed: {outcome}")
    return {"start_s": start_s, "request_s": timings}


def spread(values: Sequence[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered) * 1000:.0f} ms (p90 {p90 * 1000:.0f} ms, n={len(ordered)})"


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores (shared with whatever else runs)",
        f"- System: {platform.platform()}, Python {platform.python_version()} in the funasr venv",
        f"- FunASR {FUNASR_VERSION}, torch 2.13.0 (CPU build), Gradio {FUNASR_GRADIO_VERSION}",
        f"- Load average (1 min) at the start: {os.getloadavg()[0]:.2f}",
    ]


def section(engine: dict[str, Any], server: dict[str, Any], short: Path, long: Path, minutes: float) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        SECTION_START,
        "# funasr engine, CPU, tiny models",
        "",
        f"Measured {today} by `bench/funasr_engine.py` in {minutes:.1f} minutes, on:",
        "",
        *machine(),
        "",
        "The models are the tests' tiny SeACo-Paraformer, FSMN-VAD and CT-Transformer folders "
        "(`tests/support/funasr_models.py`: the published classes and frontends, about 0.2 M parameters "
        "in all, random weights), on the CPU. The figures are FunASR's and the engine's own overhead; "
        "the real models (about 220 M parameters for SeACo-Paraformer large alone) cost far more and "
        "are meant for a GPU: nothing here says how fast they run.",
        "",
        "| measurement | figure |",
        "|---|---|",
        f"| importing FunASR (`funasr.auto.auto_model`, it imports every model module) | {engine['import_s']:.1f} s |",
        f"| loading the three models through the engine, after the import | {engine['load_s']:.2f} s |",
        f"| resident memory after loading and recognising | {engine['rss_mb']:.0f} MB |",
        f"| peak resident memory of the process | {engine['peak_mb']:.0f} MB |",
        f"| first request of a process, {speech.duration(short):.1f} s sentence | {engine['first_request_s'] * 1000:.0f} ms |",
        f"| `engine.transcribe`, {speech.duration(short):.1f} s sentence | {spread(engine['short_s'])} |",
        f"| `engine.transcribe`, {speech.duration(long):.0f} s with pauses (16 VAD pieces) | {spread(engine['long_s'])} |",
        f"| `asrbatch serve --engine funasr` until it answers (Gradio + FunASR import, load) | {server['start_s']:.1f} s |",
        f"| the {speech.duration(short):.1f} s sentence through the server (upload, queue, SSE) | {spread(server['request_s'])} |",
        "",
        "Reading them: nearly all of a server's start is importing Gradio and FunASR (FunASR imports "
        "all its model modules at `import funasr`); with real weights, loading them adds to it. Memory "
        "is mostly torch and the libraries `import funasr` brings in (transformers among them), not "
        "the tiny weights. Latency is medians over repeated requests in fresh processes, the first "
        "request of each left out and shown on its own row.",
        "",
        "Rerun:",
        "",
        "```sh",
        ".venv/bin/python tests/support/servers.py --prepare funasr   # the funasr venv and the tiny models, once",
        ".venv/bin/python bench/funasr_engine.py                      # writes this section; a minute or two",
        "```",
        SECTION_END,
    ]
    return "\n".join(lines) + "\n"


def write_section(output: Path, text: str) -> None:
    """Replace this script's section of ``output`` (or append it), keeping everything else."""
    current = output.read_text(encoding="utf-8") if output.exists() else ""
    if SECTION_START in current and SECTION_END in current:
        before, rest = current.split(SECTION_START, 1)
        after = rest.split(SECTION_END, 1)[1].lstrip("\n")
        updated = before + text + ("\n" + after if after else "")
    else:
        updated = current.rstrip("\n") + ("\n\n" if current else "") + text
    output.write_text(updated, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions; print, write nothing")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    options = parser.parse_args(argv)
    began = time.perf_counter()
    python = funasr_python()
    models = build_tiny_models()
    short, long = recordings()
    processes, short_requests, long_requests, server_requests = (1, 4, 1, 5) if options.quick else (3, 21, 3, 20)
    with tempfile.TemporaryDirectory(prefix="asrbatch-bench-funasr-") as scratch:
        engine = engine_figures(python, models, short, long, processes, short_requests, long_requests, Path(scratch))
        log("server")
        server = server_figures(python, models, short, server_requests, Path(scratch))
    text = section(engine, server, short, long, (time.perf_counter() - began) / 60)
    print(text)
    if not options.quick:
        write_section(options.output, text)
        log(f"written to {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
