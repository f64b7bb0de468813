#!/usr/bin/env bash
# The README's test command: install the app and test dependencies, a headless Chromium for the browser test
# (Debian package; never a browser download), then run every test offline, in two processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/pip install -q -r requirements-dev.txt
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
# two processes (pytest-xdist), a test file per process at a time, in collection order (tests/conftest.py puts the
# longest files first; without --no-loadscope-reorder xdist would hand files out by test count instead, and the
# one-test Ray file would start last); PYTEST_WORKERS=0 runs in one process
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
