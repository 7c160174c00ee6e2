from pathlib import Path

import pytest
import yaml

from asrbatch.config import Config, env_name, iter_keys, load_config
from asrbatch.errors import ConfigError, ExitCode
from asrbatch.paths import JobPaths

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.yaml"


def test_example_config_loads_and_equals_the_defaults():
    config = load_config(EXAMPLE, env={})
    assert config.server == Config().server
    assert config.input == Config().input
    assert config.audio == Config().audio
    assert config.source == EXAMPLE


def test_example_config_documents_every_key():
    data = yaml.safe_load(EXAMPLE.read_text())
    missing = []
    for key, _, _ in iter_keys():
        node = data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                missing.append(key)
                break
            node = node[part]
    assert missing == []


def test_precedence_flags_over_env_over_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  url: http://file:1\n  read_timeout: 10\n")
    assert load_config(path, env={}).server.url == "http://file:1"
    env = {"ASRBATCH_SERVER_URL": "http://env:2"}
    assert load_config(path, env=env).server.url == "http://env:2"
    config = load_config(path, env=env, overrides={"server.url": "http://flag:3"})
    assert config.server.url == "http://flag:3"
    assert config.server.read_timeout == 10.0


def test_config_path_from_environment(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("state:\n  max_runs: 7\n")
    assert load_config(None, env={"ASRBATCH_CONFIG": str(path)}).state.max_runs == 7


def test_env_lists_and_numbers():
    env = {"ASRBATCH_INPUT_EXTENSIONS": "wav, mp3", "ASRBATCH_SERVER_RETRY_ATTEMPTS": "2"}
    config = load_config(None, env=env)
    assert config.input.extensions == ("wav", "mp3")
    assert config.server.retry.attempts == 2
    assert env_name("server.retry.attempts") == "ASRBATCH_SERVER_RETRY_ATTEMPTS"


def test_every_problem_reported_with_its_key_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "server:\n  connect_timeout: 0\n  colour: blue\n  retry:\n    attempts: many\n"
        "input:\n  recursive: maybe\noutput:\n  formats: [txt, docx]\nbogus: 1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    problems = "\n".join(info.value.problems)
    assert "server.colour: unknown key" in problems
    assert "server.retry.attempts: must be a whole number" in problems
    assert "input.recursive: must be true or false" in problems
    assert "output.formats: unknown format 'docx'" in problems
    assert "bogus: unknown key" in problems
    assert "server.connect_timeout: must be > 0" in problems
    assert info.value.exit_code == ExitCode.USAGE


def test_unknown_environment_variable_rejected():
    with pytest.raises(ConfigError, match="ASRBATCH_SERVER_ULR: unknown environment variable"):
        load_config(None, env={"ASRBATCH_SERVER_ULR": "http://x"})


def test_password_from_named_environment_variable_never_in_repr():
    config = load_config(None, env={"ASRBATCH_SERVER_USERNAME": "ops", "ASRBATCH_SERVER_PASSWORD": "s3cret"})
    assert config.server.username == "ops"
    assert config.server.password == "s3cret"
    assert "s3cret" not in repr(config)


def test_username_without_password_is_an_error():
    with pytest.raises(ConfigError, match="ASRBATCH_SERVER_PASSWORD is not"):
        load_config(None, env={"ASRBATCH_SERVER_USERNAME": "ops"})


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, env={})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml", env={})


def test_default_output_is_beside_the_input(tmp_path):
    (tmp_path / "calls").mkdir()
    config = load_config(None, env={}, overrides={"input.dir": str(tmp_path / "calls")})
    paths = JobPaths.for_run(config)
    assert paths.output_dir == (tmp_path / "calls_transcripts").resolve()
    assert paths.state_dir == paths.output_dir / ".asrbatch"
    assert paths.ledger == paths.state_dir / "ledger.sqlite3" and paths.log_file == paths.state_dir / "asrbatch.log"
    assert not paths.output_dir.exists()  # nothing is created until a run prepares the paths


def test_the_recognition_function_is_chosen_automatically_unless_set(tmp_path):
    server = load_config(None, env={}).server
    assert (server.fn_index, server.api_name, server.input_template, server.output_index) == (
        "auto", None, "auto", "auto")
    path = tmp_path / "c.yaml"
    path.write_text('server:\n  fn_index: 1\n  input_template: ["<audio>", "zh", "<hotwords>", 5]\n'
                    "  output_index: 0\n")
    server = load_config(path, env={}).server
    assert (server.fn_index, server.input_template, server.output_index) == (1, ("<audio>", "zh", "<hotwords>", 5), 0)
    path.write_text("server:\n  fn_index: null\n  input_template: auto\n")
    assert load_config(path, env={}).server.fn_index is None  # null: auto, as before


@pytest.mark.parametrize(
    ("text", "problem"),
    [("fn_index: first", "server.fn_index: str 'first' is not auto or int"),
     ("fn_index: -1", "server.fn_index: must be >= 0 or auto"),
     ("output_index: 1.5", "server.output_index: float 1.5 is not auto or int"),
     ("input_template: automatic", "server.input_template: must be auto, or a list that contains the <audio>"),
     ("input_template: [null, 1]", "server.input_template: must be auto, or a list that contains the <audio>"),
     ("input_template: {audio: 1}", "server.input_template: dict {'audio': 1} is not auto or a list")],
)
def test_bad_function_settings_are_named(tmp_path, text, problem):
    path = tmp_path / "c.yaml"
    path.write_text(f"server:\n  {text}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert problem in str(caught.value)
