"""``asrbatch ping``: is the server there, what it is and speaks, is the recognition usable."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from asrbatch.config import ServerConfig
from asrbatch.transport.base import ServerInfo

MODELS_SHOWN = 8
"""Model names a ping line lists (servers such as LocalAI list many); more are counted (``+12``)."""


@dataclass(frozen=True)
class PingResult:
    """What a ping found; :meth:`line` is the one line ``asrbatch ping`` prints."""

    server: ServerInfo
    latency_ms: int
    """Time of the probe's request (``GET /config``, ``GET /v1/models``, the WebSocket's empty utterance)."""
    roundtrip_ms: int | None = None
    """Deep ping only: time to transcribe the clip end to end (upload, queue, recognition)."""
    text_chars: int | None = None
    """Deep ping only: characters of the clip's transcript."""

    def line(self) -> str:
        """Gradio: ``ok url=... gradio=... protocol=... fn_index=0 [api_name=...] [template=[...]
        output_index=0] latency_ms=12``; others: ``ok url=... protocol=openai server=funasr-server
        models=a,b model=a latency_ms=12``; a deep ping adds ``roundtrip_ms=... text_chars=...``.
        One line of ``key=value`` fields."""
        s = self.server
        if s.kind == "gradio":
            parts = [f"ok url={s.url}", f"gradio={s.gradio_version}", f"protocol={s.protocol}",
                     f"fn_index={s.fn_index}"]
            if s.api_name:
                parts.append(f"api_name={s.api_name}")
            if s.template is not None:
                parts.append(f"template={template_field(s.template)}")
            if s.output_index is not None:
                parts.append(f"output_index={s.output_index}")
        else:
            parts = [f"ok url={s.url}", f"protocol={s.protocol}", f"server={s.kind}"]
            if s.models:
                shown = list(s.models[:MODELS_SHOWN])
                if len(s.models) > MODELS_SHOWN:
                    shown.append(f"+{len(s.models) - MODELS_SHOWN}")
                parts.append("models=" + ",".join(shown))
            if s.model:
                parts.append(f"model={s.model}")
        parts.append(f"latency_ms={self.latency_ms}")
        if self.roundtrip_ms is not None:
            parts.append(f"roundtrip_ms={self.roundtrip_ms}")
            parts.append(f"text_chars={self.text_chars}")
        return " ".join(parts)


def template_field(template: tuple[Any, ...]) -> str:
    """*template* as compact JSON without whitespace (``[null,"<audio>",1]``), so the line stays
    split by spaces; whitespace inside values is written as JSON escapes (``\\u0020``)."""
    text = json.dumps(list(template), ensure_ascii=False, separators=(",", ":"), default=str)
    return "".join(f"\\u{ord(ch):04x}" if ch.isspace() else ch for ch in text)


def ping(
    settings: ServerConfig,
    *,
    deep: bool = False,
    clip: Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    session: requests.Session | None = None,
) -> PingResult:
    """Probe the server at ``settings.url`` in its protocol; with *deep*, also transcribe *clip* end to end.

    Raises :class:`ServerUnavailableError` (not reachable after the configured retries),
    :class:`EndpointError` (no protocol fits, function or model missing, login or key
    refused, TLS refused) or, on a deep ping, the file errors of ``transcribe``.
    """
    from asrbatch.transport import client_for

    if deep and clip is None:
        raise ValueError("a deep ping needs a clip")
    client = client_for(settings, sleep=sleep, clock=clock, session=session)
    try:
        info = client.probe()
        latency_ms = round(float(getattr(client, "latency", 0.0)) * 1000)
        if not deep:
            return PingResult(info, latency_ms)
        assert clip is not None
        start = clock()
        recognition = client.transcribe(clip)
        roundtrip_ms = round((clock() - start) * 1000)
        return PingResult(info, latency_ms, roundtrip_ms, len(recognition.text))
    finally:
        client.close()
