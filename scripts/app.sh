#!/usr/bin/env bash
# The README's app command: install, then start the dashboard on its embedded offline defaults.
# It listens on localhost only (.streamlit/config.toml). To share it on a network on purpose (anyone who can
# reach it can start jobs, upload files and delete runs): bash scripts/app.sh --server.address 0.0.0.0
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/streamlit run app.py "$@"
