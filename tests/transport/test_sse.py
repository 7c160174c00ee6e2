"""Server-sent events: parsing and what each event means (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from asrbatch.errors import InputRejectedError, RecognitionError
from asrbatch.transport.queued import (
    Event,
    EventParser,
    interpret_call_event,
    interpret_queue_message,
    parse_events,
)
from asrbatch.transport.session import RetryableError

pytestmark = pytest.mark.unit

COMPLETE = b'event: heartbeat\ndata: null\n\nevent: complete\ndata: ["hello world", "details"]\n\n'


def test_events_of_a_call_stream() -> None:
    assert parse_events([COMPLETE]) == [Event("heartbeat", "null"), Event("complete", '["hello world", "details"]')]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16])
def test_events_survive_any_chunking(size: int) -> None:
    data = COMPLETE.replace(b"\n", b"\r\n") + "event: complete\ndata: [\"语音\"]\n\n".encode()
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    assert parse_events(chunks) == [
        Event("heartbeat", "null"), Event("complete", '["hello world", "details"]'), Event("complete", '["语音"]'),
    ]


def test_comments_cr_multiline_data_and_default_name() -> None:
    data = b": keep-alive\r\rdata: first\rdata:second\r\rid: 3\nretry: 10\nevent: x\n\n"
    assert parse_events([data]) == [Event("message", "first\nsecond"), Event("x", "")]


def test_incomplete_event_is_not_dispatched() -> None:
    parser = EventParser()
    assert parser.feed(b"event: complete\ndata: [1]\n") == []
    assert parser.feed(b"\n") == [Event("complete", "[1]")]


def test_complete_gives_the_outputs() -> None:
    assert interpret_call_event(Event("complete", '["a", "b"]')) == ["a", "b"]
    for name in ("heartbeat", "generating", "log", "message"):
        assert interpret_call_event(Event(name, "null")) is None


@pytest.mark.parametrize(
    "data",
    ['{"error": "cannot decode audio: Invalid data", "duration": 10, "visible": true, "title": "Error"}',
     '"cannot decode audio: Invalid data"'],
)
def test_error_with_a_message_blames_the_input(data: str) -> None:
    with pytest.raises(InputRejectedError, match="server rejected the file: cannot decode audio: Invalid data"):
        interpret_call_event(Event("error", data))


@pytest.mark.parametrize("data", ["null", '{"error": null}', "", '{"error": "  "}'])
def test_error_without_a_message(data: str) -> None:
    with pytest.raises(RetryableError, match="server failed without saying why") as caught:
        interpret_call_event(Event("error", data))
    assert not caught.value.unreachable


def test_complete_without_outputs() -> None:
    with pytest.raises(RecognitionError, match="without a list of outputs"):
        interpret_call_event(Event("complete", "null"))


def queue_message(msg: str, event_id: str | None = "e1", **extra: Any) -> dict[str, Any]:
    return {"msg": msg, "event_id": event_id, **extra}


def test_queue_messages() -> None:
    for msg in ("estimation", "process_starts", "heartbeat", "progress", "log", "process_generating"):
        assert interpret_queue_message(queue_message(msg), "e1") is None
    done = queue_message("process_completed", output={"data": ["t", "d"]}, success=True)
    assert interpret_queue_message(done, "e1") == ["t", "d"]
    assert interpret_queue_message(done, "other") is None
    failed = queue_message("process_completed", output={"error": "'no audio given'"}, success=False)
    # 4.x quotes a gr.Error's message there, as 3.x does on /api/predict/.
    with pytest.raises(InputRejectedError, match=r"^server rejected the file: no audio given$"):
        interpret_queue_message(failed, "e1")
    with pytest.raises(RetryableError, match="closed the queue stream"):
        interpret_queue_message(queue_message("close_stream", None), "e1")
    with pytest.raises(RetryableError, match="boom"):
        interpret_queue_message(queue_message("unexpected_error", message="boom"), "e1")
    assert interpret_queue_message("not a dict", "e1") is None
