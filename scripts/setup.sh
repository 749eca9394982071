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
# PostgreSQL server binaries for tests/test_postgres.py (distributed studies); without them those
# tests skip. Debian's package puts initdb/pg_ctl in /usr/lib/postgresql/N/bin, off PATH.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
    || echo "setup.sh: could not install postgresql; tests/test_postgres.py will skip" >&2
fi
