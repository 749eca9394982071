"""autotune.apply: a tuned configuration in a hand-written training loop."""

from __future__ import annotations

import torch

import autotune
from autotune.plugins.workloads.vision import LeNet
from autotune.plugins.workloads.catalog import digits


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


DDP_SCRIPT = """
import json, sys
from pathlib import Path

import torch
import torch.distributed as dist

import autotune
from autotune.plugins.workloads.vision import LeNet
from autotune.plugins.workloads.catalog import digits

dist.init_process_group("gloo")
torch.manual_seed(0)
settings = {"data_parallel": "ddp", "data_parallel_processes": 2, "batch_size": 64, "threads": 1}
with autotune.apply(settings, LeNet(), device="cpu") as tuned:
    loader = tuned.dataloader(digits().train_data, shuffle=True)
    loader.sampler.set_epoch(0)
    first = None
    for step, (inputs, targets) in enumerate(loader):
        inputs, targets = tuned.to_device(inputs, targets)
        first = float(inputs.double().sum()) if first is None else first
        with tuned.autocast():
            loss = torch.nn.functional.cross_entropy(tuned.model(inputs), targets)
        tuned.step(loss)
        if step == 10:
            break
    record = {
        "wrapper": type(tuned.model).__name__, "batch": loader.batch_size, "first": first,
        "sampler": type(loader.sampler).__name__,
        "params": sum(float(p.detach().double().sum()) for p in tuned.model.parameters()),
    }
record["after_close"] = type(tuned.model).__name__  # your module again, the wrapper released
Path(sys.argv[1], f"rank{dist.get_rank()}.json").write_text(json.dumps(record))
dist.destroy_process_group()
"""


def test_apply_under_torchrun_trains_with_ddp(tmp_path):
    """The way a user runs a tuned ddp configuration in their own script: torchrun, 2 processes."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    import pytest

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None or (os.cpu_count() or 1) < 2:
        pytest.skip("needs torchrun and 2+ cores")
    script = tmp_path / "train.py"
    script.write_text(DDP_SCRIPT)
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", str(script), str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    for record in (first, second):
        assert record["wrapper"] == "DistributedDataParallel"
        assert record["sampler"] == "DistributedSampler" and record["batch"] == 32
        assert record["after_close"] == "LeNet"
    assert first["first"] != second["first"]  # each process its own shard
    assert first["params"] == pytest.approx(second["params"], rel=1e-9)  # the processes stayed in step


def test_apply_ddp_without_a_process_group_says_how_to_start_one():
    import pytest

    with pytest.raises(autotune.UsageError, match="torchrun --nproc-per-node N"):
        autotune.apply({"data_parallel": "ddp", "data_parallel_processes": 2}, LeNet(), device="cpu")
