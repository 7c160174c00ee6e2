"""The Gradio Blocks app: four tabs shaped like the Paraformer WebUI.

Scripted clients depend on the order of the click handlers, so it is fixed here:

- fn_index 0, api_name ``recognize`` (4.x+): single file ->
  ``recognize(hotword_file, audio, batch_size, hotwords) -> (text, details)``
- fn_index 1: batch, several files -> (combined text, details)
- fn_index 2: live recording from the microphone -> (text, details)
- fn_index 3: system information -> Markdown with engine, versions, uptime and counters

No other event listeners are registered, so no index moves.
"""

from __future__ import annotations

import platform
from typing import Any

import gradio as gr

from asrbatch.server import compat, reports
from asrbatch.server.engines.base import Engine
from asrbatch.server.service import InputError, Recognizer, clamp_batch_size

TITLE = "Paraformer speech recognition"
HOTWORD_HINT = "separated by commas, spaces or new lines"


def build_app(recognizer: Recognizer, facts: reports.ServerFacts) -> Any:
    """The WebUI around ``recognizer``; call ``compat.enable_queue`` and launch it."""
    engine: Engine = recognizer.engine

    def recognize(hotword_file: Any, audio: Any, batch_size: float, hotwords: str) -> tuple[str, str]:
        try:
            # The audio's size was checked as received, by Gradio or compat.guard_audio_input.
            result = recognizer.recognize(
                compat.file_path(audio),
                hotwords,
                clamp_batch_size(batch_size),
                hotword_file=compat.file_path(hotword_file),
                check_size=False,
            )
        except InputError as error:
            raise gr.Error(str(error)) from error
        return result.text, reports.recognition_details(result, engine)

    def recognize_batch(files: Any, batch_size: float, hotwords: str) -> tuple[str, str]:
        paths = [p for p in (compat.file_path(f) for f in files or []) if p is not None]
        try:
            items = recognizer.recognize_batch(paths, hotwords, clamp_batch_size(batch_size))
        except InputError as error:
            raise gr.Error(str(error)) from error
        return reports.batch_text(items), reports.batch_details(items, engine)

    def recognize_live(audio: Any, hotwords: str) -> tuple[str, str]:
        try:
            result = recognizer.recognize(compat.file_path(audio), hotwords, 1, check_size=False)
        except InputError as error:
            raise gr.Error(str(error)) from error
        return result.text, reports.recognition_details(result, engine)

    def system_info() -> str:
        return reports.system_info(facts, recognizer.counters())

    with gr.Blocks(title=TITLE, **compat.blocks_options()) as demo:
        gr.Markdown(
            f"# {TITLE}\n"
            f"Engine: {reports.describe_engine(engine)}. Upload a recording, or record one, "
            "and get its transcript."
        )
        with gr.Tab("Single file"):
            with gr.Row():
                with gr.Column():
                    audio = compat.audio_input("Audio", ["upload", "microphone"])
                    hotword_file = gr.File(label="Hotword file (.txt, optional)", file_types=[".txt"])
                    batch_size = gr.Slider(minimum=1, maximum=16, step=1, value=1, label="Batch size")
                    hotwords = gr.Textbox(label="Hotwords", placeholder=HOTWORD_HINT, lines=2)
                    run = gr.Button("Recognise", variant="primary")
                with gr.Column():
                    text = gr.Textbox(label="Text", lines=10)
                    details = gr.Markdown()
            run.click(recognize, inputs=[hotword_file, audio, batch_size, hotwords], outputs=[text, details])

        with gr.Tab("Batch"):
            with gr.Row():
                with gr.Column():
                    files = gr.File(label="Audio files", file_count="multiple")
                    batch_batch_size = gr.Slider(minimum=1, maximum=16, step=1, value=1, label="Batch size")
                    batch_hotwords = gr.Textbox(label="Hotwords", placeholder=HOTWORD_HINT, lines=2)
                    batch_run = gr.Button("Recognise all", variant="primary")
                with gr.Column():
                    batch_output = gr.Textbox(label="Text", lines=14)
                    batch_report = gr.Markdown()
            batch_run.click(
                recognize_batch,
                inputs=[files, batch_batch_size, batch_hotwords],
                outputs=[batch_output, batch_report],
            )

        with gr.Tab("Live recording"):
            with gr.Row():
                with gr.Column():
                    microphone = compat.audio_input("Microphone", ["microphone"])
                    live_hotwords = gr.Textbox(label="Hotwords", placeholder=HOTWORD_HINT, lines=2)
                    live_run = gr.Button("Recognise recording", variant="primary")
                with gr.Column():
                    live_text = gr.Textbox(label="Text", lines=10)
                    live_details = gr.Markdown()
            live_run.click(
                recognize_live, inputs=[microphone, live_hotwords], outputs=[live_text, live_details]
            )

        with gr.Tab("System info"):
            info = gr.Markdown()
            refresh = gr.Button("Refresh")
            refresh.click(system_info, inputs=[], outputs=[info])

    for component in (audio, microphone):
        compat.guard_audio_input(component, recognizer.max_file_size, recognizer.record_rejection)
    return demo


def server_facts(engine: Engine, concurrency: int, max_file_size: int | None) -> reports.ServerFacts:
    """What the system-information tab reports about this process."""
    return reports.ServerFacts(
        engine=engine.name,
        model=engine.model,
        device=engine.device,
        python_version=platform.python_version(),
        gradio_version=compat.VERSION,
        concurrency=concurrency,
        max_file_size=max_file_size,
    )
