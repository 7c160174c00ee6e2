"""Gradio-generation helpers that are plain functions (run against the dev venv's Gradio)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.unit

compat = pytest.importorskip("asrbatch.server.compat")


def test_file_values_of_every_generation_become_paths() -> None:
    assert compat.file_path(None) is None and compat.file_path("") is None
    assert compat.file_path("/tmp/a.wav") == Path("/tmp/a.wav")
    assert compat.file_path(SimpleNamespace(name="/tmp/b.txt")) == Path("/tmp/b.txt")  # 3.x File
    assert compat.file_path({"path": "/tmp/c.wav", "orig_name": "c.wav"}) == Path("/tmp/c.wav")
    assert compat.file_path({"name": "/tmp/d.wav", "data": None}) == Path("/tmp/d.wav")


def test_decoding_reason_keeps_ffmpegs_last_line_without_server_paths() -> None:
    pydub_style = (
        "Decoding failed. ffmpeg returned error code: 183\n\nOutput from ffmpeg/avlib:\n\n"
        "ffmpeg version 5.1\n/tmp/gradio/abc/broken.wav: Invalid data found when processing input\n"
    )
    assert compat.decoding_reason(RuntimeError(pydub_style)) == ("Invalid data found when processing input")
    assert compat.decoding_reason(ValueError("")) == "ValueError"


def test_payload_sizes(tmp_path: Path) -> None:
    file = tmp_path / "a.wav"
    file.write_bytes(b"x" * 1234)
    assert compat._payload_size({"name": str(file), "data": None, "is_file": True}) == 1234
    assert compat._payload_size({"name": "a.wav", "data": "data:audio/wav;base64,AAAA"}) == 3
    assert compat._payload_size(SimpleNamespace(path=str(file))) == 1234


def test_launch_options_are_safe() -> None:
    options = compat.launch_options("127.0.0.1", 7860, None, 1024)
    assert options["show_error"] is True and options["share"] is False
    assert options["server_name"] == "127.0.0.1"
    if compat.enforces_upload_limit():
        assert options["max_file_size"] == 1024
