#!/usr/bin/env bash
# Set up everything asrbatch needs on a fresh Debian/Ubuntu machine, idempotently:
# system packages (ffmpeg; festival voices, chromium and PostgreSQL for the tests) and a virtual
# environment in .venv with asrbatch, its reference server and the dev tools.
#
#   scripts/bootstrap.sh          # runtime + reference server
#   scripts/bootstrap.sh --test   # also the packages the test suite uses
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ASRBATCH_VENV:-$here/.venv}"
python="${PYTHON:-python3}"
with_test=0
[[ "${1:-}" == "--test" ]] && with_test=1

say() { printf 'bootstrap: %s\n' "$*" >&2; }

need_pkgs=()
command -v ffmpeg >/dev/null || need_pkgs+=(ffmpeg)
if (( with_test )); then
    command -v sox >/dev/null || need_pkgs+=(sox)
    # Self-signed certificates for the TLS tests of the openai and funasr-ws protocols.
    command -v openssl >/dev/null || need_pkgs+=(openssl)
    command -v text2wave >/dev/null || need_pkgs+=(festival)
    [[ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ]] || need_pkgs+=(festvox-us-slt-hts)
    # The operations tests: the HTML report in headless Chromium, and the scheduling files checked
    # by crontab -n, systemd-analyze verify and logrotate.
    command -v chromium >/dev/null || need_pkgs+=(chromium)
    command -v crontab >/dev/null || need_pkgs+=(cron)
    # The console tests run asrbatch in a real terminal: tmux.
    command -v tmux >/dev/null || need_pkgs+=(tmux)
    command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
    [[ -x /usr/sbin/logrotate ]] || command -v logrotate >/dev/null || need_pkgs+=(logrotate)
    # The shared-ledger tests start a throwaway PostgreSQL cluster (initdb, pg_ctl) of their own.
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null \
        || need_pkgs+=(postgresql)
fi
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    need_pkgs+=(python3-venv)
fi
if (( ${#need_pkgs[@]} )); then
    say "installing system packages: ${need_pkgs[*]}"
    sudo_cmd=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { say "need root or sudo to install: ${need_pkgs[*]}"; exit 1; }
        sudo_cmd=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

if [[ ! -x "$venv/bin/python" ]]; then
    say "creating $venv"
    "$python" -m venv "$venv"
fi
stamp="$venv/.asrbatch-installed"
if [[ ! -f "$stamp" || "$here/pyproject.toml" -nt "$stamp" ]]; then
    say "installing asrbatch[server,dev] into $venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install -q -e "$here[server,dev]"
    touch "$stamp"
fi
say "ready: $venv/bin/asrbatch"
say "asrbatch is not on your PATH: run it as $venv/bin/asrbatch, or first: source $venv/bin/activate"
