"""Your own training script as the trial (`study start --script`, the session API), run for real:
the bundled example end to end, and the faults a script can have."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import json

import optuna
import pytest
from click.testing import CliRunner

from autotune.cli import cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own-script" / "train.py"
CLI = [sys.executable, "-m", "autotune.cli"]

KILLER = f"""
import os, runpy, signal
from pathlib import Path

import autotune

session = autotune.session()
marker = Path(os.environ["KILL_MARKER"])
if session.settings["batch_size"] != 64 and not marker.exists():  # the first trial after the baseline
    marker.write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)
runpy.run_path({str(EXAMPLE)!r}, run_name="__main__")
"""


def run(tmp: Path, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "AUTOTUNE_HOME": str(tmp / "home"), **env}
    return subprocess.run([*CLI, *args], cwd=tmp, env=environ, capture_output=True, text=True, timeout=timeout)


def trials(tmp: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp / 'home' / 'studies.db'}").trials


def test_the_example_runs_by_hand_with_the_baseline(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--epochs", "2"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "AUTOTUNE_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("val_loss") == 2


def test_a_script_study_measures_each_trial_and_a_killed_trial_fails_alone(tmp_path: Path) -> None:
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    marker = tmp_path / "killed"
    proc = run(tmp_path, "study", "start", "--name", "own", "--script", str(script), "--n-trials", "4",
               "--no-tui", "--space", "quick", "--budget-steps", "60", "--confirm", "0", "--seed", "3",
               "--", "--hidden", "64", KILL_MARKER=str(marker))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert marker.exists()
    done = [t for t in trials(tmp_path, "own") if t.user_attrs.get("autotune_status") != "surplus"]
    assert len(done) == 4
    killed = [t for t in done if t.state == optuna.trial.TrialState.FAIL]
    assert len(killed) == 1 and "SIGKILL" in killed[0].user_attrs["reason"]
    assert killed[0].user_attrs["settings"]["batch_size"] != 64
    trained = [t for t in done if t.user_attrs.get("autotune_status") in ("ok", "pruned")]
    assert len(trained) == 3
    for t in trained:
        assert t.user_attrs["throughput"] > 0 and t.user_attrs["step_time_p50"] > 0
        assert set(t.user_attrs["settings"]) >= {"batch_size", "optimizer", "learning_rate", "precision"}
        assert set(t.user_attrs["metrics"]) == {"val_loss", "accuracy"}
    baseline = next(t for t in trained if t.user_attrs["baseline"])
    assert baseline.user_attrs["steps"] == 60  # the budget counts the script's optimizer steps
    assert baseline.user_attrs["time_to_target"] > 0  # the baseline reaches the target it set
    assert all(t.user_attrs.get("time_to_target") for t in trained if t.state == optuna.trial.TrialState.COMPLETE)


@pytest.mark.parametrize("body, reason", [
    ("raise ValueError('bad data')", "the script raised ValueError: bad data"),
    ("tuned = s.prepare(torch.nn.Linear(4, 2))\nfor b in tuned.dataloader(data): tuned.step(tuned.model(b[0]).sum())",
     "the script reported no validation: call session.report({'val_loss': ...})"),
    ("tuned = s.prepare(torch.nn.Linear(4, 2))\nfor b in tuned.dataloader(data): tuned.step(tuned.model(b[0]).sum())\n"
     "s.report({'accuracy': 0.5})", "session.report() got accuracy but not 'val_loss'"),
    ("s.prepare(torch.nn.Linear(4, 2))", "the script trained no step (call tuned.step(loss) for each batch)"),
    ("import sys\nsys.exit(3)", "the script exited with code 3"),
])
def test_a_faulty_script_fails_its_run_with_one_clear_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, reason: str
) -> None:
    script = tmp_path / "faulty.py"
    script.write_text(
        "import torch\nfrom torch.utils.data import TensorDataset\nimport autotune\n"
        "s = autotune.session()\ndata = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))\n" + body + "\n"
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["trial", "run", "--script", str(script), "--budget-steps", "4", "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "failed" and reason in data["error"]
    assert "Traceback" not in result.output


def test_one_run_of_a_script_reports_its_measurements_and_the_knobs_notes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [
        "trial", "run", "--script", str(EXAMPLE), "--budget-steps", "30", "--set", "batch_size=100",
        "--set", "channels_last=true", "--target", "val_loss<=5", "--json", "--", "--hidden", "32",
    ])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "ok" and data["steps"] == 30 and data["samples"] == 30 * 100
    assert data["throughput"] > 0 and data["metric"] == {"name": "val_loss", "direction": "minimize"}
    assert data["time_to_target"] is not None and data["time_to_target"] <= data["train_time"]
    # an MLP: channels_last is not applied, and the notes say so
    assert "not applied: the workload's model has no convolutions" in data["notes"]["channels_last"]


def test_a_missing_script_is_a_usage_error(tmp_path: Path) -> None:
    proc = run(tmp_path, "study", "start", "--name", "x", "--script", "nope.py", "--no-tui")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].endswith("nope.py: no such file")
    args = run(tmp_path, "study", "start", "--name", "x", "--no-tui", "--", "--hidden", "3")
    assert args.returncode == 2 and "arguments after -- go to a --script" in args.stderr


def test_run_by_hand_a_script_may_report_any_metrics(tmp_path: Path) -> None:
    """Outside a study nothing judges the run: a report without val_loss is fine, and nothing
    stops the loop but the script itself."""
    script = tmp_path / "by_hand.py"
    script.write_text(
        "import torch\nfrom torch.utils.data import TensorDataset\nimport autotune\n"
        "s = autotune.session()\nt = s.prepare(torch.nn.Linear(4, 2))\n"
        "data = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))\n"
        "for epoch in range(3):\n"
        "    for x, y in t.dataloader(data):\n"
        "        t.step(torch.nn.functional.cross_entropy(t.model(x), y))\n"
        "    assert s.report({'score': 1.0}) is False and not s.should_stop\n"
        "print('steps', s.step, 'batch', t.batch_size, 'in trial', s.in_trial)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "AUTOTUNE_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["steps", "3", "batch", "64", "in", "trial", "False"]  # the baseline's batch 64


def test_a_script_trial_of_one_epoch_measures_what_the_engine_measures(tmp_path: Path) -> None:
    """A budget of exactly one epoch (the baseline's batch 64 over 1,500 samples: 24 steps) stops
    the loop at the epoch's last batch, before the loader runs out: still 1.0 epochs. Set-up, the
    steady step and the projection are measured by the engine's rules, and the report and the
    export show them."""
    proc = run(tmp_path, "study", "start", "--name", "epoch", "--script", str(EXAMPLE), "--n-trials", "1",
               "--no-tui", "--budget-steps", "24", "--confirm", "0", "--seed", "3", "--", "--hidden", "32",
               COLUMNS="200")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (baseline,) = trials(tmp_path, "epoch")
    attrs = baseline.user_attrs
    assert attrs["steps"] == 24 and attrs["epochs"] == 1.0
    assert attrs["setup_time"] >= 0 and attrs["step_time"] > 0 and attrs["step_time_p50"] > 0
    assert attrs["projected_time_to_target"] > 0 and baseline.value == attrs["projected_time_to_target"]
    [(epoch, _, projected)] = attrs["curve"]  # one validation, at the end of the epoch
    assert epoch == 1.0 and projected == attrs["projected_time_to_target"]
    for label in ("projected to target", "steady step", "set-up"):  # the report's baseline vs best
        row = next(line for line in proc.stdout.splitlines() if line.startswith(f"│ {label} "))
        assert "-" not in row.split("│")[2], row  # the baseline's column
    export = run(tmp_path, "study", "export", "epoch", "--format", "json")
    assert export.returncode == 0, export.stderr
    metrics = json.loads(export.stdout)["metrics"]
    assert metrics["epochs"] == 1.0
    assert {"setup_time", "step_time", "step_time_p50", "projected_time_to_target"} <= set(metrics)
