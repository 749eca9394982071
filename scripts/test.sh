#!/usr/bin/env bash
# Set up (if needed) and run the test suite. CPU only; GPU tests skip themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export AUTOTUNE_HOME="${AUTOTUNE_HOME:-$(mktemp -d)}"
# --durations: CI has a 20-minute budget on 2 cores; its log names the tests that spend it
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
