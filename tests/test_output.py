import json

import pytest

from asrbatch.fsutil import atomic_write
from asrbatch.output import (
    OutputExistsError,
    Segment,
    Transcript,
    check_targets,
    content_hash,
    join_texts,
    output_bases,
    render,
    write_files,
)
from asrbatch.subtitles import SubtitleRules, Word

pytestmark = pytest.mark.unit


def test_output_bases_mirror_tree_and_disambiguate_shared_stems():
    bases = output_bases(["a/call.wav", "a/call.MP3", "a/other.wav", "b/call.wav", "top.flac"])
    assert bases == {
        "a/call.wav": "a/call.wav",
        "a/call.MP3": "a/call.MP3",
        "a/other.wav": "a/other",
        "b/call.wav": "b/call",
        "top.flac": "top",
    }


def test_join_texts_spaces_latin_not_cjk():
    assert join_texts(["hello", " world ", ""]) == "hello world"
    assert join_texts(["今天", "天气好"]) == "今天天气好"


def transcript(**kw):
    base = dict(source="a.wav", text="one two three", segments=(Segment(0, 1.5, "one two"), Segment(1.5, 3.25, "three")),
                audio_seconds=3.25)
    base.update(kw)
    return Transcript(**base)


def test_render_all_formats():
    files = render(transcript(), "x/a", ["txt", "json", "srt", "vtt"])
    assert files["x/a.txt"] == "one two three\n"
    data = json.loads(files["x/a.json"])
    assert data["text"] == "one two three" and data["segments"][1] == {"start": 1.5, "end": 3.25, "text": "three"}
    assert files["x/a.srt"].startswith("1\n00:00:00,000 --> 00:00:01,500\none two\n\n2\n00:00:01,500 --> 00:00:03,250\nthree")
    assert files["x/a.vtt"].startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\none two\n")


def test_empty_transcript_is_an_empty_file():
    assert render(transcript(text="", segments=()), "a", ["txt"]) == {"a.txt": ""}


def test_channels_are_labelled():
    t = transcript(text="[ch1] hi\n[ch2] yo", channels=(0, 1),
                   segments=(Segment(0, 1, "hi", 0), Segment(0.5, 2, "yo", 1)))
    files = render(t, "c", ["txt", "srt"])
    assert files["c.ch1.txt"] == "hi\n" and files["c.ch2.txt"] == "yo\n"
    assert "[ch2] yo" in files["c.srt"]


def test_atomic_write_leaves_no_part_file(tmp_path):
    target = tmp_path / "d" / "a.txt"
    atomic_write(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    assert list(target.parent.iterdir()) == [target]


def test_foreign_or_edited_transcript_is_not_overwritten(tmp_path):
    (tmp_path / "a.txt").write_text("hand made\n")
    files = {"a.txt": "machine\n"}
    with pytest.raises(OutputExistsError, match="--force"):
        check_targets(tmp_path, files, {}, force=False, source="a.wav")
    check_targets(tmp_path, files, {"a.txt": content_hash("hand made\n")}, force=False, source="a.wav")
    check_targets(tmp_path, files, {}, force=True, source="a.wav")
    assert write_files(tmp_path, files, source="a.wav") == {"a.txt": content_hash("machine\n")}


def test_word_timings_reach_the_json_and_survive_the_ledger_round_trip():
    words = (Word(0.0, 0.4, "one"), Word(0.5, 1.2, "two"))
    t = transcript(segments=(Segment(0, 1.5, "one two", words=words), Segment(1.5, 3.25, "three")))
    data = json.loads(render(t, "a", ["json"])["a.json"])
    assert data["segments"][0]["words"] == [{"start": 0.0, "end": 0.4, "text": "one"},
                                           {"start": 0.5, "end": 1.2, "text": "two"}]
    assert "words" not in data["segments"][1]
    assert Transcript.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    # A result stored before segments had words.
    old = t.to_dict()
    for segment in old["segments"]:
        del segment["words"]
    assert Transcript.from_dict(old).segments == (Segment(0, 1.5, "one two"), Segment(1.5, 3.25, "three"))


def test_subtitle_rules_are_passed_to_srt_and_vtt():
    text = "a sentence long enough to need two lines of subtitles when lines are short"
    t = transcript(text=text, segments=(Segment(0, 4, text),), audio_seconds=4)
    default = render(t, "a", ["srt"])["a.srt"]
    narrow = render(t, "a", ["srt", "vtt"], subtitles=SubtitleRules(line_length=20, lines=1))
    assert default.count("-->") == 1
    assert narrow["a.srt"].count("-->") == narrow["a.vtt"].count("-->") >= 4
    assert all(len(line) <= 20 for line in narrow["a.srt"].splitlines() if "-->" not in line)
