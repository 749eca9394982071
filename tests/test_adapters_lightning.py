"""The Lightning adapter (autotune.adapters.lightning), run for real: a trial's settings reach a
real Trainer and its optimizer, the session measures Lightning's steps and validations, a
setting Lightning has no place for is refused with its reason, and the example runs as a study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

pytest.importorskip("lightning")

import lightning as L  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from adapter_helpers import ROOT, by_hand, example, study, trial_session  # noqa: E402
from autotune.adapters.lightning import adapt  # noqa: E402
from autotune.errors import Unsupported, UsageError  # noqa: E402
from autotune.plugins.training.lr_schedule import lr_at_step, warmup_steps  # noqa: E402

STEPS = 10


class Rates(L.Callback):
    """The optimizer's learning rate at each optimizer step, as Lightning steps it."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.rates.append(optimizer.param_groups[0]["lr"])


def fit(session, **trainer_args):
    digits = example("lightning")
    torch.manual_seed(0)
    trial = adapt(digits.DigitsMLP(32), session)
    train_set, val_set = digits.datasets()
    rates = Rates()
    kwargs = trial.trainer_kwargs(
        val_check_interval=10, check_val_every_n_epoch=None, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[rates],
        **trainer_args,
    )
    trainer = L.Trainer(**kwargs)
    trainer.fit(trial.model, DataLoader(train_set, shuffle=True, **trial.loader_kwargs()),
                DataLoader(val_set, batch_size=256, **trial.loader_kwargs(train=False)))
    return trial, trainer, rates.rates, kwargs


def test_a_trials_settings_reach_the_trainer_and_the_optimizer() -> None:
    session = trial_session(STEPS, batch_size=16, learning_rate=0.003, precision="bf16", optimizer="adamw",
                            weight_decay=0.01, beta2=0.99, lr_schedule="cosine", lr_warmup_fraction=0.2,
                            micro_batches=2, workers=1)
    trial, trainer, rates, kwargs = fit(session)
    assert trial.loader_kwargs() == {"batch_size": 8, "num_workers": 1, "persistent_workers": True,
                                     "prefetch_factor": 2, "pin_memory": False}
    assert kwargs["precision"] == "bf16-mixed" and kwargs["max_steps"] == STEPS
    assert trainer.accumulate_grad_batches == 2 and trainer.precision == "bf16-mixed"
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["weight_decay"] == 0.01 and optimizer.defaults["betas"] == (0.9, 0.99)
    warm = warmup_steps(0.2, STEPS)
    assert rates == pytest.approx([lr_at_step("cosine", 0.003, k, STEPS, warm) for k in range(STEPS)])
    assert trainer.global_step == STEPS
    result = session.finish()
    assert result.status == "ok", result.error
    assert result.steps == STEPS and result.samples == STEPS * 16  # two micro-batches of 8 a step
    assert len(result.curve) == 2 and result.curve[-1].step == STEPS  # every 10 batches: steps 5 and 10
    assert set(result.metrics) == {"val_loss", "accuracy"} and result.throughput > 0
    assert "accumulate_grad_batches=2" in result.notes["lightning"]


class Seen(L.Callback):
    """What the process and the optimizer were during training (the first optimizer step)."""

    def __init__(self) -> None:
        self.seen: dict = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.seen:
            self.seen = {"threads": torch.get_num_threads(), "matmul": torch.get_float32_matmul_precision(),
                         "defaults": dict(optimizer.defaults), "type": type(optimizer).__name__}


@pytest.mark.parametrize(("setting", "check"), [
    ({"threads": 1}, lambda seen, trial: seen["threads"] == 1),
    ({"matmul_precision": "medium"}, lambda seen, trial: seen["matmul"] == "medium"),
    ({"optimizer_impl": "foreach"}, lambda seen, trial: seen["defaults"]["foreach"] is True),
    ({"momentum": 0.5}, lambda seen, trial: seen["type"] == "SGD" and seen["defaults"]["momentum"] == 0.5),
    ({"optimizer": "rmsprop", "momentum": 0.3},
     lambda seen, trial: seen["type"] == "RMSprop" and seen["defaults"]["momentum"] == 0.3),
])
def test_each_other_mapped_setting_takes_effect_in_training(setting, check) -> None:
    """The cells of the knob x Lightning matrix test_a_trials_settings... does not measure."""
    seen = Seen()
    trial = _fit_with(trial_session(4, **setting), seen)
    assert seen.seen and check(seen.seen, trial), (setting, seen.seen)


def test_torch_compile_hands_lightning_the_compiled_module() -> None:
    """Compiling takes a minute on a CPU: the wrapping is what the cell measures, not training."""
    trial = adapt(example("lightning").DigitsMLP(32), trial_session(4, torch_compile=True))
    assert type(trial.model).__name__ == "OptimizedModule"


def _fit_with(session, callback):
    digits = example("lightning")
    torch.manual_seed(0)
    trial = adapt(digits.DigitsMLP(32), session)
    train_set, val_set = digits.datasets()
    trainer = L.Trainer(**trial.trainer_kwargs(
        val_check_interval=4, check_val_every_n_epoch=None, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[callback]))
    trainer.fit(trial.model, DataLoader(train_set, shuffle=True, **trial.loader_kwargs()),
                DataLoader(val_set, batch_size=256, **trial.loader_kwargs(train=False)))
    return trial


def test_the_session_stops_the_trainer_at_the_target() -> None:
    session = trial_session(200, target=5.0, optimizer="adam", learning_rate=0.01)  # the first validation
    trial, trainer, rates, _ = fit(session)
    result = session.finish()
    assert result.status == "ok" and result.time_to_target is not None
    assert trainer.global_step == 10 and len(result.curve) == 1  # stopped at the first validation


@pytest.mark.parametrize("setting, reason", [
    ({"pruning": 0.3}, "lightning adapter: pruning=0.3 cannot be applied: unstructured pruning"),
    ({"activation_checkpointing": True}, "activation_checkpointing=True cannot be applied: Lightning's Trainer has no"),
])
def test_a_setting_lightning_has_no_place_for_is_refused_with_its_reason(setting, reason) -> None:
    digits = example("lightning")
    with pytest.raises(Unsupported, match=reason):
        adapt(digits.DigitsMLP(32), trial_session(STEPS, **setting))
    assert torch.get_num_threads() >= 1


def test_trainer_arguments_the_trial_sets_are_not_given_twice() -> None:
    trial = adapt(example("lightning").DigitsMLP(32), trial_session(STEPS))
    with pytest.raises(UsageError, match="precision come from the trial's settings"):
        trial.trainer_kwargs(precision="16-mixed")


def test_the_example_runs_as_a_study_with_no_failed_trial(tmp_path: Path) -> None:
    report = study(tmp_path, "lit", ROOT / "examples" / "lightning" / "train.py", "--n-trials", "4",
                   "--budget-steps", "24", "--space", "quick")
    assert report["counts"]["failed"] == 0, report["counts"]
    assert report["counts"]["complete"] >= 1 and report["done"] == 4


def test_what_the_adapter_refuses_is_declared_by_the_baseline_and_never_searched(tmp_path: Path) -> None:
    """The default space searches pruning, which no framework's optimizer step keeps masked:
    the baseline declares it, with every other setting the adapter cannot apply, and no later
    trial spends itself on one (they used to end "unsupported here")."""
    report = study(tmp_path, "litd", ROOT / "examples" / "lightning" / "train.py", "--n-trials", "4",
                   "--budget-steps", "24")
    assert "pruning" in report["refused"] and "lightning adapter" in report["refused"]["pruning"]
    storage = f"sqlite:///{tmp_path / 'home' / 'studies.db'}"
    trials = optuna.load_study(study_name="litd", storage=storage).trials
    assert trials[0].user_attrs["refuses"]["pruning"] == report["refused"]["pruning"]
    for trial in trials[1:]:
        assert not set(trial.params) & set(report["refused"]), trial.params
        assert trial.user_attrs["settings"]["pruning"] == 0.0
        assert not str(trial.user_attrs.get("reason") or "").startswith("unsupported here")


def test_the_example_runs_by_hand_with_the_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    by_hand("lightning", "--epochs", "1")
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("val_loss ")
