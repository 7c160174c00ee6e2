"""What the job has done, without reading logs: ``asrbatch status`` (per day, --json) and the HTML report,
rendered in headless Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import sqlite3
import struct
import subprocess
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from asrbatch.cli import main
from asrbatch.ledger import Identity, SqliteLedger
from asrbatch.report import build_status, write_html_report
from tests.support import speech
from tests.support.jobs import cli, ledger_rows, place
from tests.support.servers import ServerProcess, start_server

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start_server("6.31.0", log_dir=tmp_path_factory.mktemp("report-server")) as process:
        yield process


@pytest.fixture(scope="module")
def history(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A job with three days of history: two recordings four days ago, two more and two broken ones today.

    Returns its output folder.  The older run really happened; its events are moved back in time.
    """
    root = tmp_path_factory.mktemp("history")
    inp, out = root / "in", root / "out"
    place(inp, "monday/a.wav", speech.synthesize(speech.SENTENCES[0]))
    place(inp, "monday/b.mp3", speech.synthesize(speech.SENTENCES[1], fmt="mp3"))
    assert cli("run", str(inp), "-o", str(out), "--url", server.url).returncode == 0
    earlier = (datetime.now(timezone.utc) - timedelta(days=4)).isoformat(timespec="seconds")
    db = sqlite3.connect(out / ".asrbatch" / "ledger.sqlite3")
    with db:
        db.execute("UPDATE events SET at = ?", (earlier,))
        db.execute("UPDATE runs SET started_at = ?, finished_at = ?", (earlier, earlier))
    db.close()
    place(inp, "friday/c.flac", speech.synthesize(speech.SENTENCES[2], fmt="flac"))
    place(inp, "friday/d.ogg", speech.synthesize(speech.SENTENCES[3], fmt="ogg"))
    place(inp, "friday/broken.mp3", b"this is not audio\n" * 10)
    place(inp, "friday/empty.wav", b"")
    assert cli("run", str(inp), "-o", str(out), "--url", server.url).returncode == 1
    return out


def expected(out: Path) -> dict[str, float]:
    rows = ledger_rows(out / ".asrbatch")
    done = [r for r in rows.values() if r["outcome"] == "done"]
    return {"done": len(done), "failed": sum(r["outcome"] == "failed" for r in rows.values()),
            "audio_hours": sum(r["audio_seconds"] for r in done) / 3600}


def test_status_per_day_and_json(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "-o", str(history), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    totals = expected(history)
    assert report["counts"] == {"done": 4, "failed": 2}
    assert report["audio_hours"] == pytest.approx(totals["audio_hours"])
    days = {d["day"]: d for d in report["daily"]}
    assert len(days) == 2
    today, earlier = sorted(days, reverse=True)
    assert (days[today]["files"], days[today]["done"], days[today]["failed"]) == (4, 2, 2)
    assert (days[earlier]["files"], days[earlier]["done"], days[earlier]["failed"]) == (2, 2, 0)
    assert sum(days[today]["failures"].values()) == 2
    assert any(reason.startswith("empty file") for reason in days[today]["failures"])
    assert not any("/" in reason.split(":")[0] for reason in days[today]["failures"])  # grouped without paths
    assert report["period"]["files"] == 6 and report["period"]["failed"] == 2
    assert report["period"]["audio_hours"] == pytest.approx(totals["audio_hours"])
    assert report["last_run"]["exit_code"] == 1 and report["last_success_at"] is not None
    assert {f["path"] for f in report["failed"]} == {"friday/broken.mp3", "friday/empty.wav"}

    assert main(["status", "-o", str(history), "--days", "2"]) == 0
    shown = capsys.readouterr().out
    assert f"  {today}  files=4 done=2 empty=0 failed=2" in shown
    assert f"  {earlier}  files" not in shown  # outside the last two days
    assert "last 2 day(s): files=4 done=2 empty=0 failed=2" in shown
    assert "friday/broken.mp3" in shown and "last success: " in shown


def test_status_day_window_counts_calendar_days(tmp_path: Path) -> None:
    with SqliteLedger.open(tmp_path / "ledger.sqlite3") as ledger:
        run_id = ledger.begin_run(tmp_path)
        ledger.record_failure(Identity("x.wav", 1, 1, None), error="cannot decode audio", permanent=True,
                              attempts=0, audio_seconds=None, run_id=run_id)
        status = build_status(ledger, days=3, today=datetime.now(timezone.utc).date() + timedelta(days=5))
        assert status["daily"] == [] and status["period"]["files"] == 0
        status = build_status(ledger, days=3)
        assert status["period"]["failures"] == {"cannot decode audio": 1}
        assert build_status(ledger, days=0)["daily"] == []


class _Text(HTMLParser):
    """Text of the elements with an id, and the chart's bars."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.bars: list[dict[str, str]] = []
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "rect" and "bar" in attributes.get("class", ""):
            self.bars.append(attributes)
        if tag in ("br", "meta", "line", "circle", "polyline"):
            return
        self._open.append(attributes.get("id"))
        if attributes.get("id"):
            self.by_id[attributes["id"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("br", "meta", "line", "circle", "polyline") and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for ident in self._open:
            if ident:
                self.by_id[ident] += data


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("headless Chromium is needed (Debian: apt-get install chromium; scripts/bootstrap.sh --test)")


def browse(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the decompressed (still filtered) scanlines of a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, width, height, chunks = 8, 0, 0, []
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    return width, height, zlib.decompress(b"".join(chunks))


def test_html_report_renders_in_chromium_with_the_right_totals(history: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert main(["report", "-o", str(history), "--html", str(page), "--days", "7"]) == 0
    source = page.read_text(encoding="utf-8")
    # Self-contained: nothing fetched from anywhere, no scripts.
    assert "<script" not in source and "http://" not in source.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in source and "<link" not in source

    dom = browse(page, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = _Text()
    text.feed(dom.stdout)
    totals = expected(history)
    assert text.by_id["total-recordings"] == "4"
    assert text.by_id["total-failed"] == "2"
    assert text.by_id["total-audio-hours"] == f"{totals['audio_hours']:.2f}"
    assert text.by_id["period-files"] == "6" and text.by_id["period-failed"] == "2"
    assert "exit 1" in dom.stdout and "friday/broken.mp3" in text.by_id["failed"]
    assert len(text.bars) == 7  # one per calendar day, empty days included
    hours = [float(bar["data-hours"]) for bar in text.bars]
    assert sum(hours) == pytest.approx(totals["audio_hours"], abs=1e-3)
    assert sum(h > 0 for h in hours) == 2 and hours[-1] > 0  # today is the last bar
    assert "cannot decode" in text.by_id["reasons"] or "empty" in text.by_id["reasons"]

    shot = tmp_path / "report.png"
    rendered = browse(page, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1024,1400")
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (1024, 1400)
    # Not a blank page: a page of text, cards and a chart has a wide spread of values.
    assert len(set(pixels)) > 64
    kept = Path(__file__).resolve().parent.parent / ".cache" / "report-screenshot.png"
    kept.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, kept)  # to look at after a run


def test_html_report_of_an_empty_ledger(tmp_path: Path) -> None:
    with SqliteLedger.open(tmp_path / "ledger.sqlite3") as ledger:
        page = write_html_report(ledger, tmp_path / "r" / "report.html", days=3)
    source = page.read_text(encoding="utf-8")
    assert 'id="total-recordings">0<' in source and "No runs yet." in source and "Nothing processed" in source
    assert source.count('class="bar"') == 3
    assert [p.name for p in page.parent.iterdir()] == ["report.html"]


MEASURE = """<script>addEventListener("load", () => {
  const page = document.documentElement;
  document.body.dataset.measured = JSON.stringify({page: page.scrollWidth, window: innerWidth,
    tables: [...document.querySelectorAll("table")].map(t => [t.id, t.parentElement.scrollWidth, t.parentElement.clientWidth]),
    headers: [...document.querySelectorAll("th")].map(h => [h.textContent, h.getClientRects().length > 0 ? Math.round(h.getBoundingClientRect().height) : 0])});
});</script>"""


def test_html_report_at_phone_width_never_scrolls_sideways_and_names_the_recordings(
    history: Path, tmp_path: Path,
) -> None:
    page = tmp_path / "report.html"
    assert main(["report", "-o", str(history), "--html", str(page)]) == 0
    source = page.read_text(encoding="utf-8")
    recordings = history.parent / "in"
    assert f"<title>asrbatch: {recordings}</title>" in source and f"<h1>asrbatch: {recordings}</h1>" in source
    assert "`" not in source and "<code>asrbatch retry</code>" in source  # commands set as code, not backticks
    # Measured in the browser on a copy with a script of the test's own (the report has none).
    probe = tmp_path / "probe.html"
    probe.write_text(source.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    for width in (700, 1024):
        dom = browse(probe, tmp_path / f"profile-{width}", "--dump-dom", f"--window-size={width},1000")
        assert dom.returncode == 0, dom.stderr[-2000:]
        found = re.search(r'data-measured="([^"]*)"', dom.stdout)
        assert found is not None, dom.stdout[-2000:]
        measured = json.loads(html.unescape(found.group(1)))
        assert measured["window"] == width
        assert measured["page"] <= width, measured  # no sideways scrolling of the page
        assert all(scroll <= client for _, scroll, client in measured["tables"]), measured  # nor of a table
        # A header cell is one line: "audio h", not "audio" above "h".
        heights = {height for _, height in measured["headers"]}
        assert max(heights) <= min(heights) + 2, measured["headers"]
