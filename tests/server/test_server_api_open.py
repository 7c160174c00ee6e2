"""``--api-open false``: queue(api_open=False) closes the REST prediction routes on every
generation, and the queue routes still recognise (what compat's docstring records)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.server import gradio_http as http
from tests.server.conftest import MAX_WER
from tests.support.servers import ServerProcess
from tests.support.wer import wer

REFUSAL_4_AND_LATER = (
    "This API endpoint does not accept direct HTTP POST requests. Please join the queue to use this API."
)


@pytest.mark.parametrize("version", ["3.50.2", "4.16.0", "4.44.1", "6.31.0"])
def test_only_the_queue_runs_events(
    version: str, server_factory: Callable[..., ServerProcess], speech_clips: list[tuple[str, Path]]
) -> None:
    server = server_factory(version, extra_args=["--api-open", "false"])
    sentence, clip = speech_clips[2]
    with requests.Session() as session:
        config = http.get_config(session, server.url)
        slot = http.file_slot(session, server.url, config, clip)
        data = [None, slot, 1, ""]
        prefix = http.api_prefix(config)
        for route in ("/api/predict/", "/run/predict"):
            response = session.post(
                server.url + prefix + route, json={"data": data, "fn_index": 0}, timeout=http.TIMEOUT
            )
            assert response.status_code == 404, route
            expected = "Not Found" if http.is_legacy(config) else REFUSAL_4_AND_LATER
            assert response.json() == {"detail": expected}
        # Uploading stays open; the queue (3.x websocket, 4.16 /queue/join, 4.20+ /call) works.
        outcome = http.run_event(session, server.url, config, 0, data)
    assert outcome.ok, outcome
    assert outcome.data is not None and wer(sentence, outcome.data[0]) <= MAX_WER
