"""Subtitle cues from timed text: every rule of SubtitleRules, and files real parsers read."""

from __future__ import annotations

import html
import itertools
import math
import re
import unicodedata
from dataclasses import asdict, fields
from datetime import timedelta

import pytest
import srt
import webvtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asrbatch.config import SubtitlesConfig, load_config
from asrbatch.errors import ConfigError
from asrbatch.output import Segment, Transcript, render
from asrbatch.subtitles import Cue, SubtitleRules, Word, build_cues, render_srt, render_vtt

pytestmark = pytest.mark.unit

RULES = SubtitleRules()
LABEL = re.compile(r"^\[ch\d+\] ")


def columns(line: str) -> tuple[int, int]:
    """(narrow, wide) characters of *line* as a viewer sees it: marks and format characters take no room."""
    narrow = wide = 0
    for char in line:
        if unicodedata.category(char) in ("Mn", "Me", "Cf"):
            continue
        if unicodedata.east_asian_width(char) in ("W", "F"):
            wide += 1
        else:
            narrow += 1
    return narrow, wide


def fits(line: str, rules: SubtitleRules) -> bool:
    narrow, wide = columns(line)
    return narrow * rules.line_length_cjk + wide * rules.line_length <= rules.line_length * rules.line_length_cjk


def squash(text: str) -> str:
    return "".join(text.split())


def cue_text(cue: Cue) -> str:
    """The recognised text of a cue, without its channel label."""
    return " ".join([LABEL.sub("", cue.lines[0]), *cue.lines[1:]])


def assert_rules_hold(cues: list[Cue], segments: list[Segment], rules: SubtitleRules,
                      audio_seconds: float | None = None) -> None:
    for cue in cues:
        assert 1 <= len(cue.lines) <= rules.lines, cue
        for line in cue.lines:
            assert line.strip() == line and line, cue
            assert fits(line, rules), (line, columns(line))
            # A combining mark never leaves its letter (unless the text itself begins a word with one).
            assert not unicodedata.combining(line[0]) or any(
                re.search(r"(^|\s)" + re.escape(line[0]), s.text) for s in segments), cue
        label = "" if cue.channel is None else f"[ch{cue.channel + 1}] "
        assert cue.lines[0].startswith(label)
        assert cue.start < cue.end, cue
        assert cue.end - cue.start <= rules.max_cue_seconds + 1e-9, cue
        assert round(cue.start * 1000) == pytest.approx(cue.start * 1000, abs=1e-6)
        assert round(cue.end * 1000) == pytest.approx(cue.end * 1000, abs=1e-6)
    assert [(c.start, -1 if c.channel is None else c.channel) for c in cues] == sorted(
        (c.start, -1 if c.channel is None else c.channel) for c in cues
    )
    for channel in {c.channel for c in cues} | {s.channel for s in segments}:
        mine = [c for c in cues if c.channel == channel]
        for cue, following in itertools.pairwise(mine):
            assert cue.start < following.start
            assert cue.end <= following.start, (cue, following)
        # The audio's end (in whole milliseconds) bounds the cues unless it leaves less than a
        # millisecond per cue.
        audio_end = None if audio_seconds is None else math.floor(audio_seconds * 1000 + 1e-6) / 1000
        if audio_end is not None and len(mine) > audio_end * 1000:
            audio_end = None
        if audio_end is not None:
            assert all(c.end <= audio_end + 1e-9 for c in mine)
        for index, cue in enumerate(mine):
            shortest = min(rules.min_cue_seconds, math.floor(rules.max_cue_seconds * 1000) / 1000)
            if cue.end - cue.start >= shortest - 1e-9:
                continue
            # Shorter only where the next cue or the audio's end left no room.
            limits = [mine[index + 1].start] if index + 1 < len(mine) else []
            if audio_end is not None:
                limits.append(audio_end)
            assert limits and cue.end == pytest.approx(min(limits), abs=1e-9), cue
        spoken = sorted((s for s in segments if s.channel == channel), key=lambda s: max(s.start, 0.0))
        assert squash("".join(cue_text(c) for c in mine)) == squash("".join(s.text for s in spoken))


Parsed = list[tuple[int, int, str]]
MS = timedelta(milliseconds=1)


def parse_files(srt_file: str, vtt_file: str) -> tuple[Parsed, Parsed]:
    """Both files as the `srt` and `webvtt-py` parsers read them: (start ms, end ms, text) per cue."""
    from_srt = [(s.start // MS, s.end // MS, s.content) for s in srt.parse(srt_file)]
    from_vtt = [(c.start_in_seconds * 1000 + int(c.start[-3:]), c.end_in_seconds * 1000 + int(c.end[-3:]),
                 html.unescape(c.text)) for c in webvtt.from_string(vtt_file)]
    return from_srt, from_vtt


def expected(cues: list[Cue]) -> Parsed:
    return [(round(c.start * 1000), round(c.end * 1000), "\n".join(c.lines)) for c in cues]


def parsed(cues: list[Cue]) -> tuple[Parsed, Parsed]:
    return parse_files(render_srt(cues), render_vtt(cues))


# ----------------------------------------------------------------------------------------------
# Splitting


def test_long_english_sentence_becomes_short_two_line_cues_cut_at_punctuation():
    text = ("Good morning everyone, and thank you for coming to the quarterly review of our sales figures, "
            "which have been better than expected in every region except the north, where the new shop "
            "opened late. We will start with the numbers.")
    segments = [Segment(2.0, 17.0, text)]
    cues = build_cues(segments, RULES)
    assert_rules_hold(cues, segments, RULES)
    assert len(cues) >= 3
    assert all(len(c.lines) <= 2 and all(len(line) <= 42 for line in c.lines) for c in cues)
    assert all(c.end - c.start <= 7.0 for c in cues)
    assert cues[0].start == 2.0 and cues[-1].end == 17.0
    # Every cue but the last ends a clause: the sentence offers enough commas.
    assert all(c.lines[-1][-1] in ",." for c in cues)
    assert cues[-1].lines[-1].endswith("with the numbers.")


def test_lines_are_balanced_without_a_one_word_last_line():
    text = "Please remember to send me the signed contract before Friday afternoon"
    cues = build_cues([Segment(0.0, 4.0, text)], RULES)
    assert len(cues) == 1 and len(cues[0].lines) == 2
    first, second = cues[0].lines
    assert len(second.split()) > 1
    assert abs(len(first) - len(second)) <= 12


def test_chinese_lines_hold_at_most_16_wide_characters_and_break_at_punctuation():
    text = ("今天的会议主要讨论三个问题，第一是明年的预算安排，第二是新产品的发布时间，第三是人员招聘计划。"
            "请大家在会前准备好材料，会后把意见发给我。")
    segments = [Segment(0.0, 16.0, text)]
    cues = build_cues(segments, RULES)
    assert_rules_hold(cues, segments, RULES)
    lines = [line for c in cues for line in c.lines]
    assert all(len(line) <= 16 for line in lines)
    assert all(line[-1] in "，。" for line in lines), lines
    assert lines[0] == "今天的会议主要讨论三个问题，"
    assert "".join(lines) == text


def test_chinese_without_punctuation_is_cut_between_characters():
    text = "我们今天下午三点在第二会议室开会讨论明年的市场推广方案和预算分配以及人员安排的具体细节"
    segments = [Segment(10.0, 20.0, text)]
    cues = build_cues(segments, RULES)
    assert_rules_hold(cues, segments, RULES)
    assert len(cues) >= 2
    assert "".join("".join(c.lines) for c in cues) == text


def test_mixed_lines_count_a_wide_character_as_line_length_over_line_length_cjk_columns():
    rules = SubtitleRules(lines=2)
    # 10 narrow columns (9 letters and a space) and 12 wide characters: 10 + 12 * 42/16 = 41.5 columns.
    fits_one = "Zoomcalls 一二三四五六七八九十一二"
    assert build_cues([Segment(0.0, 3.0, fits_one)], rules)[0].lines == (fits_one,)
    # One wide character more is 44.1 columns: two lines.
    too_wide = fits_one + "三"
    cues = build_cues([Segment(0.0, 3.0, too_wide)], rules)
    assert len(cues) == 1 and len(cues[0].lines) == 2
    assert all(fits(line, rules) for line in cues[0].lines)
    assert squash("".join(cues[0].lines)) == squash(too_wide)


def test_a_word_wider_than_a_line_is_cut_between_characters():
    url = "https://example.com/" + "a" * 70
    segments = [Segment(0.0, 6.0, f"See {url} for details.")]
    cues = build_cues(segments, RULES)
    assert_rules_hold(cues, segments, RULES)
    assert url in "".join(squash(cue_text(c)) for c in cues)


def test_rules_of_the_configuration_are_followed():
    rules = SubtitleRules(line_length=20, lines=1, max_cue_seconds=3.0, min_cue_seconds=0.5)
    text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    segments = [Segment(0.0, 9.0, text)]
    cues = build_cues(segments, rules)
    assert_rules_hold(cues, segments, rules)
    assert all(len(c.lines) == 1 and len(c.lines[0]) <= 20 and c.end - c.start <= 3.0 for c in cues)


# ----------------------------------------------------------------------------------------------
# Timing


WORDS_TEXT = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
FAST_THEN_SLOW = (
    # Five words in the first second, a pause, five words spread over the last four seconds.
    Word(0.0, 0.2, "alpha"), Word(0.2, 0.4, "beta"), Word(0.4, 0.6, "gamma"), Word(0.6, 0.8, "delta"),
    Word(0.8, 1.0, "epsilon"), Word(6.0, 6.8, "zeta"), Word(6.8, 7.6, "eta"), Word(7.6, 8.4, "theta"),
    Word(8.4, 9.2, "iota"), Word(9.2, 10.0, "kappa"),
)


def test_parts_are_timed_by_their_words():
    rules = SubtitleRules(line_length=32, lines=1)
    segments = [Segment(0.0, 10.0, WORDS_TEXT, words=FAST_THEN_SLOW)]
    cues = build_cues(segments, rules)
    assert_rules_hold(cues, segments, rules)
    # The pause after "epsilon" is where the cue ends; the cues follow the words' own times.
    assert [(c.start, c.end, c.lines) for c in cues] == [
        (0.0, 1.0, ("alpha beta gamma delta epsilon",)),
        (6.0, 10.0, ("zeta eta theta iota kappa",)),
    ]


def test_without_words_parts_are_timed_by_their_share_of_the_text():
    rules = SubtitleRules(line_length=32, lines=1)
    segments = [Segment(0.0, 10.0, WORDS_TEXT)]
    cues = build_cues(segments, rules)
    assert_rules_hold(cues, segments, rules)
    assert len(cues) == 2 and cues[0].start == 0.0 and cues[-1].end == 10.0
    assert cues[0].end == cues[1].start
    first = len(squash(cue_text(cues[0])))
    assert cues[0].end == pytest.approx(10.0 * first / len(squash(WORDS_TEXT)), abs=0.001)


def test_words_are_matched_to_text_with_punctuation_and_chinese_characters():
    text = "你好，欢迎参加会议。"
    words = tuple(Word(1.0 + 0.3 * i, 1.3 + 0.3 * i, char) for i, char in enumerate("你好欢迎参加会议"))
    rules = SubtitleRules(line_length_cjk=4, line_length=10)
    segments = [Segment(1.0, 3.4, text, words=words)]
    cues = build_cues(segments, rules, audio_seconds=10.0)
    assert_rules_hold(cues, segments, rules, 10.0)
    assert cues[0].lines[0] == "你好，"
    # 你好 were said from 1.0 to 1.6; the cue is extended to the next cue's start at 1.6 at most.
    assert cues[0].start == 1.0 and cues[0].end == pytest.approx(1.6)
    assert cues[-1].end == pytest.approx(3.4)


def test_a_short_cue_is_extended_to_min_duration_but_not_past_the_next_cue_or_the_audio():
    segments = [
        Segment(1.0, 1.2, "Hi."),            # next cue starts 0.4 s later
        Segment(1.6, 3.0, "How are you?"),
        Segment(10.0, 10.2, "Fine."),        # a long silence follows
        Segment(20.0, 20.3, "Bye."),         # the audio ends 0.2 s later
    ]
    cues = build_cues(segments, RULES, audio_seconds=20.5)
    assert_rules_hold(cues, segments, RULES, 20.5)
    assert [(c.start, c.end) for c in cues] == [(1.0, 1.6), (1.6, 3.0), (10.0, 11.0), (20.0, 20.5)]


def test_sparse_text_stays_on_screen_at_most_max_cue_seconds():
    cues = build_cues([Segment(30.0, 60.0, "Yes.")], RULES, audio_seconds=60.0)
    assert [(c.start, c.end, c.lines) for c in cues] == [(30.0, 37.0, ("Yes.",))]


def test_a_segment_of_zero_duration_gets_a_readable_cue():
    segments = [Segment(5.0, 5.0, "Okay."), Segment(8.0, 8.0, "Right.")]
    cues = build_cues(segments, RULES, audio_seconds=8.5)
    assert_rules_hold(cues, segments, RULES, 8.5)
    assert [(c.start, c.end) for c in cues] == [(5.0, 6.0), (8.0, 8.5)]
    # A long text said "at one instant" is spread over the silence after it, a second per cue.
    long_text = "This sentence is far too long to fit in a single cue of two lines, so it is split in parts."
    segments = [Segment(5.0, 5.0, long_text)]
    cues = build_cues(segments, RULES, audio_seconds=30.0)
    assert_rules_hold(cues, segments, RULES, 30.0)
    assert [(c.start, c.end) for c in cues] == [(5.0, 6.0), (6.0, 7.0)]


def test_overlapping_segments_do_not_overlap_as_cues():
    segments = [
        Segment(0.0, 5.0, "The first chunk ends after the second begins."),
        Segment(4.0, 8.0, "The second chunk starts in the overlap."),
        Segment(10.0, 12.0, "Two utterances said"),
        Segment(10.0, 11.0, "at the same moment."),
        Segment(20.0, 30.0, "A long one that holds"),
        Segment(22.0, 23.0, "a short one inside it."),
    ]
    cues = build_cues(segments, RULES)
    assert_rules_hold(cues, segments, RULES)
    assert cues[0].end == 4.0 and cues[1].start == 4.0
    # Same start: one cue with both texts, in their order.
    same = [c for c in cues if 10.0 <= c.start < 12.0]
    assert [cue_text(c) for c in same] == ["Two utterances said at the same moment."]
    nested = [c for c in cues if c.start >= 20.0]
    assert [(c.start, c.end) for c in nested] == [(20.0, 22.0), (22.0, 23.0)]


def test_times_come_out_in_whole_milliseconds_with_strictly_increasing_starts():
    segments = [Segment(1.0, 1.0002, "a"), Segment(1.0001, 1.0003, "b"), Segment(1.0004, 1.0005, "c")]
    cues = build_cues(segments, RULES)
    assert_rules_hold(cues, segments, RULES)
    starts = [c.start for c in cues]
    assert starts == sorted(set(starts))


# ----------------------------------------------------------------------------------------------
# Channels, empty text, unicode


def test_channel_labels_count_toward_the_line_and_channels_may_overlap_each_other():
    segments = [
        Segment(0.0, 3.0, "Hello, this is the support line, how can I help?", channel=0),
        Segment(1.5, 4.0, "I have a question about my bill.", channel=1),
        Segment(3.5, 5.0, "Sure.", channel=0),
    ]
    rules = SubtitleRules(lines=2)
    cues = build_cues(segments, rules)
    assert_rules_hold(cues, segments, rules)
    agent = [c for c in cues if c.channel == 0]
    customer = [c for c in cues if c.channel == 1]
    assert agent[0].lines == ("[ch1] Hello, this is the support line,", "how can I help?")
    assert customer[0].lines == ("[ch2] I have a question about my bill.",)
    # Two speakers at once: the customer's cue overlaps the agent's, the agent's own cues do not.
    assert customer[0].start < agent[0].end
    assert agent[0].end <= agent[1].start == 3.5


def test_empty_texts_give_no_cue():
    assert build_cues([Segment(0.0, 2.0, ""), Segment(2.0, 3.0, "  \n "), Segment(3.0, 4.0, "\u3000")], RULES) == []
    assert render_srt([]) == "" and render_vtt([]) == "WEBVTT\n"


def test_combining_characters_take_no_room_and_stay_with_their_letter():
    decomposed = unicodedata.normalize("NFD", "Café crème brûlée à la française, déjà")
    assert len(decomposed) > 42 and sum(columns(decomposed)) <= 42
    cues = build_cues([Segment(0.0, 3.0, decomposed)], RULES)
    assert [c.lines for c in cues] == [(decomposed,)]
    long_text = unicodedata.normalize("NFD", "Ça été très élégant, " * 6)
    segments = [Segment(0.0, 12.0, long_text)]
    cues = build_cues(segments, RULES)
    assert_rules_hold(cues, segments, RULES)
    assert all(unicodedata.normalize("NFC", line) == unicodedata.normalize("NFC", line).strip() for c in cues
               for line in c.lines)


# ----------------------------------------------------------------------------------------------
# Files


def test_srt_and_vtt_are_valid_files_that_parse_to_the_same_cues():
    segments = [
        Segment(0.5, 9.0, "Tom & Jerry <live> said: the price is > 5 euros, isn't it? Yes, it is.", channel=0),
        Segment(2.0, 6.5, "会议将在下午三点开始，请大家准时参加。", channel=1),
        Segment(3700.25, 3702.0, "An hour later.", channel=0),
    ]
    cues = build_cues(segments, RULES, audio_seconds=3705.0)
    assert_rules_hold(cues, segments, RULES, 3705.0)
    vtt = render_vtt(cues)
    assert vtt.startswith("WEBVTT\n\n00:00:00.500 --> ")
    assert "01:01:40.250 --> 01:01:42.000" in vtt and "01:01:40,250 --> 01:01:42,000" in render_srt(cues)
    assert "&amp;" in vtt and "&lt;live&gt;" in vtt
    from_srt, from_vtt = parsed(cues)
    assert from_srt == from_vtt == expected(cues)


def test_transcript_subtitles_follow_the_configured_rules(tmp_path):
    # A 6-minute recording sent in chunks of 36 s, each with ten sentences: no more 36-s cues of
    # 500-character lines.
    sentence = "This is sentence number {} of the recording, spoken at an ordinary pace."
    segments = tuple(
        Segment(36.0 * c, 36.0 * (c + 1), " ".join(sentence.format(10 * c + i + 1) for i in range(10)))
        for c in range(10)
    )
    transcript = Transcript(source="a.wav", text=" ".join(s.text for s in segments), segments=segments,
                            audio_seconds=360.0)
    files = render(transcript, "a", ["srt", "vtt"])
    from_srt, from_vtt = parse_files(files["a.srt"], files["a.vtt"])
    assert from_srt == from_vtt
    assert len(from_srt) >= 100
    assert all(end - start <= 7000 for start, end, _ in from_srt)
    assert all(len(text.split("\n")) <= 2 and all(len(line) <= 42 for line in text.split("\n"))
               for _, _, text in from_srt)
    assert squash("".join(text for _, _, text in from_srt)) == squash(transcript.text)
    assert from_srt[-1][1] == 360_000
    rules = SubtitleRules(line_length=30, lines=1, max_cue_seconds=4.0)
    one_line = list(srt.parse(render(transcript, "a", ["srt"], subtitles=rules)["a.srt"]))
    assert all("\n" not in s.content and len(s.content) <= 30 for s in one_line)
    assert all((s.end - s.start).total_seconds() <= 4.0 for s in one_line)


# ----------------------------------------------------------------------------------------------
# Configuration


def test_output_subtitles_section_matches_the_rules(tmp_path):
    assert [(f.name, f.default) for f in fields(SubtitlesConfig)] == [
        (f.name, f.default) for f in fields(SubtitleRules)
    ]
    path = tmp_path / "c.yaml"
    path.write_text("output:\n  formats: [srt]\n  subtitles:\n    line_length: 37\n    lines: 3\n")
    section = load_config(path, env={}).output.subtitles
    assert SubtitleRules(**asdict(section)) == SubtitleRules(line_length=37, lines=3)


def test_bad_subtitle_settings_are_reported_with_their_key_paths(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "output:\n  subtitles:\n    lines: 0\n    line_length: 5\n    line_length_cjk: 2\n"
        "    max_cue_seconds: 0\n    min_cue_seconds: -1\n    colour: red\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    problems = "\n".join(info.value.problems)
    for expected in ("output.subtitles.lines: must be >= 1", "output.subtitles.line_length: must be >= 10",
                     "output.subtitles.line_length_cjk: must be >= 4", "output.subtitles.max_cue_seconds: must be > 0",
                     "output.subtitles.min_cue_seconds: must be >= 0", "output.subtitles.colour: unknown key"):
        assert expected in problems
    with pytest.raises(ValueError, match="lines: must be >= 1"):
        SubtitleRules(lines=0)


# ----------------------------------------------------------------------------------------------
# Every rule, for arbitrary input

ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "     ,.?!;:'\"()&<>-"
    "今天会议讨论预算问题我们你好世界。，、；？！「」"
    "こんにちはカタカナ한국어안녕하세요"
    "\u0301\u0308\u0327"  # combining accents
    "éüñçß🙂\u200d\u200bＡＢ１"
)

texts = st.one_of(
    st.text(alphabet=ALPHABET, max_size=160),
    st.lists(st.text(alphabet=ALPHABET.replace(" ", ""), min_size=1, max_size=14), max_size=40).map(" ".join),
)


@st.composite
def segment_lists(draw: st.DrawFn) -> tuple[list[Segment], float | None]:
    split = draw(st.booleans())
    segments = []
    for _ in range(draw(st.integers(0, 8))):
        start = draw(st.floats(0, 120, allow_nan=False).map(lambda x: round(x, 4)))
        duration = draw(st.one_of(st.just(0.0), st.floats(0, 40, allow_nan=False)))
        text = draw(texts)
        words: tuple[Word, ...] = ()
        if draw(st.booleans()):
            pieces = text.split()
            times = sorted(draw(st.lists(st.floats(start, start + duration + 1, allow_nan=False),
                                         min_size=2 * len(pieces), max_size=2 * len(pieces))))
            # Some words missing, or (last choice) words that do not match the text at all.
            words = tuple(Word(times[2 * i], times[2 * i + 1], p) for i, p in enumerate(pieces)
                          if draw(st.booleans()) or i == 0)
            if draw(st.booleans()):
                words = tuple(Word(w.start, w.end, draw(texts)) for w in words)
        channel = draw(st.integers(0, 1)) if split else None
        segments.append(Segment(start, start + duration, text, channel, words))
    audio = None
    if draw(st.booleans()):
        latest = max((s.end for s in segments), default=0.0)
        audio = latest + draw(st.floats(0, 10, allow_nan=False))
    return segments, audio


@st.composite
def rule_sets(draw: st.DrawFn) -> SubtitleRules:
    line_length = draw(st.integers(10, 60))
    max_cue = draw(st.floats(1.0, 10.0, allow_nan=False))
    return SubtitleRules(
        line_length=line_length,
        line_length_cjk=draw(st.integers(4, line_length)),
        lines=draw(st.integers(1, 3)),
        max_cue_seconds=max_cue,
        min_cue_seconds=draw(st.floats(0.0, max_cue, allow_nan=False)),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segment_lists(), st.one_of(st.just(RULES), rule_sets()))
def test_every_rule_holds_and_no_text_is_lost(case, rules):
    segments, audio = case
    cues = build_cues(segments, rules, audio_seconds=audio)
    assert_rules_hold(cues, segments, rules, audio)
    from_srt, from_vtt = parsed(cues)
    assert from_srt == from_vtt == expected(cues)
