#!/usr/bin/env bash
# Creates (or refreshes) .venv with the pinned moto server used by the tests, bench and demo.
# Idempotent: re-running with the requirements already installed only checks them.
# Usage: scripts/setup-venv.sh            (from anywhere inside the repository)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
reqs="$root/scripts/requirements-test.txt"
stamp="$venv/.requirements-test.sha256"

pick_python() {
    local candidate
    for candidate in python3.12 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "setup-venv: python 3.9 or newer is required (tried python3.12, python3)" >&2
    return 1
}

want="$(sha256sum "$reqs" | cut -d' ' -f1)"
if [[ -x "$venv/bin/moto_server" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup-venv: $venv is up to date"
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    python="$(pick_python)"
    echo "setup-venv: creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
"$venv/bin/moto_server" --help >/dev/null
echo "$want" >"$stamp"
echo "setup-venv: ready ($("$venv/bin/python" -c 'import moto; print("moto", moto.__version__)'))"
