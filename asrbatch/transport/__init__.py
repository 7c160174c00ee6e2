"""Talking to speech-recognition servers: detect what they are, recognise files, classify failures.

:func:`connect` turns ``server`` settings into one :class:`Recognizer` -- one server's guarded
client, or a :class:`ServerPool` over ``server.urls`` -- and is all the runner uses.

One module per concern: :mod:`.base` (the Recognizer protocol, ServerInfo, the request-limit
rule), :mod:`.session` (timeouts, TLS, login, classification of failures), :mod:`.detect`
(reading a Gradio ``/config``, choosing the function and its arguments), :mod:`.legacy` (Gradio
3.x), :mod:`.gradio3_queue` (Gradio 3.x's websocket queue), :mod:`.queued` (Gradio 4.x and
later), :mod:`.client` (the Gradio client), :mod:`.retry` (the retry policy), :mod:`.health`
(telling a dead server from a bad file), :mod:`.payload` (request bodies), :mod:`.pool`
(several servers sharing the work).  requests and tenacity are used here and nowhere else in
asrbatch.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from asrbatch.config import ServerConfig
from asrbatch.transport.base import Recognition, Recognizer, ServerInfo, request_limit
from asrbatch.transport.client import Client
from asrbatch.transport.detect import LEGACY, SSE, SSE_PREFIXED
from asrbatch.transport.health import HealthGuard
from asrbatch.transport.ping import PingResult, ping
from asrbatch.transport.pool import ServerPool, ServerState


def client_for(
    settings: ServerConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Recognizer:
    """The bare client of the one server at ``settings.url`` (no health checks)."""
    return Client(settings, sleep=sleep, clock=clock)


def connect_one(
    settings: ServerConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Recognizer:
    """One server's client, guarded by health checks before a file is blamed."""
    return HealthGuard(
        client_for(settings, sleep=sleep, clock=clock),
        settings,
        lambda check: client_for(check, sleep=sleep, clock=clock),
        clock=clock,
    )


def connect(
    settings: ServerConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Recognizer:
    """The Recognizer for *settings*: a pool over ``server.urls``, else the one server at ``server.url``."""
    if settings.urls:
        return ServerPool(settings, sleep=sleep, clock=clock)
    return connect_one(settings, sleep=sleep, clock=clock)


__all__ = ["LEGACY", "SSE", "SSE_PREFIXED", "Client", "HealthGuard", "PingResult", "Recognition", "Recognizer",
           "ServerInfo", "ServerPool", "ServerState", "client_for", "connect", "connect_one", "ping",
           "request_limit"]
