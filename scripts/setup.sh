#!/usr/bin/env bash
# Create .venv with pinned torch and the project (editable). Idempotent; only package registries are used.
# One line per step; pip's own output goes to .venv/setup.log and is shown only when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
step() {  # step "what it does" command...: one line, the log's tail when it fails
  local what=$1; shift
  echo "setup: $what" >&2
  if ! "$@" >>.venv/setup.log 2>&1; then
    echo "setup: failed: $what; the end of .venv/setup.log:" >&2
    tail -n 30 .venv/setup.log >&2
    exit 1
  fi
}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PYTHON" --version 2>&1)" >&2
  "$PYTHON" -m venv .venv
fi
# The install is editable, so only the declared dependencies and this script can make it stale:
# when neither changed since the last good run, there is nothing to do (pip's no-op pass alone
# takes ~5 s of every demo).
stamp=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/autotune ] && [ "$(cat .venv/.setup-stamp 2>/dev/null)" = "$stamp" ]; then
  echo "setup: up to date (.venv)" >&2
  exit 0
fi
rm -f .venv/.setup-stamp
: >.venv/setup.log
step "upgrading pip" .venv/bin/python -m pip install --quiet --upgrade pip
step "installing torch 2.14.1 and torchvision 0.29.1 (about a minute the first time)" \
  .venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
# Editable install: a regular install would be shadowed by ./autotune when run from the repo root.
# lightning and transformers: tests/test_adapters_*.py train real Trainers (CPU, no network)
step "installing autotune (editable), its test dependencies and the framework adapters' extras" \
  .venv/bin/python -m pip install --quiet -e ".[test,lightning,transformers]"
# PostgreSQL server binaries for tests/test_postgres.py (distributed studies); without them those
# tests skip. Debian's package puts initdb/pg_ctl in /usr/lib/postgresql/N/bin, off PATH.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing postgresql (for the distributed-study tests)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >>.venv/setup.log 2>&1 \
    || echo "setup: could not install postgresql; tests/test_postgres.py will skip" >&2
fi
echo "$stamp" >.venv/.setup-stamp
echo "setup: done" >&2
