"""The models the serving tests serve, and how they serve them: a digits model trained briefly and
saved by `trial run --save-model` as a user would, and an untrained tinylm saved as that option
saves it (built once a session by the `models` fixture of tests/conftest.py; `serving` is the
inference registry and this machine's CPU); each served with one thread and few timed calls.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from click.testing import CliRunner

from autotune.cli import cli
from autotune.inference.serve import build_plan, serve
from autotune.inference.types import InferenceOptions
from autotune.registry import load_registry
from autotune.run.saving import model_from, read_checkpoint, save_model
from autotune.settings import resolve_settings
from autotune.workloads import load_workload

CPU = torch.device("cpu")
FAST = {"warmup": 2, "iterations": 5}
QUICK = {"serve_threads": 1, "serve_batch_size": 8}


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def train_models(folder: Path) -> dict[str, Any]:
    """A digits model trained briefly and saved by `trial run --save-model`, as a user would,
    and an untrained tinylm model saved as that option saves it."""
    old_home = os.environ.get("AUTOTUNE_HOME")
    os.environ["AUTOTUNE_HOME"] = str(folder / "home")
    try:
        digits_path = folder / "digits.pt"
        # ten steps at a higher learning rate learn what one epoch of the recipe does (~0.6 accuracy)
        ran = invoke("trial", "run", "--workload", "digits", "--budget-steps", "10", "--set", "learning_rate=0.05",
                     "--save-model", str(digits_path), "--json")
        assert ran.exit_code == 0, ran.output
        # tinylm untrained: serving it needs no training (its validation alone costs a second)
        registry = load_registry(entry_points=False)
        tinylm = load_workload("tinylm", registry)
        tinylm_path = folder / "tinylm.pt"
        torch.manual_seed(0)
        save_model(tinylm.model_fn(), tinylm_path, tinylm, {}, {"name": "val_loss", "direction": "minimize"}, {})
    finally:
        if old_home is None:
            os.environ.pop("AUTOTUNE_HOME", None)
        else:
            os.environ["AUTOTUNE_HOME"] = old_home
    return {"digits": digits_path, "digits_run": json.loads(ran.stdout), "tinylm": tinylm_path}


def served(models: dict[str, Any], serving: tuple[Any, Any], name: str, eval_batches: int | None = None,
           **overrides: Any) -> Any:
    """Serve model `name` under `overrides`, measured briefly (judged on `eval_batches` batches
    of the validation set, None: all of it)."""
    registry, hardware = serving
    payload = read_checkpoint(models[name])
    workload = load_workload(payload["workload"], registry)
    # one thread, small batches: quick calls, also on a machine another process keeps busy
    settings = resolve_settings(registry, hardware, workload, {**QUICK, **overrides})
    metric = payload["metric"]
    options = InferenceOptions(checkpoint=str(models[name]), metric=metric["name"], direction=metric["direction"],
                               max_eval_batches=eval_batches, **FAST)
    return serve(registry, hardware, workload, payload, settings, options, device="cpu")


def plan_for(models: dict[str, Any], serving: tuple[Any, Any], name: str, **overrides: Any) -> Any:
    registry, hardware = serving
    payload = read_checkpoint(models[name])
    workload = load_workload(payload["workload"], registry)
    settings = resolve_settings(registry, hardware, workload, overrides)
    return build_plan(registry, hardware, workload, settings, model_from(payload, workload), CPU), workload
