"""Peak memory of probe + prepare + export is flat in the length of the recording.

Builds a 10-minute and a one-hour 44.1 kHz stereo MP3 with ffmpeg from a short
loop of speech (festival, when installed), a tone, noise and pauses; then, for
each, runs probe, prepare (default settings: 60 s chunks cut at pauses) and
export of every chunk in a fresh Python process and prints that process's peak
RSS next to a baseline process that only imports asrbatch and probes a file.

    .venv/bin/python bench/audio_memory.py [--minutes 10 60]

The generated files are kept in ``$ASRBATCH_TEST_CACHE/bench`` (default
``.cache/bench``, about 35 MB) and reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SENTENCES = (
    "Good morning everyone and welcome to the meeting.",
    "We need to finish this work by Friday.",
    "Let me know if you have any questions.",
)


def cache_dir() -> Path:
    base = os.environ.get("ASRBATCH_TEST_CACHE")
    folder = Path(base) / "bench" if base else REPO / ".cache" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def ffmpeg(*arguments: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *arguments], check=True)


def build_loop(folder: Path) -> Path:
    """About 30 s of 44.1 kHz mono: speech, pause, tone, pause, noise, pause."""
    loop = folder / "loop.wav"
    if loop.exists():
        return loop
    parts: list[Path] = []
    if shutil.which("text2wave"):
        for i, sentence in enumerate(SENTENCES):
            spoken = folder / f"sentence-{i}.wav"
            subprocess.run(["text2wave", "-eval", "(voice_cmu_us_slt_arctic_hts)", "-o", str(spoken)],
                           input=sentence.encode(), check=True, capture_output=True)
            parts.append(spoken)
    sources = [
        "anullsrc=r=44100:cl=mono:d=0.8",
        "sine=frequency=330:sample_rate=44100:duration=6",
        "anullsrc=r=44100:cl=mono:d=1.2",
        "anoisesrc=r=44100:a=0.1:c=pink:d=8",
        "anullsrc=r=44100:cl=mono:d=0.6",
    ]
    inputs: list[str] = []
    for part in parts:
        inputs += ["-i", str(part)]
    for source in sources:
        inputs += ["-f", "lavfi", "-i", source]
    count = len(parts) + len(sources)
    graph = "".join(f"[{n}:a]aresample=44100,aformat=channel_layouts=mono[a{n}];" for n in range(count))
    graph += "".join(f"[a{n}]" for n in range(count)) + f"concat=n={count}:v=0:a=1[out]"
    partial = folder / "loop.part.wav"
    ffmpeg(*inputs, "-filter_complex", graph, "-map", "[out]", "-c:a", "pcm_s16le", str(partial))
    os.replace(partial, loop)
    return loop


def build_recording(minutes: int) -> Path:
    folder = cache_dir()
    target = folder / f"loop-{minutes}min-44k-stereo.mp3"
    if target.exists():
        return target
    loop = build_loop(folder)
    partial = folder / f"loop-{minutes}min.part.mp3"
    started = time.perf_counter()
    ffmpeg("-stream_loop", "-1", "-i", str(loop), "-t", str(minutes * 60), "-ar", "44100", "-ac", "2",
           "-c:a", "libmp3lame", "-b:a", "64k", str(partial))
    os.replace(partial, target)
    print(f"built {target.name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return target


def child(path: Path, *, prepare: bool) -> None:
    """Run in a fresh process: probe (+ prepare + export) and report peak memory as JSON."""
    sys.path.insert(0, str(REPO))
    from asrbatch import audio
    from asrbatch.config import AudioConfig

    started = time.perf_counter()
    info = audio.probe(path)
    result: dict[str, object] = {"duration": info.duration}
    if prepare:
        with tempfile.TemporaryDirectory(prefix="asrbatch-bench-") as workdir:
            prepared = audio.prepare(path, info, AudioConfig(), Path(workdir))
            prepare_seconds = time.perf_counter() - started
            exported = 0
            for chunk in prepared.chunks:
                exported += prepared.export(chunk).stat().st_size
            result.update(
                chunks=len(prepared.chunks),
                longest_chunk=max(c.duration for c in prepared.chunks),
                decoded_mb=sum(p.stat().st_size for p in prepared.wav_paths) / 1e6,
                exported_mb=exported / 1e6,
                prepare_seconds=prepare_seconds,
            )
    result["seconds"] = time.perf_counter() - started
    result["python_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["ffmpeg_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(result))


def measure(path: Path, *, prepare: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(path)] + ([] if prepare else ["--probe-only"])
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, nargs="+", default=[10, 60])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--probe-only", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.child, prepare=not options.probe_only)
        return

    recordings = [build_recording(minutes) for minutes in options.minutes]
    baseline = measure(recordings[0], prepare=False)
    print(f"baseline (import asrbatch, probe only): Python peak RSS {baseline['python_peak_rss_mb']:.1f} MB")
    print(f"{'recording':>10} {'MP3 MB':>7} {'PCM MB':>7} {'chunks':>6} {'prepare s':>9} {'x realtime':>10} "
          f"{'total s':>7} {'Python peak RSS MB':>18} {'ffmpeg peak RSS MB':>18}")
    for minutes, path in zip(options.minutes, recordings, strict=True):
        result = measure(path, prepare=True)
        pcm_mb = result["duration"] * 44100 * 2 * 2 / 1e6
        print(f"{minutes:>7}min {path.stat().st_size / 1e6:>7.1f} {pcm_mb:>7.0f} {result['chunks']:>6} "
              f"{result['prepare_seconds']:>9.1f} {result['duration'] / result['prepare_seconds']:>10.0f} "
              f"{result['seconds']:>7.1f} {result['python_peak_rss_mb']:>18.1f} {result['ffmpeg_peak_rss_mb']:>18.1f}")


if __name__ == "__main__":
    main()
