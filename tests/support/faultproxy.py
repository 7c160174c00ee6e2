"""A scriptable HTTP proxy for faults a real server cannot be made to show on demand.

Put it in front of a real server; every request is forwarded unless a rule
matching its method and path still has a scripted fault left::

    with FaultProxy(server.url) as proxy:
        proxy.add("POST", r"/api/predict/?$", respond(503), respond(503))  # then forwarded
        proxy.add("GET", r"/call/", heartbeats(interval=0.05), times=None)  # every time
        proxy.add("POST", r"/api/predict/", respond(500), when=lambda body: b".ogg" in body)
        client = Client(ServerConfig(url=proxy.url))
        ...
        assert proxy.count("POST", r"/upload$") == 3

Faults: :func:`respond` (any status), :func:`hang` (hold the request without an
answer until the proxy stops), :func:`reset` (close before answering),
:func:`close_mid_response` (forward, then cut the body half-way),
:func:`heartbeats` (an SSE stream of heartbeats only), :func:`forward`.

Responses always carry ``Connection: close``; a stopped proxy releases every
held request, so nothing outlives the test.  Standard library only.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

MAX_HOLD_SECONDS = 60.0
"""Longest a hang or heartbeat stream lasts even if the proxy is never stopped."""

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te",
                "upgrade", "trailer"}

Action = Callable[["_Handler", bytes], None]


@dataclass
class _Rule:
    method: str
    pattern: re.Pattern[str]
    actions: collections.deque[Action]
    repeat: Action | None = None
    when: Callable[[bytes], bool] | None = None


@dataclass
class Hit:
    """One request the proxy saw."""

    method: str
    path: str
    action: str
    size: int = 0
    """Bytes in the request body."""


@dataclass
class _State:
    upstream: urllib.parse.SplitResult
    rules: list[_Rule] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


class FaultProxy:
    """A threaded proxy on ``127.0.0.1:<free port>`` in front of *upstream* (``http://host:port``)."""

    def __init__(self, upstream: str) -> None:
        self._state = _State(urllib.parse.urlsplit(upstream))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.state = self._state  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="faultproxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, method: str, pattern: str, *actions: Action, times: int | None = 1,
            when: Callable[[bytes], bool] | None = None) -> None:
        """Script *actions* for requests whose method is *method* (``*``: any) and path matches *pattern*
        (and, with *when*, whose body it accepts).

        Each matching request uses up the next action, then requests are forwarded
        again.  ``times=None`` repeats the last action for ever.
        """
        queue = collections.deque(actions * (times or 1))
        repeat = actions[-1] if times is None and actions else None
        with self._state.lock:
            self._state.rules.append(_Rule(method.upper(), re.compile(pattern), queue, repeat, when))

    def clear(self) -> None:
        """Drop every scripted fault (requests are forwarded again); counts are kept."""
        with self._state.lock:
            self._state.rules.clear()

    @property
    def hits(self) -> list[Hit]:
        """Every request seen so far, in order."""
        with self._state.lock:
            return list(self._state.hits)

    def count(self, method: str = "*", pattern: str = "") -> int:
        """How many requests with *method* (``*``: any) had a path (without query) matching *pattern*."""
        regex = re.compile(pattern)
        return sum(1 for hit in self.hits if method in ("*", hit.method) and regex.search(hit.path))

    def counts(self) -> collections.Counter[str]:
        """Requests per ``"METHOD /path"`` (query left out)."""
        return collections.Counter(f"{hit.method} {hit.path}" for hit in self.hits)

    def stop(self) -> None:
        """Release every held request and stop listening."""
        self._state.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# Faults


def forward() -> Action:
    """Pass the request to the upstream server and relay its answer."""
    def act(handler: _Handler, body: bytes) -> None:
        handler.forward(body)
    act.__name__ = "forward"
    return act


def respond(status: int, body: bytes | str = b"", content_type: str = "text/plain") -> Action:
    """Answer *status* with *body* without asking the upstream server."""
    data = body.encode() if isinstance(body, str) else body

    def act(handler: _Handler, _: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(data)
    act.__name__ = f"respond_{status}"
    return act


def hang() -> Action:
    """Hold the request without answering until the proxy stops (or :data:`MAX_HOLD_SECONDS`)."""
    def act(handler: _Handler, _: bytes) -> None:
        handler.state.stopping.wait(MAX_HOLD_SECONDS)
    act.__name__ = "hang"
    return act


def reset() -> Action:
    """Close the connection without sending anything."""
    def act(handler: _Handler, _: bytes) -> None:
        handler.connection.shutdown(socket.SHUT_RDWR)
    act.__name__ = "reset"
    return act


def close_mid_response() -> Action:
    """Forward, send the status, headers and about half of the body, then close."""
    def act(handler: _Handler, body: bytes) -> None:
        handler.forward(body, cut=True)
    act.__name__ = "close_mid_response"
    return act


def heartbeats(interval: float = 0.05) -> Action:
    """Answer with an SSE stream of ``event: heartbeat`` every *interval* seconds and nothing else."""
    def act(handler: _Handler, _: bytes) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Connection", "close")
        handler.end_headers()
        while not handler.state.stopping.is_set():
            try:
                handler.write_chunk(b"event: heartbeat\ndata: null\n\n")
            except OSError:
                return  # the client gave up
            if handler.state.stopping.wait(interval):
                break
    act.__name__ = "heartbeats"
    return act


# ---------------------------------------------------------------------------------------------
# Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy"

    @property
    def state(self) -> _State:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base class name
        pass

    def _handle(self) -> None:
        self.close_connection = True
        body = self._read_body()
        path = urllib.parse.urlsplit(self.path).path
        action = self._choose(path, body)
        with self.state.lock:
            self.state.hits.append(Hit(self.command, path, getattr(action, "__name__", "action"), len(body)))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            action(self, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _handle

    def _choose(self, path: str, body: bytes) -> Action:
        with self.state.lock:
            for rule in self.state.rules:
                if rule.method not in ("*", self.command) or not rule.pattern.search(path):
                    continue
                if rule.when is not None and not rule.when(body):
                    continue
                if rule.actions:
                    return rule.actions.popleft()
                if rule.repeat is not None:
                    return rule.repeat
        return forward()

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return b""

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def forward(self, body: bytes, *, cut: bool = False) -> None:
        upstream = self.state.upstream
        connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port or 80,
                                                timeout=MAX_HOLD_SECONDS)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS | {"host"}}
            headers["Host"] = upstream.netloc
            if body or self.command in ("POST", "PUT", "PATCH"):
                headers["Content-Length"] = str(len(body))
            target = urllib.parse.urlsplit(self.path)
            path = (upstream.path.rstrip("/") + target.path) + (f"?{target.query}" if target.query else "")
            connection.request(self.command, path, body=body or None, headers=headers)
            response = connection.getresponse()
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_HEADERS:
                    self.send_header(name, value)
            self.send_header("Connection", "close")
            length = response.getheader("Content-Length")
            if length is not None and not cut:
                data = response.read()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if length is not None:  # cut: promise the whole body, send half
                data = response.read()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while not self.state.stopping.is_set():
                data = response.read1(65536)
                if not data:
                    break
                if cut:  # relay the first piece only, then break the stream off
                    self.write_chunk(data[: max(1, len(data) // 2)])
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.write_chunk(data)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        finally:
            connection.close()
