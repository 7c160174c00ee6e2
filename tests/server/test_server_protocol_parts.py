"""The pure parts of the protocol fronts and app shapes: answers built from engine results."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from asrbatch.server import compat, funasr_ws, openai_api, shapes
from asrbatch.server.engines.base import EngineResult, Segment
from asrbatch.server.service import InputError, hotword_list, safe_file_name

pytestmark = pytest.mark.unit


def test_hotword_lists_keep_phrases_and_texts_are_split() -> None:
    assert hotword_list(["hello world", " 阿里巴巴 ", "hello world", ""]) == ["hello world", "阿里巴巴"]
    assert hotword_list("hello world,阿里巴巴") == ["hello", "world", "阿里巴巴"]
    assert openai_api.comma_hotwords(" 达摩院, hello world ,,") == ["达摩院", "hello world"]


def test_client_file_names_cannot_leave_the_scratch_folder() -> None:
    assert safe_file_name("../../etc/passwd", "audio") == "passwd"
    assert safe_file_name("..", "audio") == "audio"
    assert safe_file_name(".hidden.wav", "audio") == "hidden.wav"
    assert safe_file_name("会议 01.mp3", "audio") == "会议_01.mp3"
    assert safe_file_name(None, "audio") == "audio"


def test_text_only_results_get_segments_timed_by_length() -> None:
    text = " ".join(["word"] * 40)  # 199 characters: three pieces of at most 80
    segments = openai_api.text_segments(text, 10.0)
    assert " ".join(s.text for s in segments) == text
    assert all(len(s.text) <= 80 for s in segments) and len(segments) == 3
    assert segments[0].start == 0.0 and segments[-1].end == 10.0
    assert all(a.end == b.start for a, b in zip(segments, segments[1:], strict=False))
    assert openai_api.text_segments("", 3.0) == []


def test_words_are_placed_in_their_sentences() -> None:
    result = EngineResult(
        "one two. three",
        segments=(Segment(0.0, 1.0, "one two."), Segment(1.0, 2.0, "three")),
        words=(Segment(0.1, 0.4, "one"), Segment(0.5, 0.9, "two"), Segment(1.2, 2.0, "three")),
    )
    paired = openai_api.timed_segments(result, 2.0)
    assert [[w.text for w in words] for _, words in paired] == [["one", "two"], ["three"]]


def test_funasr_hotword_field() -> None:
    assert funasr_ws.parse_hotword_field(json.dumps({"阿里巴巴": 20, "hello world": 40})) == (
        ["阿里巴巴", "hello world"],
        {"阿里巴巴": 20, "hello world": 40},
    )
    assert funasr_ws.parse_hotword_field("阿里巴巴 达摩院") == (["阿里巴巴", "达摩院"], {})
    assert funasr_ws.parse_hotword_field("[1, 2]") == ([], {})  # JSON, but not an object
    assert funasr_ws.parse_hotword_field(None) == ([], {})


def test_funasr_stamps_in_milliseconds() -> None:
    result = EngineResult(
        "你好。",
        segments=(Segment(0.43, 1.13, "你好。"),),
        words=(Segment(0.43, 0.67, "你"), Segment(0.67, 1.13, "好")),
    )
    fields = funasr_ws.stamps(result)
    assert fields["timestamp"] == "[[430,670],[670,1130]]"
    assert fields["stamp_sents"] == [
        {"text_seg": "你 好", "punc": "。", "start": 430, "end": 1130, "ts_list": [[430, 670], [670, 1130]]}
    ]
    frame = funasr_ws.answer_frame("w", "你好。", fields)
    assert frame.startswith('{"is_final":false,"mode":"offline","stamp_sents":[{"end":1130,')
    assert '"text":"你好。"' in frame  # UTF-8 as is, not \\u escapes
    assert funasr_ws.stamps(EngineResult("")) == {}


def test_pcm_becomes_a_wav_at_its_rate(tmp_path: Path) -> None:
    path = funasr_ws.pcm_to_wav(bytes(8001), 8000, tmp_path / "a.wav")
    with wave.open(str(path)) as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getnframes()) == (8000, 1, 4000)


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        (np.array([0, 1000, -1000], dtype=np.int16), [0, 1000, -1000]),
        (np.array([0.5, -1.0], dtype=np.float32), [16383, -32767]),
        (np.array([65536 * 1000, -65536 * 1000], dtype=np.int32), [1000, -1000]),
        (np.array([[1000, 3000], [-1000, -3000]], dtype=np.int16), [2000, -2000]),  # stereo: mixed
    ],
)
def test_numpy_audio_is_written_as_16_bit_mono(
    samples: np.ndarray, expected: list[int], tmp_path: Path
) -> None:
    path = shapes.write_samples(22050, samples, tmp_path / "a.wav")
    with wave.open(str(path)) as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (22050, 1, 2)
        frames = np.frombuffer(audio.readframes(audio.getnframes()), dtype="<i2")
    assert frames.tolist() == expected


def test_empty_numpy_audio_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no samples"):
        shapes.write_samples(16000, np.array([], dtype=np.int16), tmp_path / "a.wav")


def test_partial_transcripts_grow_to_the_final_one() -> None:
    words = tuple(Segment(i, i + 1, w) for i, w in enumerate(["the", "quick", "brown", "fox", "jumps"]))
    result = EngineResult("the quick brown fox jumps", words=words)
    assert shapes.partial_transcripts(result) == ["the quick", "the quick brown", "the quick brown fox jumps"]
    assert shapes.partial_transcripts(EngineResult("hello")) == ["hello"]
    assert shapes.partial_transcripts(EngineResult("")) == [""]


def test_named_files_of_each_generation() -> None:
    assert compat.named_files({"name": "/x.wav", "data": None, "is_file": True}, True) == ["/x.wav"]
    assert compat.named_files({"name": "x.wav", "data": "data:audio/wav;base64,AAAA"}, True) == []
    assert compat.named_files({"path": "/tmp/gradio/x.wav", "meta": {}}, True) == ["/tmp/gradio/x.wav"]
    assert compat.named_files([{"path": "/a"}, {"path": "/b"}], True) == ["/a", "/b"]
    assert compat.named_files("/etc/passwd", True) == ["/etc/passwd"]
    assert compat.named_files("hotwords, not a file", False) == []


def test_named_files_must_be_uploads(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    (uploads / "abc").mkdir(parents=True)
    compat.check_named_file(str(uploads / "abc" / "a.wav"), uploads, allow_urls=False)
    for outside in (
        str(tmp_path / "a.wav"),
        str(uploads / ".." / "a.wav"),
        str(tmp_path / "uploads-other" / "a"),
    ):
        with pytest.raises(compat.RefusedInput, match="not a file uploaded"):
            compat.check_named_file(outside, uploads, allow_urls=False)
    with pytest.raises(compat.RefusedInput, match="is a URL"):
        compat.check_named_file("https://example.com/a.wav", uploads, allow_urls=False)
    compat.check_named_file("https://example.com/a.wav", uploads, allow_urls=True)
    with pytest.raises(compat.RefusedInput, match="is a URL"):
        compat.check_named_file("file:///etc/passwd", uploads, allow_urls=True)
