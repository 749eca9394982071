"""int8_dynamic (serving): dynamic int8 quantization of a trained model's Linear layers, within the
accuracy guard, on digits and on tinylm (the models: tests/serving_models.py).
"""

from __future__ import annotations

from typing import Any

import torch

from autotune.inference.serve import built

from serving_models import plan_for, served


def test_int8_dynamic_quantizes_the_linear_layers_within_the_guard(
    models: dict[str, Any], serving: tuple[Any, Any]
) -> None:
    plan, _ = plan_for(models, serving, "digits", int8_dynamic=True)
    model, size = built(plan)
    quantized = [m for m in model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(quantized) == 3 and not any(type(m) is torch.nn.Linear for m in model.modules())
    fp32_plan, _ = plan_for(models, serving, "digits")
    assert size < built(fp32_plan)[1]  # int8 weights: the classifier's ~59k weights shrink 4x
    out = served(models, serving, "digits", int8_dynamic=True)
    base = served(models, serving, "digits")
    assert out.status == "ok", out.error
    assert "3 Linear layers quantized" in out.notes["int8_dynamic"]
    assert abs(base.metric_value - out.metric_value) / base.metric_value <= 0.01


def test_a_tinylm_model_serves_with_int8_and_keeps_its_loss(models: dict[str, Any], serving: tuple[Any, Any]) -> None:
    base = served(models, serving, "tinylm", eval_batches=1)
    assert base.status == "ok", base.error
    assert base.metric_value > 3.0 and base.metrics["perplexity"] > 20  # untrained: ~log(vocabulary)
    out = served(models, serving, "tinylm", eval_batches=1, int8_dynamic=True, serve_batch_size=4)
    assert out.status == "ok", out.error
    assert out.notes["serve_threads"] == 1 and out.batch_size == 4
    assert out.metric_value <= base.metric_value * 1.01  # val_loss: lower is better
