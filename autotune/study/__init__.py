"""A study from validation to report: prepare, run trials through Optuna, confirm (docs/architecture.md)."""
