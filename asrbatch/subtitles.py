"""Subtitles from timed text: cues people can read, rendered as SRT and WebVTT (pure, no I/O).

Segments (utterances with start and end seconds from the recording's start, their text, optional
word timings and an optional channel) become cues that follow :class:`SubtitleRules`:

- at most ``lines`` lines per cue, each at most ``line_length`` display columns. Width is counted
  with ``unicodedata.east_asian_width``: W and F characters (Chinese, Japanese, Korean, full-width
  punctuation, most emoji) are wide and each counts ``line_length / line_length_cjk`` columns, so a
  line holds ``line_length`` Latin characters, ``line_length_cjk`` wide ones, or a mix in that
  proportion (exactly: ``narrow * line_length_cjk + wide * line_length <= line_length *
  line_length_cjk``). Combining marks and format characters take no room and never leave their base
  character;
- at most ``max_cue_seconds`` per cue and, where the audio allows, at least ``min_cue_seconds``: a
  shorter cue is extended into the following gap, never past the next cue of its channel nor past
  the end of the audio;
- within a channel no two cues overlap and start times strictly increase; split channels
  (``channel`` not None) carry a ``[chN] `` label on their first line (it counts toward the line
  length) and may overlap the other channel's cues.

A segment that does not fit one cue is split at word boundaries, preferring the ends of sentences,
then clause punctuation (``. ? ! , ; :`` and ``。？！，、；：``) and, with word timings, pauses; lines
are balanced and a one-word last line is avoided where possible. Text without spaces (Chinese,
Japanese) is split between characters, again preferring punctuation; a single word wider than a
line is cut between characters. Parts are timed by their words' timestamps when the segment has
words, else by each part's share of the segment's display width. Segments of one channel that
overlap are cut where the next one starts; one that would keep less than ``min_cue_seconds`` (or
that starts at the same millisecond) is merged with the next. Empty texts give no cue. Times are
whole milliseconds. No text is lost: only whitespace is normalised (control characters count as
spaces).
"""

from __future__ import annotations

import difflib
import math
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Word:
    """A recognised word (or character, for Chinese) with its timing in seconds."""

    start: float
    end: float
    text: str


class TimedText(Protocol):
    """What :func:`build_cues` reads from a segment (``output.Segment`` is one)."""

    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...

    @property
    def text(self) -> str: ...

    @property
    def words(self) -> Sequence[Word]: ...

    @property
    def channel(self) -> int | None: ...


@dataclass(frozen=True)
class SubtitleRules:
    line_length: int = 42
    line_length_cjk: int = 16
    lines: int = 2
    max_cue_seconds: float = 7.0
    min_cue_seconds: float = 1.0

    def __post_init__(self) -> None:
        problems = check_rules(self)
        if problems:
            raise ValueError("invalid subtitle rules: " + "; ".join(problems))


def check_rules(rules: Any) -> list[str]:
    """Problems with anything that has SubtitleRules' five attributes, as ``key: what is wrong``."""
    problems = []
    if rules.lines < 1:
        problems.append("lines: must be >= 1")
    if rules.line_length < 10:
        problems.append("line_length: must be >= 10")
    if not 4 <= rules.line_length_cjk <= max(rules.line_length, 4):
        problems.append("line_length_cjk: must be >= 4 and at most line_length")
    if not rules.max_cue_seconds > 0:
        problems.append("max_cue_seconds: must be > 0")
    if not 0 <= rules.min_cue_seconds <= rules.max_cue_seconds:
        problems.append("min_cue_seconds: must be >= 0 and at most max_cue_seconds")
    return problems


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]
    channel: int | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def channel_label(channel: int | None) -> str:
    return "" if channel is None else f"[ch{channel + 1}] "


# ----------------------------------------------------------------------------------------------
# Characters

_ZWJ = "\u200d"
_SENTENCE_END = frozenset(".!?…‼⁇⁈⁉。！？｡")
_CLAUSE_END = frozenset(",;:，、；：︐︑︓︔﹐﹑﹔﹕—–")
_QUOTES = frozenset("\"'")

# How good a break after a token is: lower is better.
_SENTENCE, _CLAUSE, _PLAIN, _INSIDE = 0, 1, 2, 3
_CUE_BREAK_COST = (0.0, 0.4, 2.0, 5.0)
_LINE_BREAK_COST = (0.0, 0.05, 0.25, 3.0)
_CUE_COST = 1.0
_SINGLE_TOKEN_CUE_COST = 1.5
_ONE_TOKEN_LAST_LINE_COST = 2.0
_SHORT_CUE_COST = 0.5
_PAUSE_BONUS = 0.8  # per second of silence between words, up to one second


def _attaches(char: str) -> bool:
    """Combining marks, format characters and emoji modifiers stay with the character before."""
    return unicodedata.category(char) in ("Mn", "Mc", "Me", "Cf") or 0x1F3FB <= ord(char) <= 0x1F3FF


def _is_wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def _char_width(char: str, rules: SubtitleRules) -> int:
    """Width in units of 1/(line_length * line_length_cjk) of a line."""
    if unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return rules.line_length if _is_wide(char) else rules.line_length_cjk


def _text_width(text: str, rules: SubtitleRules) -> int:
    return sum(_char_width(c, rules) for c in text)


def _clusters(chunk: str) -> list[str]:
    """*chunk* (no whitespace) cut into characters with their combining marks."""
    clusters: list[str] = []
    for char in chunk:
        if clusters and (_attaches(char) or clusters[-1].endswith(_ZWJ)):
            clusters[-1] += char
        else:
            clusters.append(char)
    return clusters


def _is_opening(cluster: str) -> bool:
    return unicodedata.category(cluster[0]) in ("Ps", "Pi")


def _is_closing(cluster: str) -> bool:
    return unicodedata.category(cluster[0]) in ("Pe", "Pf", "Po", "Pd")


def _break_class(text: str) -> int:
    for char in reversed(text):
        if _attaches(char) or char in _QUOTES or unicodedata.category(char) in ("Pe", "Pf"):
            continue
        if char in _SENTENCE_END:
            return _SENTENCE
        if char in _CLAUSE_END:
            return _CLAUSE
        return _PLAIN
    return _PLAIN


# ----------------------------------------------------------------------------------------------
# Tokens: the units lines are made of


@dataclass
class _Token:
    text: str
    space: bool
    """Whitespace separated it from the token before."""
    width: int
    breaks: int
    """How good a break after it is (_SENTENCE .. _INSIDE)."""
    start: float = 0.0
    end: float = 0.0


def _tokenize(text: str, rules: SubtitleRules, room: int) -> list[_Token]:
    """Words, or single characters of scripts written without spaces, each at most *room* wide."""
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    tokens: list[_Token] = []
    for chunk in text.split():
        pieces: list[list[str]] = []
        for cluster in _clusters(chunk):
            if not pieces:
                pieces.append([cluster])
                continue
            last = pieces[-1]
            if all(_is_opening(c) for c in last) or _is_closing(cluster):
                last.append(cluster)
            elif _is_wide(cluster[0]) or _is_wide(last[-1][0]):
                pieces.append([cluster])
            else:
                last.append(cluster)
        for index, piece in enumerate(pieces):
            space = index == 0 and bool(tokens)
            tokens.extend(_fit(piece, space, rules, room))
    return tokens


def _fit(clusters: list[str], space: bool, rules: SubtitleRules, room: int) -> list[_Token]:
    """One token, or several cut between characters where it is wider than *room*."""
    text = "".join(clusters)
    width = _text_width(text, rules)
    if width <= room:
        return [_Token(text, space, width, _break_class(text))]
    parts: list[list[str]] = [[]]
    used = 0
    for cluster in _narrower(clusters, rules, room):
        w = _text_width(cluster, rules)
        if parts[-1] and used + w > room:
            parts.append([])
            used = 0
        parts[-1].append(cluster)
        used += w
    tokens = []
    for index, part in enumerate(parts):
        piece = "".join(part)
        last = index == len(parts) - 1
        tokens.append(_Token(piece, space and index == 0, _text_width(piece, rules),
                             _break_class(piece) if last else _INSIDE))
    return tokens


def _narrower(clusters: list[str], rules: SubtitleRules, room: int) -> Iterable[str]:
    """*clusters*, with any that is wider than *room* on its own (a long ZWJ sequence) cut up."""
    for cluster in clusters:
        if _text_width(cluster, rules) <= room:
            yield cluster
            continue
        piece = ""
        for char in cluster:
            if piece and _text_width(piece + char, rules) > room:
                yield piece
                piece = ""
            piece += char
        yield piece


# ----------------------------------------------------------------------------------------------
# Timing of tokens


def _time_by_share(tokens: list[_Token], start: float, duration: float) -> None:
    weights = [max(t.width, 1) for t in tokens]
    total = sum(weights)
    done = 0
    for token, weight in zip(tokens, weights, strict=True):
        token.start = start + duration * done / total
        done += weight
        token.end = start + duration * done / total


def _keys(text: str) -> str:
    return "".join(c for c in text.casefold() if c.isalnum())


def _time_by_words(
    tokens: list[_Token], words: Sequence[Word], start: float, end: float, limit: float
) -> bool:
    """Time tokens by aligning their letters with the words' letters; False if nothing matched.

    Word times are kept within ``[start, limit]`` (*limit*: where the next segment begins); text
    that no word matched shares the time between its neighbours (up to *end* at the end).
    """
    token_keys, token_of = [], []
    for index, token in enumerate(tokens):
        for key in _keys(token.text):
            token_keys.append(key)
            token_of.append(index)
    word_keys, word_of = [], []
    for index, word in enumerate(words):
        for key in _keys(word.text):
            word_keys.append(key)
            word_of.append(index)
    matcher = difflib.SequenceMatcher(None, "".join(token_keys), "".join(word_keys), autojunk=False)
    spans: list[tuple[float, float] | None] = [None] * len(tokens)
    for a, b, size in matcher.get_matching_blocks():
        for offset in range(size):
            word = words[word_of[b + offset]]
            w_start = min(max(_finite(word.start, start), start), limit)
            w_end = min(max(_finite(word.end, w_start), w_start), limit)
            index = token_of[a + offset]
            known = spans[index]
            spans[index] = (w_start, w_end) if known is None else (min(known[0], w_start), max(known[1], w_end))
    if all(s is None for s in spans):
        return False
    index = 0
    while index < len(tokens):
        known = spans[index]
        if known is not None:
            tokens[index].start, tokens[index].end = known
            index += 1
            continue
        # A run of tokens no word matched (numbers written out, symbols): share the time between
        # the words around it.
        run_end = index
        while run_end < len(tokens) and spans[run_end] is None:
            run_end += 1
        left = tokens[index - 1].end if index else start
        after = spans[run_end] if run_end < len(tokens) else None
        right = after[0] if after is not None else max(end, left)
        _time_by_share(tokens[index:run_end], left, max(right - left, 0.0))
        index = run_end
    for previous, token in zip(tokens, tokens[1:], strict=False):
        token.start = max(token.start, previous.start)
        token.end = max(token.end, token.start)
    return True


def _finite(value: float, default: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else default


# ----------------------------------------------------------------------------------------------
# Splitting a segment into cues and a cue into lines


PAUSE_BREAK_SECONDS = 0.7
"""A pause at least this long between two timed words always ends a cue."""


def _line_width(tokens: Sequence[_Token], rules: SubtitleRules) -> int:
    space = rules.line_length_cjk
    return sum(t.width for t in tokens) + sum(space for t in tokens[1:] if t.space)


def _split_cues(tokens: list[_Token], rules: SubtitleRules, label: int, by_words: bool) -> list[tuple[int, int]]:
    """Token ranges ``[i, j)``, one per cue, chosen by dynamic programming over break costs."""
    n = len(tokens)
    capacity = rules.line_length * rules.line_length_cjk
    cue_capacity = capacity * rules.lines
    space = rules.line_length_cjk
    best = [0.0] + [math.inf] * n
    back = [0] * (n + 1)
    for i in range(n):
        if best[i] == math.inf:
            continue
        lines, used, empty_line, total, latest = 1, label, True, 0, -math.inf
        for j in range(i, n):
            token = tokens[j]
            if by_words and j > i and token.start - tokens[j - 1].end >= PAUSE_BREAK_SECONDS:
                break  # nobody wants a subtitle to stay up through a pause: it ends the cue
            add = token.width + (space if token.space and not empty_line else 0)
            if empty_line or used + add <= capacity:
                used += add
            else:
                lines += 1
                add = token.width
                used = add
            empty_line = False
            if lines > rules.lines:
                break
            total += add
            latest = max(latest, token.end)
            duration = latest - tokens[i].start
            if j > i and duration > rules.max_cue_seconds:
                break
            cost = best[i] + _CUE_COST + (total / cue_capacity) ** 2
            if j < n - 1:
                penalty = _CUE_BREAK_COST[token.breaks]
                if by_words:
                    penalty -= _PAUSE_BONUS * min(max(tokens[j + 1].start - token.end, 0.0), 1.0)
                cost += max(penalty, 0.0)
            if n > 1:
                if j == i:
                    cost += _SINGLE_TOKEN_CUE_COST
                if rules.min_cue_seconds > 0 and duration < rules.min_cue_seconds:
                    cost += _SHORT_CUE_COST * (1 - duration / rules.min_cue_seconds)
            if cost < best[j + 1]:
                best[j + 1] = cost
                back[j + 1] = i
    ranges = []
    j = n
    while j > 0:
        ranges.append((back[j], j))
        j = back[j]
    return ranges[::-1]


def _lay_out(tokens: list[_Token], rules: SubtitleRules, label: str, label_width: int) -> tuple[str, ...]:
    """The cue's lines: as few as fit, balanced, breaking at punctuation where it can."""
    capacity = rules.line_length * rules.line_length_cjk
    k = len(tokens)
    space = rules.line_length_cjk
    width_before = [0]
    for token in tokens:
        width_before.append(width_before[-1] + token.width)
    spaces_before = [0]
    for token in tokens:
        spaces_before.append(spaces_before[-1] + (space if token.space else 0))

    def width(a: int, b: int) -> int:
        """Width of tokens[a:b] on one line, the label included on the first."""
        w = width_before[b] - width_before[a] + spaces_before[b] - spaces_before[a + 1]
        return w + label_width if a == 0 else w

    # The fewest lines that hold the text, by filling each line greedily.
    needed, a = 0, 0
    while a < k:
        b = a + 1
        while b < k and width(a, b + 1) <= capacity:
            b += 1
        needed += 1
        a = b
    needed = min(needed, rules.lines)
    if needed == 1:
        return (label + _join(tokens),)
    # cost[l][p]: the best way to put tokens[:p] on l lines; start[l][p]: where line l begins.
    cost = [[math.inf] * (k + 1) for _ in range(needed + 1)]
    start = [[0] * (k + 1) for _ in range(needed + 1)]
    cost[0][0] = 0.0
    for line in range(1, needed + 1):
        for p in range(line, k + 1):
            for a in range(p - 1, line - 2, -1):
                w = width(a, p)
                if w > capacity and p - a > 1:
                    break
                if cost[line - 1][a] == math.inf:
                    continue
                c = cost[line - 1][a] + (w / capacity) ** 2
                if p < k:
                    c += _LINE_BREAK_COST[tokens[p - 1].breaks]
                elif p - a == 1 and k > 1:
                    c += _ONE_TOKEN_LAST_LINE_COST
                if c < cost[line][p]:
                    cost[line][p] = c
                    start[line][p] = a
    lines = []
    p = k
    for line in range(needed, 0, -1):
        a = start[line][p]
        lines.append(_join(tokens[a:p]))
        p = a
    lines.reverse()
    lines[0] = label + lines[0]
    return tuple(lines)


def _join(tokens: Sequence[_Token]) -> str:
    return "".join((" " if t.space and i else "") + t.text for i, t in enumerate(tokens))


# ----------------------------------------------------------------------------------------------
# Segments of one channel: overlaps, then cues, then timing in whole milliseconds


@dataclass
class _Span:
    start: float
    end: float
    text: str
    words: tuple[Word, ...]


def _join_texts(first: str, second: str) -> str:
    first, second = first.strip(), second.strip()
    if first and second and _is_wide(first[-1]) and _is_wide(second[0]):
        return first + second
    return f"{first} {second}"


def _resolve_overlaps(spans: list[_Span], rules: SubtitleRules) -> list[_Span]:
    """Cut each span where the next begins; merge it into the next where too little would be left."""
    resolved: list[_Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        if resolved and span.start < resolved[-1].end:
            previous = resolved[-1]
            kept = span.start - previous.start
            if kept < max(rules.min_cue_seconds, 0.001):
                resolved[-1] = _Span(previous.start, max(previous.end, span.end),
                                     _join_texts(previous.text, span.text), previous.words + span.words)
                continue
            previous.end = span.start
        resolved.append(span)
    return resolved


def _channel_cues(
    spans: list[_Span], rules: SubtitleRules, channel: int | None, audio_end: float | None
) -> list[tuple[int, int, tuple[str, ...]]]:
    label = channel_label(channel)
    label_width = _text_width(label, rules)
    capacity = rules.line_length * rules.line_length_cjk
    room = max(capacity - label_width, rules.line_length)
    raw: list[tuple[float, float, tuple[str, ...]]] = []
    for index, span in enumerate(spans):
        tokens = _tokenize(span.text, rules, room)
        if not tokens:
            continue
        window = spans[index + 1].start if index + 1 < len(spans) else audio_end
        limit = window if window is not None else math.inf
        by_words = bool(span.words) and _time_by_words(tokens, span.words, span.start, span.end, limit)
        duration = span.end - span.start
        if not by_words:
            _time_by_share(tokens, span.start, duration)
        ranges = _split_cues(tokens, rules, label_width, by_words)
        if not by_words and duration < len(ranges) * rules.min_cue_seconds:
            # Too short for its cues: spread them evenly into the silence that follows, if any.
            each = max(duration, min(len(ranges) * rules.min_cue_seconds, limit - span.start)) / len(ranges)
            for k, (i, j) in enumerate(ranges):
                _time_by_share(tokens[i:j], span.start + k * each, each)
        for i, j in ranges:
            part = tokens[i:j]
            raw.append((part[0].start, max(t.end for t in part), _lay_out(part, rules, label, label_width)))
    return _settle(raw, rules, audio_end)


def _settle(
    raw: list[tuple[float, float, tuple[str, ...]]], rules: SubtitleRules, audio_end: float | None
) -> list[tuple[int, int, tuple[str, ...]]]:
    """Whole milliseconds with every timing rule enforced on one channel's cues, in order."""
    n = len(raw)
    if not n:
        return []
    audio = None if audio_end is None else math.floor(audio_end * 1000 + 1e-6)
    if audio is not None and audio < n:
        audio = None  # not even a millisecond per cue: the audio's length cannot be right
    starts, ends = [], []
    for start, end in ((round(s * 1000), round(e * 1000)) for s, e, _ in raw):
        if audio is not None:
            start, end = min(start, audio), min(end, audio)
        starts.append(max(start, 0))
        ends.append(end)
    for k in range(1, n):
        starts[k] = max(starts[k], starts[k - 1] + 1)
    if audio is not None and starts[-1] >= audio:
        starts[-1] = audio - 1
        for k in range(n - 2, -1, -1):
            starts[k] = min(starts[k], starts[k + 1] - 1)
    longest = math.floor(rules.max_cue_seconds * 1000 + 1e-6)
    shortest = min(math.ceil(rules.min_cue_seconds * 1000 - 1e-6), longest)
    for k in range(n):
        following = starts[k + 1] if k + 1 < n else audio
        end = max(ends[k], starts[k] + 1)
        if following is not None:
            end = min(end, following)
        end = min(end, starts[k] + longest)
        if end - starts[k] < shortest:
            reach = starts[k] + shortest
            if following is not None:
                reach = min(reach, following)
            end = max(end, reach)
        ends[k] = end
    return [(starts[k], ends[k], raw[k][2]) for k in range(n)]


def build_cues(
    segments: Iterable[TimedText], rules: SubtitleRules | None = None, *, audio_seconds: float | None = None
) -> list[Cue]:
    """Cues for *segments* following *rules* (see the module docstring), ordered by start time.

    *audio_seconds*, when known, bounds every cue (and the extension of short ones).
    """
    rules = rules or SubtitleRules()
    audio_end = None
    if audio_seconds is not None and math.isfinite(audio_seconds):
        audio_end = max(float(audio_seconds), 0.0)
    by_channel: dict[int | None, list[_Span]] = {}
    for segment in segments:
        if not segment.text.strip():
            continue
        start = max(_finite(segment.start, 0.0), 0.0)
        end = max(_finite(segment.end, start), start)
        if audio_end is not None:
            start, end = min(start, audio_end), min(end, audio_end)
        by_channel.setdefault(segment.channel, []).append(
            _Span(start, end, segment.text, tuple(segment.words))
        )
    cues = []
    for channel, spans in by_channel.items():
        for start, end, lines in _channel_cues(_resolve_overlaps(spans, rules), rules, channel, audio_end):
            cues.append(Cue(start / 1000, end / 1000, lines, channel))
    cues.sort(key=lambda c: (c.start, -1 if c.channel is None else c.channel))
    return cues


# ----------------------------------------------------------------------------------------------
# Files


def _timestamp(seconds: float, separator: str) -> str:
    millis = max(0, int(round(seconds * 1000)))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def render_srt(cues: Iterable[Cue]) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm`` times, a blank line between cues."""
    blocks = []
    for number, cue in enumerate(cues, start=1):
        times = f"{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}"
        blocks.append(f"{number}\n{times}\n" + "\n".join(cue.lines) + "\n")
    return "\n".join(blocks)


def _vtt_text(line: str) -> str:
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_vtt(cues: Iterable[Cue]) -> str:
    """WebVTT: the header, ``HH:MM:SS.mmm`` times, cue text with ``& < >`` escaped."""
    lines = ["WEBVTT", ""]
    for cue in cues:
        lines.append(f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}")
        lines.extend(_vtt_text(line) for line in cue.lines)
        lines.append("")
    return "\n".join(lines)
