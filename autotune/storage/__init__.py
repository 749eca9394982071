"""Where studies live and how they are read back: Optuna's storage, autotune's own tables, and the
rules that count and rank trials (docs/architecture.md)."""
