"""The server's parts without a web server: options, decoding, recognition service, reports."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from asrbatch.server import reports
from asrbatch.server.audio import AudioDecodeError, decode_to_wav
from asrbatch.server.engines import EngineSettings, EngineUnavailable, create_engine
from asrbatch.server.engines.simulate import SimulatedEngine
from asrbatch.server.engines.sphinx import resolve_model, words_to_segments
from asrbatch.server.options import parse_options, parse_size
from asrbatch.server.service import InputError, Recognizer, clamp_batch_size, parse_hotwords

pytestmark = pytest.mark.unit


def tone(path: Path, seconds: float, extra: tuple[str, ...] = ()) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:duration={seconds}",
            *extra,
            str(path),
        ],
        check=True,
    )
    return path


# --- options -------------------------------------------------------------------------------


def test_defaults_are_safe() -> None:
    options = parse_options([], {})
    assert (options.host, options.port, options.concurrency) == ("127.0.0.1", 7860, 1)
    assert options.engine.name == "sphinx" and options.engine.device == "cpu"
    assert options.max_file_size == 200 * 1024 * 1024
    assert options.auth is None and options.temp_dir is None


def test_login_comes_from_the_environment() -> None:
    environ = {"ASRBATCH_SERVER_USERNAME": "alice", "ASRBATCH_SERVER_PASSWORD": "pw"}
    assert parse_options([], environ).auth == ("alice", "pw")


def test_funasr_models_come_from_flags_or_environment() -> None:
    environ = {"ASRBATCH_FUNASR_MODEL": "/models/asr", "ASRBATCH_FUNASR_PUNC_MODEL": "/m/punc"}
    options = parse_options(["--engine", "funasr", "--punc-model", "/flag/punc"], environ)
    assert options.engine.model == "/models/asr"
    assert options.engine.punc_model == "/flag/punc"
    assert parse_options(["--engine", "sphinx"], environ).engine.model is None


def test_simulate_options_have_two_spellings() -> None:
    short = parse_options(["--engine", "simulate", "--simulate-rtf", "0.2"], {})
    long = parse_options(["--simulate-seconds-per-audio-second", "0.2"], {})
    assert short.engine.simulate_seconds_per_audio_second == 0.2
    assert long.engine.simulate_seconds_per_audio_second == 0.2


def test_each_protocol_has_its_usual_port() -> None:
    ports = {
        protocol: parse_options(["--protocol", protocol], {}).port
        for protocol in ("gradio", "openai", "funasr-ws")
    }
    assert ports == {"gradio": 7860, "openai": 8000, "funasr-ws": 10095}
    assert parse_options(["--protocol", "openai", "--port", "9000"], {}).port == 9000
    options = parse_options([], {})
    assert (options.protocol, options.app, options.api_open, options.allow_url_inputs) == (
        "gradio",
        "paraformer",
        True,
        False,
    )
    shaped = parse_options(["--app", "multitab", "--api-open", "false", "--allow-url-inputs"], {})
    assert (shaped.app, shaped.api_open, shaped.allow_url_inputs) == ("multitab", False, True)


def test_api_key_comes_from_the_named_variable() -> None:
    assert parse_options(["--protocol", "openai"], {}).api_key is None
    assert parse_options(["--protocol", "openai"], {"ASRBATCH_SERVE_API_KEY": "k1"}).api_key == "k1"
    named = parse_options(["--protocol", "openai", "--api-key-env", "MY_KEY"], {"MY_KEY": "k2"})
    assert named.api_key == "k2"
    # The key is the openai front's; the Gradio login stays the gradio front's.
    login = {
        "ASRBATCH_SERVER_USERNAME": "alice",
        "ASRBATCH_SERVER_PASSWORD": "pw",
        "ASRBATCH_SERVE_API_KEY": "k",
    }
    assert parse_options([], login).api_key is None
    assert parse_options(["--protocol", "openai"], login).auth is None


def test_tls_files_come_in_pairs(tmp_path: Path) -> None:
    certificate, key = tmp_path / "c.pem", tmp_path / "k.pem"
    certificate.write_text("c")
    key.write_text("k")
    options = parse_options(
        ["--protocol", "funasr-ws", "--certfile", str(certificate), "--keyfile", str(key)], {}
    )
    assert (options.certfile, options.keyfile) == (certificate, key)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--protocol", "openai", "--app", "simple"], "--app applies to --protocol gradio only"),
        (["--protocol", "funasr-ws", "--api-open", "false"], "--api-open applies to --protocol gradio only"),
        (["--api-key-env", "KEY"], "--api-key-env applies to --protocol openai only"),
        (["--protocol", "openai", "--api-key-env", "UNSET_KEY"], "UNSET_KEY: the variable is not set"),
        (["--protocol", "funasr-ws", "--certfile", "c.pem"], "give both --certfile and --keyfile"),
        (
            ["--protocol", "funasr-ws", "--certfile", "/no/c.pem", "--keyfile", "/no/k.pem"],
            "no such file: /no/c.pem",
        ),
        (["--certfile", "/no/c.pem", "--keyfile", "/no/k.pem"], "apply to --protocol openai and funasr-ws"),
        (["--api-open", "maybe"], "must be true or false"),
    ],
)
def test_protocol_options_are_checked(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        parse_options(argv, {})
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("200mb", 200 * 1024**2),
        ("5 MB", 5 * 1024**2),
        ("64kb", 65536),
        ("1g", 1024**3),
        ("1000", 1000),
        ("none", None),
        ("0", None),
    ],
)
def test_sizes(text: str, size: int | None) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "argv", [["--port", "0"], ["--concurrency", "-1"], ["--max-file-size", "lots"], ["--engine", "whisper"]]
)
def test_bad_usage_exits_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        parse_options(argv, {})
    assert exit.value.code == 2


# --- hotwords and batch size -------------------------------------------------------------------


def test_hotwords_split_on_commas_spaces_and_lines() -> None:
    assert parse_hotwords("阿里巴巴，达摩院, funasr  paraformer\nfunasr", "一\n二、三") == [
        "阿里巴巴",
        "达摩院",
        "funasr",
        "paraformer",
        "一",
        "二",
        "三",
    ]
    assert parse_hotwords("", "") == []


@pytest.mark.parametrize(("value", "expected"), [(1, 1), (4.0, 4), (0, 1), (99, 16), ("3", 3), (None, 1)])
def test_batch_size_is_clamped_to_the_slider(value: object, expected: int) -> None:
    assert clamp_batch_size(value) == expected  # type: ignore[arg-type]


# --- decoding ----------------------------------------------------------------------------------


def test_decoding_makes_16k_mono_wav(tmp_path: Path) -> None:
    source = tone(tmp_path / "stereo.mp3", 1.5, ("-ac", "2", "-ar", "44100"))
    duration = decode_to_wav(source, tmp_path / "out.wav")
    assert duration == pytest.approx(1.5, abs=0.1)
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=sample_rate,channels,sample_fmt",
            "-of",
            "csv=p=0",
            str(tmp_path / "out.wav"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "s16,16000,1"


def test_undecodable_input_names_the_file_not_the_path(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 100)
    with pytest.raises(AudioDecodeError) as error:
        decode_to_wav(junk, tmp_path / "out.wav")
    assert str(tmp_path) not in str(error.value)


def test_video_without_sound_is_undecodable(tmp_path: Path) -> None:
    video = tmp_path / "silent.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=5:duration=1",
            "-an",
            str(video),
        ],
        check=True,
    )
    with pytest.raises(AudioDecodeError):
        decode_to_wav(video, tmp_path / "out.wav")


# --- recognition service (simulate engine, real ffmpeg) ----------------------------------------


def recognizer(tmp_path: Path, **kwargs: object) -> Recognizer:
    engine = SimulatedEngine(0.0, "simulated text", sleep=lambda seconds: None)
    options = {"concurrency": 1, "work_dir": tmp_path, "max_file_size": None, **kwargs}
    return Recognizer(engine, **options)  # type: ignore[arg-type]


def test_recognition_counts_and_reports(tmp_path: Path) -> None:
    service = recognizer(tmp_path)
    result = service.recognize(tone(tmp_path / "a.flac", 2.0), "x, y", 1)
    assert (result.text, result.hotword_count) == ("simulated text", 2)
    assert result.audio_seconds == pytest.approx(2.0, abs=0.05)
    details = reports.recognition_details(result, service.engine)
    assert "- Audio duration: 2.00 s" in details
    assert "- Hotwords: 2 received, ignored (the simulate engine has no hotword support)" in details
    with pytest.raises(InputError, match="cannot decode audio"):
        service.recognize(tmp_path / "a.flac.missing", "", 1)
    with pytest.raises(InputError, match="no audio given"):
        service.recognize(None, "", 1)
    counters = service.counters()
    assert (counters.requests_served, counters.requests_failed) == (3, 2)
    assert counters.files_recognised == 1
    info = reports.system_info(
        reports.ServerFacts("simulate", "m", "cpu", "3.11", "6.31.0", 1, None), counters
    )
    assert "- Requests served: 3" in info and "- Max file size: no limit" in info
    assert list(tmp_path.glob("asrbatch-*")) == []  # scratch directories are cleaned up


def test_size_limit(tmp_path: Path) -> None:
    service = recognizer(tmp_path, max_file_size=1000)
    clip = tone(tmp_path / "a.wav", 1.0)
    with pytest.raises(InputError, match="audio file too large"):
        service.recognize(clip, "", 1)
    assert service.recognize(clip, "", 1, check_size=False).text == "simulated text"


def test_hotword_file_must_be_utf8(tmp_path: Path) -> None:
    service = recognizer(tmp_path)
    good = tmp_path / "hot.txt"
    good.write_text("\ufeff阿里巴巴\n达摩院\n", encoding="utf-8")
    assert parse_hotwords(service.read_hotword_file(good)) == ["阿里巴巴", "达摩院"]
    result = service.recognize(tone(tmp_path / "a.wav", 0.5), "funasr", 1, hotword_file=good)
    assert result.hotword_count == 3
    bad = tmp_path / "bad.txt"
    bad.write_bytes("阿里巴巴".encode("gbk"))
    with pytest.raises(InputError, match="not UTF-8"):
        service.recognize(tone(tmp_path / "a.wav", 0.5), "", 1, hotword_file=bad)
    assert service.counters().requests_failed == 1


def test_batch_keeps_going_past_a_bad_file(tmp_path: Path) -> None:
    service = recognizer(tmp_path)
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"junk" * 50)
    items = service.recognize_batch([tone(tmp_path / "a.wav", 1.0), junk], "", 1)
    assert [item.recognition is not None for item in items] == [True, False]
    assert reports.batch_text(items).splitlines()[-1].startswith("junk.mp3: [error: cannot")
    assert "| a.wav | 1.00 |" in reports.batch_details(items, service.engine)
    with pytest.raises(InputError, match="no audio files"):
        service.recognize_batch([], "", 1)


def test_concurrency_limit_holds_across_threads(tmp_path: Path) -> None:
    running, peak, lock = 0, 0, threading.Lock()

    def sleep(seconds: float) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)  # the stand-in work; overlap would show in `peak`
        with lock:
            running -= 1

    clip = tone(tmp_path / "a.wav", 0.5)
    for limit in (1, 2):
        peak = 0
        service = Recognizer(
            SimulatedEngine(1.0, "t", sleep=sleep), concurrency=limit, work_dir=tmp_path, max_file_size=None
        )
        threads = [threading.Thread(target=service.recognize, args=(clip, "", 1)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert peak <= limit
        assert service.counters().files_recognised == 4


# --- engines -----------------------------------------------------------------------------------


def test_sphinx_recognizes_and_times_words(tmp_path: Path) -> None:
    engine = create_engine(EngineSettings("sphinx"))
    wav = tmp_path / "speech.wav"
    subprocess.run(
        ["text2wave", "-eval", "(voice_cmu_us_slt_arctic_hts)", "-o", str(tmp_path / "raw.wav")],
        input="Good morning everyone.",
        text=True,
        check=True,
    )
    decode_to_wav(tmp_path / "raw.wav", wav)
    result = engine.transcribe(wav, ["ignored"], 1)
    assert "morning" in result.text
    assert [w.text for w in result.words] == result.text.split()
    assert all(w.start < w.end for w in result.words)
    # One utterance: one sentence spanning the words.
    assert [(s.start, s.end, s.text) for s in result.segments] == [
        (result.words[0].start, result.words[-1].end, result.text)
    ]


def test_sphinx_model_resolution(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="sphinx model not found"):
        resolve_model(str(tmp_path / "missing"), tmp_path)
    (tmp_path / "acoustic").mkdir()
    (tmp_path / "acoustic" / "mdef").write_text("")
    with pytest.raises(EngineUnavailable, match=r"lacks a language model.*a dictionary"):
        resolve_model(str(tmp_path), tmp_path)
    (tmp_path / "words.lm.bin").write_text("")
    (tmp_path / "words.dict").write_text("")
    model = resolve_model(str(tmp_path), tmp_path)
    assert (model.acoustic_model.name, model.language_model.name) == ("acoustic", "words.lm.bin")
    with pytest.raises(EngineUnavailable, match="cpu only"):
        create_engine(EngineSettings("sphinx", device="cuda"))


def test_sphinx_word_segments_drop_fillers() -> None:
    words = [
        ("<s>", 0, 9),
        ("hello", 10, 49),
        ("<sil>", 50, 59),
        ("world(2)", 60, 99),
        ("[NOISE]", 100, 110),
        ("</s>", 111, 120),
    ]
    assert [(s.text, s.start, s.end) for s in words_to_segments(words)] == [
        ("hello", 0.1, 0.5),
        ("world", 0.6, 1.0),
    ]


def test_simulate_sleeps_in_proportion_to_the_audio(tmp_path: Path) -> None:
    slept: list[float] = []
    engine = SimulatedEngine(0.25, "fixed", sleep=slept.append)
    wav = tmp_path / "a.wav"
    decode_to_wav(tone(tmp_path / "a.mp3", 2.0), wav)
    assert engine.transcribe(wav, [], 1).text == "fixed"
    assert slept == [pytest.approx(0.5, abs=0.02)]
    with pytest.raises(EngineUnavailable):
        SimulatedEngine(-1, "x")
