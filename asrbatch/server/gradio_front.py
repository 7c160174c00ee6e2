"""The gradio protocol: build the app of ``--app``, guard its inputs, queue it, launch it."""

from __future__ import annotations

from asrbatch.server import app, compat, shapes
from asrbatch.server.options import ServerOptions
from asrbatch.server.service import Recognizer


def describe(options: ServerOptions) -> str:
    """The start-up log's words about this front."""
    return (
        f"gradio={compat.VERSION} app={options.app} api_open={str(options.api_open).lower()} "
        f"url_inputs={'allowed' if options.allow_url_inputs else 'refused'} "
        f"login={'on' if options.auth else 'off'}"
    )


def run(options: ServerOptions, recognizer: Recognizer) -> None:
    """Serve until interrupted (KeyboardInterrupt); raises OSError when it cannot listen."""
    facts = app.server_facts(recognizer.engine, options.concurrency, options.max_file_size)
    demo = shapes.build(options.app, recognizer, facts)
    compat.guard_file_inputs(demo, options.allow_url_inputs, recognizer.record_rejection)
    compat.enable_queue(demo, options.concurrency, options.api_open)
    demo.launch(**compat.launch_options(options.host, options.port, options.auth, options.max_file_size))
