"""Talking to speech-recognition servers: detect what they are, recognise files, classify failures.

:func:`connect` turns ``server`` settings into one :class:`Recognizer` -- one server's guarded
client, or a :class:`ServerPool` over ``server.urls`` -- and is all the runner uses.

One module per concern: :mod:`.base` (the Recognizer protocol, ServerInfo, the request-limit
rule), :mod:`.session` (timeouts, TLS, login, classification of failures), :mod:`.detect`
(reading a Gradio ``/config``), :mod:`.legacy` (Gradio 3.x), :mod:`.queued` (Gradio 4.x and
later), :mod:`.client` (the Gradio client), :mod:`.retry` (the retry policy), :mod:`.health`
(telling a dead server from a bad file), :mod:`.codecs` (which codec each server takes),
:mod:`.payload` (request bodies), :mod:`.pool`
(several servers sharing the work).  requests and tenacity are used here and nowhere else in
asrbatch.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from asrbatch.config import ServerConfig
from asrbatch.transport.base import Recognition, Recognizer, ServerInfo, request_limit
from asrbatch.transport.client import Client
from asrbatch.transport.codecs import AudioRecognizer, AudioSource, CodecLadder, send_audio
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
) -> AudioRecognizer:
    """One server's client, guarded by health checks before a file is blamed, sending each chunk in
    the codec that server takes (:class:`CodecLadder`)."""
    guarded = HealthGuard(
        client_for(settings, sleep=sleep, clock=clock),
        settings,
        lambda check: client_for(check, sleep=sleep, clock=clock),
        clock=clock,
    )
    return CodecLadder(guarded, settings.url)


def connect(
    settings: ServerConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> AudioRecognizer:
    """The Recognizer for *settings*: a pool over ``server.urls``, else the one server at ``server.url``."""
    if settings.urls:
        return ServerPool(settings, sleep=sleep, clock=clock)
    return connect_one(settings, sleep=sleep, clock=clock)


__all__ = ["LEGACY", "SSE", "SSE_PREFIXED", "AudioRecognizer", "AudioSource", "Client", "CodecLadder", "HealthGuard", "PingResult", "Recognition", "Recognizer",
           "ServerInfo", "ServerPool", "ServerState", "client_for", "connect", "connect_one", "ping",
           "request_limit", "send_audio"]
