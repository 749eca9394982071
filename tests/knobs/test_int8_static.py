"""int8_static (serving): PT2E static int8 quantization of a conv model, a quantized program that
predicts what the fp32 model predicts (the models: tests/serving_models.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from autotune.inference.serve import built

from serving_models import plan_for


def test_int8_static_gives_a_quantized_program_for_a_conv_model(
    models: dict[str, Any], serving: tuple[Any, Any]
) -> None:
    pytest.importorskip("torchao")
    plan, workload = plan_for(models, serving, "digits", int8_static=True, calibration_batches=2)
    model, size = built(plan)
    assert isinstance(model, torch.fx.GraphModule)
    ops = {str(node.target) for node in model.graph.nodes if node.op == "call_function"}
    assert any("quantize_per_tensor" in op for op in ops) and any("dequantize_per_channel" in op for op in ops)
    # int8 weights for its 2 convolutions and 3 Linear layers, and nothing of the fp32 ones left
    assert sum(1 for t in model.state_dict().values() if t.dtype == torch.int8) == 5
    assert size < built(plan_for(models, serving, "digits")[0])[1] / 3
    # the quantized program predicts what the fp32 model predicts, one batch at any size
    images = torch.stack([workload.val_data[i][0] for i in range(64)])
    with torch.no_grad():
        agree = (model(images).argmax(1) == plan.model(images).argmax(1)).float().mean().item()
        assert model(images[:1]).shape == (1, 10)
    assert agree >= 0.95
