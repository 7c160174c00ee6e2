#!/usr/bin/env bash
# One command from a fresh machine to a finished run: set up, start the reference server
# (sphinx engine, CPU), transcribe the sample recordings, print transcripts and summary.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/bootstrap.sh"
exec "${ASRBATCH_VENV:-$here/.venv}/bin/asrbatch" demo "$@"
