"""A Hugging Face Trainer script, tuned by autotune through the Transformers adapter.

    python examples/transformers/train.py                    # trains once, baseline settings
    autotune study start --name hf --script examples/transformers/train.py --n-trials 6 --no-tui

A 2-layer GPT-2 (randomly initialised: no weights downloaded) learns the characters of Python's
own help text (`pydoc_data.topics`, installed with every Python), tokenized one character a
token by this script: no tokenizer download, no network. The lines marked `autotune` are all it
takes: the trial's settings become the TrainingArguments (batch size, learning rate, optimizer,
schedule, precision, workers, compile ...) and the adapter's callback reports each evaluation
(`eval_loss` as `val_loss`) to the study and stops training when the study says so. Needs
`pip install 'autotune[transformers]'`.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from pydoc_data.topics import topics
from torch.utils.data import Dataset
from transformers import GPT2Config, GPT2LMHeadModel, PrinterCallback, Trainer
from transformers.utils import logging as hf_logging

from autotune.adapters.transformers import adapt


class CharBlocks(Dataset):
    """Blocks of `block` characters as token ids; the labels are the inputs (the model shifts them)."""

    def __init__(self, ids: torch.Tensor, block: int) -> None:
        self.ids, self.block = ids, block

    def __len__(self) -> int:
        return (len(self.ids) - 1) // self.block

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        chunk = self.ids[index * self.block:(index + 1) * self.block]
        return {"input_ids": chunk, "labels": chunk}


def datasets(chars: int, block: int) -> tuple[CharBlocks, CharBlocks, int]:
    text = "".join(topics[key] for key in sorted(topics))[:chars]
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text], dtype=torch.long)
    cut = int(len(ids) * 0.9)
    return CharBlocks(ids[:cut], block), CharBlocks(ids[cut:], block), len(vocab)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chars", type=int, default=60_000, help="characters of the help text to train on")
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200, help="when run by hand; a trial's budget wins")
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--out", help="the Trainer's output_dir (it saves nothing here); default: a temporary one")
    args = parser.parse_args()

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    train_set, val_set, vocab = datasets(args.chars, args.block)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=args.block, vocab_size=vocab)
    model = GPT2LMHeadModel(config)
    trial = adapt(model)  # autotune: this trial's settings (by hand: the baseline)
    with tempfile.TemporaryDirectory(prefix="hf-out-") as scratch:
        train(args, model, trial, train_set, val_set, args.out or scratch)


def train(args, model, trial, train_set, val_set, out: str) -> None:
    training_args = trial.training_args(  # autotune: batch, lr, optimizer, schedule, precision, budget ...
        output_dir=out, max_steps=args.steps, eval_strategy="steps", eval_steps=args.eval_every,
        per_device_eval_batch_size=128, save_strategy="no", report_to="none", logging_strategy="no",
        disable_tqdm=True, seed=0,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=train_set, eval_dataset=val_set,
                      callbacks=[trial.callback()])  # autotune: reports evaluations, stops when told
    trainer.remove_callback(PrinterCallback)  # each evaluation's dict on stdout: `trial run --json` prints there
    trainer.train()
    if not trial.session.in_trial:  # by hand: the final loss (a trial reported its own)
        print(f"val_loss {trainer.evaluate()['eval_loss']:.4f}")


if __name__ == "__main__":
    main()
