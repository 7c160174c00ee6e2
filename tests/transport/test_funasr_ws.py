"""The FunASR runtime's WebSocket protocol (offline) through the client, against the reference server.

Two reference servers for the module: sphinx on plain ws (what is heard, and when) and simulate on
wss with a self-signed certificate (what reaches the engine, TLS, slots).  What a real runtime
server does and the reference server never does on demand -- a decoder that throws and so never
answers, a crash that drops the socket mid-result, partial results before the offline one -- comes
from :class:`ScriptedRuntime`, a few lines of WebSocket server scripted per connection.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.server import ServerConnection, serve

from asrbatch.config import RetryConfig, ServerConfig
from asrbatch.errors import EndpointError, InputRejectedError, RecognitionError, ServerUnavailableError
from asrbatch.transport import FunasrWsClient, client_for, connect_one, ping
from asrbatch.transport.funasr_ws import Answers, answer_segments, start_message
from tests.support import speech
from tests.support.faultproxy import FaultProxy, respond
from tests.support.servers import (
    REPO,
    ServerEnvironmentError,
    ServerProcess,
    free_port,
    gradio_python,
    start_server,
)
from tests.support.tls import self_signed_certificate
from tests.support.wer import wer
from tests.transport.conftest import SleepRecorder

VERSION = "6.31.0"
MAX_WER = 0.25
RECOGNIZE_RUNNING = r"event=recognize .* running=(\d+) "


def started(log_dir: Path, **kwargs: Any) -> ServerProcess:
    try:
        return start_server(VERSION, protocol="funasr-ws", log_dir=log_dir, **kwargs)
    except ServerEnvironmentError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def sphinx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with started(tmp_path_factory.mktemp("ws-sphinx")) as server:
        yield server


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]) -> Iterator[ServerProcess]:
    cert, key = certificate
    arguments = ["--simulate-text", "heard [{hotwords}] in {seconds}", "--simulate-rtf", "0.1",
                 "--concurrency", "4", "--certfile", str(cert), "--keyfile", str(key)]
    with started(tmp_path_factory.mktemp("wss-simulate"), engine="simulate", extra_args=arguments) as server:
        yield server


@pytest.fixture(scope="module")
def clips() -> list[tuple[str, Path]]:
    return [(sentence, speech.synthesize(sentence, fmt="wav", rate=16000)) for sentence in speech.SENTENCES[4:8]]


@pytest.fixture(scope="module")
def tone() -> Path:
    return speech.tone(1.0)


# -- what is heard, and when --------------------------------------------------------------------


def test_ping_names_the_protocol_and_the_server(sphinx: ServerProcess,
                                                settings_for: Callable[..., ServerConfig]) -> None:
    line = ping(settings_for(sphinx.url)).line()
    assert re.fullmatch(rf"ok url={re.escape(sphinx.url)} protocol=funasr-ws server=funasr-runtime latency_ms=\d+",
                        line), line


def test_sentences_come_back_with_sentence_and_word_timings(sphinx: ServerProcess, clips: list[tuple[str, Path]],
                                                            settings_for: Callable[..., ServerConfig]) -> None:
    with client_for(settings_for(sphinx.url)) as client:
        for sentence, clip in clips:
            recognition = client.transcribe(clip, duration=speech.duration(clip))
            assert wer(sentence, recognition.text) <= MAX_WER, recognition.text
            assert recognition.outputs[0]["is_final"] is False  # the offline server never sets it
            length = speech.duration(clip)
            assert recognition.segments
            previous_end = 0.0
            for segment in recognition.segments:
                assert previous_end <= segment.start < segment.end <= length + 0.05
                previous_end = segment.end
                assert " ".join(w.text for w in segment.words) == segment.text.rstrip(".")
                assert all(segment.start <= w.start <= w.end <= segment.end for w in segment.words)


@pytest.mark.parametrize(("fmt", "rate", "send_format"), [
    ("mp3", 44100, "pcm"),    # not a WAV: sent as the file, wav_format mp3
    ("wav", 16000, "file"),   # a WAV sent whole (wav_format wav) when asked to
    ("wav", 8000, "pcm"),     # samples at the WAV's own rate (audio_fs 8000)
])
def test_files_and_samples_reach_the_server_in_their_form(sphinx: ServerProcess, fmt: str, rate: int,
                                                          send_format: str,
                                                          settings_for: Callable[..., ServerConfig]) -> None:
    sentence = speech.PHONE_SENTENCES[1]
    clip = speech.synthesize(sentence, fmt=fmt, rate=rate)
    with client_for(settings_for(sphinx.url, send_format=send_format)) as client:
        assert wer(sentence, client.transcribe(clip).text) <= MAX_WER


def test_hotwords_arrive_as_a_weighted_json_object(secure: ServerProcess, tone: Path,
                                                   settings_for: Callable[..., ServerConfig]) -> None:
    settings = settings_for(secure.url, verify_tls=False, hotword_weight=35)
    with client_for(settings) as client:
        recognition = client.transcribe(tone, hotwords=["alpha", "beta gamma", "阿里巴巴"])
    assert recognition.text.startswith("heard [alpha,beta gamma,阿里巴巴] in 1.0")
    assert '"alpha": 35, "beta gamma": 35, "阿里巴巴": 35' in secure.log_text()


def test_a_self_signed_certificate_works_unverified_and_fails_clearly_verified(
        secure: ServerProcess, certificate: tuple[Path, Path], tone: Path,
        settings_for: Callable[..., ServerConfig], sleep: SleepRecorder) -> None:
    assert ping(settings_for(secure.url, verify_tls=False)).server.protocol == "funasr-ws"
    with pytest.raises(EndpointError) as caught:
        ping(settings_for(secure.url), sleep=sleep)
    message = str(caught.value)
    assert message.startswith(f"TLS certificate of {secure.url} not trusted: ")
    assert "self-signed" in message and "server.verify_tls" in message and sleep.waits == []
    with client_for(settings_for(secure.url, verify_tls=str(certificate[0]))) as client:
        assert client.transcribe(tone).text.startswith("heard [] in 1.0")
    plain = secure.url.replace("wss://", "ws://")
    with pytest.raises(ServerUnavailableError, match=r"a server with TLS needs a wss:// URL"):
        ping(settings_for(plain, retry=RetryConfig(attempts=1)), sleep=sleep)


def test_requests_in_flight_keep_to_the_limit(secure: ServerProcess, tone: Path,
                                              settings_for: Callable[..., ServerConfig]) -> None:
    with FunasrWsClient(settings_for(secure.url, verify_tls=False, concurrency=2)) as client:
        assert client.capacity == 2
        client.probe()
        before = len(re.findall(RECOGNIZE_RUNNING, secure.log_text()))
        with ThreadPoolExecutor(max_workers=6) as pool:
            texts = list(pool.map(lambda _: client.transcribe(tone).text, range(6)))
    assert all(text.startswith("heard") for text in texts)
    running = [int(n) for n in re.findall(RECOGNIZE_RUNNING, secure.log_text())][before:]
    assert len(running) == 6 and max(running) <= 2


def test_undecodable_audio_is_the_files_fault(sphinx: ServerProcess, tmp_path: Path,
                                              settings_for: Callable[..., ServerConfig], sleep: SleepRecorder) -> None:
    junk = tmp_path / "notes.mp3"
    junk.write_bytes(b"these are meeting notes, not audio\n" * 50)
    with client_for(settings_for(sphinx.url), sleep=sleep) as client, pytest.raises(InputRejectedError) as caught:
        client.transcribe(junk)
    assert caught.value.permanent and caught.value.path == junk
    assert "server rejected the file: cannot decode audio" in str(caught.value) and sleep.waits == []


def test_a_server_that_is_not_running(settings_for: Callable[..., ServerConfig], sleep: SleepRecorder) -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnavailableError) as caught:
        ping(settings_for(url), sleep=sleep)
    assert str(caught.value) == (f"server {url} unavailable after 3 attempts: connection refused on {url} "
                                 "(check that it is running: asrbatch ping)")
    assert sleep.waits == [1.0, 2.0]


def test_an_http_server_at_the_address_is_a_configuration_error(settings_for: Callable[..., ServerConfig],
                                                                 sleep: SleepRecorder) -> None:
    with FaultProxy("http://127.0.0.1:9") as web:
        web.add("GET", "^/$", respond(404, "not here"), times=None)
        url = web.url.replace("http://", "ws://")
        with pytest.raises(EndpointError, match=r"did not accept a WebSocket connection \(HTTP 404\).*port 10095"):
            ping(settings_for(url), sleep=sleep)
    assert sleep.waits == []


# -- what only a scripted server shows ----------------------------------------------------------


class ScriptedRuntime:
    """A WebSocket server answering offline utterances as a FunASR runtime server, or failing as one.

    The reference server always answers; a real C++ server whose decoder throws never answers, one
    that crashes drops the socket mid-result, a 2pass server sends online partials first.  Each
    utterance that carries audio is handled by the next step of *script* (then by ``"answer"``):
    ``"answer"``, ``"drop"`` (close the socket without a word), ``"silent"`` (never answer),
    ``"partials"`` (online results, then the offline one), ``"chatter"`` (online results forever).
    An empty utterance (a probe) is always answered.
    """

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.starts: list[dict[str, Any]] = []
        self.audio_bytes: list[int] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.server = serve(self.handle, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedRuntime:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.thread.join(timeout=10)

    def handle(self, connection: ServerConnection) -> None:
        audio = 0
        start: dict[str, Any] = {}
        for message in connection:
            if isinstance(message, bytes):
                audio += len(message)
                continue
            fields = json.loads(message)
            if fields.get("is_speaking") is True:
                start = fields
            if fields.get("is_speaking") is not False:
                continue
            if not audio:
                connection.send(json.dumps({"mode": "offline", "text": "", "wav_name": start.get("wav_name"),
                                            "is_final": False}))
                continue
            with self.lock:
                self.starts.append(start)
                self.audio_bytes.append(audio)
                step = self.script.pop(0) if self.script else "answer"
            self.act(connection, step, start, audio)
            return

    def act(self, connection: ServerConnection, step: str, start: dict[str, Any], audio: int) -> None:
        result = {"mode": "offline", "text": f"scripted {audio} bytes", "wav_name": start.get("wav_name"),
                  "is_final": False}
        if step == "drop":
            connection.socket.close()
        elif step == "silent":
            self.stopping.wait(60)
        elif step == "partials":
            for piece in ("scr", "scripted"):
                connection.send(json.dumps({"mode": "2pass-online", "text": piece, "is_final": False}))
            connection.send(json.dumps({**result, "mode": "2pass-offline"}))
        elif step == "chatter":
            while not self.stopping.wait(0.02):
                connection.send(json.dumps({"mode": "online", "text": "still talking", "is_final": False}))
        else:
            connection.send(json.dumps(result))


def test_a_socket_dropped_before_the_result_is_retried(tone: Path, settings_for: Callable[..., ServerConfig],
                                                       sleep: SleepRecorder) -> None:
    with ScriptedRuntime("drop") as runtime, client_for(settings_for(runtime.url), sleep=sleep) as client:
        recognition = client.transcribe(tone)
    assert recognition.attempts == 2 and sleep.waits == [1.0]
    assert recognition.text == f"scripted {runtime.audio_bytes[-1]} bytes"
    pcm_bytes = len(speech.pcm(tone))
    assert runtime.audio_bytes == [pcm_bytes, pcm_bytes]  # the samples, without the WAV header
    assert runtime.starts[0] == {"mode": "offline", "chunk_size": [5, 10, 5], "chunk_interval": 10,
                                 "wav_name": tone.name, "wav_format": "pcm", "audio_fs": 16000,
                                 "is_speaking": True, "itn": True}


def test_a_result_never_sent_ends_at_the_read_timeout_and_the_health_check_decides(
        tone: Path, settings_for: Callable[..., ServerConfig], sleep: SleepRecorder) -> None:
    with ScriptedRuntime("silent", "silent") as runtime:
        settings = settings_for(runtime.url, read_timeout=0.4, read_timeout_per_audio_second=0.0,
                                retry=RetryConfig(attempts=2, initial_wait=1.0, jitter=0.0))
        started = time.monotonic()
        with client_for(settings, sleep=sleep) as client, pytest.raises(RecognitionError) as caught:
            client.transcribe(tone, duration=1.0)
        assert time.monotonic() - started < 5
        assert str(caught.value).startswith(
            f"server kept failing on this file after 2 attempts: no result for {tone.name} within the 0.4 s "
            f"read timeout on {runtime.url}")
        assert not caught.value.permanent
        # Guarded: the known clip gets no answer either, so the server is the one to blame.
        runtime.script = ["silent", "silent", "silent"]
        with pytest.raises(ServerUnavailableError, match="stopped doing work: .* a known test clip failed too"):
            connect_one(settings, sleep=sleep).transcribe(tone, duration=1.0)


def test_partial_results_are_skipped_and_chatter_ends_at_the_deadline(
        tone: Path, settings_for: Callable[..., ServerConfig], sleep: SleepRecorder) -> None:
    with ScriptedRuntime("partials", "chatter") as runtime:
        settings = settings_for(runtime.url, deadline=0.6, read_timeout_per_audio_second=0.0,
                                retry=RetryConfig(attempts=1))
        with client_for(settings, sleep=sleep) as client:
            assert client.transcribe(tone).text == f"scripted {runtime.audio_bytes[0]} bytes"
            started = time.monotonic()
            with pytest.raises(RecognitionError, match=r"no result for .* within the 0\.6 s deadline"):
                client.transcribe(tone, duration=1.0)
            assert time.monotonic() - started < 5


CHILD = """
import json, sys
from pathlib import Path
import websockets
from asrbatch.config import RetryConfig, ServerConfig
from asrbatch.transport.funasr_ws import FunasrWsClient
secure, dropping, clip = sys.argv[1:4]
retry = RetryConfig(attempts=2, initial_wait=0.0, jitter=0.0)
with FunasrWsClient(ServerConfig(url=secure, verify_tls=False, retry=retry)) as client:
    heard = client.transcribe(Path(clip), hotwords=["alpha"])
with FunasrWsClient(ServerConfig(url=dropping, retry=retry), sleep=lambda seconds: None) as client:
    dropped = client.transcribe(Path(clip))
print(json.dumps({"websockets": websockets.__version__, "text": heard.text, "attempts": dropped.attempts}))
"""


@pytest.mark.parametrize(("gradio", "websockets_version"), [("3.50.2", "11."), ("4.44.1", "12.")])
def test_the_client_runs_on_older_websockets(gradio: str, websockets_version: str, secure: ServerProcess,
                                             tone: Path, tmp_path: Path) -> None:
    """The Gradio 3.50 and 4.44 venvs hold websockets 11 and 12; tenacity (pure Python) is lent to them."""
    import tenacity

    lent = tmp_path / "lent"
    lent.mkdir()
    (lent / "tenacity").symlink_to(Path(tenacity.__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(lent)])}
    with ScriptedRuntime("drop") as runtime:
        done = subprocess.run([str(gradio_python(gradio)), "-c", CHILD, secure.url, runtime.url, str(tone)],
                              capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["websockets"].startswith(websockets_version)
    assert found["text"].startswith("heard [alpha] in 1.0") and found["attempts"] == 2


# -- the messages, pure -------------------------------------------------------------------------


def test_the_start_message_carries_hotwords_as_a_json_string() -> None:
    message = json.loads(start_message(wav_name="会议.wav", wav_format="pcm", audio_fs=16000,
                                       hotwords=["阿里巴巴", "hello world"], weight=20, itn=False))
    assert message["hotwords"] == '{"阿里巴巴": 20, "hello world": 20}'
    assert json.loads(message["hotwords"]) == {"阿里巴巴": 20, "hello world": 20}
    assert (message["mode"], message["is_speaking"], message["itn"]) == ("offline", True, False)
    assert "hotwords" not in json.loads(start_message(wav_name="a", wav_format="mp3", audio_fs=None, hotwords=[],
                                                      weight=20, itn=True))


def test_sentence_stamps_of_the_cpp_server_become_segments_in_seconds() -> None:
    # The shape the runtime documents, a Chinese sentence timed character by character.
    answer = {"is_final": False, "mode": "2pass-offline", "text": "阿里开源的语音识别真是太牛了", "wav_name": "h5",
              "stamp_sents": [{"end": 4385, "punc": "", "start": 820,
                               "text_seg": "阿 里 开 源 的 语 音 识 别 真 是 太 牛 了",
                               "ts_list": [[820, 1060], [1060, 1319], [1319, 1480], [1480, 1760], [1760, 2220],
                                           [2220, 2420], [2420, 2659], [2659, 2820], [2820, 3300], [3300, 3480],
                                           [3480, 3659], [3659, 3820], [3820, 4060], [4060, 4385]]}],
              "timestamp": "[[820,1060],[1060,1319]]"}
    (segment,) = answer_segments(answer)
    assert (segment.start, segment.end, segment.text) == (0.82, 4.385, "阿里开源的语音识别真是太牛了")
    assert [w.text for w in segment.words] == list("阿里开源的语音识别真是太牛了")
    assert (segment.words[1].start, segment.words[1].end) == (1.06, 1.319)
    # Without sentences: one segment timed by the word stamps (a string, as the C++ server sends it).
    (only,) = answer_segments({"text": "你好，世界。", "timestamp": "[[100,300],[300,500],[600,800],[800,1000]]"})
    assert (only.start, only.end, only.text) == (0.1, 1.0, "你好，世界。")
    assert [(w.text, w.start) for w in only.words] == [("你", 0.1), ("好", 0.3), ("世", 0.6), ("界", 0.8)]
    assert answer_segments({"text": "", "mode": "offline"}) == ()


# -- gathering the answers of one utterance (pure), as each server sends them


def gathered(messages: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """What :class:`Answers` makes of *messages*, and how many it read before the last."""
    answers = Answers()
    for read, message in enumerate(messages, start=1):
        if answers.add(message):
            return answers.result(), read
    raise AssertionError(f"still waiting after {len(messages)} messages")


def test_the_cpp_servers_one_answer_is_the_result_as_it_came() -> None:
    answer = {"is_final": False, "mode": "offline", "text": "今天天气不错。", "wav_name": "a",
              "timestamp": "[[100,300],[300,500]]", "stamp_sents": []}
    result, read = gathered([answer, {"mode": "offline", "text": "never read", "is_final": False}])
    assert (result, read) == (answer, 1)


def test_the_python_servers_pieces_are_joined_until_the_answer_to_the_end() -> None:
    """funasr_wss_server.py before 2026: one answer per stretch of speech, ``is_final`` = whether
    audio was still coming; the answer to the end message says false."""
    pieces = [{"mode": "offline", "text": "今天天气不错，", "wav_name": "a", "is_final": True},
              {"mode": "offline", "text": "我们去公园。", "wav_name": "a", "is_final": True},
              {"mode": "offline", "text": "Then we go home.", "wav_name": "a", "is_final": False}]
    result, read = gathered(pieces)
    assert read == 3 and result["text"] == "今天天气不错，我们去公园。Then we go home."
    assert "timestamp" not in result and "stamp_sents" not in result  # each piece's times are its own
    english, _ = gathered([{"mode": "offline", "text": "Good morning.", "is_final": True},
                           {"mode": "offline", "text": "See you.", "is_final": False}])
    assert english["text"] == "Good morning. See you."


def test_the_2026_python_server_ends_with_an_acknowledgement() -> None:
    """From 2026 every answer says ``is_final`` true; ``is_end`` ends the utterance, with ``error``
    when the server failed."""
    result, read = gathered([{"mode": "offline", "text": "第一句。", "is_final": True, "spk_name": "unknown"},
                             {"mode": "offline", "text": "第二句。", "is_final": True, "spk_name": "unknown"},
                             {"mode": "offline", "wav_name": "a", "is_final": True, "is_end": True}])
    assert (result["text"], read) == ("第一句。第二句。", 3)
    failed, _ = gathered([{"mode": "offline", "wav_name": "a", "is_final": False, "is_end": True,
                           "error": "offline inference failed: CUDA out of memory"}])
    assert failed["text"] == "" and failed["error"] == "offline inference failed: CUDA out of memory"


def test_online_partials_and_other_frames_are_not_pieces() -> None:
    result, read = gathered([{"mode": "2pass-online", "text": "今天", "is_final": False}, "not a dict",
                             {"mode": "2pass-offline", "text": "今天天气不错。", "is_final": False}])
    assert (result["text"], read) == ("今天天气不错。", 3)
