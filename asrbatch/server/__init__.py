"""The reference speech-recognition WebUI asrbatch is tested against, and its engines.

A Gradio app shaped like the FunASR Paraformer WebUI (four tabs; fn_index 0 recognises one
file, fn_index 3 reports system information), runnable on Gradio 6.x, 4.44 and 3.50. It needs
only gradio, its engine and the standard library; the client side of asrbatch never imports it,
and it imports nothing from the client side. Importing this package loads nothing heavy.

    python -m asrbatch.server --engine sphinx --host 127.0.0.1 --port 7860
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server with command-line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    from asrbatch.server.serve import main as serve

    return serve(argv)
