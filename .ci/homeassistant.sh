#!/usr/bin/env bash
# Builds .venv-ha, Home Assistant from PyPI on CPython 3.13 (the newest it supports here), for
# tests/test_homeassistant.py (issue 38: fer-edge's discovery tried in a real Home Assistant). Called by .ci/run;
# on a developer's machine: bash .ci/homeassistant.sh, then the test finds .venv-ha/bin/hass by itself.
# The pins are .ci/homeassistant-requirements.txt, installed with --no-deps (the file says what it leaves out and
# why); pip's cache is .venv-ha-cache, so nothing is cached outside the checkout's ignored folders. An environment
# built from the same pins on the same interpreter is kept (a second run costs nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=3.13
PINS=.ci/homeassistant-requirements.txt
VENV=.venv-ha
export PIP_CACHE_DIR="$PWD/.venv-ha-cache" PIP_DISABLE_PIP_VERSION_CHECK=1

py=""
for c in "python$VERSION" "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/"$VERSION".*/bin/"python$VERSION"; do
    if "$c" -c "" 2>/dev/null; then py=$c; fi  # the last match: pyenv's newest 3.13.x wins over PATH's
done
[ -n "$py" ] || { echo "homeassistant.sh: CPython $VERSION not found (python$VERSION on PATH, or pyenv install $VERSION)" >&2; exit 1; }
stamp="$(sha256sum "$PINS" | cut -c1-16) $("$py" -c 'import sys; print(sys.version.split()[0])')"
if [ -x "$VENV/bin/hass" ] && [ "$(cat "$VENV/.pins" 2>/dev/null)" = "$stamp" ]; then
    echo "homeassistant.sh: $VENV is up to date ($stamp)"
    exit 0
fi
start=$SECONDS
rm -rf "$VENV"
"$py" -m venv "$VENV"
# --no-compile: Home Assistant is ~15,000 modules; byte-compiling them all costs more than the few it imports
"$VENV/bin/python" -m pip install -q --no-deps --no-compile -r "$PINS"
"$VENV/bin/python" -c "import sys, homeassistant.const as c; print(f'homeassistant.sh: Home Assistant {c.__version__} on CPython {sys.version.split()[0]}')"
echo "$stamp" >"$VENV/.pins"
echo "homeassistant.sh: $VENV built in $((SECONDS - start)) s"
