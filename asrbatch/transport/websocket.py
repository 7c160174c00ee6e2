"""What the two WebSocket clients share (the FunASR runtime's, and Gradio 3.x's queue): TLS from
``server.verify_tls``, and the keywords of websockets' ``connect`` from version 11 to 17."""

from __future__ import annotations

import inspect
import ssl
from typing import Any

from websockets.sync.client import connect

from asrbatch.config import ServerConfig

CONNECT_PARAMETERS = frozenset(inspect.signature(connect).parameters)
"""The keywords this websockets' synchronous ``connect`` takes."""


def tls_context(settings: ServerConfig) -> ssl.SSLContext:
    """The TLS context ``server.verify_tls`` asks for: no verification, a CA bundle, or the system's."""
    if settings.verify_tls is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(settings.verify_tls, str):
        return ssl.create_default_context(cafile=settings.verify_tls)
    return ssl.create_default_context()


def tls_options(settings: ServerConfig, url: str) -> dict[str, Any]:
    """``connect`` keywords for TLS: none for ``ws://``; for ``wss://`` the context, under the name
    this websockets takes (13 renamed ``ssl_context`` to ``ssl``)."""
    if not url.startswith("wss://"):
        return {}
    return {"ssl" if "ssl" in CONNECT_PARAMETERS else "ssl_context": tls_context(settings)}
