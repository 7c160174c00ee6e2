"""What timed outputs cost: utterance-level requests against chunk-level ones, side by side.

    .venv/bin/python bench/timed_requests.py           # about three minutes; writes its section of bench/RESULTS.md
    .venv/bin/python bench/timed_requests.py --quick   # a smaller corpus, to try the script (prints only)

With `json`, `srt` or `vtt` written and a server that returns no timings, asrbatch sends every
utterance as its own request (`audio.utterances: auto`), so each piece of text is timed by the
audio.  That multiplies the requests: a minute of meeting becomes about twenty.  This script runs the
same corpus (recordings of festival sentences with pauses, as meetings are) through the reference
server's simulate engine (20x real time, a GPU-class recogniser; the server counts the time its
engine slots are held) with `--formats txt` (one request per recording) and with `--formats txt,srt`
(one per utterance), at server concurrency 1 and 4, and reports wall time, the server's
utilisation (busy / (wall x concurrency)) and requests.  Both runs are the asrbatch CLI as cron runs
it, against the same server process, one after the other.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from tests.support import speech  # noqa: E402
from tests.support.jobs import place  # noqa: E402
from tests.support.servers import start_server  # noqa: E402

SECTION = "bench/timed_requests.py"
RTF = 0.05
PAUSES = [1.2, 0.7, 1.5, 0.9]


def corpus(folder: Path, recordings: int, sentences: int) -> float:
    """*recordings* MP3s of *sentences* sentences each; returns the total audio seconds."""
    total = 0.0
    for n in range(recordings):
        chosen = [speech.SENTENCES[(n * 7 + i) % len(speech.SENTENCES)] for i in range(sentences)]
        path = speech.concat([speech.synthesize(s) for s in chosen], PAUSES, fmt="mp3", rate=44100, channels=2)
        place(folder, f"meeting {n:02d}.mp3", path)
        total += speech.duration(path)
    return total


def server_figures(url: str) -> tuple[float, int]:
    response = requests.post(url + "/gradio_api/api/predict/", json={"data": [], "fn_index": 3}, timeout=30)
    response.raise_for_status()
    facts = dict(line[2:].split(": ", 1) for line in response.json()["data"][0].splitlines()
                 if line.startswith("- ") and ": " in line)
    return float(facts["Engine busy"].split()[0]), int(facts["Requests served"])


def run(url: str, inp: Path, out: Path, formats: str, workers: int) -> dict[str, float]:
    busy_before, served_before = server_figures(url)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "asrbatch", "run", str(inp), "-o", str(out), "--url", url,
                             "--formats", formats, "--workers", str(workers), "-q"],
                            capture_output=True, text=True, cwd=REPO, timeout=1800)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"asrbatch failed ({result.returncode}): {result.stderr}")
    busy_after, served_after = server_figures(url)
    return {"wall": wall, "busy": busy_after - busy_before, "requests": served_after - served_before}


def conclusion(rows: list[tuple[int, str, dict[str, float]]]) -> list[str]:
    """What the figures say, in words computed from them."""
    lines = []
    for slots in sorted({r[0] for r in rows}):
        chunks, utterances = (r[2] for r in rows if r[0] == slots)
        lines.append(f"- {slots} slot(s): {utterances['requests'] / max(chunks['requests'], 1):.0f}x the requests "
                     f"cost {utterances['wall'] / chunks['wall']:.2f}x the wall time (utilisation "
                     f"{utterances['utilisation']:.3f} against {chunks['utilisation']:.3f}).")
    lines += ["", "Timed outputs are what subtitles need, and the cost above is what they take: `audio.utterances: "
              "auto` sends utterances only when json, srt or vtt is written and the server returns no timings "
              "of its own, and whole recordings (or chunks) otherwise."]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args(argv)
    recordings, sentences = (2, 6) if options.quick else (6, 20)
    rows = []
    with tempfile.TemporaryDirectory(prefix="asrbatch-bench-timed-") as scratch:
        work = Path(scratch)
        audio_seconds = corpus(work / "in", recordings, sentences)
        for concurrency in (1, 4):
            with start_server("6.31.0", engine="simulate", log_dir=work / f"server-{concurrency}",
                              extra_args=["--simulate-rtf", str(RTF), "--concurrency", str(concurrency)]) as server:
                for label, formats in (("chunks (txt)", "txt"), ("utterances (txt,srt)", "txt,srt")):
                    figures = run(server.url, work / "in", work / f"out-{concurrency}-{formats}", formats, concurrency)
                    figures["utilisation"] = figures["busy"] / (figures["wall"] * concurrency)
                    rows.append((concurrency, label, figures))
                    print(f"concurrency {concurrency} {label}: wall {figures['wall']:.1f} s, requests "
                          f"{figures['requests']:.0f}, utilisation {figures['utilisation']:.3f}", flush=True)
    table = ["| server slots | requests of | requests | wall s | server utilisation | wall vs chunks |",
             "|---|---|---|---|---|---|"]
    by_slots: dict[int, float] = {}
    for concurrency, label, figures in rows:
        base = by_slots.setdefault(concurrency, figures["wall"])
        table.append(f"| {concurrency} | {label} | {figures['requests']:.0f} | {figures['wall']:.1f} | "
                     f"{figures['utilisation']:.3f} | {figures['wall'] / base:.2f}x |")
    section = "\n".join([
        f"<!-- {SECTION} -->",
        "## Timed outputs: utterance-level requests against chunk-level ones",
        "",
        f"`.venv/bin/python {SECTION}` on {time.strftime('%Y-%m-%d')}: {recordings} recordings of {sentences} "
        f"festival sentences with pauses ({audio_seconds / 60:.1f} minutes of audio), MP3 44.1 kHz stereo, the "
        f"reference server's simulate engine at {RTF:g} s per audio second on Gradio 6.31, client and server on "
        "this machine (2 cores). `txt` sends one request per recording; `txt,srt` one per utterance "
        "(`audio.utterances: auto`, the default).",
        "",
        *table,
        "",
        *conclusion(rows),
        f"<!-- end of {SECTION} -->",
    ])
    print(section)
    if not options.quick:
        results = REPO / "bench" / "RESULTS.md"
        text = results.read_text(encoding="utf-8") if results.exists() else ""
        pattern = re.compile(rf"(?ms)^<!-- {re.escape(SECTION)} -->$.*?^<!-- end of {re.escape(SECTION)} -->$")
        text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
        results.write_text(text, encoding="utf-8")
        print(json.dumps({"written": str(results)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
