"""Talking to speech-recognition servers: detect what they are, recognise files, classify failures.

:func:`connect` turns ``server`` settings into one :class:`Recognizer` -- one server's guarded
client, or a :class:`ServerPool` over ``server.urls`` -- and is all the runner uses.

One module per concern: :mod:`.base` (the Recognizer protocol, ServerInfo, the request-limit
rule), :mod:`.session` (timeouts, TLS, login, classification of failures), :mod:`.detect`
(reading a Gradio ``/config``, choosing the function and its arguments), :mod:`.legacy` (Gradio
3.x), :mod:`.gradio3_queue` (Gradio 3.x's websocket queue), :mod:`.queued` (Gradio 4.x and
later), :mod:`.client` (the Gradio client), :mod:`.retry` (the retry policy), :mod:`.health`
(telling a dead server from a bad file), :mod:`.codecs` (which codec each server takes),
:mod:`.payload` (request bodies), :mod:`.pool` (several servers sharing the work), :mod:`.openai`
(OpenAI-compatible servers: funasr-server, vLLM, speaches...), :mod:`.funasr_ws` (the FunASR
runtime's WebSocket server), :mod:`.identify` (``server.protocol: auto``).  :func:`client_for` is
where a protocol is chosen.  requests, tenacity and websockets are used here and nowhere else in
asrbatch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import requests

from asrbatch.config import ServerConfig
from asrbatch.transport.base import Recognition, Recognizer, ServerInfo, request_limit
from asrbatch.transport.client import Client
from asrbatch.transport.codecs import AudioRecognizer, AudioSource, CodecLadder, send_audio
from asrbatch.transport.detect import LEGACY, SSE, SSE_PREFIXED
from asrbatch.transport.funasr_ws import FunasrWsClient
from asrbatch.transport.health import HealthGuard
from asrbatch.transport.identify import FUNASR_WS, GRADIO, OPENAI, AutoClient, declared_protocol
from asrbatch.transport.openai import OpenAIClient
from asrbatch.transport.ping import PingResult, ping
from asrbatch.transport.pool import ServerPool, ServerState


def client_for(
    settings: ServerConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    session: requests.Session | None = None,
) -> Recognizer:
    """The bare client of the one server at ``settings.url`` (no health checks), for its protocol:
    ``server.protocol``, the FunASR runtime for ws:// and wss://, else found on the first probe.

    *session* (HTTP protocols only) replaces the session the client would build; the caller owns it.
    """
    protocol = declared_protocol(settings)
    if protocol == FUNASR_WS:
        return FunasrWsClient(settings, sleep=sleep, clock=clock)
    if protocol == OPENAI:
        return OpenAIClient(settings, sleep=sleep, clock=clock, session=session)
    if protocol == GRADIO:
        return Client(settings, sleep=sleep, clock=clock, session=session)
    return AutoClient(settings, lambda found: client_for(found, sleep=sleep, clock=clock, session=session),
                      sleep=sleep, session=session)


def connect_one(
    settings: ServerConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> AudioRecognizer:
    """One server's client, guarded by health checks before a file is blamed, sending each chunk in
    the codec that server takes (:class:`CodecLadder`)."""
    client = client_for(settings, sleep=sleep, clock=clock)

    def checker(check: ServerConfig) -> Recognizer:
        found = client.protocol if isinstance(client, AutoClient) else None
        # The check speaks the protocol already found: no second look at the server.
        return client_for(dataclasses.replace(check, protocol=found) if found else check,  # type: ignore[arg-type]
                          sleep=sleep, clock=clock)

    return CodecLadder(HealthGuard(client, settings, checker, clock=clock), settings.url)


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


__all__ = ["LEGACY", "SSE", "SSE_PREFIXED", "AudioRecognizer", "AudioSource", "AutoClient", "Client", "CodecLadder",
           "FunasrWsClient", "HealthGuard", "OpenAIClient", "PingResult", "Recognition", "Recognizer", "ServerInfo",
           "ServerPool", "ServerState", "client_for", "connect", "connect_one", "ping", "request_limit", "send_audio"]
