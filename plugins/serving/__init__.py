"""The built-in inference knobs (`Knob.task` "inference": how a trained model is served), one a
module named after its knob: the `serve_` that keeps some knob names apart from their training
namesakes (`serve_batch_size`, `batch_size`) stays in the module's name."""
