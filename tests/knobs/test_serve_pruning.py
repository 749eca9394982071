"""serve_pruning (plugins/serving/serve_pruning.py), for real: a digits model trained briefly
through the engine, served with half its channels removed, with and without a fine-tune on the
training data, then exported and loaded back in a fresh process. Few timed calls and a short
training keep the file within seconds; latency is a benchmark's business, not these tests'.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import torch

from autotune.hardware import detect
from autotune.inference.export import write_served
from autotune.inference.serve import serve
from autotune.inference.types import InferenceOptions, InferenceResult
from autotune.registry import load_registry
from autotune.run.saving import read_checkpoint, save_model
from autotune.settings import resolve_settings
from autotune.workloads import load_workload

pytest.importorskip("torch_pruning", reason="serve_pruning needs torch-pruning (pip install 'autotune[prune]')")

QUICK = {"serve_threads": 1, "serve_batch_size": 8}
STEPS = 25  # fine-tune steps: measured on this model, 0.33 accuracy pruned -> 0.83 after 25 steps


# A fresh process loads the exported model as a user would and measures its validation accuracy.
LOAD = """
import json, sys
import torch
import autotune

served, data = sys.argv[1:]
images, labels = torch.load(data)
model = autotune.load_served(served)
with torch.inference_mode():
    correct = (model(images).argmax(1) == labels).sum().item()
print(json.dumps({"accuracy": correct / len(labels), "training": model.training}))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A digits model trained for ten SGD steps (~0.6 accuracy; by hand: the engine's run costs
    seconds of set-up here) and saved as `--save-model` saves it, served three ways: unpruned,
    half its channels removed, and that fine-tuned for STEPS steps."""
    folder = tmp_path_factory.mktemp("serve-pruning")
    hardware = detect("cpu")
    workload = load_workload("digits", load_registry(entry_points=False))
    torch.manual_seed(0)
    model = workload.model_fn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    order = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(workload.train_data, batch_size=64, shuffle=True, generator=order)
    for _, (images, labels) in zip(range(10), loader):
        optimizer.zero_grad()
        workload.loss_fn(model(images), labels).backward()
        optimizer.step()
    path = folder / "digits.pt"
    save_model(model, path, workload, {"learning_rate": 0.05}, {"name": "accuracy", "direction": "maximize"}, {})
    registry = load_registry(entry_points=False, task="inference")
    payload = read_checkpoint(path)
    options = InferenceOptions(checkpoint=str(path), metric="accuracy", direction="maximize", warmup=1,
                               iterations=3, seed=7)

    def served(**overrides: Any) -> InferenceResult:
        chosen = resolve_settings(registry, hardware, workload, {**QUICK, **overrides})
        result = serve(registry, hardware, workload, payload, chosen, options, device="cpu")
        assert result.status == "ok", result.error
        return result

    return {
        "path": path, "folder": folder, "workload": workload, "seed": options.seed,
        "base": served(),
        "pruned": served(serve_pruning=0.5, serve_prune_finetune_steps=0),
        "tuned": served(serve_pruning=0.5, serve_prune_finetune_steps=STEPS),
    }


def test_half_the_channels_give_a_smaller_model_with_fewer_parameters(trained: dict[str, Any]) -> None:
    base, pruned = trained["base"], trained["pruned"]
    assert 0.4 < base.metric_value < 0.9  # trained, not to the end
    counts = pruned.notes["serve_pruning_counts"]
    before, after = counts["parameters"]
    assert before == 120_478 and after < 0.3 * before  # both sides of most layers halve
    # LeNet's two convolutions (16, 32) and two hidden Linear layers (120, 84) lose half their
    # outputs; the classifier keeps its 10 (its inputs shrink: 7 layers change with the 2 BatchNorms)
    assert counts["channels_removed"] == 8 + 16 + 60 + 42 and counts["layers_pruned"] == 7
    assert pruned.model_bytes < 0.35 * base.model_bytes
    assert counts["finetune_steps"] == 0 and counts["finetune_seconds"] == 0.0
    assert "removed 50.0% of the channels: 126 channels/filters" in pruned.notes["serve_pruning"]
    assert "serve_pruning" not in base.notes  # 0 is the untouched baseline


def test_a_fine_tune_on_the_training_data_wins_back_the_accuracy_pruning_lost(trained: dict[str, Any]) -> None:
    base, pruned, tuned = trained["base"], trained["pruned"], trained["tuned"]
    assert pruned.metric_value < base.metric_value - 0.1  # half the channels of a trained model: a real loss
    assert tuned.metric_value > pruned.metric_value + 0.2
    assert tuned.model_bytes == pruned.model_bytes  # the same shapes: the fine-tune changes weights only
    counts = tuned.notes["serve_pruning_counts"]
    assert counts["finetune_steps"] == STEPS and counts["finetune_seconds"] > 0
    assert f"fine-tuned {STEPS} steps in" in tuned.notes["serve_pruning"]
    assert counts["finetune_last_loss"] is not None and counts["finetune_last_loss"] < 2.3  # below chance


def test_the_pruned_model_exports_and_reloads_in_a_fresh_process_with_its_trials_accuracy(
    trained: dict[str, Any]
) -> None:
    tuned, folder = trained["tuned"], trained["folder"]
    out = folder / "served.pt2"
    spec = {"checkpoint": str(trained["path"]), "workload": "digits", "seed": trained["seed"]}
    written = write_served(spec, tuned.settings, out)
    # narrower layers export like any module: the fine-tuned weights are inside the program
    assert written["format"] == "exported_program", written["why"]
    data = folder / "val.pt"
    val = trained["workload"].val_data
    loader = torch.utils.data.DataLoader(val, batch_size=len(val))  # type: ignore[arg-type]
    torch.save(next(iter(loader)), data)
    ran = subprocess.run([sys.executable, "-c", LOAD, str(out), str(data)], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ))
    assert ran.returncode == 0, ran.stderr[-3000:]
    fresh = json.loads(ran.stdout.strip().splitlines()[-1])
    assert not fresh["training"]
    assert fresh["accuracy"] == pytest.approx(tuned.metric_value, abs=1e-6)
    assert out.stat().st_size < trained["base"].model_bytes
