"""One training run, really measured: the plan knobs edit, the loop, the trial process (docs/architecture.md)."""
