"""Talking to the Gradio ASR WebUI: detect its generation, call the recognition function, classify failures.

One module per concern: :mod:`.session` (timeouts, TLS, login, classification),
:mod:`.detect` (reading ``/config``), :mod:`.legacy` (Gradio 3.x),
:mod:`.queued` (Gradio 4.x and later), :mod:`.retry` (the retry policy),
:mod:`.payload` (request bodies), :mod:`.pool` (several servers sharing the
work).  requests and tenacity are used here and nowhere else in asrbatch.
"""

from asrbatch.transport.client import Client, Recognition, ServerInfo
from asrbatch.transport.detect import LEGACY, SSE, SSE_PREFIXED
from asrbatch.transport.ping import PingResult, ping
from asrbatch.transport.pool import ServerPool, ServerState

__all__ = ["LEGACY", "SSE", "SSE_PREFIXED", "Client", "PingResult", "Recognition", "ServerInfo", "ServerPool",
           "ServerState", "ping"]
