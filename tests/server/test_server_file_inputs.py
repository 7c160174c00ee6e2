"""File inputs must be files uploaded to the server: no other path is read, no URL is fetched.

Raw requests against the shared Paraformer WebUI of each Gradio generation (3.50 would read
any path, 4.44 and 6.x would fetch URLs, without the server's guard).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.server import gradio_http as http
from tests.support.servers import ServerProcess


class FileHost:
    """A plain HTTP server on 127.0.0.1 that serves one file and counts the requests for it.

    It stands for any web server a request could name as a URL input, to see whether the
    reference server contacts it.
    """

    def __init__(self, content: bytes) -> None:
        host = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                host.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "audio/mpeg")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/speech.mp3"

    def __enter__(self) -> FileHost:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def config(gradio_server: ServerProcess, session: requests.Session) -> dict[str, Any]:
    return http.get_config(session, gradio_server.url)


@pytest.fixture
def secret(tmp_path: Path, speech_clips: list[tuple[str, Path]]) -> Path:
    """Real speech outside the server's upload folder: if it were read, it would be transcribed.

    An ID3v1 tag with a fresh id at its end makes its bytes its own, so a copy of it anywhere
    is a copy of this file, not of the same clip uploaded by another test.
    """
    path = tmp_path / "private" / "secret.mp3"
    path.parent.mkdir()
    tag = (b"TAG" + uuid.uuid4().hex.encode()).ljust(128, b"\0")
    path.write_bytes(speech_clips[1][1].read_bytes() + tag)
    return path


def named(config: dict[str, Any], path: str) -> dict[str, Any]:
    """A file value naming ``path`` (or a URL) the way this generation's clients name files."""
    if http.is_legacy(config):
        return {"name": path, "data": None, "is_file": True}
    return {"path": path, "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


def uploads_of(server: ServerProcess) -> Path:
    return server.log_path.parent / "uploads"


def copies_of(content: bytes, folder: Path) -> list[Path]:
    digest = hashlib.sha256(content).digest()
    return [p for p in folder.rglob("*") if p.is_file() and hashlib.sha256(p.read_bytes()).digest() == digest]


def refusal(
    session: requests.Session, server: ServerProcess, config: dict[str, Any], fn: int, data: list[Any]
) -> str:
    """Call fn ``fn`` over REST (every generation shows the message there); its error text."""
    outcome = http.predict(session, server.url, config, fn, data)
    assert not outcome.ok, outcome
    assert outcome.error is not None
    return outcome.error


def test_paths_outside_the_upload_folder_are_refused_in_every_file_input(
    gradio_server: ServerProcess, config: dict[str, Any], session: requests.Session, secret: Path
) -> None:
    before = http.system_info(session, gradio_server.url, config)
    outside = named(config, str(secret))
    passwords = named(config, "/etc/passwd")
    calls = {
        "audio": (0, [None, outside, 1, ""]),
        "hotword file": (0, [passwords, None, 1, ""]),
        "batch": (1, [[outside], 1, ""]),
        "live": (2, [outside, ""]),
    }
    for label, (fn, data) in calls.items():
        error = refusal(session, gradio_server, config, fn, data)
        assert "is not a file uploaded to this server" in error, (label, error)
    after = http.system_info(session, gradio_server.url, config)
    assert after["Files recognised"] == before["Files recognised"]
    assert int(after["Requests failed"]) >= int(before["Requests failed"]) + len(calls)
    assert copies_of(secret.read_bytes(), uploads_of(gradio_server)) == []


def test_links_and_dot_dots_out_of_the_upload_folder_are_refused(
    gradio_server: ServerProcess, config: dict[str, Any], session: requests.Session, secret: Path
) -> None:
    uploads = uploads_of(gradio_server)
    uploads.mkdir(parents=True, exist_ok=True)
    link = uploads / f"link-{secret.parent.parent.name}.mp3"
    link.symlink_to(secret)
    # uploads/../../.. up to the root, then down to the secret.
    climb = str(uploads.resolve()) + "/.." * (len(uploads.resolve().parts) - 1) + str(secret)
    escapes = [str(link), climb]
    for path in escapes:
        error = refusal(session, gradio_server, config, 0, [None, named(config, path), 1, ""])
        assert "is not a file uploaded to this server" in error, path
    link.unlink()


def test_urls_are_refused_without_contacting_them(
    gradio_server: ServerProcess, config: dict[str, Any], session: requests.Session, secret: Path
) -> None:
    with FileHost(secret.read_bytes()) as host:
        for fn, data in (
            (0, [None, named(config, host.url), 1, ""]),
            (1, [[named(config, host.url)], 1, ""]),
        ):
            error = refusal(session, gradio_server, config, fn, data)
            assert "is a URL" in error and "--allow-url-inputs" in error
        # Not even a name lookup: a host that does not exist gets the same answer.
        error = refusal(
            session, gradio_server, config, 0, [None, named(config, "https://asr.invalid/a.wav"), 1, ""]
        )
        assert "is a URL" in error
        assert host.requests == 0


def test_uploaded_files_still_work(
    gradio_server: ServerProcess,
    config: dict[str, Any],
    session: requests.Session,
    speech_clips: list[tuple[str, Path]],
) -> None:
    slot = http.file_slot(session, gradio_server.url, config, speech_clips[0][1])
    outcome = http.predict(session, gradio_server.url, config, 0, [None, slot, 1, ""])
    assert outcome.ok, outcome


def test_allow_url_inputs_lets_gradio_fetch_them(
    server_factory: Any, secret: Path, session: requests.Session
) -> None:
    # Gradio 3.50 fetches any URL; 4.44+ refuse loopback addresses themselves, so the option is
    # seen at work on 3.50.
    server = server_factory("3.50.2", extra_args=["--allow-url-inputs"])
    config = http.get_config(session, server.url)
    with FileHost(secret.read_bytes()) as host:
        outcome = http.predict(session, server.url, config, 0, [None, named(config, host.url), 1, ""])
        assert outcome.ok, outcome
        assert host.requests >= 1  # Gradio 3.50 asks twice
    assert outcome.data is not None and "send" in outcome.data[0]
    # Local paths stay refused with the option.
    error = refusal(session, server, config, 0, [None, named(config, str(secret)), 1, ""])
    assert "is not a file uploaded to this server" in error
