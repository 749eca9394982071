"""Every built-in training knob, set away from its baseline, in your own loop: as a real --script
trial (`autotune trial run --script own_loop_probe.py --set KNOB=VALUE`, through the CLI) and
through autotune.apply, one process for all of them (torch is imported once). Prints one JSON
object: {"script": {cell: outcome}, "apply": {cell: outcome}}, each outcome the exit code (or
`refused`: the one-line error) and the probe's record (tests/own_loop_probe.py).

    python tests/own_loop_matrix.py OUTDIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import own_loop_probe  # noqa: E402

STEPS = 6
# the value each knob is tried at: away from its baseline
TRIED: dict[str, Any] = {
    "batch_size": 16, "optimizer": "adam", "learning_rate": 0.05, "workers": 1, "precision": "bf16",
    "pruning": 0.5, "structured_pruning": 0.25, "channels_last": True, "cudnn_benchmark": True,
    "torch_compile": True, "threads": 1, "data_parallel": "ddp", "lr_schedule": "cosine",
    "optimizer_impl": "foreach", "matmul_precision": "medium", "activation_checkpointing": True,
    "micro_batches": 2,
}
# cells beyond one knob each: the baseline, and a schedule with no length given to apply
EXTRA = {"baseline": {}, "lr_schedule_unsized": {"lr_schedule": "cosine"}}


def cells(knobs: list[str]) -> dict[str, dict[str, Any]]:
    found = {name: {name: TRIED[name]} for name in knobs if name in TRIED}
    return {**found, **EXTRA}


def script_cell(cell: str, settings: dict[str, Any], out: Path) -> dict[str, Any]:
    from click.testing import CliRunner

    from autotune.cli import cli

    record = out / f"script-{cell}.json"
    os.environ["PROBE_OUT"] = str(record)
    sets = [item for key, value in settings.items() for item in ("--set", f"{key}={value}")]
    result = CliRunner().invoke(cli, [
        "trial", "run", "--script", str(HERE / "own_loop_probe.py"), "--device", "cpu",
        "--budget-steps", str(STEPS), "--json", *sets,
    ])
    outcome: dict[str, Any] = {"exit": result.exit_code}
    if result.exit_code == 2:
        outcome["refused"] = result.output.strip().splitlines()[-1]
    else:
        data = json.loads(result.stdout)
        outcome.update(status=data["status"], error=data["error"], notes=data["notes"])
    if record.exists():
        outcome["record"] = json.loads(record.read_text())
    return outcome


def apply_cell(cell: str, settings: dict[str, Any]) -> dict[str, Any]:
    import autotune

    total = None if cell == "lr_schedule_unsized" else STEPS
    try:
        tuned = autotune.apply(settings, own_loop_probe.model(), device="cpu", total_steps=total)
    except autotune.UsageError as exc:
        return {"refused": str(exc)}
    return {"record": own_loop_probe.train(tuned, STEPS)}


def main() -> None:
    from autotune.registry import DEFAULT_PLUGINS, load_registry

    out = Path(sys.argv[1])
    registry = load_registry(entry_points=False)
    knobs = [name for name, plugin in registry.knob_plugins.items() if plugin in DEFAULT_PLUGINS]
    outcomes: dict[str, dict[str, Any]] = {"script": {}, "apply": {}}
    for cell, settings in cells(knobs).items():
        if cell != "lr_schedule_unsized":  # a trial's budget always gives the length
            outcomes["script"][cell] = script_cell(cell, settings, out)
        outcomes["apply"][cell] = apply_cell(cell, settings)
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main()
