"""Gradio 3.x answers to /api/predict/ and its websocket queue, and what they mean (pure)."""

from __future__ import annotations

import json

import pytest

from asrbatch.errors import InputRejectedError, RecognitionError
from asrbatch.transport.gradio3_queue import completed_outputs, websocket_url, with_session_hash
from asrbatch.transport.legacy import parse_response
from asrbatch.transport.session import LoginExpiredError, QueueRequired, RetryableError
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
    with pytest.raises(QueueRequired, match=r"api_open=False"):
        parse_response(response(404, b'{"detail": "Not Found"}'))


def test_older_3x_refusing_to_skip_the_queue_is_not_a_login_matter() -> None:
    with pytest.raises(QueueRequired, match=r"HTTP 401 .*Not authorized to skip the queue"):
        parse_response(response(401, b'{"detail": "Not authorized to skip the queue"}'))
    with pytest.raises(LoginExpiredError, match="requires a login"):
        parse_response(response(401, b'{"detail": "Not authenticated"}'))


def test_a_generators_first_partial_is_not_the_result() -> None:
    body = b'{"data": ["i would like"], "is_generating": true, "duration": 0.1, "average_duration": 0.1}'
    with pytest.raises(QueueRequired, match="first partial result only"):
        parse_response(response(200, body))


def test_queue_completion() -> None:
    done = {"msg": "process_completed", "success": True,
            "output": {"data": ["i would like a cup of coffee please"], "is_generating": True}}
    # 3.50 still says is_generating: true in a generator's completion; its data is the final value.
    assert completed_outputs(done) == ["i would like a cup of coffee please"]
    refused = {"msg": "process_completed", "success": False, "output": {"error": "'cannot decode audio: junk'"}}
    with pytest.raises(InputRejectedError, match=r"^server rejected the file: cannot decode audio: junk$"):
        completed_outputs(refused)
    with pytest.raises(RetryableError, match=r"without saying why \(the websocket queue /queue/join\)"):
        completed_outputs({"msg": "process_completed", "success": False, "output": {"error": None}})
    with pytest.raises(RetryableError, match="CUDA out of memory"):
        completed_outputs({"msg": "process_completed", "success": False, "output": {"error": "CUDA out of memory"}})


def test_queue_data_message_and_address() -> None:
    body = json.dumps({"data": [None, {"name": "a.wav", "data": "data:audio/wav;base64,AAAA"}], "fn_index": 0})
    message = json.loads(with_session_hash(body.encode(), "abc123"))
    assert message == {**json.loads(body), "session_hash": "abc123"}
    assert websocket_url("http://gpu:7860/") == "ws://gpu:7860/queue/join"
    assert websocket_url("https://gpu/asr") == "wss://gpu/asr/queue/join"


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
