#!/usr/bin/env bash
# Create .venv with pinned torch and the project (editable). Idempotent; only package registries are used.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
# Editable install: a regular install would be shadowed by ./autotune when run from the repo root.
.venv/bin/python -m pip install --quiet -e ".[test]"
