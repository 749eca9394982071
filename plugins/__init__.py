"""autotune's built-in plugins, each module an ordinary plugin registered like a third party's:
`training` (the knobs of how a model trains), `serving` (the knobs of how a trained model is
served), `workloads` (the built-in workloads), and `channel_pruning`, the helper of the two
pruning knobs (`training.structured_pruning`, `serving.serve_pruning`)."""
