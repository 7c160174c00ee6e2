"""Against the real reference server of each Gradio generation: ping, function checks, errors, login."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from asrbatch.config import DEFAULT_TEMPLATE, ServerConfig
from asrbatch.errors import AudioError, EndpointError, FileError, InputRejectedError
from asrbatch.transport import LEGACY, SSE, SSE_PREFIXED, Client, detect, ping
from tests.support import speech
from tests.support.servers import GRADIO_VERSIONS, ServerEnvironmentError, ServerProcess, start_server
from tests.support.wer import wer

PROTOCOLS = {"3.50.2": LEGACY, "4.44.1": SSE, "6.31.0": SSE_PREFIXED}
SENTENCE = "The weather is very nice today."
USER, PASSWORD = "alice", "correct horse battery staple"
UPLOAD_LIMIT = 20 * 1024


@pytest.fixture(scope="module")
def clip() -> Path:
    return speech.synthesize(SENTENCE, fmt="wav", rate=16000)


def test_ping_reports_version_and_protocol(gradio_server: ServerProcess,
                                           settings_for: Callable[..., ServerConfig]) -> None:
    result = ping(settings_for(gradio_server.url))
    info = result.server
    protocol = PROTOCOLS[gradio_server.version]
    assert (info.gradio_version, info.protocol) == (gradio_server.version, protocol)
    assert (info.fn_index, info.inputs, info.outputs, info.auth_required) == (0, 4, 2, False)
    assert info.api_prefix == ("/gradio_api" if protocol == SSE_PREFIXED else "")
    # Nothing configured: the WebUI's layout is read from /config, exactly as it was always called.
    assert (info.template, info.output_index) == (DEFAULT_TEMPLATE, 0)
    chosen = r' template=\[null,"<audio>","<batch_size>","<hotwords>"\] output_index=0'
    if protocol == LEGACY:
        assert info.api_name is None
        assert info.max_file_size is None  # 3.x has no upload limit in /config
        expected = (rf"ok url={re.escape(gradio_server.url)} gradio=3\.50\.2 protocol=legacy fn_index=0"
                    rf"{chosen} latency_ms=\d+")
    else:
        assert info.api_name == "recognize"
        assert info.max_file_size == 200 * 1024 * 1024  # the reference server's default
        expected = (rf"ok url={re.escape(gradio_server.url)} gradio={re.escape(gradio_server.version)} "
                    rf"protocol={protocol} fn_index=0 api_name=recognize{chosen} latency_ms=\d+")
    assert re.fullmatch(expected, result.line()), result.line()


def test_deep_ping_transcribes_the_clip(gradio_server: ServerProcess, settings_for: Callable[..., ServerConfig],
                                        clip: Path) -> None:
    result = ping(settings_for(gradio_server.url), deep=True, clip=clip)
    assert re.search(r" latency_ms=\d+ roundtrip_ms=\d+ text_chars=\d+$", result.line())
    assert result.text_chars and result.text_chars >= 20
    assert result.roundtrip_ms is not None and result.roundtrip_ms > 0


def test_missing_fn_index(gradio_server: ServerProcess, settings_for: Callable[..., ServerConfig]) -> None:
    with pytest.raises(EndpointError) as caught, Client(settings_for(gradio_server.url, fn_index=7)) as client:
        client.probe()
    message = str(caught.value)
    assert message.startswith("fn_index 7 not found: the app has 4 functions (0: ")
    assert "3: " in message and "server.fn_index" in message


def test_missing_api_name(gradio_server: ServerProcess, settings_for: Callable[..., ServerConfig]) -> None:
    with pytest.raises(EndpointError, match=r"api_name 'transcribe' not found: the app has 4 functions"):
        ping(settings_for(gradio_server.url, api_name="transcribe"))


def test_function_with_other_inputs(gradio_server: ServerProcess, settings_for: Callable[..., ServerConfig]) -> None:
    with pytest.raises(EndpointError, match=r"fn_index 3 .*takes 0 inputs but server.input_template has 4 values"):
        ping(settings_for(gradio_server.url, fn_index=3, input_template=DEFAULT_TEMPLATE))
    with pytest.raises(EndpointError, match=r"fn_index 3 .*has no audio or file input \(its inputs: none\)"):
        ping(settings_for(gradio_server.url, fn_index=3))


def test_configured_api_name_wins(gradio_server: ServerProcess, settings_for: Callable[..., ServerConfig],
                                  clip: Path) -> None:
    if gradio_server.version == "3.50.2":
        pytest.skip("3.x handlers of the WebUI have no api_name")
    with Client(settings_for(gradio_server.url, fn_index=3, api_name="recognize")) as client:
        assert client.probe().fn_index == 0
        assert wer(SENTENCE, client.transcribe(clip).text) <= 0.25


def test_template_values_reach_the_function(gradio_server: ServerProcess,
                                            settings_for: Callable[..., ServerConfig], clip: Path) -> None:
    settings = settings_for(gradio_server.url, batch_size=3, output_index=1)
    with Client(settings) as client:
        details = client.transcribe(clip, hotwords="weather,today").text
    # output 1 is the details Markdown of the WebUI: it counts the hotwords it received
    assert "Hotwords: 2 received" in details


def test_undecodable_audio_is_the_files_fault(gradio_server: ServerProcess,
                                              settings_for: Callable[..., ServerConfig], tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.wav"
    bogus.write_bytes(b"this is not audio at all" * 50)
    with Client(settings_for(gradio_server.url)) as client:
        with pytest.raises(FileError) as caught:
            client.transcribe(bogus)
        if gradio_server.version == "4.44.1":
            # 4.44's /call sends `event: error` with data null whatever the handler raised; its queue
            # route carries the message, and is used from then on.
            assert client.probe().protocol == "queue"
    assert isinstance(caught.value, InputRejectedError)
    assert "cannot decode audio" in str(caught.value)
    assert caught.value.permanent
    assert caught.value.path == bogus


def test_unreadable_recording(gradio_server: ServerProcess, settings_for: Callable[..., ServerConfig],
                              tmp_path: Path) -> None:
    missing = tmp_path / "gone.wav"
    with Client(settings_for(gradio_server.url)) as client, pytest.raises(AudioError, match="cannot read") as caught:
        client.transcribe(missing)
    assert caught.value.path == missing


# ---------------------------------------------------------------------------------------------
# A server with a login and an upload limit


@pytest.fixture(scope="module", params=GRADIO_VERSIONS, ids=lambda v: f"gradio-{v}")
def guarded_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    version: str = request.param
    try:
        server = start_server(version, auth=(USER, PASSWORD), extra_args=["--max-file-size", "20kb"],
                              log_dir=tmp_path_factory.mktemp(f"guarded-{version}"))
    except ServerEnvironmentError as error:
        pytest.fail(str(error), pytrace=False)
    with server:
        yield server


def test_login_with_the_right_password(guarded_server: ServerProcess, settings_for: Callable[..., ServerConfig],
                                       clip: Path) -> None:
    settings = settings_for(guarded_server.url, username=USER, password=PASSWORD)
    with Client(settings) as client:
        info = client.probe()
        assert info.auth_required
        small = speech.synthesize("Thank you very much for your help.", fmt="opus", rate=16000)
        assert small.stat().st_size < UPLOAD_LIMIT
        assert wer("Thank you very much for your help.", client.transcribe(small).text) <= 0.25


def test_login_with_a_wrong_password(guarded_server: ServerProcess,
                                     settings_for: Callable[..., ServerConfig]) -> None:
    settings = settings_for(guarded_server.url, username=USER, password="wrong password")
    with pytest.raises(EndpointError) as caught:
        ping(settings)
    message = str(caught.value)
    assert message.startswith(f"login refused for user 'alice' at {guarded_server.url}: Incorrect credentials")
    assert settings.password_env in message
    assert "wrong password" not in message


def test_login_needed_but_not_configured(guarded_server: ServerProcess,
                                         settings_for: Callable[..., ServerConfig]) -> None:
    with pytest.raises(EndpointError, match=r"requires a login and none is configured.*server\.username"):
        ping(settings_for(guarded_server.url))


def test_upload_limit(guarded_server: ServerProcess, settings_for: Callable[..., ServerConfig], clip: Path) -> None:
    assert clip.stat().st_size > UPLOAD_LIMIT
    settings = settings_for(guarded_server.url, username=USER, password=PASSWORD)
    with Client(settings) as client, pytest.raises(InputRejectedError) as caught:
        client.transcribe(clip)
    if guarded_server.version != "3.50.2":
        assert client.probe().max_file_size == UPLOAD_LIMIT
        assert f"max upload size of {UPLOAD_LIMIT} bytes" in str(caught.value)
    else:  # no limit in 3.x's /config: the app's audio input refuses, and says so
        assert f"the server accepts at most {UPLOAD_LIMIT} bytes" in str(caught.value)


def test_login_again_after_a_server_restart(guarded_server: ServerProcess,
                                            settings_for: Callable[..., ServerConfig]) -> None:
    if guarded_server.version != "6.31.0":
        pytest.skip("one generation is enough: the login route is the same on all")
    small = speech.synthesize("Thank you very much for your help.", fmt="opus", rate=16000)
    with Client(settings_for(guarded_server.url, username=USER, password=PASSWORD)) as client:
        client.transcribe(small)
        guarded_server.restart()  # the server forgets its sessions
        assert client.transcribe(small).attempts == 1


def test_unnamed_function_goes_through_the_queue(gradio_server: ServerProcess,
                                                 settings_for: Callable[..., ServerConfig], clip: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A function without api_name (``api_name=False``) is joined to the queue by fn_index."""
    if gradio_server.version == "3.50.2":
        pytest.skip("3.x calls by fn_index anyway")
    # The reference WebUI names all its functions: read its /config as if fn 0 had no name.
    monkeypatch.setattr(detect, "_callable_name", lambda dep, protocol: None)
    with Client(settings_for(gradio_server.url)) as client:
        assert client.probe().api_name is None
        recognition = client.transcribe(clip)
        assert wer(SENTENCE, recognition.text) <= 0.25
    with Client(settings_for(gradio_server.url)) as client, pytest.raises(InputRejectedError,
                                                                          match="cannot decode audio"):
        client.transcribe(Path(__file__))  # a Python file sent as audio
