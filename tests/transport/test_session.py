"""Session defaults and the classification of HTTP answers and requests exceptions."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import requests

from asrbatch.config import ServerConfig
from asrbatch.errors import EndpointError, InputRejectedError
from asrbatch.transport import Client
from asrbatch.transport.session import (
    LoginExpiredError,
    RetryableError,
    Timeouts,
    TimeoutSession,
    blames_input,
    build_session,
    classify_exception,
    classify_status,
    server_failure,
)

pytestmark = pytest.mark.unit


def response(status: int, body: bytes = b"", content_type: str = "application/json") -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = body
    r.headers["Content-Type"] = content_type
    return r


class Recorder(requests.adapters.HTTPAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[Any] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.timeouts.append(kwargs.get("timeout"))
        return response(200, b"{}")


def test_every_request_gets_a_timeout() -> None:
    session = TimeoutSession((1.5, 7.0))
    recorder = Recorder()
    session.mount("http://", recorder)
    session.get("http://example.invalid/a")
    session.post("http://example.invalid/b", timeout=None)
    session.get("http://example.invalid/c", timeout=(2, 3))
    assert recorder.timeouts == [(1.5, 7.0), (1.5, 7.0), (2, 3)]


def test_build_session_applies_tls_and_timeouts() -> None:
    settings = ServerConfig(connect_timeout=2.0, read_timeout=9.0, verify_tls="/etc/ssl/certs/ca-certificates.crt")
    session = build_session(settings)
    assert session.default_timeout == (2.0, 9.0)
    assert session.verify == "/etc/ssl/certs/ca-certificates.crt"
    assert build_session(ServerConfig(verify_tls=False)).verify is False


def test_timeouts_grow_with_the_audio() -> None:
    settings = ServerConfig(connect_timeout=5, read_timeout=60, read_timeout_per_audio_second=0.5, deadline=300)
    assert Timeouts.for_audio(settings, None) == Timeouts(5, 60, 300)
    assert Timeouts.for_audio(settings, 600) == Timeouts(5, 360, 600)


@pytest.mark.parametrize(("status", "unreachable"), [(429, True), (502, True), (503, True), (504, True)])
def test_transient_statuses(status: int, unreachable: bool) -> None:
    error = classify_status(response(status), "POST /upload")
    assert isinstance(error, RetryableError)
    assert error.unreachable is unreachable
    assert error.reason == str(status)


def test_final_statuses() -> None:
    assert isinstance(classify_status(response(401), "GET /x"), LoginExpiredError)
    assert isinstance(classify_status(response(404), "GET /x"), EndpointError)
    too_big = classify_status(response(413, b"File size exceeded maximum allowed size of 10240 bytes.", "text/plain"),
                              "POST /upload", max_file_size=10240)
    assert isinstance(too_big, InputRejectedError)
    assert "max upload size of 10240 bytes" in str(too_big)
    assert "File size exceeded maximum allowed size of 10240 bytes." in str(too_big)
    bad = classify_status(response(422, b'{"detail": "body must be an object"}'), "POST /api/predict/")
    assert isinstance(bad, InputRejectedError) and "body must be an object" in str(bad)
    failed = classify_status(response(500, b"Internal Server Error", "text/plain"), "POST /call/x")
    assert isinstance(failed, RetryableError) and not failed.unreachable  # the server's fault: tried again
    assert "without saying why" in str(failed)


@pytest.mark.parametrize("message", [
    "CUDA out of memory. Tried to allocate 2.00 GiB",
    "RuntimeError: CUDA error: device-side assert triggered",
    "internal error",
    "something went wrong",
    "cannot decode audio: the model worker was killed",  # about audio, but the server's trouble: the server's
])
def test_server_messages_are_the_servers_fault(message: str) -> None:
    failed = classify_status(response(500, json.dumps({"error": message}).encode()), "POST /api/predict/")
    assert isinstance(failed, RetryableError), failed
    assert message in str(failed)


@pytest.mark.parametrize("message", [
    "cannot decode audio: Invalid data found when processing input",
    "audio file too large: 9000000 bytes",
    "no audio given: upload or record a file",
    "Unsupported audio format",
])
def test_messages_about_the_audio_are_the_recordings_fault(message: str) -> None:
    assert blames_input(message)
    rejected = server_failure(message, "POST /x", status=500)
    assert isinstance(rejected, InputRejectedError) and rejected.permanent
    assert message in str(rejected)


@pytest.mark.parametrize(
    ("exc", "reason", "unreachable"),
    [
        (requests.exceptions.ConnectTimeout("x"), "connect timeout", True),
        (requests.exceptions.ReadTimeout("x"), "read timeout", False),
        (requests.exceptions.ChunkedEncodingError("IncompleteRead"), "closed mid-response", False),
        (requests.exceptions.ConnectionError("[Errno 111] Connection refused"), "connection refused", True),
        (requests.exceptions.ConnectionError("('Connection aborted.', RemoteDisconnected())"), "connection reset",
         True),
    ],
)
def test_exceptions(exc: requests.RequestException, reason: str, unreachable: bool) -> None:
    error = classify_exception(exc, "GET /config")
    assert isinstance(error, RetryableError)
    assert (error.reason, error.unreachable) == (reason, unreachable)


def test_tls_failure_is_a_configuration_error() -> None:
    error = classify_exception(requests.exceptions.SSLError("certificate verify failed"), "GET /config")
    assert isinstance(error, EndpointError)
    assert "server.verify_tls" in str(error)


def test_password_never_shows() -> None:
    settings = dataclasses.replace(ServerConfig(username="alice"), password="s3cret-pw")
    client = Client(settings)
    assert "s3cret-pw" not in repr(settings)
    assert "s3cret-pw" not in repr(client)
    client.close()
