"""Load the funasr engine and transcribe files with it: run with the funasr test venv's python.

    python tests/support/funasr_probe.py JOB.json ANSWER.json

The job names engine settings and requests::

    {"loads": [{"settings": {"name": "funasr", "model": DIR, ...},
                "requests": [{"wav": PATH, "hotwords": ["阿里巴巴"], "batch_size": 1}]}]}

Each load goes through ``create_engine`` (the server's own code path) and the real FunASR. The
answer has, per load, either ``error`` (the EngineUnavailable message) or ``load_seconds`` and
per request the EngineResult (``text``, ``segments`` in seconds), ``seconds``, and
``hotword_calls``: what SeACo-Paraformer's hotword parser was given and the token ids it made of
it. The parser is FunASR's own method, called as usual; the probe only notes its argument and
result. A request ``{"wav": PATH, "vad_only": true}`` answers ``vad_segments``: what the
loaded VAD model alone finds in the file. ``import_seconds`` is the time importing FunASR took
(before the first load, which then only builds the models), ``rss_kib_after`` each load's
resident memory once its requests are done, ``peak_rss_kib`` the process's peak.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from asrbatch.server.engines import EngineSettings, EngineUnavailable, create_engine  # noqa: E402


def note_hotword_calls(engine: Any, calls: list[dict[str, Any]]) -> None:
    """Record every call of the recogniser's hotword parser into ``calls``."""
    recogniser = engine._model.model
    parse = recogniser.generate_hotwords_list

    def noted(hotword_list_or_file: Any, *args: Any, **kwargs: Any) -> Any:
        token_ids = parse(hotword_list_or_file, *args, **kwargs)
        calls.append({"argument": hotword_list_or_file, "token_ids": token_ids})
        return token_ids

    recogniser.generate_hotwords_list = noted


def vad_segments(engine: Any, wav: Path) -> list[list[int]]:
    """The speech stretches FunASR's VAD model finds in ``wav``, ``[start_ms, end_ms]`` each."""
    automodel = engine._model
    found = automodel.inference(str(wav), model=automodel.vad_model, kwargs=automodel.vad_kwargs)
    return [list(segment) for segment in found[0]["value"]]


def run_load(load: dict[str, Any]) -> dict[str, Any]:
    """One engine load and its requests."""
    started = time.perf_counter()
    try:
        engine = create_engine(EngineSettings(**load["settings"]))
    except EngineUnavailable as error:
        return {"error": str(error)}
    answer: dict[str, Any] = {"load_seconds": time.perf_counter() - started, "results": []}
    calls: list[dict[str, Any]] = []
    note_hotword_calls(engine, calls)
    for request in load.get("requests", []):
        if request.get("vad_only"):
            answer["results"].append({"vad_segments": vad_segments(engine, Path(request["wav"]))})
            continue
        calls.clear()
        started = time.perf_counter()
        result = engine.transcribe(Path(request["wav"]), request.get("hotwords", []), request.get("batch_size", 1))
        answer["results"].append(
            {
                "text": result.text,
                "segments": [list(segment) for segment in result.segments],
                "seconds": time.perf_counter() - started,
                "hotword_calls": list(calls),
            }
        )
    return answer


def memory_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in KiB.

    Not getrusage's ru_maxrss: on Linux it keeps the peak of the process that exec'd this one.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:"))


def main(job_path: Path, answer_path: Path) -> int:
    """Read the job, write the answer (a file: FunASR prints to stdout as it goes)."""
    job = json.loads(job_path.read_text(encoding="utf-8"))
    started = time.perf_counter()
    import funasr.auto.auto_model  # noqa: F401  (what the first load would import)

    import_seconds = time.perf_counter() - started
    answers = []
    for load in job["loads"]:
        answers.append(run_load(load))
        answers[-1]["rss_kib_after"] = memory_kib("VmRSS")
    answer = {"loads": answers, "import_seconds": import_seconds, "peak_rss_kib": memory_kib("VmHWM")}
    answer_path.write_text(json.dumps(answer, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
