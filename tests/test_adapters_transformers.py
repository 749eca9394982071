"""The Transformers adapter (autotune.adapters.transformers), run for real: a trial's settings
become the TrainingArguments a real Trainer trains with, the session measures its steps and
evaluations, a setting with no TrainingArguments equivalent is refused with its reason, and the
example runs as a study."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback  # noqa: E402

from adapter_helpers import ROOT, by_hand, example, study, trial_session  # noqa: E402
from autotune.adapters.transformers import adapt, eval_metrics  # noqa: E402
from autotune.errors import Unsupported, UsageError  # noqa: E402

STEPS = 8


class Rates(TrainerCallback):
    """The optimizer's learning rate at each optimizer step, as the Trainer steps it."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs) -> None:
        self.rates.append(optimizer.param_groups[0]["lr"])


def tiny_model(vocab: int) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=32, vocab_size=vocab))


def train(session, tmp_path: Path):
    train_set, val_set, vocab = example("transformers").datasets(8_000, 32)
    model = tiny_model(vocab)
    trial = adapt(model, session)
    args = trial.training_args(output_dir=str(tmp_path / "out"), eval_strategy="steps", eval_steps=4,
                               per_device_eval_batch_size=64, save_strategy="no", report_to="none",
                               logging_strategy="no", disable_tqdm=True)
    rates = Rates()
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
                      callbacks=[trial.callback(), rates])
    trainer.train()
    return trial, trainer, args, rates.rates


def test_a_trials_settings_become_the_training_arguments(tmp_path: Path) -> None:
    session = trial_session(STEPS, batch_size=16, learning_rate=0.003, precision="bf16", optimizer="adamw",
                            optimizer_impl="fused", weight_decay=0.01, beta2=0.99, lr_schedule="cosine",
                            lr_warmup_fraction=0.25, micro_batches=2, workers=1, activation_checkpointing=True)
    trial, trainer, args, rates = train(session, tmp_path)
    assert args.activation_checkpointing
    assert any(getattr(m, "gradient_checkpointing", False) for m in trainer.model.modules())
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (8, 2)
    assert args.learning_rate == 0.003 and args.bf16 and not args.fp16
    assert args.optim == "adamw_torch_fused" and args.weight_decay == 0.01 and args.adam_beta2 == 0.99
    assert args.lr_scheduler_type == "cosine" and args.max_steps == STEPS
    assert args.dataloader_num_workers == 1 and args.dataloader_persistent_workers
    optimizer = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"]
    # HF's cosine with 2 warm-up steps (a quarter of 8): the rate rises, peaks at 0.003, then falls
    warm = 2
    expected = [0.003 * k / warm if k < warm else
                0.003 * 0.5 * (1 + math.cos(math.pi * (k - warm) / (STEPS - warm))) for k in range(STEPS)]
    assert rates == pytest.approx(expected)
    result = session.finish()
    assert result.status == "ok", result.error
    assert result.steps == STEPS and result.samples == STEPS * 16
    assert [p.step for p in result.curve] == [4, 8] and result.throughput > 0
    assert "gradient_accumulation_steps=2" in result.notes["transformers"]


@pytest.mark.parametrize(("setting", "check"), [
    ({"threads": 1}, lambda args: torch.get_num_threads() == 1),
    ({"matmul_precision": "medium"}, lambda args: torch.get_float32_matmul_precision() == "medium"),
    ({"torch_compile": True}, lambda args: args.torch_compile),
    ({"momentum": 0.5}, lambda args: args.optim == "sgd" and "momentum=0.5" in args.optim_args),
    ({"optimizer": "rmsprop", "momentum": 0.3}, lambda args: args.optim == "rmsprop" and "momentum=0.3" in args.optim_args),
])
def test_each_other_mapped_setting_reaches_the_trainer(setting, check, tmp_path: Path) -> None:
    """The cells of the knob x Trainer matrix the training test above does not measure: the
    process-wide ones as training would see them, the rest as the Trainer's arguments."""
    trial = adapt(tiny_model(50), trial_session(STEPS, **setting))
    try:
        args = trial.training_args(output_dir=str(tmp_path / "out"), report_to="none")
        assert check(args), (setting, args)
    finally:
        trial.adapted.close()  # the process-wide knobs put back


def test_the_budgets_last_step_is_evaluated_and_training_stops(tmp_path: Path) -> None:
    session = trial_session(6)  # eval every 4 steps: the sixth is evaluated because the budget ends there
    trial, trainer, args, rates = train(session, tmp_path)
    result = session.finish()
    assert result.status == "ok" and [p.step for p in result.curve] == [4, 6] and len(rates) == 6
    assert args.optim == "sgd" and args.lr_scheduler_type == "constant" and rates == [0.01] * 6


@pytest.mark.parametrize("setting, reason", [
    ({"lr_schedule": "onecycle"}, "transformers adapter: lr_schedule='onecycle' cannot be applied: "
                                  "TrainingArguments.lr_scheduler_type has no onecycle"),
    ({"optimizer": "adam", "weight_decay": 0.01}, "optimizer='adam' cannot be applied: the Trainer has AdamW"),
    ({"pruning": 0.3}, "pruning=0.3 cannot be applied: unstructured pruning"),
])
def test_a_setting_with_no_training_argument_is_refused_with_its_reason(setting, reason) -> None:
    with pytest.raises(Unsupported, match=reason):
        adapt(tiny_model(50), trial_session(STEPS, **setting))


def test_eval_metrics_become_the_sessions_names_and_mapped_arguments_are_not_given_twice() -> None:
    assert eval_metrics({"eval_loss": 2.5, "eval_accuracy": 0.4, "eval_runtime": 1.0, "epoch": 0.3,
                         "eval_samples_per_second": 9.0}) == {"val_loss": 2.5, "accuracy": 0.4}
    trial = adapt(tiny_model(50), trial_session(STEPS))
    with pytest.raises(UsageError, match="learning_rate come from the trial's settings"):
        trial.training_args(output_dir="x", learning_rate=0.1)


def test_importing_autotune_and_its_adapters_imports_neither_framework() -> None:
    code = ("import sys, autotune, autotune.sessions, autotune.adapters.lightning, autotune.adapters.transformers\n"
            "print(sorted(m for m in ('lightning', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_the_example_runs_as_a_study_with_no_failed_trial(tmp_path: Path) -> None:
    report = study(tmp_path, "hf", ROOT / "examples" / "transformers" / "train.py", "--n-trials", "4",
                   "--budget-steps", "20", "--space", "quick", "--", "--chars", "20000", "--eval-every", "10")
    assert report["counts"]["failed"] == 0, report["counts"]
    assert report["counts"]["complete"] >= 1 and report["done"] == 4


def test_the_example_runs_by_hand_with_the_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    by_hand("transformers", "--steps", "4", "--eval-every", "2", "--chars", "5000")
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("val_loss ")
    assert list(tmp_path.iterdir()) == []  # the Trainer's output_dir was a temporary one
