"""asrbatch: unattended batch transcription of recording folders on your own Gradio ASR server.

The library API, as the CLI uses it::

    from asrbatch import load_config, run_batch, RunOptions
    summary = run_batch(load_config("config.yaml"), RunOptions(input_dir=Path("/data/rec")))
    print(summary.line(), summary.exit_code)

Data flows one way: scan -> ledger filter -> prepare (audio) -> transport -> write (output) -> ledger.
Names are imported on first use so that ``asrbatch.server`` can run in an environment that has
only Gradio and its engine.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "asrbatch.config",
    "load_config": "asrbatch.config",
    "ExitCode": "asrbatch.errors",
    "AsrbatchError": "asrbatch.errors",
    "RunOptions": "asrbatch.runner",
    "RunSummary": "asrbatch.runner",
    "run_batch": "asrbatch.runner",
    "Client": "asrbatch.transport",
    "ping": "asrbatch.transport",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'asrbatch' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
