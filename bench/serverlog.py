"""The reference server's log read back by the benchmarks: when each recognition of a simulate engine ran."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

RECOGNISED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*event=recognize .*audio_s=([\d.]+) .*status=ok")


def recognitions(log_path: Path, began: float, ended: float, seconds_per_audio_second: float) -> list[tuple[float, float]]:
    """(start, end) of each recognition the server logged that ended between *began* and *ended* (+1 s), in order.

    A log line carries its recognition's end; with the simulate engine the start is the end minus
    *seconds_per_audio_second* x its audio.
    """
    spans = []
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = RECOGNISED.match(line)
        if match:
            end = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if began <= end <= ended + 1:
                spans.append((end - seconds_per_audio_second * float(match.group(2)), end))
    return sorted(spans)
