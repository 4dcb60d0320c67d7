#!/usr/bin/env bash
# Build (or bring up to date) a virtualenv from a hash-pinned lock file, then
# install this project into it (editable, no dependencies of its own).
#
#   scripts/install.sh VENV LOCKFILE
#
# The installer is uv when it can be had: on PATH, or installed once (from
# requirements-uv.lock, hash-pinned too) into .tools/uv with the system pip.
# It installs the same lock file as pip, with the same hash check, in a few
# seconds instead of about a minute. Without it (no network to PyPI for the
# one wheel, an unsupported platform), pip does the work. Both show progress.
set -euo pipefail

venv=$1
lock=$2
python=${PYTHON:-python3}
tools=.tools/uv

say() { printf 'install: %s\n' "$*" >&2; }

find_uv() {
    if [ -n "${UV:-}" ] && "$UV" --version >/dev/null 2>&1; then
        printf '%s\n' "$UV"
    elif command -v uv >/dev/null 2>&1 && uv --version >/dev/null 2>&1; then
        command -v uv
    elif [ -x "$tools/bin/uv" ] && "$tools/bin/uv" --version >/dev/null 2>&1; then
        printf '%s\n' "$tools/bin/uv"
    else
        say "uv is not on PATH; installing it into $tools (requirements-uv.lock, hash-pinned)"
        rm -rf "$tools"
        "$python" -m pip install --disable-pip-version-check --require-hashes \
            --only-binary :all: --target "$tools" -r requirements-uv.lock >&2 || return 1
        "$tools/bin/uv" --version >/dev/null 2>&1 || return 1
        printf '%s\n' "$tools/bin/uv"
    fi
}

if uv=$(find_uv); then
    say "with $("$uv" --version) into $venv from $lock"
    if [ ! -x "$venv/bin/python" ]; then
        # --seed: pip in the venv too, for whoever uses .venv/bin/pip by hand.
        "$uv" venv --seed --python "$python" "$venv"
    fi
    "$uv" pip install --python "$venv/bin/python" --require-hashes -r "$lock"
    "$uv" pip install --python "$venv/bin/python" --no-deps -e .
else
    say "uv could not be installed; pip installs $lock into $venv (slower: about a minute)"
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv"
    fi
    "$venv/bin/pip" install --disable-pip-version-check --progress-bar on \
        --require-hashes -r "$lock"
    "$venv/bin/pip" install --disable-pip-version-check --no-deps -e .
fi
