"""Adapters: a trial's settings handed to a framework's own Trainer, and its validations back.

`autotune.adapters.lightning` (Lightning's Trainer and LightningModule) and
`autotune.adapters.transformers` (Hugging Face's Trainer and TrainingArguments) turn the
settings of a `--script` trial (autotune.sessions) into the framework's own arguments, give it a
callback that counts its steps and reports its validations to the session, and refuse, with the
reason, a setting the framework has no place for (the trial is then `unsupported here`, not
failed). Each imports its framework only when used: `pip install 'autotune[lightning]'` or
`'autotune[transformers]'`. See docs/adapters.md.
"""
