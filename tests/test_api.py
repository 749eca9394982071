"""autotune.apply: a tuned configuration in a hand-written training loop."""

from __future__ import annotations

import torch

import autotune
from autotune.workloads import LeNet, digits


def test_apply_configures_a_user_loop_through_the_knobs(tmp_path):
    config = tmp_path / "best.toml"
    config.write_text(
        'workload = "digits"\n[settings]\nbatch_size = 32\noptimizer = "adamw"\nlearning_rate = 0.002\n'
        'weight_decay = 0.01\nprecision = "bf16"\nchannels_last = true\npruning = 0.5\nthreads = 1\n'
    )
    workload = digits()
    before = torch.get_num_threads()
    with autotune.apply(config, LeNet(), device="cpu") as tuned:
        assert isinstance(tuned.optimizer, torch.optim.AdamW)
        assert tuned.optimizer.param_groups[0]["lr"] == 0.002
        assert tuned.optimizer.param_groups[0]["weight_decay"] == 0.01
        assert torch.get_num_threads() == 1
        loader = tuned.dataloader(workload.train_data, shuffle=True)
        assert loader.batch_size == 32
        losses = []
        for step, (inputs, targets) in enumerate(loader):
            inputs, targets = tuned.to_device(inputs, targets)
            assert inputs.is_contiguous(memory_format=torch.channels_last)
            with tuned.autocast():
                outputs = tuned.model(inputs)
                assert outputs.dtype == torch.bfloat16
                loss = torch.nn.functional.cross_entropy(outputs, targets)
            tuned.step(loss)
            losses.append(loss.item())
            if step == 20:
                break
        assert losses[-1] < losses[0]
        conv = tuned.model.features[0].weight
        assert conv.is_contiguous(memory_format=torch.channels_last)
        total = sum(m.weight.numel() for m in tuned.model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
        zeros = sum(int((m.weight == 0).sum()) for m in tuned.model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
        assert abs(zeros / total - 0.5) < 0.02  # still pruned after 21 steps
    assert torch.get_num_threads() == before


def test_apply_takes_a_dict_and_rejects_unknown_settings():
    import pytest

    tuned = autotune.apply({"optimizer": "rmsprop", "momentum": 0.5}, LeNet(), device="cpu")
    assert isinstance(tuned.optimizer, torch.optim.RMSprop)
    with pytest.raises(autotune.UsageError, match="unknown setting 'warp_speed'"):
        autotune.apply({"warp_speed": 9}, LeNet(), device="cpu")
