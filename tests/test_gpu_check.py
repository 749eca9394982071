"""bench/gpu_check.sh in its dry mode, as CI runs it: on a machine without CUDA it runs nothing
heavy, prints one line per skipped check with why, writes gpu_check.json and gpu_check.md marked
dry (into the results folder and into $OUT), and exits 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CHECKS = [
    "gpu tests (pytest -m gpu)", "fp16 autocast + GradScaler", "bf16 autocast", "cudnn.benchmark",
    "TF32 (matmul_precision=high)", "fused optimizers", "torch.compile reduce-overhead (CUDA graphs)",
    "OOM micro-batch retry", "peak CUDA memory", "per-GPU trial pool",
    "serving: fp16 and TensorRT vs fp32 (trial serve)", "study: synthetic-resnet18, ~20 trials + confirmation",
    "study --keep-recipe: tinylm, systems knobs only",
]


def test_dry_mode_says_what_it_skipped_and_writes_both_files(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "out"
    # on a machine with CUDA the same mode is asked for explicitly: the full check takes minutes
    asked = ["--dry"] if torch.cuda.is_available() else []
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), *asked, str(results)],
                          capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    skipped = [line for line in proc.stdout.splitlines() if line.startswith("gpu_check: skipped ")]
    assert len(skipped) == len(CHECKS)
    assert all(line.startswith(f"gpu_check: skipped {name}: ") for line, name in zip(skipped, CHECKS)), skipped
    reason = "dry mode asked for (--dry)" if asked else "no CUDA"
    assert all(reason in line for line in skipped), skipped
    for folder in (results, out):
        data = json.loads((folder / "gpu_check.json").read_text())
        assert data["dry"] is True and data["mode"] == "dry" and data["complete"] is True
        assert [c["name"] for c in data["checks"]] == CHECKS
        assert {c["status"] for c in data["checks"]} == {"skip"}
        assert data["summary"] == {"pass": 0, "fail": 0, "skip": len(CHECKS)}
        # what `autotune plugins --task all --json` listed: training and inference knobs
        assert {"structured_pruning", "tensorrt"} <= set(data["knobs"])
        markdown = (folder / "gpu_check.md").read_text()
        assert markdown.startswith("# GPU check (DRY: ")
        assert all(f"| {name} | skip |" in markdown for name in CHECKS)
