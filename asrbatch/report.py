"""What the ledger knows, shaped for people: ``asrbatch status`` (text or JSON) and ``asrbatch report`` (HTML).

Both read the same figures from :func:`build_status`.  Days are UTC calendar days.
"""

from __future__ import annotations

import html
import math
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from asrbatch.fsutil import atomic_write
from asrbatch.ledger import Ledger, RunRecord


def build_status(ledger: Ledger, *, days: int = 7, today: date | None = None) -> dict[str, Any]:
    """Counts by outcome, totals, the last run, a per-day view of the last *days* days and the failed files.

    ``daily`` lists the days with activity, newest first; ``period`` sums them up,
    with the failures by reason.
    """
    runs = ledger.runs()
    last = runs[0] if runs else None
    totals = ledger.totals()
    today = today or datetime.now(timezone.utc).date()
    first = (today - timedelta(days=days - 1)).isoformat() if days else None
    daily = [d for d in ledger.daily(days) if first is not None and d["day"] >= first] if days else []
    reasons: dict[str, int] = {}
    for day in daily:
        by_reason: dict[str, int] = {}
        for error, count in day["failures"].items():
            reason = failure_reason(error)
            by_reason[reason] = by_reason.get(reason, 0) + count
            reasons[reason] = reasons.get(reason, 0) + count
        day["failures"] = by_reason
    return {
        "ledger": ledger.location,
        "shared": ledger.shared,
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
        "last_success_at": _last_success(runs),
        "period": {
            "days": days,
            "first_day": first,
            "last_day": today.isoformat(),
            "files": sum(d["files"] for d in daily),
            "done": sum(d["done"] for d in daily),
            "empty": sum(d["empty"] for d in daily),
            "failed": sum(d["failed"] for d in daily),
            "audio_hours": sum(d["audio_seconds"] for d in daily) / 3600,
            "failures": dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0]))),
        },
        "daily": daily,
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
        "hosts": runs_by_host(runs),
        "claims": [{"path": c.key, "worker": c.worker, "seconds_left": round(c.seconds_left, 1),
                    "taken_from": c.taken_from} for c in ledger.claims()],
    }


def runs_by_host(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """Per host (newest runs first in *runs*): how many runs, how many still running, the last one's start and exit."""
    hosts: dict[str, dict[str, Any]] = {}
    for run in runs:
        host = run.host or "unknown"
        if host not in hosts:
            hosts[host] = {"host": host, "runs": 0, "running": 0, "last_started_at": run.started_at,
                           "last_exit_code": run.exit_code, "last_status": run.status}
        hosts[host]["runs"] += 1
        hosts[host]["running"] += run.status == "running"
    return sorted(hosts.values(), key=lambda h: h["host"])


_PATH_PREFIX = re.compile(r"^(?:/|[A-Za-z]:[\\/]).*?\.[A-Za-z0-9]{1,5}: ")


def failure_reason(error: str) -> str:
    """*error* without the recording's own path in front, so that the same reason groups together."""
    return _PATH_PREFIX.sub("", error, count=1)


def _last_success(runs: list[RunRecord]) -> str | None:
    for run in runs:
        if run.exit_code == 0 and run.finished_at:
            return run.finished_at
    return None


# ----------------------------------------------------------------------------------------------
# HTML report

RUNS_SHOWN = 25
CHART_WIDTH, CHART_HEIGHT = 880, 260
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 56, 16, 44

STYLE = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; --audio: #2f80ed; --files: #e8590c; --bad: #c92a2a; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 960px; padding: 24px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.sub { color: var(--muted); margin: 0 0 20px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.card .value { font-size: 24px; font-weight: 600; } .card .label { color: var(--muted); font-size: 13px; }
.card.bad .value { color: var(--bad); } .card .value.time { font-size: 17px; padding: 5px 0 4px; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; white-space: nowrap; }
td { overflow-wrap: anywhere; } td.n, td.t { white-space: nowrap; overflow-wrap: normal; } td.p { min-width: 9em; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12.5px ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; background: #f0f4f8;
       padding: 0 3px; border-radius: 3px; }
.wide { overflow-x: auto; }
.legend span { margin-right: 16px; color: var(--muted); font-size: 13px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 6px; vertical-align: -1px; }
svg text { font: 11px system-ui, sans-serif; fill: var(--muted); }
.empty { color: var(--muted); }
@media (max-width: 760px) { body { padding: 12px; } th, td { padding: 4px 5px; } table { font-size: 12.5px; } }
"""


def write_html_report(ledger: Ledger, path: Path, *, days: int = 30, title: str | None = None,
                      today: date | None = None) -> Path:
    """Write a self-contained HTML page (no external assets) of what *ledger* knows; return its path.

    Totals, the last run, a chart of audio hours and files per day over the last *days*
    days, the per-day table, failures by reason, failed recordings and the recent runs.
    The file is written atomically.  Raises :class:`OSError` when it cannot be written.
    """
    status = build_status(ledger, days=days, today=today)
    last = status["last_run"]
    # Named after the recordings people know the job by; the ledger's place before any run.
    recordings = last["input_dir"] if last and last.get("input_dir") else None
    where = ledger.location if ledger.shared else str(Path(ledger.location).parent)
    page = render_html(status, ledger.runs(limit=RUNS_SHOWN), title=title or f"asrbatch: {recordings or where}",
                       generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       where=_where(recordings, last, where))
    path = path.expanduser()
    atomic_write(path, page)
    return path


def _where(recordings: str | None, last: dict[str, Any] | None, state: Path | str) -> str:
    output = (last or {}).get("summary", {}).get("output_dir")
    parts = [f"recordings in `{recordings}`"] if recordings else []
    if output:
        parts.append(f"transcripts in `{output}`")
    parts.append(f"ledger in `{state}`")
    return ", ".join(parts)


def _text(value: str) -> str:
    """*value* escaped for HTML, with `commands` in backticks set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(value))


def render_html(status: dict[str, Any], runs: list[Any], *, title: str, generated: str, where: str = "") -> str:
    """The report page for *status* (from :func:`build_status`) and the recent *runs*.

    *where* names the job's folders under the title (backticks set as code)."""
    e = html.escape
    counts: dict[str, int] = status["counts"]
    period = status["period"]
    last = status["last_run"]
    transcribed = counts.get("done", 0) + counts.get("empty", 0)
    failed_now = counts.get("failed", 0)
    cards = [
        ("total-recordings", f"{transcribed:,}", "recordings transcribed", False),
        ("total-audio-hours", f"{status['audio_hours']:.2f}", "hours of audio", False),
        ("total-failed", f"{failed_now:,}", "recordings failed", failed_now > 0),
        ("total-pending", f"{counts.get('pending', 0):,}", "pending", False),
        ("last-run", _short_time(last["started_at"]) if last else "never",
         f"last run, exit {last['exit_code']}" if last and last["exit_code"] is not None
         else (f"last run, {last['status']}" if last else "last run"),
         bool(last and last["exit_code"])),
        ("last-success", _short_time(status["last_success_at"]) if status["last_success_at"] else "never",
         "last successful run", False),
    ]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="sub">{_text(where[:1].upper() + where[1:]) + " &middot; " if where else ""}'
        f'generated {e(generated)} &middot; days are UTC</p>',
        '<div class="cards">',
    ]
    for ident, value, label, bad in cards:
        kind = "value time" if ident.startswith("last-") else "value"
        parts.append(f'<div class="card{" bad" if bad else ""}"><div class="{kind}" id="{ident}">{e(value)}</div>'
                     f'<div class="label">{e(label)}</div></div>')
    parts.append("</div>")

    series = _calendar(status["daily"], period["first_day"], period["last_day"])
    parts.append(f"<h2>Throughput, last {period['days']} days</h2>")
    parts.append(
        f'<p class="sub"><span id="period-files">{period["files"]:,}</span> files, '
        f'<span id="period-audio-hours">{period["audio_hours"]:.2f}</span> hours of audio, '
        f'<span id="period-failed">{period["failed"]:,}</span> failed</p>'
    )
    parts.append('<div class="legend"><span><i style="background:var(--audio)"></i>audio hours</span>'
                 '<span><i style="background:var(--files)"></i>files</span></div>')
    parts.append(chart_svg(series))

    parts.append("<h2>Per day</h2>")
    if status["daily"]:
        parts.append('<div class="wide"><table id="daily"><tr><th>day</th><th class="n">files</th><th class="n">done</th>'
                     '<th class="n">empty</th><th class="n">failed</th><th class="n">audio h</th>'
                     '<th class="n">server s</th><th>failures</th></tr>')
        for day in status["daily"]:
            reasons = "; ".join(f"{n}&times; {_text(r)}" for r, n in sorted(day["failures"].items(), key=lambda x: -x[1]))
            parts.append(
                f'<tr><td class="t">{e(day["day"])}</td><td class="n">{day["files"]}</td><td class="n">{day["done"]}</td>'
                f'<td class="n">{day["empty"]}</td><td class="n">{day["failed"]}</td>'
                f'<td class="n">{day["audio_seconds"] / 3600:.2f}</td><td class="n">{day["server_seconds"]:.0f}</td>'
                f"<td>{reasons}</td></tr>"
            )
        parts.append("</table></div>")
    else:
        parts.append('<p class="empty">Nothing processed in this period.</p>')

    parts.append("<h2>Failures by reason</h2>")
    if period["failures"]:
        parts.append('<div class="wide"><table id="reasons"><tr><th class="n">files</th><th>reason</th></tr>')
        for reason, count in period["failures"].items():
            parts.append(f'<tr><td class="n">{count}</td><td>{_text(reason)}</td></tr>')
        parts.append("</table></div>")
    else:
        parts.append('<p class="empty">No failures in this period.</p>')

    parts.append("<h2>Failed recordings</h2>")
    if status["failed"]:
        parts.append('<div class="wide"><table id="failed"><tr><th>recording</th><th>error</th><th class="n">attempts</th>'
                     "<th>retried</th></tr>")
        for f in status["failed"]:
            retried = ("not until the file changes, or after `asrbatch retry`" if f["permanent"]
                       else f"{f['failed_runs']} run(s)")
            parts.append(f'<tr><td class="p">{e(f["path"])}</td><td>{_text(failure_reason(f["error"] or ""))}</td>'
                         f'<td class="n">{f["attempts"]}</td><td>{_text(retried)}</td></tr>')
        parts.append("</table></div>")
    else:
        parts.append('<p class="empty">None.</p>')

    if len(status["hosts"]) > 1 or status["claims"]:
        parts.append("<h2>Hosts</h2>")
        parts.append('<table id="hosts"><tr><th>host</th><th class="n">runs</th><th class="n">running</th>'
                     '<th>last run</th><th class="n">exit</th><th class="n">recordings in progress</th></tr>')
        claimed: dict[str, int] = {}
        for claim in status["claims"]:
            host = claim["worker"].rsplit(":", 1)[0]
            claimed[host] = claimed.get(host, 0) + 1
        for h in status["hosts"]:
            code = "" if h["last_exit_code"] is None else h["last_exit_code"]
            parts.append(f'<tr><td>{e(h["host"])}</td><td class="n">{h["runs"]}</td><td class="n">{h["running"]}</td>'
                         f'<td>{e(_short_time(h["last_started_at"]))}</td><td class="n">{code}</td>'
                         f'<td class="n">{claimed.get(h["host"], 0)}</td></tr>')
        parts.append("</table>")

    parts.append("<h2>Recent runs</h2>")
    if runs:
        parts.append('<div class="wide"><table id="runs"><tr><th>started</th><th>host</th><th>status</th><th class="n">exit</th>'
                     '<th class="n">found</th><th class="n">done</th><th class="n">failed</th><th class="n">pending</th>'
                     '<th class="n">audio h</th><th class="n">wall s</th><th>note</th></tr>')
        for run in runs:
            s = run.summary
            note = s.get("stopped") or s.get("error") or ""
            parts.append(
                f'<tr><td class="t">{e(_short_time(run.started_at))}</td><td>{e(run.host or "")}</td><td>{e(run.status)}</td>'
                f'<td class="n">{"" if run.exit_code is None else run.exit_code}</td>'
                f'<td class="n">{s.get("found", "")}</td><td class="n">{s.get("done", "")}</td>'
                f'<td class="n">{s.get("failed", "")}</td><td class="n">{s.get("pending", "")}</td>'
                f'<td class="n">{_hours(s.get("audio_seconds"))}</td><td class="n">{_seconds(s.get("wall_seconds"))}</td>'
                f"<td>{_text(str(note))}</td></tr>"
            )
        parts.append("</table></div>")
    else:
        parts.append('<p class="empty">No runs yet.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def chart_svg(series: list[tuple[str, int, float]]) -> str:
    """An inline SVG chart: audio hours per day as bars (left axis), files per day as a line (right axis)."""
    width, height = CHART_WIDTH, CHART_HEIGHT
    plot_w = width - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = height - MARGIN_TOP - MARGIN_BOTTOM
    hours_top = _nice_ceiling(max((h for _, _, h in series), default=0.0))
    files_top = 4 * max(1, math.ceil(_nice_ceiling(max((f for _, f, _ in series), default=0) / 4)))
    slot = plot_w / max(1, len(series))
    bottom = MARGIN_TOP + plot_h
    out = [f'<svg id="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
           f'role="img" aria-label="audio hours and files per day">']
    for i in range(5):  # grid and both axes' labels
        y = bottom - plot_h * i / 4
        out.append(f'<line x1="{MARGIN_LEFT}" x2="{width - MARGIN_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e7eb"/>')
        out.append(f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_tick(hours_top * i / 4)}</text>')
        out.append(f'<text x="{width - MARGIN_RIGHT + 6}" y="{y + 4:.1f}">{_tick(files_top * i / 4)}</text>')
    out.append(f'<text x="14" y="{MARGIN_TOP + plot_h / 2:.0f}" transform="rotate(-90 14 {MARGIN_TOP + plot_h / 2:.0f})" '
               'text-anchor="middle">audio hours</text>')
    out.append(f'<text x="{width - 10}" y="{MARGIN_TOP + plot_h / 2:.0f}" '
               f'transform="rotate(90 {width - 10} {MARGIN_TOP + plot_h / 2:.0f})" text-anchor="middle">files</text>')
    label_every = max(1, len(series) // 10)
    points = []
    for i, (day, files, hours) in enumerate(series):
        x = MARGIN_LEFT + slot * i
        bar_h = plot_h * hours / hours_top if hours_top else 0.0
        out.append(f'<rect class="bar" data-day="{day}" data-hours="{hours:.4f}" x="{x + slot * 0.15:.1f}" '
                   f'y="{bottom - bar_h:.1f}" width="{slot * 0.7:.1f}" height="{bar_h:.1f}" fill="#2f80ed">'
                   f"<title>{day}: {hours:.2f} h, {files} files</title></rect>")
        points.append((x + slot / 2, bottom - (plot_h * files / files_top if files_top else 0.0), day, files))
        if i % label_every == 0 or i == len(series) - 1:
            out.append(f'<text x="{x + slot / 2:.1f}" y="{bottom + 16}" text-anchor="middle">{day[5:]}</text>')
    if points:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="#e8590c" stroke-width="2"/>')
        for x, y, day, files in points:
            out.append(f'<circle class="point" data-day="{day}" data-files="{files}" cx="{x:.1f}" cy="{y:.1f}" r="3" '
                       'fill="#e8590c"/>')
    out.append(f'<line x1="{MARGIN_LEFT}" x2="{width - MARGIN_RIGHT}" y1="{bottom}" y2="{bottom}" stroke="#9aa5b1"/>')
    out.append("</svg>")
    return "\n".join(out)


def _calendar(daily: list[dict[str, Any]], first: str | None, last: str) -> list[tuple[str, int, float]]:
    """(day, files, audio hours) for every day from *first* to *last*, oldest first, zeros included."""
    if first is None:
        return []
    by_day = {d["day"]: d for d in daily}
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    series = []
    while start <= end:
        key = start.isoformat()
        d = by_day.get(key)
        series.append((key, int(d["files"]) if d else 0, float(d["audio_seconds"]) / 3600 if d else 0.0))
        start += timedelta(days=1)
    return series


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^n at or above *value* (1 for nothing)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** _floor_log10(value)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _floor_log10(value: float) -> int:
    exponent = 0
    while value >= 10:
        value /= 10
        exponent += 1
    while value < 1:
        value *= 10
        exponent -= 1
    return exponent


def _tick(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"


def _short_time(iso: str | None) -> str:
    if not iso:
        return ""
    return iso.replace("T", " ")[:16] + " UTC" if iso.endswith("+00:00") else iso


def _hours(seconds: Any) -> str:
    return f"{seconds / 3600:.2f}" if isinstance(seconds, (int, float)) else ""


def _seconds(seconds: Any) -> str:
    return f"{seconds:.0f}" if isinstance(seconds, (int, float)) else ""
