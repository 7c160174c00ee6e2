"""Gradio apps other than the Paraformer WebUI, tried as a new user would: nothing but the URL.

The reference server's app shapes (``asrbatch serve --app simple|numpy|multitab|streaming``, and
``--api-open false``) on Gradio 3.50.2, 4.16.0 (before ``/call``), 4.44.1 and 6.31.0, and 4.8.0
(the first queue protocol), one server per case shared by the tests of this module, with real
festival speech. Where what was heard is not the point (the streaming app: which of its answers
is taken; ``api_open=False``: which route carries the request) the server runs the simulate engine,
whose text tells exactly what came back.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import websockets.exceptions
import websockets.sync.client

from asrbatch.config import DEFAULT_TEMPLATE, ServerConfig
from asrbatch.errors import InputRejectedError
from asrbatch.transport import Client, detect
from tests.support import speech
from tests.support.faultproxy import FaultProxy
from tests.support.jobs import cli, ledger_rows, place
from tests.support.servers import ServerEnvironmentError, ServerProcess, start_server
from tests.support.wer import wer
from tests.transport.conftest import make_settings

VERSIONS = ("3.50.2", "4.16.0", "4.44.1", "6.31.0")
SHAPES = ("simple", "numpy", "multitab", "streaming")
CASES = [(version, shape) for version in VERSIONS for shape in SHAPES] + [
    ("4.16.0", "paraformer"),
    # Gradio 4.0-4.8 speak the first queue protocol (sse): the stream first, then the data.
    ("4.8.0", "simple"),
    ("4.8.0", "streaming"),
]
WER_BOUND = 0.25
SENTENCES = ("I would like a cup of coffee please.", "The children are playing in the park.")
"""Eight and seven words: the streaming app's partials (a third, two thirds) are far off both."""
USER, PASSWORD = "alice", "correct horse battery staple"
FINAL = "the final transcript holds all of these nine words"
"""What the streaming app's engine says; it yields "the final transcript", then "the final transcript
holds all of" first (shapes.partial_transcripts)."""
NO_WAIT = ("--simulate-rtf", "0")
"""The simulate engine answers at once."""

# What /config of each shape holds (REACH_FACTS): the recognition function, its name, its inputs.
FN_INDEX = {"simple": 0, "numpy": 0, "multitab": 1, "streaming": 0, "paraformer": 0}
TEMPLATE = {
    "simple": '["<audio>"]',
    "numpy": '["<audio>"]',
    "multitab": '["<audio>","auto","<hotwords>",5]',
    "streaming": '["<audio>"]',
    "paraformer": '[null,"<audio>","<batch_size>","<hotwords>"]',
}


def api_name(version: str, shape: str) -> str | None:
    """The name the client calls the function by: none on 3.x, where fn_index is the handle."""
    if version.startswith("3."):
        return None
    if shape == "paraformer":
        return "recognize"
    if shape in ("simple", "numpy"):
        return "transcribe" if version.startswith("6.") else "predict"
    return "transcribe"


def route(version: str, shape: str) -> str:
    """How the function is called: 3.x REST (its websocket queue for a generator), 4.16's queue, /call."""
    if version.startswith("3."):
        return detect.LEGACY_QUEUE if shape == "streaming" else detect.LEGACY
    return {"4.8.0": detect.QUEUE, "4.16.0": detect.QUEUE, "4.44.1": detect.SSE,
            "6.31.0": detect.SSE_PREFIXED}[version]


def settings(url: str, **changes: object) -> ServerConfig:
    """Nothing but the URL (and test-sized timeouts and retries): every other setting at its default."""
    return make_settings(url, **changes)


@pytest.fixture(scope="module", params=CASES, ids=lambda case: f"gradio-{case[0]}-{case[1]}")
def shaped(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    version, shape = request.param
    if shape == "streaming":
        engine, extra = "simulate", ["--app", shape, *NO_WAIT, "--simulate-text", FINAL]
    else:
        engine, extra = "sphinx", ["--app", shape]
    try:
        server = start_server(version, engine=engine, extra_args=extra,
                              log_dir=tmp_path_factory.mktemp(f"shape-{shape}-{version}"))
    except ServerEnvironmentError as error:
        pytest.fail(str(error), pytrace=False)
    with server:
        yield server, shape


@pytest.fixture(scope="module")
def clips() -> list[tuple[str, Path]]:
    """(sentence, recording): a 16 kHz WAV and a 44.1 kHz stereo MP3."""
    return [(SENTENCES[0], speech.synthesize(SENTENCES[0], fmt="wav", rate=16000)),
            (SENTENCES[1], speech.synthesize(SENTENCES[1], fmt="mp3", rate=44100, channels=2))]


def test_ping_prints_the_chosen_function(shaped: tuple[ServerProcess, str]) -> None:
    server, shape = shaped
    result = cli("ping", "--url", server.url)
    assert result.returncode == 0, result.stderr
    name = api_name(server.version, shape)
    expected = (rf"ok url={re.escape(server.url)} gradio={re.escape(server.version)} "
                rf"protocol={route(server.version, shape)} fn_index={FN_INDEX[shape]}"
                + (f" api_name={name}" if name else "")
                + rf" template={re.escape(TEMPLATE[shape])} output_index=0 latency_ms=\d+")
    assert re.fullmatch(expected, result.stdout.strip()), result.stdout


def test_a_run_with_nothing_but_the_url(shaped: tuple[ServerProcess, str], clips: list[tuple[str, Path]],
                                        tmp_path: Path) -> None:
    server, shape = shaped
    inp, out = tmp_path / "in", tmp_path / "out"
    for index, (_, clip) in enumerate(clips):
        place(inp, f"call {index}{clip.suffix}", clip)
    result = cli("run", str(inp), "-o", str(out), "--url", server.url)
    assert result.returncode == 0, result.stderr + server.log_tail()
    for index, (sentence, _) in enumerate(clips):
        text = (out / f"call {index}.txt").read_text(encoding="utf-8")
        if shape == "streaming":
            assert text == FINAL + "\n"  # the final transcript, not one of the partials before it
        else:
            assert wer(sentence, text) <= WER_BOUND, (shape, text)
    rows = ledger_rows(out / ".asrbatch")
    assert {row["outcome"] for row in rows.values()} == {"done"}


def only(*cases: tuple[str, str]) -> pytest.MarkDecorator:
    """Run a test on these (version, shape) servers of the module only."""
    return pytest.mark.parametrize("shaped", cases, indirect=True, ids=lambda case: f"gradio-{case[0]}-{case[1]}")


@only(*[case for case in CASES if case[1] in ("multitab", "paraformer")])
def test_hotwords_reach_the_textbox_labelled_for_them(shaped: tuple[ServerProcess, str],
                                                      clips: list[tuple[str, Path]]) -> None:
    server, shape = shaped
    sentence, clip = clips[0]
    with Client(settings(server.url)) as client:
        recognition = client.transcribe(clip, hotwords=["coffee", "cup"])
    assert wer(sentence, recognition.text) <= WER_BOUND
    assert re.search(r"event=recognize .*hotwords=2 ", server.log_text())
    if shape == "multitab":
        details = recognition.outputs[1]  # the JSON beside the transcript: the declared defaults went along
        assert (details["language"], details["beam_size"]) == ("auto", 5)


@only(("6.31.0", "multitab"), ("3.50.2", "multitab"))
def test_an_explicit_function_and_template_still_win(shaped: tuple[ServerProcess, str],
                                                     clips: list[tuple[str, Path]]) -> None:
    server, _ = shaped
    sentence, clip = clips[0]
    with Client(settings(server.url, fn_index=1, input_template=("<audio>", "en", "", 3), output_index=0)) as client:
        details = client.transcribe(clip).outputs[1]
        assert client.probe().template == ("<audio>", "en", "", 3)
    assert (details["language"], details["beam_size"]) == ("en", 3)
    assert wer(sentence, " ".join(segment["text"] for segment in details["segments"])) <= WER_BOUND


@only(("3.50.2", "streaming"))
def test_a_generator_not_announced_in_config_is_still_waited_for(
    shaped: tuple[ServerProcess, str], clips: list[tuple[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where ``/api/predict/`` answers ``is_generating: true``, the client moves to the queue for good."""
    server, _ = shaped
    # As if /config did not say the function is a generator (types.generator false).
    monkeypatch.setattr(detect, "first_route", lambda app, function: detect.LEGACY)
    with Client(settings(server.url)) as client:
        assert client.probe().protocol == detect.LEGACY
        for _ in range(2):
            assert client.transcribe(clips[0][1]).text == FINAL
        assert client.probe().protocol == detect.LEGACY_QUEUE


@only(("4.16.0", "simple"))
def test_a_missing_call_route_sends_the_client_to_the_queue(
    shaped: tuple[ServerProcess, str], clips: list[tuple[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 4.x whose /call is 404 (before 4.20) is called through /queue/join, even if its version misleads."""
    server, _ = shaped
    parse = detect.parse_config
    monkeypatch.setattr(detect, "parse_config", lambda data: dataclasses.replace(parse(data), has_call=True))
    sentence, clip = clips[0]
    with Client(settings(server.url)) as client:
        assert client.probe().protocol == detect.SSE
        assert wer(sentence, client.transcribe(clip).text) <= WER_BOUND
        assert client.probe().protocol == detect.QUEUE


@only(("4.44.1", "streaming"), ("6.31.0", "streaming"))
def test_a_generator_through_queue_data_gives_its_final_value(
    shaped: tuple[ServerProcess, str], clips: list[tuple[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """From sse_v2 on, /queue/data sends a generator's later partials as diffs; the completion is whole."""
    server, _ = shaped
    parse = detect.parse_config
    monkeypatch.setattr(detect, "parse_config", lambda data: dataclasses.replace(parse(data), has_call=False))
    with Client(settings(server.url)) as client:
        assert client.probe().protocol == detect.QUEUE
        assert client.transcribe(clips[0][1]).text == FINAL


# ---------------------------------------------------------------------------------------------
# queue(api_open=False): the REST routes are closed, only the queue runs events


@pytest.fixture(scope="module", params=VERSIONS, ids=lambda v: f"gradio-{v}")
def closed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    version: str = request.param
    try:
        server = start_server(version, engine="simulate",
                              extra_args=["--api-open", "false", *NO_WAIT, "--simulate-text", "heard {seconds} s"],
                              log_dir=tmp_path_factory.mktemp(f"closed-{version}"))
    except ServerEnvironmentError as error:
        pytest.fail(str(error), pytrace=False)
    with server:
        yield server


CLOSED_ROUTE = {"3.50.2": detect.LEGACY_QUEUE, "4.16.0": detect.QUEUE, "4.44.1": detect.SSE,
                "6.31.0": detect.SSE_PREFIXED}


def test_api_open_false_goes_through_the_queue(closed: ServerProcess, clips: list[tuple[str, Path]]) -> None:
    with requests.Session() as session:
        prefix = "/gradio_api" if closed.version.startswith("6.") else ""
        refused = session.post(f"{closed.url}{prefix}/api/predict/", json={"data": [None, None, 1, ""],
                                                                            "fn_index": 0}, timeout=10)
    assert refused.status_code == 404  # the trap: a login problem it is not
    clip = clips[0][1]
    with Client(settings(closed.url)) as client:
        info = client.probe()
        assert (info.fn_index, info.template) == (0, DEFAULT_TEMPLATE)
        for _ in range(2):
            heard = re.fullmatch(r"heard (\d+\.\d\d) s", client.transcribe(clip).text)
            assert heard is not None and abs(float(heard.group(1)) - speech.duration(clip)) < 0.05
        assert client.probe().protocol == CLOSED_ROUTE[closed.version]


@pytest.mark.parametrize("closed", ["3.50.2"], indirect=True, ids=lambda v: f"gradio-{v}")
def test_api_open_false_behind_a_proxy_without_websockets_is_explained(closed: ServerProcess,
                                                                       clips: list[tuple[str, Path]],
                                                                       tmp_path: Path) -> None:
    """The proxy (a scripted fault: it forwards plain HTTP only) stands for a reverse proxy that drops
    websocket upgrades, which leaves a 3.x app with api_open=False no route at all (4.x and later
    queue over plain HTTP)."""
    inp, out = tmp_path / "in", tmp_path / "out"
    place(inp, "a.wav", clips[0][1])
    with FaultProxy(closed.url) as proxy:
        result = cli("run", str(inp), "-o", str(out), "--url", proxy.url)
    assert result.returncode == 2, result.stderr
    assert "queue(api_open=False)" in result.stderr
    assert "does not pass websockets" in result.stderr
    assert "login" not in result.stderr
    assert ledger_rows(out / ".asrbatch")["a.wav"]["outcome"] == "pending"


# ---------------------------------------------------------------------------------------------
# One-off servers


def test_the_websocket_queue_carries_the_login(server_factory: Callable[..., ServerProcess],
                                               clips: list[tuple[str, Path]]) -> None:
    server = server_factory("3.50.2", auth=(USER, PASSWORD), extra_args=["--app", "streaming"])
    # Without the login cookie the queue refuses the websocket handshake.
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        websockets.sync.client.connect(server.url.replace("http", "ws", 1) + "/queue/join", open_timeout=10)
    assert refused.value.response.status_code == 403
    sentence, clip = clips[0]
    with Client(settings(server.url, username=USER, password=PASSWORD)) as client:
        assert client.probe().protocol == detect.LEGACY_QUEUE
        recognition = client.transcribe(clip)
    assert wer(sentence, recognition.text) <= WER_BOUND
    assert recognition.attempts == 1


@pytest.mark.parametrize("version", ["3.50.2", "4.16.0"])
def test_an_upload_over_the_limit_names_the_limit(version: str, server_factory: Callable[..., ServerProcess],
                                                  clips: list[tuple[str, Path]]) -> None:
    """Gradio 3.x and 4.16 have no upload limit of their own: the app refuses in the audio input."""
    server = server_factory(version, extra_args=["--app", "simple", "--max-file-size", "20kb"])
    clip = clips[0][1]
    assert clip.stat().st_size > 20 * 1024
    with Client(settings(server.url)) as client, pytest.raises(InputRejectedError) as caught:
        client.transcribe(clip)
    assert "the server accepts at most 20480 bytes" in str(caught.value)
    assert caught.value.permanent


@pytest.mark.parametrize("version", ["5.50.0"])
def test_an_error_message_lost_on_call_is_read_from_the_queue(
    version: str, server_factory: Callable[..., ServerProcess], clips: list[tuple[str, Path]], tmp_path: Path
) -> None:
    """5.50's /call answers a gr.Error with ``event: error`` and ``data: null`` (4.44 too: test_servers)."""
    server = server_factory(version, extra_args=["--app", "simple"])
    bogus = tmp_path / "notes.wav"
    bogus.write_bytes(b"These are my meeting notes, not audio.\n" * 40)
    sentence, clip = clips[0]
    with Client(settings(server.url)) as client:
        assert client.probe().protocol == detect.SSE_PREFIXED
        with pytest.raises(InputRejectedError, match="cannot decode audio") as caught:
            client.transcribe(bogus)
        assert caught.value.permanent
        assert client.probe().protocol == detect.QUEUE  # from then on
        assert wer(sentence, client.transcribe(clip).text) <= WER_BOUND
