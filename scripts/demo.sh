#!/usr/bin/env bash
# Set up (if needed) and run the main job on the embedded default: tinylm on the text of Python's
# own help topics, SQLite in $AUTOTUNE_HOME (default ~/.autotune), no network. 150 steps is 1.5
# epochs of the baseline recipe: long enough that the configuration decides, short enough that
# the whole study takes about 2 minutes on an idle 2-core CPU: the search ~25 s, dropping riders
# ~7 s, the answer checked at 10x the budget (1,500 steps) beside the baseline ~36 s, the systems
# knobs fitted ~17 s, confirmation ~17 s (docs/benchmarks.md, "the main job at 10x its budget").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/autotune study start --name "${1:-demo}" --workload tinylm --space demo --budget-steps 150 --n-trials 12 --no-tui "${@:2}"
