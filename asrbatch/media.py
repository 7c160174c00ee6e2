"""What counts as a recording, by its name, and the MIME type it is sent with (pure).

One table for the whole client: the scanner and ``asrbatch watch`` decide with
:func:`is_recording_name`, the audio module and every transport label payloads with
:func:`mime_type`.
"""

from __future__ import annotations

from collections.abc import Collection

DEFAULT_EXTENSIONS = (
    "wav", "mp3", "flac", "m4a", "ogg", "aac", "opus", "wma", "amr", "webm", "mp4", "mkv", "mov",
)
"""File extensions taken as recordings by default (any case)."""

TEMP_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".download", "~")
"""Names of files still being downloaded or written by other programs."""

MIME_TYPES = {
    ".wav": "audio/wav",
    ".wave": "audio/wav",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".mp4": "video/mp4",
    ".aac": "audio/aac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".webm": "audio/webm",
    ".wma": "audio/x-ms-wma",
    ".amr": "audio/amr",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
    ".aiff": "audio/aiff",
    ".aif": "audio/aiff",
    ".3gp": "audio/3gpp",
}
DEFAULT_MIME_TYPE = "application/octet-stream"


def extension(name: str) -> str:
    """The lower-case extension of a file name without the dot (``""`` when none)."""
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def mime_type(name: str | object) -> str:
    """MIME type for a file name's extension (``audio/wav``...); octet-stream when unknown."""
    text = str(name)
    slash = text.rfind("/")
    base = text[slash + 1 :]
    dot = base.rfind(".")
    suffix = base[dot:].lower() if dot > 0 else ""
    return MIME_TYPES.get(suffix, DEFAULT_MIME_TYPE)


def is_temporary_name(name: str) -> bool:
    """True for names of files other programs are still writing (``x.mp3.part``, ``~$x``)."""
    lower = name.lower()
    return lower.endswith(TEMP_SUFFIXES) or lower.startswith("~$")


def strip_temporary(name: str) -> str:
    """``call.mp3.part`` -> ``call.mp3``; other names unchanged."""
    lower = name.lower()
    for suffix in TEMP_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def normalise_extensions(extensions: Collection[str]) -> frozenset[str]:
    """Configured extensions as the lower-case, dot-less set :func:`is_recording_name` takes."""
    return frozenset(e.lower().lstrip(".") for e in extensions)


def is_recording_name(name: str, extensions: frozenset[str]) -> bool:
    """True when a file called *name* is a candidate recording.

    *extensions* as given by :func:`normalise_extensions`.  Hidden files and temporary
    names never are.
    """
    if name.startswith(".") or is_temporary_name(name):
        return False
    return extension(name) in extensions
