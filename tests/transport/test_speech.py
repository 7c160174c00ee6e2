"""Real speech through each Gradio generation: festival speaks, the sphinx engine transcribes.

Every format appears on every Gradio version, and so does every sample rate and both channel
counts; the combinations rotate between versions so that 21 recognitions cover them all.

The reference sphinx engine reuses its decoder, whose cepstral-mean estimate carries over from one
request to the next: after an 8 kHz file the next wideband one loses words, and the first 8 kHz file
after wideband ones is garbled.  So the 8 kHz cases go to a server of their own, and the shared
servers only ever hear wideband speech.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from asrbatch.config import ServerConfig
from asrbatch.transport import Client
from tests.support import speech
from tests.support.servers import GRADIO_VERSIONS, ServerEnvironmentError, ServerProcess, start_server
from tests.support.wer import wer

FORMATS = ("wav", "mp3", "flac", "m4a", "ogg", "aac", "opus")
RATES = (8000, 16000, 44100, 48000)
MAX_WER = 0.25
"""Measured on the 15 cases at 16 kHz and above: 0.0 in every one; bound with margin."""
MAX_WER_8K = 1.5
"""Narrowband audio and the wideband en-us model: measured 0.0 to 1.17 through the server, depending on
what the server decoded before (see above).  At 8 kHz the test only shows that the audio got through
and was decoded into words."""

pytestmark = pytest.mark.skipif(not speech.voice_available(), reason="festival and its slt voice are not installed")




def _case(version_index: int, i: int) -> tuple[str, int, int, str]:
    rate = RATES[(i + version_index) % len(RATES)]
    sentences = speech.PHONE_SENTENCES if rate == 8000 else speech.SENTENCES
    return (FORMATS[i], rate, 1 + (i + version_index) % 2, sentences[(i + 7 * version_index) % len(sentences)])


COVERING = {version: [_case(v, i) for i in range(len(FORMATS))] for v, version in enumerate(GRADIO_VERSIONS)}


def test_the_covering_set_covers_everything() -> None:
    for version, chosen in COVERING.items():
        assert {c[0] for c in chosen} == set(FORMATS), version
        assert {c[1] for c in chosen} == set(RATES), version
        assert {c[2] for c in chosen} == {1, 2}, version


@pytest.fixture(scope="module")
def narrowband_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], ServerProcess]]:
    """A server of the given version for 8 kHz speech only; one at a time (tests come grouped by version)."""
    running: dict[str, ServerProcess] = {}

    def get(version: str) -> ServerProcess:
        if version not in running:
            for server in running.values():
                server.stop()
            running.clear()
            try:
                running[version] = start_server(version, log_dir=tmp_path_factory.mktemp(f"narrowband-{version}"))
            except ServerEnvironmentError as error:
                pytest.fail(str(error), pytrace=False)
        return running[version]

    yield get
    for server in running.values():
        server.stop()


@pytest.mark.parametrize("index", range(len(FORMATS)), ids=FORMATS)
def test_transcribes_real_speech(gradio_server: ServerProcess, narrowband_server: Callable[[str], ServerProcess],
                                 settings_for: Callable[..., ServerConfig], index: int) -> None:
    fmt, rate, channels, sentence = COVERING[gradio_server.version][index]
    path = speech.synthesize(sentence, fmt=fmt, rate=rate, channels=channels)
    server = narrowband_server(gradio_server.version) if rate == 8000 else gradio_server
    with Client(settings_for(server.url)) as client:
        recognition = client.transcribe(path, duration=speech.duration(path), hotwords="coffee,meeting")
    error = wer(sentence, recognition.text)
    print(f"gradio={gradio_server.version} fmt={fmt} rate={rate} channels={channels} wer={error:.3f} "
          f"text={recognition.text!r}")
    assert recognition.text
    assert error <= (MAX_WER_8K if rate == 8000 else MAX_WER), (sentence, recognition.text)
    assert recognition.attempts == 1
    assert recognition.server_seconds > 0
    assert recognition.outputs[0] == recognition.text
    assert len(recognition.outputs) == 2
