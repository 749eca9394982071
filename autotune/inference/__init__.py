"""Serving a trained model, measured: the pipeline stage after training.

`plan` (InferencePlan: what inference knobs edit), `calls` (what the model is called with, from
the workload's validation data), `timing` (latency, throughput, peak memory, size on disk),
`serve` (one inference trial: load the checkpoint, let the knobs edit the plan, measure, judge
the metric), `types` (InferenceOptions and InferenceResult: plain data that crosses processes).
"""
