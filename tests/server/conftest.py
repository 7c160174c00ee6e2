"""Fixtures of the server tests: the shared servers and real speech clips."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.servers import gradio_server, server_factory  # noqa: F401 (fixtures)

try:
    from tests.support.speech import synthesize
except ImportError:  # the shared speech helper is optional here; festival + ffmpeg suffice

    def synthesize(text: str, *, fmt: str = "wav", **_: object) -> Path:  # type: ignore[misc]
        """``text`` spoken by festival's slt voice, encoded by ffmpeg as ``fmt``."""
        target = Path(tempfile.mkdtemp(prefix="asrbatch-speech-")) / f"speech.{fmt}"
        spoken = target.with_name("spoken.wav")
        subprocess.run(
            ["text2wave", "-eval", "(voice_cmu_us_slt_arctic_hts)", "-o", str(spoken)],
            input=text,
            text=True,
            check=True,
        )
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(spoken), str(target)], check=True)
        return target


# Sentences and the engine's results on them were measured with pocketsphinx 5.1.1 (en-us)
# on festival's slt voice: per-sentence WER 0.00-0.12, mean 0.076 (typical slips: "jumps" ->
# "jumped", "the" -> "a"). The bound leaves room for other ffmpeg/festival builds.
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please send the report to the office before noon.",
    "We will meet at the station at seven tomorrow morning.",
)
MAX_WER = 0.35


@pytest.fixture(scope="session")
def speech_clips() -> list[tuple[str, Path]]:
    """(sentence, mp3 of it) for each test sentence; MP3 makes the server really decode."""
    if shutil.which("text2wave") is None or shutil.which("ffmpeg") is None:
        pytest.fail(
            "festival (text2wave) and ffmpeg are needed: apt-get install festival festvox-us-slt-hts ffmpeg",
            pytrace=False,
        )
    return [(sentence, synthesize(sentence, fmt="mp3")) for sentence in SENTENCES]


@pytest.fixture(scope="session")
def undecodable_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random bytes with an audio file's name."""
    path = tmp_path_factory.mktemp("junk") / "broken.wav"
    path.write_bytes(bytes(range(256)) * 40)
    return path


@pytest.fixture(scope="session")
def self_signed_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, self-signed with the openssl CLI as server images ship."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed: apt-get install openssl", pytrace=False)
    folder = tmp_path_factory.mktemp("tls")
    certificate, key = folder / "server.crt", folder / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True,
    )  # fmt: skip
    return certificate, key


def engine_runs_at_once(log: str) -> list[int]:
    """The ``running=`` figure of every recognition in a server log."""
    return [int(match) for match in re.findall(r"event=recognize .* running=(\d+) ", log)]
