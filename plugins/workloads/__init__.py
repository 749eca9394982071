"""The built-in workloads: `catalog` registers them by name without importing torch; their
factories import the torch side, `vision` (the image workloads' models and datasets) or
`language` (tinylm's transformer and its text)."""
