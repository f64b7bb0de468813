#!/usr/bin/env bash
# The README's app command: install, then start the dashboard on its embedded offline defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/streamlit run app.py "$@"
