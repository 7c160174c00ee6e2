"""What the ledger knows, shaped for people: ``asrbatch status`` (text or JSON)."""

from __future__ import annotations

from typing import Any

from asrbatch.ledger import Ledger


def build_status(ledger: Ledger, *, days: int = 7) -> dict[str, Any]:
    """Counts by outcome, totals, the last run, a per-day view and the failed files."""
    last = ledger.last_run()
    totals = ledger.totals()
    return {
        "counts": ledger.counts(),
        "audio_hours": totals["audio_seconds"] / 3600,
        "server_seconds": totals["server_seconds"],
        "last_run": None
        if last is None
        else {
            "id": last.id,
            "started_at": last.started_at,
            "finished_at": last.finished_at,
            "status": last.status,
            "exit_code": last.exit_code,
            "input_dir": last.input_dir,
            "summary": last.summary,
        },
        "daily": ledger.daily(days) if days else [],
        "failed": [
            {
                "path": e.key,
                "error": e.error,
                "attempts": e.attempts,
                "failed_runs": e.failed_runs,
                "permanent": e.permanent,
                "updated_at": e.updated_at,
            }
            for e in ledger.failures()
        ],
    }
