"""Real reference servers for tests: one virtualenv per Gradio version, servers on free ports.

Each Gradio generation the client must handle gets its own venv (Gradio + PocketSphinx and the
pins that make that old release work today) under ``$ASRBATCH_TEST_CACHE`` (default
``<repo>/.cache/test-envs``). The venvs are built once, under a file lock, and marked ready only
after an import check passes, so concurrent test processes and interrupted builds are safe. A
venv's folder name carries a short hash of its requirements (``gradio-6.31.0-1a2b3c4d``): a
checkout that needs other packages builds its own venv beside the others instead of rebuilding
one that another checkout is using.

Create them all up front (in parallel) before running pytest::

    python tests/support/servers.py --prepare all

In tests, use the fixtures (the root conftest imports them)::

    def test_something(gradio_server):           # one shared server per Gradio version
        requests.get(gradio_server.url + "/config")

    def test_restart(server_factory):            # a server of the test's own
        server = server_factory("6.31.0", extra_args=["--concurrency", "2"])
        server.restart()

    def test_old_queue(server_factory):          # Gradio 4.16: a version only started on demand
        server = server_factory("4.16.0", extra_args=["--app", "simple"])

or directly: ``with start_server("4.44.1") as server: ...``.

The funasr engine has a venv of its own (FunASR, the CPU build of torch, Gradio 6.31 and
PocketSphinx), ``funasr_python()``; ``--prepare all`` builds it with the others, and with it the
tiny model folders of ``tests/support/funasr_models.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
GRADIO_VERSIONS = ("3.50.2", "4.44.1", "6.31.0")
"""The versions every ``gradio_server`` test runs on."""
EXTRA_GRADIO_VERSIONS = ("4.16.0", "4.8.0", "5.50.0")
"""Versions with a venv recipe that tests start on demand (``server_factory("4.16.0")``)."""
ALL_GRADIO_VERSIONS = (*GRADIO_VERSIONS, *EXTRA_GRADIO_VERSIONS)
# What every server venv needs besides Gradio: the default engine, and the WebSocket library of the
# funasr-ws front (Gradio 3.50 and 4.x bring a version of their own; 6.x none).
COMMON_REQUIREMENTS = ("pocketsphinx>=5,<6", "websockets>=11")
# Old Gradio releases resolve today's dependencies into versions they cannot run with.
REQUIREMENTS = {
    # GET / answers 500 with newer fastapi/starlette/pydantic; numpy 2 breaks its pandas use.
    "3.50.2": (
        "gradio==3.50.2",
        "fastapi==0.104.1",
        "starlette==0.27.0",
        "pydantic==2.5.3",
        "httpx==0.25.2",
        "uvicorn==0.24.0",
        "huggingface_hub==0.19.4",
        "numpy<2",
    ),
    # huggingface_hub 1.x dropped HfFolder (import error); pydantic >= 2.11 breaks /info;
    # starlette 1.x changed the template API. The pins are the releases of September 2024.
    "4.44.1": (
        "gradio==4.44.1",
        "huggingface_hub==0.25.2",
        "fastapi==0.115.0",
        "starlette==0.38.6",
        "pydantic==2.9.2",
        "httpx==0.27.2",
        "uvicorn==0.30.6",
    ),
    # The last 4.x before /call existed (only /queue/join + /queue/data, protocol sse_v1). Today's
    # huggingface_hub, fastapi/starlette and pydantic break it as they break 4.44; these are the
    # releases of January 2024. gradio_client 0.8.1 caps websockets below 12.
    "4.16.0": (
        "gradio==4.16.0",
        "huggingface_hub==0.20.3",
        "fastapi==0.109.0",
        "starlette==0.35.1",
        "pydantic==2.5.3",
        "httpx==0.26.0",
        "uvicorn==0.27.0",
        "numpy<2",
    ),
    # The last 4.x of the first queue protocol (sse: GET /queue/join streams, POST /queue/data sends
    # the data); the releases of December 2023, pinned like 4.16.
    "4.8.0": (
        "gradio==4.8.0",
        "huggingface_hub==0.19.4",
        "fastapi==0.104.1",
        "starlette==0.27.0",
        "pydantic==2.5.3",
        "httpx==0.25.2",
        "uvicorn==0.24.0",
        "numpy<2",
    ),
    # A 5.x whose /call loses even a gr.Error's message (event: error, data: null).
    "5.50.0": ("gradio==5.50.0",),
    "6.31.0": ("gradio==6.31.0",),
}
# The funasr engine's venv: FunASR with everything it declares, the Gradio of the supported
# deployment, and asrbatch's own runtime dependencies (pyproject.toml), so that
# `python -m asrbatch serve` runs there as where `pip install 'asrbatch[funasr]'` installed it.
# torch is pinned to the CPU wheel this machine keeps (an unpinned torch resolves to a CUDA build
# of several GB); kaldi-native-fbank (FunASR's "knf" extra) computes the fbank features, which
# FunASR allows in place of torchaudio.
FUNASR_VERSION = "1.4.16"
FUNASR_GRADIO_VERSION = "6.31.0"
ASRBATCH_REQUIREMENTS = (
    "requests>=2.31",
    "click>=8.1",
    "pydub>=0.25",
    "tenacity>=8.2",
    "pyyaml>=6.0",
    "watchdog>=6.0",
    "websockets>=11",
    "audioop-lts; python_version>='3.13'",
)
FUNASR_REQUIREMENTS = (
    "torch==2.13.0",
    f"funasr[knf]=={FUNASR_VERSION}",
    f"gradio=={FUNASR_GRADIO_VERSION}",
    *ASRBATCH_REQUIREMENTS,
)
READY_MARKER = ".asrbatch-ready.json"
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 15.0
CREDENTIAL_VARIABLES = ("ASRBATCH_SERVER_USERNAME", "ASRBATCH_SERVER_PASSWORD")


class ServerEnvironmentError(RuntimeError):
    """A server venv could not be created, or a server did not come up."""


def cache_dir() -> Path:
    """Where the server venvs live: ``$ASRBATCH_TEST_CACHE`` or ``<repo>/.cache/test-envs``."""
    configured = os.environ.get("ASRBATCH_TEST_CACHE")
    return Path(configured) if configured else REPO / ".cache" / "test-envs"


def requirements(version: str) -> list[str]:
    """The pip requirements of the venv for Gradio ``version``."""
    if version not in REQUIREMENTS:
        raise ValueError(f"no server venv recipe for Gradio {version}: use one of {ALL_GRADIO_VERSIONS}")
    return [*REQUIREMENTS[version], *COMMON_REQUIREMENTS]


def venv_dir(version: str) -> Path:
    """The folder of the venv for Gradio ``version``: its requirements' hash is in the name."""
    digest = hashlib.sha256("\n".join(requirements(version)).encode()).hexdigest()[:8]
    return cache_dir() / f"gradio-{version}-{digest}"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _is_ready(venv: Path, wanted: list[str]) -> bool:
    marker = venv / READY_MARKER
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return recorded.get("requirements") == wanted and _venv_python(venv).exists()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _run_logged(command: Sequence[str | Path], log: Path) -> None:
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(map(str, command))}\n")
        handle.flush()
        completed = subprocess.run(
            [str(part) for part in command],
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    if completed.returncode != 0:
        raise ServerEnvironmentError(
            f"command failed ({completed.returncode}): {' '.join(map(str, command))}\n"
            f"last lines of {log}:\n{_tail(log)}"
        )


def _build_venv(venv: Path, wanted: list[str], check: str) -> Path:
    """The python of the venv at ``venv`` with ``wanted`` installed, creating it if needed.

    Safe to call from several processes at once (a file lock serialises creation); a venv is
    used only once its ready marker is written, after the install and the ``check`` script
    passed. Raises ServerEnvironmentError with the tail of the install log when creation fails.
    """
    if _is_ready(venv, wanted):
        return _venv_python(venv)
    with _file_lock(venv.with_name(venv.name + ".lock")):
        if _is_ready(venv, wanted):  # another process finished it while we waited
            return _venv_python(venv)
        log = venv.with_name(venv.name + ".log")
        log.write_text("", encoding="utf-8")
        shutil.rmtree(venv, ignore_errors=True)
        started = time.monotonic()
        _run_logged([sys.executable, "-m", "venv", venv], log)
        python = _venv_python(venv)
        _run_logged(
            [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *wanted],
            log,
        )
        _run_logged([python, "-c", check], log)
        marker = venv / READY_MARKER
        partial = marker.with_suffix(".part")
        partial.write_text(
            json.dumps({"requirements": wanted, "seconds": round(time.monotonic() - started, 1)}),
            encoding="utf-8",
        )
        os.replace(partial, marker)
        return python


def gradio_python(version: str) -> Path:
    """The python of a venv with Gradio ``version`` and PocketSphinx, creating it if needed."""
    check = (
        "import gradio, pocketsphinx, websockets, fastapi, uvicorn, multipart, sys; "
        f"sys.exit(0 if gradio.__version__ == {version!r} else 'found gradio ' + gradio.__version__)"
    )
    return _build_venv(venv_dir(version), requirements(version), check)


def funasr_requirements() -> list[str]:
    """The pip requirements of the funasr engine's venv (each once, where it last appears)."""
    wanted = [*FUNASR_REQUIREMENTS, *COMMON_REQUIREMENTS]
    return [item for index, item in enumerate(wanted) if item not in wanted[index + 1:]]


def funasr_python() -> Path:
    """The python of the venv with FunASR, CPU torch, Gradio and PocketSphinx, creating it if needed.

    The check imports AutoModel (FunASR registers its model classes on import) and requires
    the CPU build of torch, so a CUDA wheel pulled in by accident fails the build.
    """
    check = (
        "import sys, torch, gradio, pocketsphinx, funasr; from funasr import AutoModel; "
        "found = (funasr.__version__, gradio.__version__, torch.version.cuda); "
        f"sys.exit(0 if found == ({FUNASR_VERSION!r}, {FUNASR_GRADIO_VERSION!r}, None) "
        "else f'found funasr, gradio, cuda {found}')"
    )
    wanted = funasr_requirements()
    digest = hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:8]
    return _build_venv(cache_dir() / f"funasr-{FUNASR_VERSION}-{digest}", wanted, check)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    """True once anything HTTP answers at ``url`` (a 401 from a login-protected app counts, and
    so does a WebSocket server's refusal of a plain GET). Certificates are not checked."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            response.read()
        return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


# What answers first once a server of each protocol is up.
READY_PATHS = {"gradio": "/config", "openai": "/health", "funasr-ws": "/"}


class ServerProcess:
    """A running ``python -m asrbatch.server`` in a Gradio venv; stops on context exit."""

    def __init__(
        self,
        version: str,
        command: list[str],
        env: dict[str, str],
        port: int,
        log_path: Path,
        start_timeout: float = START_TIMEOUT_SECONDS,
        protocol: str = "gradio",
        tls: bool = False,
    ) -> None:
        self.version = version
        self.command = command
        self.env = env
        self.port = port
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.protocol = protocol
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in: float | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (https with TLS; ws/wss for funasr-ws), no trailing slash."""
        if self.protocol == "funasr-ws":
            return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """The same address as http(s), for probing it with plain HTTP."""
        return self.url.replace("ws", "http", 1) if self.protocol == "funasr-ws" else self.url

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self.process.pid if self.process else None

    def start(self) -> ServerProcess:
        """Start the process and wait until it answers (``GET /config`` for Gradio)."""
        if self.process is not None and self.process.poll() is None:
            raise ServerEnvironmentError(f"server on port {self.port} is already running")
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=REPO,
            )
        deadline = started + self.start_timeout
        ready = self.http_url + READY_PATHS[self.protocol]
        while time.monotonic() < deadline:
            if _answers(ready):
                self.started_in = time.monotonic() - started
                return self
            try:
                # Doubles as the poll interval and as the check that the server is still alive.
                code = self.process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            raise ServerEnvironmentError(
                f"Gradio {self.version} server exited with status {code} before answering; "
                f"last lines of {self.log_path}:\n{self.log_tail()}"
            )
        self.kill()
        raise ServerEnvironmentError(
            f"Gradio {self.version} server did not answer {ready} within "
            f"{self.start_timeout:.0f} s; last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL if it lingers); return its exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the server, as a crash or the OOM killer would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> ServerProcess:
        """Stop and start again on the same port (counters start from zero)."""
        self.stop()
        return self.start()

    def is_running(self) -> bool:
        """True while the process lives."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the server wrote."""
        return _tail(self.log_path, lines)

    def config(self) -> dict[str, Any]:
        """The app's ``/config`` (unauthenticated)."""
        with urllib.request.urlopen(self.url + "/config", timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def log_text(self) -> str:
        """Everything the server wrote so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"<ServerProcess gradio={self.version} protocol={self.protocol} url={self.url} pid={self.pid}>"


def start_server(
    version: str,
    *,
    engine: str = "sphinx",
    protocol: str = "gradio",
    port: int | None = None,
    auth: tuple[str, str] | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    host: str | None = "127.0.0.1",
    log_dir: Path | None = None,
    start_timeout: float = START_TIMEOUT_SECONDS,
    python: Path | None = None,
) -> ServerProcess:
    """Start the reference server from the Gradio ``version`` venv and wait until it answers.

    ``protocol`` is the server's ``--protocol`` (funasr-ws and openai run in the Gradio venvs
    too); ``--certfile`` in ``extra_args`` makes its URL https/wss. ``port=None`` picks a free
    one; ``auth`` sets the login variables; ``host=None`` leaves the bind address to the
    server's default. Uploads go to ``<log_dir>/uploads`` unless ``extra_args`` names
    ``--temp-dir``. ``python`` runs the server from another venv (the funasr one,
    ``funasr_python()``), whose Gradio is ``version``. Use as a context manager, or call ``stop()``.
    """
    python = python or gradio_python(version)
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix=f"asrbatch-server-{version}-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    process_env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARIABLES}
    process_env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
        GRADIO_ANALYTICS_ENABLED="False",
    )
    if auth is not None:
        process_env.update(zip(CREDENTIAL_VARIABLES, auth, strict=True))
    process_env.update(env or {})
    attempts = 1 if port is not None else 3
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else free_port()
        command = [str(python), "-m", "asrbatch.server", "--engine", engine, "--port", str(chosen)]
        if protocol != "gradio":
            command += ["--protocol", protocol]
        if host is not None:
            command += ["--host", host]
        if "--temp-dir" not in extra_args:
            command += ["--temp-dir", str(log_dir / "uploads")]
        command += list(extra_args)
        server = ServerProcess(
            version,
            command,
            process_env,
            chosen,
            log_dir / f"server-{chosen}.log",
            start_timeout,
            protocol,
            "--certfile" in extra_args,
        )
        try:
            return server.start()
        except ServerEnvironmentError as error:
            # Another process may have taken the free port between our probe and the bind.
            message = str(error).lower()
            taken = "empty port" in message or "address already in use" in message
            if attempt == attempts or not taken:
                raise
    raise AssertionError("unreachable")


# --- pytest fixtures -----------------------------------------------------------------------


# Shared servers, counted by holder: a conftest that imports the fixtures below makes its own
# copy of them for pytest, and every copy must get the same server, stopped by the last one.
_shared: dict[str, tuple[ServerProcess, int]] = {}


def _acquire_shared(version: str, log_dir: Path) -> ServerProcess:
    server, holders = _shared.get(version, (None, 0))
    if server is None or not server.is_running():
        server = start_server(version, log_dir=log_dir)
    _shared[version] = (server, holders + 1)
    return server


def _release_shared(version: str) -> None:
    server, holders = _shared[version]
    if holders > 1:
        _shared[version] = (server, holders - 1)
        return
    del _shared[version]
    server.stop()


@pytest.fixture(scope="session", params=GRADIO_VERSIONS, ids=lambda v: f"gradio-{v}")
def gradio_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One shared sphinx server per Gradio version for the whole session.

    Shared: tests must not rely on its counters' absolute values or change its state.
    """
    version: str = request.param
    try:
        server = _acquire_shared(version, tmp_path_factory.mktemp(f"gradio-{version}"))
    except ServerEnvironmentError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
    finally:
        _release_shared(version)


@pytest.fixture
def server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers of the test's own (``server_factory(version, **start_server_kwargs)``).

    Every server started through it is stopped when the test ends.
    """
    started: list[ServerProcess] = []

    def start(version: str, **kwargs: Any) -> ServerProcess:
        kwargs.setdefault("log_dir", tmp_path_factory.mktemp(f"own-gradio-{version}"))
        try:
            server = start_server(version, **kwargs)
        except ServerEnvironmentError as error:
            pytest.fail(str(error), pytrace=False)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --- command line ----------------------------------------------------------------------------


FUNASR = "funasr"


def _prepare_funasr() -> str:
    """The funasr venv and the tiny model folders its tests load; returns a line about them."""
    if str(REPO) not in sys.path:  # run as a script
        sys.path.insert(0, str(REPO))
    from tests.support.funasr_models import build_tiny_models  # imports this module

    python = funasr_python()
    models = build_tiny_models()
    return f"{python}; models in {models.asr.parent}"


HEARTBEAT_SECONDS = 30.0
"""How often ``--prepare`` says which builds it is still waiting for."""
FRESH_BUILD = "about 4 minutes and 3.3 GB on a 2-core machine, plus the downloads"
"""What ``--prepare all`` costs when nothing is built yet (measured; README, Development)."""


def _label(name: str) -> str:
    return f"funasr {FUNASR_VERSION}" if name == FUNASR else f"gradio {name}"


def _prepare(names: Sequence[str], *, heartbeat: float = HEARTBEAT_SECONDS) -> int:
    """Build *names* in parallel; a line as each one is ready, and one every *heartbeat* seconds
    naming those still building."""
    def build(name: str) -> tuple[str, float, str | None]:
        started = time.monotonic()
        try:
            outcome = _prepare_funasr() if name == FUNASR else str(gradio_python(name))
        except ServerEnvironmentError as error:
            return name, time.monotonic() - started, f"FAILED: {error}"
        return name, time.monotonic() - started, outcome

    started = time.monotonic()
    building = set(names)
    lock = threading.Lock()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(heartbeat):
            with lock:
                waiting = ", ".join(_label(name) for name in names if name in building)
            if waiting:
                print(f"  ... {time.monotonic() - started:.0f} s, still building: {waiting} "
                      f"(pip's output: {cache_dir()}/*.log)", flush=True)

    print(f"building {', '.join(_label(name) for name in names)} in parallel (ready ones are reused; "
          f"{FRESH_BUILD})", flush=True)
    ticker = threading.Thread(target=beat, name="prepare-heartbeat", daemon=True)
    ticker.start()
    failed = 0
    try:
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            for future in as_completed([pool.submit(build, name) for name in names]):
                name, seconds, outcome = future.result()
                with lock:
                    building.discard(name)
                ok = outcome is not None and not outcome.startswith("FAILED")
                failed += not ok
                print(f"{_label(name)}: {'ready' if ok else 'FAILED'} in {seconds:.1f} s: {outcome}", flush=True)
    finally:
        done.set()
        ticker.join(timeout=5)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python tests/support/servers.py --prepare all``: build the server venvs in parallel."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prepare",
        nargs="+",
        metavar="VERSION",
        required=True,
        help=f"Gradio versions to build venvs for, '{FUNASR}' (the funasr engine's venv and its "
        f"tiny models), or 'all' ({', '.join(ALL_GRADIO_VERSIONS)}, {FUNASR})",
    )
    args = parser.parse_args(argv)
    names = [*ALL_GRADIO_VERSIONS, FUNASR] if "all" in args.prepare else args.prepare
    unknown = [name for name in names if name not in REQUIREMENTS and name != FUNASR]
    if unknown:
        parser.error(f"unknown Gradio versions {unknown}: choose from {ALL_GRADIO_VERSIONS} or {FUNASR}")
    print(f"server venvs in {cache_dir()}")
    return _prepare(names)


if __name__ == "__main__":
    sys.exit(main())
