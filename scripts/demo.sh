#!/usr/bin/env bash
# Set up (if needed) and run the main job on the embedded default: the bundled digits data,
# SQLite in $AUTOTUNE_HOME (default ~/.autotune), no network.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/autotune study start --name "${1:-demo}" --workload tinylm --space demo --budget-epochs 1 --n-trials 12 --no-tui "${@:2}"
