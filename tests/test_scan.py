import os
import time

import pytest

from asrbatch.config import InputConfig
from asrbatch.scan import read_hotwords_file, scan_directory

pytestmark = pytest.mark.unit

SETTINGS = InputConfig(min_age=0)


def touch(path, data=b"x", age=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age:
        t = time.time() - age
        os.utime(path, (t, t))
    return path


def test_recursive_stable_order_and_filters(tmp_path):
    touch(tmp_path / "b.WAV")
    touch(tmp_path / "a.mp3")
    touch(tmp_path / "sub" / "会议 记录 'q'.flac")
    touch(tmp_path / "sub" / "deep" / "c.m4a")
    touch(tmp_path / ".hidden.wav")
    touch(tmp_path / ".cache" / "x.wav")
    touch(tmp_path / "d.mp3.part")
    touch(tmp_path / "e.wav.tmp")
    touch(tmp_path / "f.wav~")
    touch(tmp_path / "notes.txt")
    result = scan_directory(tmp_path, SETTINGS)
    assert [r.key for r in result.recordings] == ["a.mp3", "b.WAV", "sub/deep/c.m4a", "sub/会议 记录 'q'.flac"]
    reasons = dict((s.key, s.reason) for s in result.skipped)
    assert reasons[".hidden.wav"] == "hidden file"
    assert "x.wav" not in " ".join(reasons)


def test_not_recursive(tmp_path):
    touch(tmp_path / "a.wav")
    touch(tmp_path / "sub" / "b.wav")
    result = scan_directory(tmp_path, InputConfig(min_age=0, recursive=False))
    assert [r.key for r in result.recordings] == ["a.wav"]


def test_young_files_are_skipped(tmp_path):
    touch(tmp_path / "old.wav", age=120)
    touch(tmp_path / "new.wav")
    result = scan_directory(tmp_path, InputConfig(min_age=60))
    assert [r.key for r in result.recordings] == ["old.wav"]
    assert "younger than min_age" in result.skipped[0].reason


def test_excluded_output_folder_inside_input(tmp_path):
    touch(tmp_path / "a.wav")
    touch(tmp_path / "out" / "a.wav")
    result = scan_directory(tmp_path, SETTINGS, exclude=[tmp_path / "out"])
    assert [r.key for r in result.recordings] == ["a.wav"]


def test_symlinks_inside_followed_outside_not(tmp_path):
    root = tmp_path / "in"
    outside = touch(tmp_path / "elsewhere" / "secret.wav")
    inside = touch(root / "real" / "a.wav")
    (root / "link-out.wav").symlink_to(outside)
    (root / "link-in.wav").symlink_to(inside)
    (root / "loop").symlink_to(root)
    result = scan_directory(root, SETTINGS)
    keys = [r.key for r in result.recordings]
    assert "link-out.wav" not in keys
    assert "link-in.wav" in keys and "real/a.wav" in keys
    assert any(s.reason.startswith("symlink pointing outside") for s in result.skipped)


def test_extensions_configurable_and_report_ignored(tmp_path):
    touch(tmp_path / "a.wav")
    touch(tmp_path / "b.xyz")
    result = scan_directory(tmp_path, InputConfig(min_age=0, extensions=("xyz",)), report_ignored=True)
    assert [r.key for r in result.recordings] == ["b.xyz"]
    assert ("a.wav", "not a recording extension") in [(s.key, s.reason) for s in result.skipped]


def test_hotwords_file(tmp_path):
    (tmp_path / "hotwords.txt").write_text("\ufeff阿里巴巴\n# comment\n\n FunASR \n", encoding="utf-8")
    assert read_hotwords_file(tmp_path, "hotwords.txt") == ("阿里巴巴", "FunASR")
    assert read_hotwords_file(tmp_path / "nope", "hotwords.txt") == ()
