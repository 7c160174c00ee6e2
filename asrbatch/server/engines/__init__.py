"""Recognition engines behind one small interface; each is imported only when chosen.

- ``sphinx``: PocketSphinx with the English model its wheel ships. CPU only, no download.
- ``funasr``: SeACo-Paraformer with FSMN-VAD and CT-Transformer punctuation, the models the
  Paraformer WebUI serves (needs ``pip install 'asrbatch[funasr]'`` and the model weights).
- ``simulate``: no recognition at all; sleeps in proportion to the audio's length and returns
  a fixed text. A benchmarking tool for measuring clients, never a default.
"""

from __future__ import annotations

from asrbatch.server.engines.base import (
    Engine,
    EngineResult,
    EngineSettings,
    EngineUnavailable,
    Segment,
)

ENGINE_NAMES = ("sphinx", "funasr", "simulate")

__all__ = [
    "ENGINE_NAMES",
    "Engine",
    "EngineResult",
    "EngineSettings",
    "EngineUnavailable",
    "Segment",
    "create_engine",
]


def create_engine(settings: EngineSettings) -> Engine:
    """Build and load the engine named in ``settings``.

    Raises EngineUnavailable with a message that says what to install or fix.
    """
    if settings.name == "sphinx":
        from asrbatch.server.engines.sphinx import SphinxEngine

        return SphinxEngine.load(settings)
    if settings.name == "funasr":
        from asrbatch.server.engines.paraformer import ParaformerEngine

        return ParaformerEngine.load(settings)
    if settings.name == "simulate":
        from asrbatch.server.engines.simulate import SimulatedEngine

        return SimulatedEngine.load(settings)
    raise EngineUnavailable(f"unknown engine {settings.name!r}: choose one of {', '.join(ENGINE_NAMES)}")
