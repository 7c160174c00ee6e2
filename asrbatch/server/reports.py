"""The Markdown the WebUI shows beside a transcript, and its system-information page."""

from __future__ import annotations

from dataclasses import dataclass

from asrbatch.server.engines.base import Engine
from asrbatch.server.service import BatchItem, Counters, Recognition


@dataclass(frozen=True)
class ServerFacts:
    """What the system-information tab reports besides the counters."""

    engine: str
    model: str
    device: str
    python_version: str
    gradio_version: str
    concurrency: int
    max_file_size: int | None


def describe_engine(engine: Engine) -> str:
    """``sphinx (model en-us, device cpu)``."""
    return f"{engine.name} (model {engine.model}, device {engine.device})"


def describe_hotwords(count: int, engine: Engine) -> str:
    """How the hotwords of a request were used."""
    if count == 0:
        return "none"
    if engine.supports_hotwords:
        return f"{count} used"
    return f"{count} received, ignored (the {engine.name} engine has no hotword support)"


def format_duration(seconds: float) -> str:
    """``1:02:03`` for an uptime."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def format_size(size: int | None) -> str:
    """``200 MiB``, or ``no limit``."""
    if size is None:
        return "no limit"
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} B"


def recognition_details(recognition: Recognition, engine: Engine) -> str:
    """The short report shown under one transcript."""
    lines = [
        "**Recognition details**",
        "",
        f"- Audio duration: {recognition.audio_seconds:.2f} s",
        f"- Processing time: {recognition.processing_seconds:.2f} s",
        f"- Speed: {recognition.speed:.1f}x real time",
        f"- Engine: {describe_engine(engine)}",
        f"- Hotwords: {describe_hotwords(recognition.hotword_count, engine)}",
    ]
    if recognition.result.segments:
        lines.append(f"- Segments: {len(recognition.result.segments)}")
    return "\n".join(lines)


def batch_text(items: list[BatchItem]) -> str:
    """All transcripts of a batch, one block per file."""
    blocks = []
    for item in items:
        body = item.recognition.text if item.recognition else f"[error: {item.error}]"
        blocks.append(f"{item.name}: {body}")
    return "\n\n".join(blocks)


def batch_details(items: list[BatchItem], engine: Engine) -> str:
    """A table with one row per file of a batch."""
    done = [item.recognition for item in items if item.recognition]
    audio = sum(r.audio_seconds for r in done)
    processing = sum(r.processing_seconds for r in done)
    lines = [
        "**Batch details**",
        "",
        f"- Files: {len(items)} ({len(done)} recognised, {len(items) - len(done)} failed)",
        f"- Audio duration: {audio:.2f} s",
        f"- Processing time: {processing:.2f} s",
        f"- Engine: {describe_engine(engine)}",
        "",
        "| File | Duration (s) | Processing (s) | Status |",
        "| --- | --- | --- | --- |",
    ]
    for item in items:
        if item.recognition:
            r = item.recognition
            row = f"| {item.name} | {r.audio_seconds:.2f} | {r.processing_seconds:.2f} | ok |"
        else:
            row = f"| {item.name} | - | - | {item.error} |"
        lines.append(row)
    return "\n".join(lines)


def system_info(facts: ServerFacts, counters: Counters) -> str:
    """The system-information tab: one ``- Key: value`` line per fact, easy to read or parse."""
    return "\n".join(
        [
            "**System information**",
            "",
            f"- Engine: {facts.engine}",
            f"- Model: {facts.model}",
            f"- Device: {facts.device}",
            f"- Python: {facts.python_version}",
            f"- Gradio: {facts.gradio_version}",
            f"- Uptime: {format_duration(counters.uptime_seconds)} ({counters.uptime_seconds:.0f} s)",
            f"- Requests served: {counters.requests_served}",
            f"- Requests failed: {counters.requests_failed}",
            f"- Files recognised: {counters.files_recognised}",
            f"- Audio processed: {counters.audio_seconds:.1f} s",
            f"- Engine busy: {counters.busy_seconds:.3f} s",
            f"- Engine runs at once, most: {counters.peak_running}",
            f"- Peak requests in progress: {counters.peak_in_progress}",
            f"- Concurrency limit: {facts.concurrency}",
            f"- Max file size: {format_size(facts.max_file_size)}",
        ]
    )
