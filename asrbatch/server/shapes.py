"""The shapes of Gradio ASR app a user meets, each around the same Recognizer (``--app``).

- ``paraformer`` (default): the four-tab WebUI of ``app.py``; fn indexes fixed there.
- ``simple``: ``gr.Interface(fn, gr.Audio(type="filepath"), "text")``, the most common
  one-input app. fn 0 takes the audio, returns the transcript; api_name ``predict`` (4.x+).
- ``numpy``: the same with ``gr.Audio(type="numpy")``: the handler gets ``(rate, samples)``
  and writes them to a WAV file for the engine.
- ``multitab``: a Blocks app whose recognition is not fn 0. fn 0 ``count_words(text) -> text``
  (tab "Text"); fn 1 ``transcribe(audio, language, hotwords, beam_size) -> (text, json)`` (tab
  "Speech recognition"; the extra inputs declare defaults: ``"auto"``, ``""``, ``5``); fn 2
  ``about() -> markdown``.
- ``streaming``: ``gr.Interface`` over a generator: fn 0 yields growing partial transcripts,
  then the final one; api_name ``predict`` (4.x+).

Every audio input refuses oversized or undecodable payloads the same way (``compat``).
"""

from __future__ import annotations

import tempfile
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import gradio as gr
import numpy as np

from asrbatch.server import app, compat, reports
from asrbatch.server.engines.base import EngineResult
from asrbatch.server.service import InputError, Recognition, Recognizer

LANGUAGES = ["auto", "zh", "en", "yue", "ja", "ko"]
HOTWORDS_LABEL = "热词 / Hotwords"
DEFAULT_BEAM_SIZE = 5
PARTIAL_STEPS = 3
"""A streaming transcript grows in this many steps; the last one is the final transcript."""


def build(shape: str, recognizer: Recognizer, facts: reports.ServerFacts) -> Any:
    """The Gradio app of ``shape`` (one of ``options.APP_SHAPES``) around ``recognizer``."""
    builders: dict[str, Callable[[Recognizer, reports.ServerFacts], Any]] = {
        "paraformer": app.build_app,
        "simple": build_simple,
        "numpy": build_numpy,
        "multitab": build_multitab,
        "streaming": build_streaming,
    }
    return builders[shape](recognizer, facts)


def _recognize(recognizer: Recognizer, audio: Path | None, hotwords: str = "") -> Recognition:
    try:
        # The audio's size was checked as received, by Gradio or compat.guard_audio_input.
        return recognizer.recognize(audio, hotwords, 1, check_size=False)
    except InputError as error:
        raise gr.Error(str(error)) from error


def _guarded_audio(recognizer: Recognizer, kind: Literal["filepath", "numpy"] = "filepath") -> Any:
    audio = compat.audio_input("Audio", ["upload", "microphone"], kind)
    compat.guard_audio_input(audio, recognizer.max_file_size, recognizer.record_rejection)
    return audio


def _interface(function: Callable[..., Any], audio: Any, title: str) -> Any:
    return gr.Interface(function, audio, "text", title=title, **compat.interface_options())


def build_simple(recognizer: Recognizer, facts: reports.ServerFacts) -> Any:
    """One audio file in, its transcript out."""

    def transcribe(audio: Any) -> str:
        return _recognize(recognizer, compat.file_path(audio)).text

    return _interface(transcribe, _guarded_audio(recognizer), "Speech recognition")


def write_samples(rate: int, samples: Any, target: Path) -> Path:
    """Write what ``gr.Audio(type="numpy")`` hands over as a 16-bit WAV at ``target``.

    Gradio gives int16 (usually), int32 or float samples, one column per channel; channels are
    mixed down to mono. The Recognizer then resamples to 16 kHz like any other file.
    """
    array = np.asarray(samples)
    if array.size == 0:
        raise InputError("the audio has no samples")
    if array.ndim > 1:
        array = array.astype(np.float64).mean(axis=1)
    if np.issubdtype(array.dtype, np.floating):
        peak = float(np.max(np.abs(array))) if array.size else 0.0
        # Float samples are -1..1; ints mixed down above keep their integer range.
        scale = 32767.0 if peak <= 1.0 else 1.0
        pcm = np.clip(array * scale, -32768, 32767).astype("<i2")
    elif array.dtype.itemsize > 2:
        pcm = (array >> (8 * (array.dtype.itemsize - 2))).astype("<i2")
    else:
        pcm = array.astype("<i2")
    with wave.open(str(target), "wb") as output:
        output.setnchannels(1)
        output.setsampwidth(2)
        output.setframerate(int(rate))
        output.writeframes(pcm.tobytes())
    return target


def build_numpy(recognizer: Recognizer, facts: reports.ServerFacts) -> Any:
    """One audio recording in as (rate, samples), its transcript out."""

    def transcribe(audio: Any) -> str:
        if audio is None:
            return _recognize(recognizer, None).text
        rate, samples = audio
        with tempfile.TemporaryDirectory(prefix="asrbatch-numpy-", dir=recognizer.work_dir) as scratch:
            try:
                path = write_samples(rate, samples, Path(scratch) / "input.wav")
            except InputError as error:
                recognizer.record_rejection()
                raise gr.Error(str(error)) from error
            return _recognize(recognizer, path).text

    return _interface(transcribe, _guarded_audio(recognizer, "numpy"), "Speech recognition")


def segments_report(recognition: Recognition, language: str, beam_size: float) -> dict[str, Any]:
    """The JSON the multitab app shows beside its transcript."""
    return {
        "language": language,
        "beam_size": int(beam_size),
        "duration": round(recognition.audio_seconds, 3),
        "segments": [
            {"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text}
            for s in recognition.result.segments
        ],
    }


def build_multitab(recognizer: Recognizer, facts: reports.ServerFacts) -> Any:
    """Three tabs; recognition is fn 1 and takes a language, hotwords and a beam size."""

    def count_words(text: str) -> str:
        return str(len((text or "").split()))

    def transcribe(audio: Any, language: str, hotwords: str, beam_size: float) -> tuple[str, Any]:
        recognition = _recognize(recognizer, compat.file_path(audio), hotwords or "")
        # gr.JSON takes a dict on every generation; a string would be shown as text.
        return recognition.text, segments_report(recognition, language or "auto", beam_size or 1)

    def about() -> str:
        return reports.system_info(facts, recognizer.counters())

    with gr.Blocks(title="Speech toolbox", **compat.blocks_options()) as demo:
        gr.Markdown("# Speech toolbox")
        with gr.Tab("Text"):
            text = gr.Textbox(label="Text", lines=4)
            count = gr.Textbox(label="Words")
            gr.Button("Count words").click(count_words, inputs=[text], outputs=[count])
        with gr.Tab("Speech recognition"):
            with gr.Row():
                with gr.Column():
                    audio = _guarded_audio(recognizer)
                    language = gr.Dropdown(choices=LANGUAGES, value="auto", label="Language / 语言")
                    hotwords = gr.Textbox(label=HOTWORDS_LABEL, value="", placeholder="阿里巴巴 达摩院")
                    beam_size = gr.Slider(1, 10, value=DEFAULT_BEAM_SIZE, step=1, label="Beam size")
                    run = gr.Button("Transcribe", variant="primary")
                with gr.Column():
                    transcript = gr.Textbox(label="Transcript", lines=8)
                    details = gr.JSON(label="Segments")
            run.click(
                transcribe, inputs=[audio, language, hotwords, beam_size], outputs=[transcript, details]
            )
        with gr.Tab("About"):
            info = gr.Markdown()
            gr.Button("Refresh").click(about, inputs=[], outputs=[info])
    return demo


def partial_transcripts(result: EngineResult, steps: int = PARTIAL_STEPS) -> list[str]:
    """Growing prefixes of the transcript, word by word in ``steps`` steps, ending with the whole.

    The words come from the engine's word timings where it has them, else from the text.
    """
    words = [w.text for w in result.words] or result.text.split()
    if not words:
        return [result.text]
    cuts = sorted({max(1, round(len(words) * step / steps)) for step in range(1, steps)})
    partials = [" ".join(words[:cut]) for cut in cuts if cut < len(words)]
    return [*partials, result.text]


def build_streaming(recognizer: Recognizer, facts: reports.ServerFacts) -> Any:
    """A generator: partial transcripts while 'decoding', then the final one."""

    def transcribe(audio: Any) -> Iterator[str]:
        recognition = _recognize(recognizer, compat.file_path(audio))
        yield from partial_transcripts(recognition.result)

    # Blocks, not gr.Interface: an Interface over a generator registers a stop-button event
    # first, which would move the generator off fn 0.
    with gr.Blocks(title="Streaming speech recognition", **compat.blocks_options()) as demo:
        audio = _guarded_audio(recognizer)
        run = gr.Button("Transcribe", variant="primary")
        transcript = gr.Textbox(label="Transcript", lines=6)
        run.click(transcribe, inputs=[audio], outputs=[transcript])
    return demo
