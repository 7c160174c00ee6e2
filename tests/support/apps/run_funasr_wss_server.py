"""Run FunASR's Python WebSocket server (funasr_wss_server.py here, unchanged) on today's websockets.

The server was written for the websockets API before 14.0, whose ``websockets.serve`` calls a
handler with ``(websocket, path)``; later versions call it with the connection alone. The same
API lives on as ``websockets.legacy.server.serve``: it is put where the server looks for it, and
the server's file then runs as its ``__main__``, with the arguments given here.

    python run_funasr_wss_server.py --host 127.0.0.1 --port 10095 --asr_model DIR ...
"""

from __future__ import annotations

import runpy
import sys
import warnings
from pathlib import Path

import websockets

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import websockets.legacy.server

websockets.serve = websockets.legacy.server.serve  # type: ignore[assignment]
SERVER = Path(__file__).with_name("funasr_wss_server.py")
sys.argv = [str(SERVER), *sys.argv[1:]]
runpy.run_path(str(SERVER), run_name="__main__")
