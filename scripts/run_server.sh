#!/usr/bin/env bash
# Start the reference speech-recognition WebUI (python -m asrbatch.server) from environment
# variables, after checking that everything it needs is installed.
#
#   scripts/run_server.sh                                  # sphinx on 127.0.0.1:7860
#   ASRBATCH_ENGINE=funasr ASRBATCH_DEVICE=cuda scripts/run_server.sh
#   scripts/run_server.sh --log-level debug                # extra arguments go to the server
#
# Variables (default in brackets):
#   ASRBATCH_ENGINE          sphinx | funasr | simulate               [sphinx]
#   ASRBATCH_HOST            address to listen on; 0.0.0.0 exposes it  [127.0.0.1]
#   ASRBATCH_PORT            port                                      [7860]
#   ASRBATCH_MODEL           engine model id or directory              [engine default]
#   ASRBATCH_DEVICE          cpu | cuda | cuda:N                       [cpu]
#   ASRBATCH_MAX_FILE_SIZE   largest upload, e.g. 50mb, or none        [200mb]
#   ASRBATCH_TEMP_DIR        uploads and decoded audio                 [$GRADIO_TEMP_DIR or system temp]
#   ASRBATCH_CONCURRENCY     recognitions at the same time             [1]
#   ASRBATCH_PYTHON          python interpreter to run                 [$ASRBATCH_VENV/bin/python,
#                                                                       else <repo>/.venv/bin/python,
#                                                                       else python3]
#   ASRBATCH_VENV            virtualenv whose python to use            [<repo>/.venv]
# Read by the server itself:
#   ASRBATCH_SERVER_USERNAME, ASRBATCH_SERVER_PASSWORD   both set: visitors must log in
#   ASRBATCH_FUNASR_MODEL, ASRBATCH_FUNASR_VAD_MODEL, ASRBATCH_FUNASR_PUNC_MODEL
#                                                        funasr model ids or local directories
#
# Exit status: 3 when a prerequisite is missing (the message says how to install it);
# otherwise the server's own (0 stopped, 1 could not start, 2 bad usage).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

engine="${ASRBATCH_ENGINE:-sphinx}"
host="${ASRBATCH_HOST:-127.0.0.1}"
port="${ASRBATCH_PORT:-7860}"
model="${ASRBATCH_MODEL:-}"
device="${ASRBATCH_DEVICE:-cpu}"
max_file_size="${ASRBATCH_MAX_FILE_SIZE:-200mb}"
temp_dir="${ASRBATCH_TEMP_DIR:-}"
concurrency="${ASRBATCH_CONCURRENCY:-1}"

if [[ -n "${ASRBATCH_PYTHON:-}" ]]; then
    python="$ASRBATCH_PYTHON"
elif [[ -x "${ASRBATCH_VENV:-$repo/.venv}/bin/python" ]]; then
    python="${ASRBATCH_VENV:-$repo/.venv}/bin/python"
else
    python="python3"
fi

missing=0
problem() {
    printf 'run_server: %s\n' "$*" >&2
    missing=1
}

# Finds the package without importing it (importing gradio alone takes seconds).
python_has() {
    "$python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" \
        >/dev/null 2>&1
}

if ! command -v "$python" >/dev/null 2>&1; then
    problem "python not found: '$python' (set ASRBATCH_PYTHON or ASRBATCH_VENV, or install python3)"
    exit 3
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then
    problem "$python is older than Python 3.10: point ASRBATCH_PYTHON at a newer one"
fi
if ! python_has gradio; then
    problem "gradio is not installed for $python: $python -m pip install 'asrbatch[server]' (or 'gradio>=4.44,<7')"
fi
if ! command -v ffmpeg >/dev/null 2>&1; then
    problem "ffmpeg is not on PATH: sudo apt-get install ffmpeg"
fi
case "$engine" in
    sphinx)
        python_has pocketsphinx ||
            problem "pocketsphinx is not installed for $python: $python -m pip install 'pocketsphinx>=5'"
        ;;
    funasr)
        python_has funasr ||
            problem "funasr is not installed for $python: $python -m pip install 'asrbatch[funasr]'"
        python_has torch ||
            problem "torch is not installed for $python: $python -m pip install torch torchaudio"
        ;;
    simulate) ;;
    *)
        problem "ASRBATCH_ENGINE must be sphinx, funasr or simulate, not '$engine'"
        ;;
esac
if [[ ! "$port" =~ ^[0-9]+$ ]]; then
    problem "ASRBATCH_PORT must be a number, not '$port'"
fi
if [[ ! "$concurrency" =~ ^[0-9]+$ ]]; then
    problem "ASRBATCH_CONCURRENCY must be a number, not '$concurrency'"
fi
if ((missing)); then
    exit 3
fi

args=(
    --engine "$engine"
    --host "$host"
    --port "$port"
    --device "$device"
    --max-file-size "$max_file_size"
    --concurrency "$concurrency"
)
[[ -n "$model" ]] && args+=(--model "$model")
[[ -n "$temp_dir" ]] && args+=(--temp-dir "$temp_dir")

# The server needs only its own package from the repository, not an installed asrbatch.
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m asrbatch.server "${args[@]}" "$@"
