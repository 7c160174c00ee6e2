"""Transcript files: names, rendering (txt, json, srt, vtt) and atomic writes.

Outputs mirror the input tree: ``meetings/monday.mp3`` -> ``meetings/monday.txt``.
When several recordings in one folder share a stem (``call.wav`` and
``call.mp3``), each is named after its full file name instead
(``call.wav.txt``, ``call.mp3.txt``) so no transcript hides another.
In per-channel mode the text files are ``<name>.ch1.txt``, ``<name>.ch2.txt``...

Names longer than the filesystem allows (a 250-byte recording name plus
``.json``) are shortened to fit, keeping their start and adding a hash of the
full name, so every recording the filesystem could store gets its transcripts.

Every file is written through :func:`asrbatch.fsutil.atomic_write` (a short
hidden temporary name, fsync, rename), so a crash leaves either the old file or
the new one, never half.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from asrbatch import fsutil
from asrbatch import subtitles as _subtitles
from asrbatch.errors import FileError
from asrbatch.subtitles import SubtitleRules, Word

LONGEST_SUFFIX = ".ch99.json"
"""The longest ending a base name is given (per-channel JSON); every base leaves room for it."""


class OutputExistsError(FileError):
    """A transcript that asrbatch did not write (or that was edited since) is in the way."""

    permanent = True


class OutputWriteError(FileError):
    """The transcript could not be written (disk full, permissions)."""

    permanent = False


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    channel: int | None = None
    words: tuple[Word, ...] = ()
    """Word (or character) timings, where the server or the pipeline gave them."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Segment:
        words = tuple(Word(**w) for w in data.get("words", ()))
        return cls(**{**data, "words": words})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def shifted(self, offset: float, channel: int | None = None) -> Segment:
        """The segment *offset* seconds later (a chunk's timings placed in the recording)."""
        return Segment(round(self.start + offset, 3), round(self.end + offset, 3), self.text, channel,
                       tuple(Word(round(w.start + offset, 3), round(w.end + offset, 3), w.text) for w in self.words))


@dataclass(frozen=True)
class Transcript:
    """The recognised text of one recording, with what is known about how it was made."""

    source: str
    text: str
    segments: tuple[Segment, ...] = ()
    channels: tuple[int, ...] = ()
    """Channels transcribed separately (empty when the audio was mixed to mono)."""
    audio_seconds: float | None = None
    server_seconds: float | None = None
    attempts: int = 0
    server_version: str | None = None
    hotwords: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.text.strip()

    def channel_text(self, channel: int) -> str:
        return join_texts(s.text for s in self.segments if s.channel == channel)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["segments"] = [asdict(s) for s in self.segments]
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transcript:
        return cls(
            source=data["source"],
            text=data["text"],
            segments=tuple(Segment.from_dict(s) for s in data.get("segments", ())),
            channels=tuple(data.get("channels", ())),
            audio_seconds=data.get("audio_seconds"),
            server_seconds=data.get("server_seconds"),
            attempts=data.get("attempts", 0),
            server_version=data.get("server_version"),
            hotwords=tuple(data.get("hotwords", ())),
            extra=dict(data.get("extra", {})),
        )


def join_texts(parts: Iterable[str]) -> str:
    """Join chunk texts: with a space between Latin words, directly between CJK characters."""
    out = ""
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if out and not (_is_cjk(out[-1]) and _is_cjk(part[0])):
            out += " "
        out += part
    return out


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return 0x3000 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF


# ----------------------------------------------------------------------------------------------
# Names


def output_bases(keys: Iterable[str]) -> dict[str, str]:
    """Map each recording key to its output base path (relative, without the format's extension).

    Deterministic for a given set of keys; see the module docstring for the rule.
    """
    # Plain string operations with PurePosixPath's rules for parent, name and stem: this runs over
    # every recording of the archive on every run, where pathlib costs seconds per 100,000 keys.
    split = {key: _split_key(key) for key in keys}
    by_stem: dict[tuple[str, str], int] = defaultdict(int)
    for parent, _, stem in split.values():
        by_stem[(parent, stem.casefold())] += 1
    bases = {}
    for key, (parent, name, stem) in split.items():
        base = _fit(name if by_stem[(parent, stem.casefold())] > 1 else stem, name)
        bases[key] = f"{parent}/{base}" if parent else base
    return bases


def _fit(base: str, name: str) -> str:
    """*base*, shortened (on a character boundary) with a hash of *name* when the longest
    output name built from it would not fit in one file name."""
    budget = fsutil.NAME_MAX - len(LONGEST_SUFFIX)
    if len(os.fsencode(base)) <= budget:
        return base
    tag = "~" + hashlib.sha1(os.fsencode(name)).hexdigest()[:8]
    room = budget - len(tag)
    while len(os.fsencode(base)) > room:
        base = base[:-1]
    return base.rstrip(" .") + tag


def _split_key(key: str) -> tuple[str, str, str]:
    """``(parent, name, stem)`` of a relative POSIX key; parent is ``""`` at the top."""
    parent, _, name = key.rpartition("/")
    dot = name.rfind(".")
    stem = name[:dot] if 0 < dot < len(name) - 1 else name
    return parent, name, stem


# ----------------------------------------------------------------------------------------------
# Rendering (pure)


def subtitle_rules(config: Any) -> SubtitleRules:
    """The cue rules of a Config's ``output.subtitles`` section."""
    return SubtitleRules(**asdict(config.output.subtitles))


def render(
    transcript: Transcript, base: str, formats: Iterable[str], subtitles: SubtitleRules | None = None
) -> dict[str, str]:
    """Return ``{relative path: content}`` for every requested format.

    *subtitles*: the cue rules of srt and vtt (``output.subtitles``); default: SubtitleRules().
    """
    files: dict[str, str] = {}
    for fmt in formats:
        if fmt == "txt":
            if transcript.channels:
                for channel in transcript.channels:
                    files[f"{base}.ch{channel + 1}.txt"] = _text_file(transcript.channel_text(channel))
            else:
                files[f"{base}.txt"] = _text_file(transcript.text)
        elif fmt == "json":
            files[f"{base}.json"] = render_json(transcript)
        elif fmt == "srt":
            files[f"{base}.srt"] = render_srt(transcript, subtitles)
        elif fmt == "vtt":
            files[f"{base}.vtt"] = render_vtt(transcript, subtitles)
        else:  # pragma: no cover - validated by config
            raise ValueError(f"unknown output format {fmt!r}")
    return files


def _text_file(text: str) -> str:
    text = text.strip()
    return text + "\n" if text else ""


def render_json(transcript: Transcript) -> str:
    data = {
        "source": transcript.source,
        "text": transcript.text,
        "channels": [
            {"channel": c + 1, "text": transcript.channel_text(c)} for c in transcript.channels
        ],
        "segments": [
            {
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                **({"channel": s.channel + 1} if s.channel is not None else {}),
                **({"words": [{"start": round(w.start, 3), "end": round(w.end, 3), "text": w.text}
                              for w in s.words]} if s.words else {}),
            }
            for s in transcript.segments
        ],
        "audio_seconds": transcript.audio_seconds,
        "server_seconds": transcript.server_seconds,
        "attempts": transcript.attempts,
        "server_version": transcript.server_version,
        "hotwords": list(transcript.hotwords),
    }
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def cues(transcript: Transcript, rules: SubtitleRules | None = None) -> list[_subtitles.Cue]:
    """The subtitle cues of *transcript* (see asrbatch.subtitles for the rules)."""
    return _subtitles.build_cues(transcript.segments, rules, audio_seconds=transcript.audio_seconds)


def render_srt(transcript: Transcript, rules: SubtitleRules | None = None) -> str:
    return _subtitles.render_srt(cues(transcript, rules))


def render_vtt(transcript: Transcript, rules: SubtitleRules | None = None) -> str:
    return _subtitles.render_vtt(cues(transcript, rules))


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------------
# Writing


def existing_hash(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError:
        return None


def check_targets(
    output_dir: Path,
    files: Mapping[str, str],
    owned: Mapping[str, str],
    *,
    force: bool,
    source: str,
    any_content: bool = False,
) -> None:
    """Refuse to replace a file we did not write (or that was edited since), unless *force*.

    *owned* maps relative paths to the hashes asrbatch recorded for them.  A file already
    holding exactly what would be written is fine, unless *any_content* (the content is not
    known yet: ``--dry-run``).
    """
    if force:
        return
    for rel in files:
        current = existing_hash(output_dir / rel)
        if current is None or current == owned.get(rel):
            continue
        if not any_content and current == content_hash(files[rel]):
            continue
        raise OutputExistsError(
            f"{output_dir / rel} already exists and was not written by asrbatch (or was edited since)",
            path=source,
            hint="move it away or rerun with --force to overwrite it",
        )


def write_files(output_dir: Path, files: Mapping[str, str], *, source: str) -> dict[str, str]:
    """Write every file atomically; return ``{relative path: sha256}``.

    Raises :class:`~asrbatch.errors.OperatorError` when the machine is in the way (no
    space, permissions, a file where a folder should be) and :class:`OutputWriteError`
    for any other failure to write.
    """
    hashes = {}
    for rel, content in files.items():
        target = output_dir / rel
        try:
            fsutil.atomic_write(target, content)
        except OSError as exc:
            problem = fsutil.operator_error(exc, target, "cannot write the transcript")
            if problem is not None:
                raise problem from None
            raise OutputWriteError(
                f"cannot write {target}: {exc.strerror or exc}",
                path=source,
                hint="check the output folder",
            ) from None
        hashes[rel] = content_hash(content)
    return hashes


def remove_leftovers(output_dir: Path, rels: Iterable[str]) -> int:
    """Remove temporary files a killed run may have left for these outputs; never raises."""
    return sum(fsutil.remove_temporary(output_dir / rel) for rel in rels)
