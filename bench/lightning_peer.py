"""A real peer: PyTorch Lightning's own tuner against autotune, with the same wall-clock tuning
budget, on the same model (autotune.plugins.workloads.vision.LeNet) and data (`digits`).

Reproduce (full ~4 min on a busy 2-core CPU; --quick ~2 min; needs `pip install -e .[bench]`):

    .venv/bin/python bench/lightning_peer.py [--quick] [--out DIR]

1. Lightning. A LightningModule around LeNet with the baseline's optimizer (SGD, momentum 0.9),
   the digits training set in a LightningDataModule (workers 0, as the baseline). Then, with
   Lightning's defaults except where said: `Tuner(trainer).scale_batch_size(mode="power",
   max_val=1024)` (on CPU nothing runs out of memory, so the cap is what stops it), then
   `.lr_find()` at that batch size (defaults: 1e-8..1, 100 steps; --quick: 30 steps), taking its
   `suggestion()`. The Trainer has max_epochs=1000 so lr_find is bounded by its own step count
   (digits at batch 1024 is 2 steps an epoch). Tuning time = Trainer construction to the suggestion (the `import lightning`
   is timed separately and not charged).
2. autotune. A real study on `digits` (time-to-accuracy, `cpu` space, 3-epoch trial budget) with
   `timeout` = Lightning's tuning time. Optuna checks the timeout between trials, so the running
   trial finishes: the actual tuning time is reported next to it.
3. Measure both picks identically: each pick (and the baseline) trains through autotune's
   launcher and engine with the same target (the autotune study's: baseline final accuracy -
   0.005), the same seed per round and the same run budget (6 epochs, stopping at the target), R
   alternating rounds; Lightning's pick keeps every other baseline setting (SGD momentum 0.9, fp32,
   workers 0).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any

import common
from outcome import CONTROL, SETTINGS_SHOWN, confirm, summarise

WORKLOAD = "digits"


def lightning_tune(quick: bool, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.tuner import Tuner
    from torch.utils.data import DataLoader

    from autotune.registry import load_registry
    from autotune.plugins.workloads.vision import LeNet
    from autotune.workloads import load_workload

    import_seconds = time.perf_counter() - t0
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    base = common.baseline_of(WORKLOAD)
    workload = load_workload(WORKLOAD, load_registry())

    class Module(pl.LightningModule):
        def __init__(self, lr: float, momentum: float) -> None:
            super().__init__()
            self.lr = lr
            self.momentum = momentum
            self.model = LeNet(in_channels=1)
            self.loss = torch.nn.CrossEntropyLoss()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            inputs, targets = batch
            return self.loss(self.model(inputs), targets)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)

    class Data(pl.LightningDataModule):
        def __init__(self, batch_size: int) -> None:
            super().__init__()
            self.batch_size = batch_size

        def train_dataloader(self) -> DataLoader:
            return DataLoader(workload.train_data, batch_size=self.batch_size, shuffle=True, num_workers=0)

    pl.seed_everything(seed, verbose=False)
    root = tempfile.mkdtemp(prefix="lightning-", dir=os.environ["AUTOTUNE_HOME"])
    module = Module(base["learning_rate"], base["momentum"])
    data = Data(base["batch_size"])
    num_training = 30 if quick else 100
    started = time.perf_counter()
    # max_epochs high: at batch 1024 digits has 2 steps an epoch, and lr_find stops at the
    # Trainer's max_epochs before its own num_training (with max_epochs=1 it gets 2 points and no
    # suggestion).
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=1000, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
    )
    tuner = Tuner(trainer)
    batch = tuner.scale_batch_size(module, datamodule=data, mode="power", max_val=1024)
    after_batch = time.perf_counter()
    common.log(f"  Lightning scale_batch_size -> {batch} ({after_batch - started:.1f} s)")
    finder = tuner.lr_find(module, datamodule=data, num_training=num_training)
    lr = finder.suggestion() if finder is not None else None
    ended = time.perf_counter()
    common.log(f"  Lightning lr_find -> {lr} ({ended - after_batch:.1f} s)")
    if lr is None:
        raise SystemExit("Lightning's lr_find gave no suggestion")
    return {
        "batch_size": int(batch), "learning_rate": float(lr), "import_seconds": import_seconds,
        "tuning_seconds": ended - started, "scale_batch_size_seconds": after_batch - started,
        "lr_find_seconds": ended - after_batch, "lr_find_steps": num_training,
        "lr_curve": {"lr": finder.results["lr"], "loss": finder.results["loss"]},
    }


def markdown(data: dict[str, Any]) -> str:
    lt, at = data["lightning"], data["autotune"]
    rows = []
    for name, s in data["summary"].items():
        final = common.stats(r["runs"][name]["val_accuracy"] for r in data["rounds_detail"])
        rows.append([name, common.fmt_stats(s["time_to_target"]), common.fmt_stats(s["tta_speedup"], unit="x"),
                     f"{s['missed']}/{data['rounds']}", common.fmt_stats(final, 3), common.fmt_stats(s["throughput"])])
    return "\n".join([
        "# A real peer: Lightning's Tuner vs autotune (same tuning time)",
        "",
        f"`digits`, LeNet. Target accuracy {data['target']} (autotune study's baseline final - 0.005).",
        "",
        common.md_table(["", "tuning time (s)", "picked"], [
            ["Lightning scale_batch_size + lr_find", f"{lt['tuning_seconds']:.1f}",
             f"batch_size={lt['batch_size']} learning_rate={lt['learning_rate']:.3g} (SGD momentum 0.9, fp32)"],
            [f"autotune study (timeout {at['timeout']:.0f} s)", f"{at['wall']:.1f}",
             f"`{common.short_settings(at['best'], SETTINGS_SHOWN)}` ({at['counts']})"],
        ]),
        "",
        f"Trained through autotune's engine, {data['rounds']} alternating rounds, fresh seed per round, "
        f"run budget {data['run_budget']} stopping at the target:",
        "",
        common.md_table(["configuration", "time-to-accuracy (s)", "speedup vs baseline", "missed target",
                         "accuracy when stopped", "samples/s"], rows),
        "",
        f"`import lightning` took {lt['import_seconds']:.1f} s (not charged). Lightning's batch scaling ran "
        f"{lt['scale_batch_size_seconds']:.1f} s, lr_find {lt['lr_find_seconds']:.1f} s ({lt['lr_find_steps']} steps).",
    ])


def figure(data: dict[str, Any]) -> Any:
    plt = common.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    curve = data["lightning"]["lr_curve"]
    ax1.plot(curve["lr"], curve["loss"])
    ax1.axvline(data["lightning"]["learning_rate"], color="C1", ls="--", label="Lightning's suggestion")
    ax1.set_xscale("log")
    ax1.set_xlabel("learning rate")
    ax1.set_ylabel("training loss (smoothed)")
    ax1.set_title(f"lr_find at batch {data['lightning']['batch_size']}")
    ax1.legend(fontsize=8)
    names = list(data["summary"])
    for i, name in enumerate(names):
        values = [r["runs"][name]["time_to_target"] for r in data["rounds_detail"]]
        got = [v for v in values if v is not None]
        ax2.scatter([i] * len(got), got, color=f"C{i}")
        med = data["summary"][name]["time_to_target"]["median"]
        if med is not None:
            ax2.hlines(med, i - 0.3, i + 0.3, color=f"C{i}", lw=2)
        if len(got) < len(values):
            ax2.annotate(f"{len(values) - len(got)} missed", (i, 0), xycoords=("data", "axes fraction"),
                         ha="center", va="bottom", color="red", fontsize=8)
    ax2.set_xticks(range(len(names)), names, fontsize=8)
    ax2.set_ylabel("time-to-accuracy (s)")
    ax2.set_ylim(bottom=0)
    ax2.set_title("picks trained through autotune's engine")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__)
    args = p.parse_args(argv)
    common.scratch_home()
    out = common.results_dir(args.out)
    from autotune.spec import StudySpec

    common.log("Lightning: scale_batch_size then lr_find on LeNet / digits")
    lt = lightning_tune(args.quick, args.seed)
    common.warm_up(WORKLOAD)
    budget = {"epochs": 2 if args.quick else 3}
    common.log(f"autotune: study with timeout = Lightning's tuning time ({lt['tuning_seconds']:.0f} s)")
    spec = StudySpec(name="bench-lightning-peer", workload=WORKLOAD, objective="time-to-accuracy", n_trials=1000,
                     timeout=lt["tuning_seconds"], budget=budget, seed=args.seed, confirm=0)
    ran = common.run_study(spec)
    report, runner = ran["report"], ran["runner"]
    best = report["best"]["settings"] if report.get("best") else runner.baseline
    target = runner.target
    lightning_pick = common.resolved(WORKLOAD, {"batch_size": lt["batch_size"], "learning_rate": lt["learning_rate"]})
    rounds_n = 2 if args.quick else 4
    plan = {"objective": "time-to-accuracy", "rounds": rounds_n, "confirm_budget": {"epochs": 6}}
    configs = {"baseline": runner.baseline, "Lightning pick": lightning_pick, "autotune best": best}
    if int(runner.baseline.get("threads", 1)) > 1:
        configs[CONTROL] = common.resolved(WORKLOAD, {**runner.baseline, "threads": 1})
    rounds = confirm(WORKLOAD, configs, plan, target, None, args.seed)
    summary = summarise(rounds, list(configs), True)
    data = {
        "quick": args.quick, "target": target, "rounds": rounds_n, "run_budget": plan["confirm_budget"],
        "lightning": lt,
        "autotune": {"timeout": lt["tuning_seconds"], "wall": ran["wall"], "counts": report["counts"],
                     "best": {k: v for k, v in best.items() if k in SETTINGS_SHOWN}, "trial_budget": budget},
        "configs": {k: {kk: vv for kk, vv in v.items() if kk in SETTINGS_SHOWN} for k, v in configs.items()},
        "rounds_detail": rounds, "summary": summary, "load": common.load_average(),
    }
    data["headline"] = {
        "lightning_pick": {"batch_size": lt["batch_size"], "learning_rate": lt["learning_rate"]},
        "lightning_tuning_seconds": lt["tuning_seconds"], "autotune_tuning_seconds": ran["wall"],
        "lightning_tta": summary["Lightning pick"]["time_to_target"],
        "lightning_missed": summary["Lightning pick"]["missed"],
        "autotune_tta": summary["autotune best"]["time_to_target"],
        "autotune_missed": summary["autotune best"]["missed"],
        "baseline_tta": summary["baseline"]["time_to_target"],
        "lightning_speedup": summary["Lightning pick"]["tta_speedup"],
        "autotune_speedup": summary["autotune best"]["tta_speedup"],
    }
    common.write_outputs(out, "lightning_peer", data, markdown(data), figure(data))
    return data


if __name__ == "__main__":
    main()
