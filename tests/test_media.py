"""What counts as a recording by its name, and the MIME type it is sent with (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from asrbatch.media import (
    DEFAULT_EXTENSIONS,
    is_recording_name,
    is_temporary_name,
    mime_type,
    normalise_extensions,
    strip_temporary,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.wav", "audio/wav"),
        ("A.MP3", "audio/mpeg"),
        ("x.flac", "audio/flac"),
        ("x.m4a", "audio/mp4"),
        ("x.ogg", "audio/ogg"),
        ("x.opus", "audio/ogg"),
        ("x.aac", "audio/aac"),
        ("x.webm", "audio/webm"),
        ("x.mp4", "video/mp4"),
        ("会议 meeting/weekly standup.mp3", "audio/mpeg"),
        ("notes.xyz", "application/octet-stream"),
        ("no_extension", "application/octet-stream"),
    ],
)
def test_mime_type(name: str, expected: str) -> None:
    assert mime_type(Path(name)) == expected



@pytest.mark.parametrize(
    ("name", "recording"),
    [("call.wav", True), ("CALL.WAV", True), ("a.b.mp3", True), (".hidden.wav", False), ("call.wav.part", False),
     ("call.mp3.crdownload", False), ("~$call.wav", False), ("call.wav~", False), ("notes.txt", False),
     ("wav", False), ("会议 记录.m4a", True), ("clip.MOV", True)],
)
def test_recording_names(name: str, recording: bool) -> None:
    assert is_recording_name(name, normalise_extensions(DEFAULT_EXTENSIONS)) is recording


def test_temporary_names() -> None:
    assert is_temporary_name("x.mp3.part") and strip_temporary("x.mp3.part") == "x.mp3"
    assert not is_temporary_name("x.mp3") and strip_temporary("x.mp3") == "x.mp3"
    assert normalise_extensions([".WAV", "mp3"]) == frozenset({"wav", "mp3"})
