#!/usr/bin/env bash
# One command from a fresh machine to a tested tree: set up, build the Gradio 3.50 / 4.44 /
# 6.x server environments the tests start (and the funasr engine's, with its tiny models), lint,
# type-check, and run the test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k ledger). `scripts/test.sh -m unit` runs the
# pure tests alone (seconds) without building the server environments.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
"$here/scripts/bootstrap.sh" --test
py="${ASRBATCH_VENV:-$here/.venv}/bin/python"
if [[ " $* " != *" -m unit "* ]]; then
    "$py" tests/support/servers.py --prepare all
fi
"$py" -m ruff check asrbatch tests bench
"$py" -m mypy asrbatch
exec "$py" -m pytest -q "$@"
