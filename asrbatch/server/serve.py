"""Start the reference server: options -> environment -> engine -> protocol front -> serve.

Each protocol has a front module with ``describe(options)`` and ``run(options, recognizer)``:
``gradio_front`` (the Gradio app shapes), ``openai_api`` (funasr-server's HTTP API) and
``funasr_ws`` (the FunASR runtime WebSocket server). Gradio is imported only after the temp
directory is set in the environment, because some Gradio versions read ``GRADIO_TEMP_DIR`` when
their modules load.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from asrbatch.server.audio import FfmpegMissing, find_ffmpeg
from asrbatch.server.engines import EngineUnavailable, create_engine
from asrbatch.server.options import ServerOptions, parse_options

log = logging.getLogger("asrbatch.server")

EXIT_OK = 0
EXIT_CANNOT_START = 1
EXIT_USAGE = 2


def prepare_environment(options: ServerOptions) -> Path:
    """Set the variables Gradio reads at import; return the directory for decoded audio."""
    # No usage statistics leave the machine, and no version check waits on the network.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if options.temp_dir is not None:
        options.temp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.environ["GRADIO_TEMP_DIR"] = str(options.temp_dir)
        return options.temp_dir
    configured = os.environ.get("GRADIO_TEMP_DIR")
    if configured:
        Path(configured).mkdir(parents=True, exist_ok=True, mode=0o700)
        return Path(configured)
    return Path(tempfile.gettempdir())


def is_loopback(host: str) -> bool:
    """True for 127.x.x.x, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port_free(host: str, port: int) -> None:
    """Fail before loading a model when the port is taken; raises OSError saying which."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Same option uvicorn sets, so a port left in TIME_WAIT by a restart counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise OSError(f"port {port} on {host} is not available ({error.strerror})") from error


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Gradio's blocking launch closes the server cleanly on KeyboardInterrupt.
    raise KeyboardInterrupt


def _import_front(protocol: str) -> Any:
    """The module serving ``protocol``; raises ImportError when its libraries are missing."""
    if protocol == "openai":
        from asrbatch.server import openai_api

        return openai_api
    if protocol == "funasr-ws":
        from asrbatch.server import funasr_ws

        return funasr_ws
    from asrbatch.server import gradio_front

    return gradio_front


def _warn_if_exposed(options: ServerOptions) -> None:
    if is_loopback(options.host):
        return
    if options.protocol == "gradio" and options.auth is None:
        log.warning(
            "listening on %s without a login: anyone who can reach this port can use the "
            "server (set ASRBATCH_SERVER_USERNAME and ASRBATCH_SERVER_PASSWORD)",
            options.host,
        )
    elif options.protocol == "openai" and options.api_key is None:
        log.warning(
            "listening on %s without an API key: anyone who can reach this port can use the "
            "server (set ASRBATCH_SERVE_API_KEY)",
            options.host,
        )
    elif options.protocol == "funasr-ws":
        log.warning(
            "listening on %s: the FunASR WebSocket protocol has no login; anyone who can reach "
            "this port can use the server",
            options.host,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until interrupted; return the process exit status (see --help)."""
    try:
        options = parse_options(argv, os.environ)
    except SystemExit as exit:  # argparse: --help (0) or bad usage (2)
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    logging.basicConfig(
        level=options.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Gradio's own HTTP checks of itself at start-up would otherwise log one line each.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Cheap checks first: a model can take minutes to load.
    try:
        work_dir = prepare_environment(options)
        check_port_free(options.host, options.port)
        find_ffmpeg()
    except (FfmpegMissing, OSError) as error:
        print(f"asrbatch server: cannot start: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
    try:
        front = _import_front(options.protocol)
    except ImportError as error:
        print(
            f"asrbatch server: cannot start: the {options.protocol} protocol's libraries cannot be "
            f"imported ({error}): pip install 'asrbatch[server]'",
            file=sys.stderr,
        )
        return EXIT_CANNOT_START
    from asrbatch.server.service import Recognizer

    try:
        engine = create_engine(options.engine)
    except EngineUnavailable as error:
        print(f"asrbatch server: cannot start: {error}", file=sys.stderr)
        return EXIT_CANNOT_START

    recognizer = Recognizer(
        engine,
        concurrency=options.concurrency,
        work_dir=work_dir,
        max_file_size=options.max_file_size,
    )
    _warn_if_exposed(options)
    log.info(
        "event=start protocol=%s engine=%s model=%s device=%s %s host=%s port=%d concurrency=%d",
        options.protocol,
        engine.name,
        engine.model,
        engine.device,
        front.describe(options),
        options.host,
        options.port,
        options.concurrency,
    )
    if options.protocol == "gradio":
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    print(f"asrbatch server: listening on {options.host}:{options.port} (Ctrl-C stops it)", flush=True)
    try:
        front.run(options, recognizer)
    except OSError as error:
        print(f"asrbatch server: cannot start: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
    except KeyboardInterrupt:
        pass
    log.info("event=stop")
    return EXIT_OK
