"""Request bodies: template filling, data URLs, MIME types."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from asrbatch.config import DEFAULT_TEMPLATE
from asrbatch.transport import payload

pytestmark = pytest.mark.unit


def test_fill_template_replaces_whole_placeholders_only() -> None:
    template = (None, "<audio>", "<batch_size>", "<hotwords>", "x<audio>", 3, {"k": "v"})
    filled = payload.fill_template(template, {"slot": 1}, 4, "a,b")
    assert filled == [None, {"slot": 1}, 4, "a,b", "x<audio>", 3, {"k": "v"}]


def test_audio_position() -> None:
    assert payload.audio_position(DEFAULT_TEMPLATE) == 1
    with pytest.raises(ValueError):
        payload.audio_position((None, "<hotwords>"))


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 786_431, 786_432, 786_433, 2_000_001])
def test_encode_base64_matches_one_shot_encoding(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    sink = io.BytesIO()
    payload.encode_base64(io.BytesIO(data), sink)
    assert sink.getvalue() == base64.b64encode(data)


def test_legacy_body_is_the_seed_contract(tmp_path: Path) -> None:
    audio = tmp_path / "会议.wav"
    audio.write_bytes(b"RIFF\x00\x01\x02fake")
    body = payload.legacy_body(DEFAULT_TEMPLATE, audio, name="会议.wav", mime="audio/wav", fn_index=0,
                               batch_size=2, hotwords="人工智能,语音识别")
    decoded = json.loads(body.read().decode("utf-8"))
    data_url = "data:audio/wav;base64," + base64.b64encode(audio.read_bytes()).decode()
    assert decoded == {
        "data": [None, {"name": "会议.wav", "data": data_url}, 2, "人工智能,语音识别"],
        "event_data": None,
        "fn_index": 0,
    }


def test_legacy_body_keeps_template_values_that_look_like_the_marker(tmp_path: Path) -> None:
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"abc")
    template = ("asrbatch-audio-", "<audio>", "<hotwords>")
    body = payload.legacy_body(template, audio, name="a.wav", mime="audio/wav", fn_index=5, batch_size=1,
                               hotwords='quote " and \\ backslash')
    decoded = json.loads(body.getvalue())
    assert decoded["data"][0] == "asrbatch-audio-"
    assert decoded["data"][1]["data"] == "data:audio/wav;base64,YWJj"
    assert decoded["data"][2] == 'quote " and \\ backslash'
    assert decoded["fn_index"] == 5


def test_queued_body_file_slot() -> None:
    slot = payload.file_data("/tmp/gradio/x/a.wav", "a.wav")
    assert payload.queued_body(DEFAULT_TEMPLATE, slot, 1, "w") == {
        "data": [None, {"path": "/tmp/gradio/x/a.wav", "orig_name": "a.wav", "meta": {"_type": "gradio.FileData"}},
                 1, "w"]
    }
