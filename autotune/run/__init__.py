"""One training run, really measured: the plan knobs edit, the loop, the data-parallel ranks
(docs/architecture.md). The trial process that isolates a run is autotune.launch, above this."""
