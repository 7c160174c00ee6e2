"""Which codec chunks should travel in: bytes per audio hour, word error rate and encoding CPU.

    .venv/bin/python bench/codecs.py          # a minute or two; prints the table, writes its section of bench/RESULTS.md

Every sentence of the test corpus (tests/support/speech.py: festival's slt voice), clean and with
pink noise 20 dB below the speech, goes through what asrbatch does to a recording (decode to
16 kHz mono 16-bit WAV with asrbatch.audio.prepare), then through each codec as
asrbatch.audio.ChunkAudio encodes it, then through PocketSphinx (the reference server's sphinx
engine's recogniser, decoding the file with ffmpeg as the server does).  The word error rate is
against the sentence's text; bytes are the encoded files' sizes, per hour of their audio.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asrbatch import audio  # noqa: E402
from asrbatch.config import AudioConfig  # noqa: E402
from tests.support import speech  # noqa: E402
from tests.support.servers import gradio_python  # noqa: E402
from tests.support.wer import wer  # noqa: E402

VARIANTS: tuple[tuple[str, int, int], ...] = (
    ("wav", 0, 0), ("flac", 0, 0), ("vorbis", 16, 0), ("vorbis", 24, 0), ("vorbis", 32, 0), ("vorbis", 48, 0),
    ("opus", 12, 0), ("opus", 16, 0), ("opus", 24, 0), ("opus", 32, 0), ("opus", 48, 0), ("opus", 24, 10),
    ("opus", 32, 10),
)
"""(codec, kbit/s (audio.bitrate), Opus encoder complexity)."""
ENCODED = ("vorbis", "opus", "flac")
DEFAULT = (AudioConfig().codec, AudioConfig().bitrate, audio.OPUS_COMPLEXITY if AudioConfig().codec == "opus" else 0)
GRADIO = "3.50.2"
"""The Gradio whose decoding of uploads is timed (the generation the Paraformer WebUI is mostly found on)."""
SERVER_DECODE = """
import sys, time, warnings
from pathlib import Path
warnings.simplefilter("ignore")
from gradio import processing_utils
from asrbatch.server.audio import decode_to_wav
source, scratch = Path(sys.argv[1]), Path(sys.argv[2])
best = float("inf")
for _ in range(3):
    started = time.perf_counter()
    rate, data = processing_utils.audio_from_file(str(source))
    processing_utils.audio_to_file(rate, data, str(scratch / "gradio.wav"), format="wav")
    decode_to_wav(scratch / "gradio.wav", scratch / "input.wav")
    best = min(best, time.perf_counter() - started)
print(best, rate)
"""
"""What a Gradio 3 server does with an upload before its engine starts: Gradio's ``gr.Audio`` decodes
it with pydub (ffprobe, then ffmpeg, for anything but PCM WAV) and writes it out as WAV; the reference
server resamples that to 16 kHz mono with ffmpeg unless it already is."""
CHUNK_SECONDS = 60.0
"""Length of the chunk whose encoding is timed (audio.max_chunk's default)."""
NOISE_DB = 20.0
"""Pink noise this many dB below the speech, for the noisy half of the corpus."""


@dataclass
class Row:
    codec: str
    bitrate: int
    complexity: int
    seconds: float = 0.0
    size: int = 0
    errors: float = 0.0
    words: int = 0
    encode_cpu: float = 0.0
    server_decode: float = 0.0
    decoded_rate: int = 0
    noisy_errors: float = 0.0
    noisy_words: int = 0

    @property
    def label(self) -> str:
        if self.codec == "vorbis":
            return f"vorbis {self.bitrate} kbit/s (quality {audio.vorbis_quality(self.bitrate)})"
        return f"{self.codec} {self.bitrate} kbit/s, complexity {self.complexity}" if self.bitrate else self.codec

    @property
    def mb_per_hour(self) -> float:
        return self.size / self.seconds * 3600 / 1e6


def noisy(path: Path, workdir: Path) -> Path:
    """*path* with pink noise NOISE_DB below its level mixed in."""
    target = workdir / f"noisy-{path.stem}.wav"
    level = speech.level_dbfs(speech.pcm(path))
    amplitude = 10 ** ((level - NOISE_DB) / 20) * 2  # pink noise's RMS is about half its amplitude
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(path), "-f", "lavfi", "-i",
                    f"anoisesrc=r=16000:c=pink:a={amplitude:.5f}:seed=3", "-filter_complex",
                    "[0:a]aresample=16000[s];[s][1:a]amix=inputs=2:duration=first:normalize=0", "-ac", "1",
                    "-ar", "16000", str(target)], check=True)
    return target


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sphinx_cache() -> Path:
    """PocketSphinx's answers, kept by the file's content (encodes are deterministic: reruns reuse them)."""
    base = os.environ.get("ASRBATCH_TEST_CACHE")
    return (Path(base) if base else REPO / ".cache") / "bench" / "codecs-sphinx"


def encoding_cpu(rows: list[Row], sentences: Sequence[str], workdir: Path) -> None:
    """ffmpeg's CPU seconds per audio hour to encode one chunk of CHUNK_SECONDS, best of three; and the
    seconds a Gradio 3 server takes to decode that chunk before its engine starts (SERVER_DECODE)."""
    long = speech.concat([speech.synthesize(s) for s in sentences], 0.5)
    looped = workdir / "chunk.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(long), "-t",
                    str(CHUNK_SECONDS), "-c:a", "pcm_s16le", str(looped)], check=True)
    info = audio.probe(looped)
    for row in rows:
        settings = AudioConfig(codec=row.codec, bitrate=row.bitrate or 32)  # type: ignore[arg-type]
        with audio.prepare(looped, info, settings, workdir / "cpu") as prepared:
            best = float("inf")
            for _ in range(3 if row.codec in ENCODED else 1):
                with audio.ChunkAudio(prepared, prepared.chunks[0], settings) as source_audio:
                    source_audio.complexity = row.complexity
                    before = children_cpu()
                    encoded = source_audio.encode(row.codec)
                    best = min(best, children_cpu() - before)
                    kept = workdir / f"timed{encoded.path.suffix}"
                    shutil.copyfile(encoded.path, kept)
        row.encode_cpu = best / CHUNK_SECONDS * 3600
        row.server_decode, row.decoded_rate = server_decode(kept, workdir)


def server_decode(path: Path, workdir: Path) -> tuple[float, int]:
    """Seconds (best of three) a Gradio 3 server takes from *path* to the engine's input, and the rate
    Gradio decoded it at."""
    scratch = workdir / "server-decode"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run([str(gradio_python(GRADIO)), "-c", SERVER_DECODE, str(path), str(scratch)],
                               env=env, capture_output=True, text=True, check=True)
    seconds, rate = completed.stdout.split()
    return float(seconds), int(rate)


def measure(sentences: Sequence[str], workdir: Path) -> list[Row]:
    rows = [Row(*variant) for variant in VARIANTS]
    for number, sentence in enumerate(sentences):
        source = speech.synthesize(sentence, fmt="mp3", rate=44100, channels=2)
        for noise in (False, True):
            recording = noisy(source, workdir) if noise else source
            info = audio.probe(recording)
            for row in rows:
                settings = AudioConfig(codec=row.codec if row.codec != "wav" else "wav",  # type: ignore[arg-type]
                                       bitrate=row.bitrate or 32)
                with audio.prepare(recording, info, settings, workdir / f"work-{number}") as prepared:
                    chunk = prepared.chunks[0]
                    with audio.ChunkAudio(prepared, chunk, settings) as source_audio:
                        source_audio.complexity = row.complexity
                        encoded = source_audio.encode(row.codec)
                        kept = workdir / (f"{row.codec}-{row.bitrate}-{row.complexity}-{number}-{int(noise)}"
                                          f"{encoded.path.suffix}")
                        shutil.copyfile(encoded.path, kept)
                heard = speech.recognise(kept, cache_dir=sphinx_cache())
                words = len(sentence.split())
                error = wer(sentence, heard) * words
                if noise:
                    row.noisy_errors += error
                    row.noisy_words += words
                else:
                    row.errors += error
                    row.words += words
                    row.seconds += chunk.duration
                    row.size += encoded.size
        print(f"[codecs] {number + 1}/{len(sentences)} {sentence}", file=sys.stderr, flush=True)
    encoding_cpu(rows, sentences, workdir)
    return rows


def render(rows: list[Row], sentences: int, elapsed: float) -> str:
    wav = next(r for r in rows if r.codec == "wav")
    words = wav.words
    lines = [
        "| codec | MB per audio hour | vs WAV | WER clean | WER with noise at -20 dB | encoding CPU per audio hour | "
        f"Gradio {GRADIO} server: decoding one {CHUNK_SECONDS:.0f} s chunk (rate Gradio decodes at) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        default = " (default)" if (row.codec, row.bitrate, row.complexity) == DEFAULT else ""
        cpu = f"{row.encode_cpu:.1f} s" if row.codec in ENCODED else "-"
        lines.append(f"| {row.label}{default} | {row.mb_per_hour:.1f} | {row.size / wav.size:.3f} | "
                     f"{row.errors / row.words:.3f} | {row.noisy_errors / row.noisy_words:.3f} | {cpu} | "
                     f"{row.server_decode:.3f} s ({row.decoded_rate / 1000:g} kHz) |")
    return f"""<!-- bench/codecs.py -->
# Codecs: bytes on the wire against recognition

Measured {time.strftime('%Y-%m-%d')} by `bench/codecs.py` in {elapsed / 60:.1f} minutes ({os.cpu_count()} cores, ffmpeg
{ffmpeg_version()}, PocketSphinx en-us).

{chr(10).join(lines)}

The corpus is the {sentences} sentences of `tests/support/speech.py` spoken by festival (44.1 kHz stereo MP3,
as recorders make), each clean and with pink noise {NOISE_DB:.0f} dB below the speech; each goes through
`asrbatch.audio.prepare` (16 kHz mono 16-bit WAV) and `asrbatch.audio.ChunkAudio` (the codec), then through
PocketSphinx after an ffmpeg decode to 16 kHz, as the reference server's sphinx engine hears it.  WER is
word errors over reference words, all sentences together.  Opus runs at encoder complexity 0
(asrbatch's setting, `asrbatch.audio.OPUS_COMPLEXITY`) and, for comparison, 10 (libopus's default);
Vorbis at the libvorbis quality whose speech bitrate is nearest the one asked (`asrbatch.audio.vorbis_quality`).
One word is {1 / words:.3f} of WER here; PocketSphinx adapts to the audio from one utterance to the
next, so hearing the same files in another order can move a figure by a word or two (its answers
are kept under `.cache/bench/codecs-sphinx`, so reruns hear each file as before).  Bytes are the encoded files (Ogg
Vorbis and Opus with their container, FLAC, WAV with its header), per hour of audio; on the wire the HTTP
request adds a few hundred bytes per request (multipart headers).  Encoding CPU is ffmpeg's (user +
system) for one {CHUNK_SECONDS:.0f} s chunk of that speech (best of three, process start included),
per hour of audio, on this shared machine.  The server's decoding is what a Gradio {GRADIO} server with
the reference app does with that chunk before its engine starts, inside the request's slot: Gradio's
`gr.Audio` reads it with pydub (ffprobe, then ffmpeg, for anything but PCM WAV) and writes it out as WAV,
and the app resamples what is not 16 kHz mono (Opus always decodes at 48 kHz) with ffmpeg; best of three.

Rerun: `.venv/bin/python bench/codecs.py` (writes this section; the others are kept).
<!-- end of bench/codecs.py -->
"""


def ffmpeg_version() -> str:
    first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    return first.replace("ffmpeg version ", "").split(" Copyright")[0]


def replace_section(output: Path, section: str) -> None:
    """Put *section* into *output* in place of its previous version (or at the end)."""
    text = output.read_text(encoding="utf-8") if output.exists() else ""
    pattern = re.compile(r"(?ms)^<!-- bench/codecs\.py -->$.*?^<!-- end of bench/codecs\.py -->$\n?")
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    output.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--print-only", action="store_true", help="print the section, write no file")
    options = parser.parse_args(argv)
    started = time.monotonic()
    sentences = list(dict.fromkeys(speech.SENTENCES + speech.PHONE_SENTENCES))
    with tempfile.TemporaryDirectory(prefix="asrbatch-codecs-") as scratch:
        rows = measure(sentences, Path(scratch))
    section = render(rows, len(sentences), time.monotonic() - started)
    print(section)
    if not options.print_only:
        replace_section(options.output, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
