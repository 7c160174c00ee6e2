"""Gradio 3.x answers to /api/predict/ and what they mean (pure)."""

from __future__ import annotations

import pytest

from asrbatch.errors import EndpointError, InputRejectedError, RecognitionError
from asrbatch.transport.legacy import parse_response
from asrbatch.transport.session import RetryableError
from tests.transport.test_session import response

pytestmark = pytest.mark.unit


def test_outputs() -> None:
    body = b'{"data": ["text", "details"], "is_generating": false, "duration": 0.1}'
    assert parse_response(response(200, body)) == ["text", "details"]


def test_gr_error_message_is_unquoted() -> None:
    with pytest.raises(InputRejectedError, match=r"^server rejected the file: no audio given$"):
        parse_response(response(500, b'{"error": "\'no audio given\'"}'))


@pytest.mark.parametrize(("body", "kind"), [(b'{"error": null}', "application/json"),
                                            (b"Internal Server Error", "text/plain")])
def test_500_without_a_message(body: bytes, kind: str) -> None:
    with pytest.raises(RetryableError, match="without saying why") as caught:
        parse_response(response(500, body, kind))
    assert not caught.value.unreachable  # the server's fault, retried; never the file's
    assert "show_error=True" in str(caught.value)


def test_500_with_a_server_message_is_retried_not_blamed() -> None:
    with pytest.raises(RetryableError, match="CUDA out of memory"):
        parse_response(response(500, b'{"error": "CUDA out of memory. Tried to allocate 2.00 GiB"}'))


def test_404_means_the_rest_api_is_closed() -> None:
    with pytest.raises(EndpointError, match=r"api_open=False"):
        parse_response(response(404, b'{"detail": "Not Found"}'))


def test_other_statuses_are_classified() -> None:
    with pytest.raises(RetryableError):
        parse_response(response(503, b""))
    with pytest.raises(InputRejectedError, match="HTTP 422"):
        parse_response(response(422, b'{"detail": "bad body"}'))


def test_200_without_outputs() -> None:
    with pytest.raises(RecognitionError, match="without outputs"):
        parse_response(response(200, b'{"something": 1}'))
    with pytest.raises(RecognitionError, match="not JSON"):
        parse_response(response(200, b"<html>", "text/html"))
