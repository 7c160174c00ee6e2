#!/usr/bin/env bash
# One command from a fresh machine to a finished run: set up, start the reference server
# (sphinx engine, CPU), transcribe the sample recordings, print transcripts and summary.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/bootstrap.sh"
venv="${ASRBATCH_VENV:-$here/.venv}"
status=0
"$venv/bin/asrbatch" demo "$@" || status=$?
printf '\nNext: run asrbatch yourself as %s/bin/asrbatch (e.g. %s/bin/asrbatch --help),\nor type `source %s/bin/activate` first to have asrbatch on your PATH in this shell.\n' \
    "$venv" "$venv" "$venv"
exit "$status"
