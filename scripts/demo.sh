#!/usr/bin/env bash
# Set up (if needed) and run the main job on the embedded default: tinylm on the text of Python's
# own help topics, SQLite in $AUTOTUNE_HOME (default ~/.autotune), no network. 150 steps is 1.5
# epochs of the baseline recipe: long enough that the configuration decides, short enough that
# the whole study, confirmation and "why it is faster" included, takes about 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/autotune study start --name "${1:-demo}" --workload tinylm --space demo --budget-steps 150 --n-trials 12 --no-tui "${@:2}"
