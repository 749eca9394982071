"""The built-in training knobs (`Knob.task` "training"), one a module named after its knob."""
