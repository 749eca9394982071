"""Workloads: the built-ins load (or say how to get their data), import paths resolve or fail clearly."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from optuna.trial import TrialState

from autotune.run import engine
from autotune.cli import cli
from autotune.settings import resolve_settings
from autotune.errors import UsageError
from autotune.hardware import detect
from autotune.registry import Registry, load_registry
from autotune.plugins.workloads.catalog import synthetic_resnet18
from autotune.workloads import Workload, load_workload

from home_processes import QUICK, TIMEOUT, CliHome, assert_sound, error_lines

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reg() -> Registry:
    return load_registry(entry_points=False)


@pytest.fixture
def root_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `tests.workloads_for_tests` importable however pytest set up sys.path."""
    monkeypatch.syspath_prepend(str(ROOT))


def test_builtins_are_registered(reg: Registry) -> None:
    assert {"digits", "cifar10", "mnist", "synthetic-resnet18"} <= set(reg.workloads)


def test_digits_loads_offline_and_splits_train_val(reg: Registry) -> None:
    wl = load_workload("digits", reg)
    assert wl.name == "digits"
    n_train, n_val = len(wl.train_data), len(wl.val_data)  # type: ignore[arg-type]
    assert n_train + n_val == 1797
    assert n_val == 359  # 20 %
    for data in (wl.train_data, wl.val_data):
        image, label = data[0]
        assert image.shape == (1, 32, 32) and image.dtype == torch.float32
        assert isinstance(label, int) and 0 <= label <= 9
    assert wl.input_shape == (1, 32, 32)
    # every class is in both parts (the split is a random permutation, not a cut of sorted data)
    assert {wl.val_data[i][1] for i in range(n_val)} == set(range(10))
    # validation images are deterministic; training images are augmented (random shifts)
    assert torch.equal(wl.val_data[0][0], wl.val_data[0][0])
    torch.manual_seed(0)
    assert any(not torch.equal(wl.train_data[0][0], wl.train_data[0][0]) for _ in range(5))


def test_synthetic_resnet18_is_small_when_asked() -> None:
    wl = synthetic_resnet18(train_size=32, val_size=8)
    assert (len(wl.train_data), len(wl.val_data)) == (32, 8)  # type: ignore[arg-type]
    image, label = wl.train_data[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert 0 <= label <= 9


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_missing_data_says_how_to_get_it(name: str, reg: Registry, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        load_workload(name, reg, data_dir=str(tmp_path))
    message = str(info.value)
    assert "\n" not in message
    assert name in message and str(tmp_path) in message
    assert "--data-dir" in message and "--download" in message
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded or created


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_missing_data_via_cli_exits_2(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["trial", "run", "--workload", name, "--data-dir", str(tmp_path), "--budget-steps", "1"]
    )
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autotune: error:"), result.stderr
    assert "--data-dir" in lines[0] and "--download" in lines[0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_failed_download_says_what_to_do(tmp_path: Path) -> None:
    """--download without internet: every URL goes through a proxy on a closed localhost port,
    so the download fails at once, with no network touched."""
    proxy = f"http://127.0.0.1:{_closed_port()}"
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "all_proxy")}
    env.update(http_proxy=proxy, https_proxy=proxy, HTTP_PROXY=proxy, HTTPS_PROXY=proxy,
               AUTOTUNE_HOME=str(tmp_path / "home"))

    def attempt(name: str) -> subprocess.CompletedProcess[str]:
        data_dir = tmp_path / name
        return subprocess.run(
            [sys.executable, "-m", "autotune.cli", "trial", "run", "--workload", name,
             "--data-dir", str(data_dir), "--download", "--budget-steps", "1"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(("cifar10", "mnist"), pool.map(attempt, ("cifar10", "mnist"))))
    for name, proc in results.items():
        assert proc.returncode == 2, (name, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, (name, proc.stderr)
        line = lines[0]
        assert line.startswith(f"autotune: error: workload '{name}': download failed"), line
        assert "Connection refused" in line
        assert f"--data-dir {tmp_path / name}" in line and "drop --download" in line


def test_import_path_workload_loads_and_trains(reg: Registry, root_on_path: None) -> None:
    wl = load_workload("tests.workloads_for_tests:tiny", reg)
    assert isinstance(wl, Workload) and wl.name == "tiny"
    hardware = detect("cpu")
    settings = resolve_settings(reg, hardware, wl, {"batch_size": 32, "threads": 1})
    result = engine.run(wl, settings, reg, hardware,
                        engine.Budget(steps=4), device="cpu")
    assert result.status == "ok", result.error
    assert result.samples == 4 * 32


def test_import_path_to_missing_function(reg: Registry, root_on_path: None) -> None:
    with pytest.raises(UsageError, match="has no function 'no_such_function'"):
        load_workload("tests.workloads_for_tests:no_such_function", reg)


def test_import_path_to_missing_module(reg: Registry) -> None:
    with pytest.raises(UsageError, match="cannot import module 'no_such_pkg.mod'"):
        load_workload("no_such_pkg.mod:fn", reg)


def test_factory_returning_something_else(reg: Registry, root_on_path: None) -> None:
    with pytest.raises(UsageError, match="returned int, not a Workload"):
        load_workload("tests.workloads_for_tests:not_a_workload", reg)


def test_factory_that_raises(reg: Registry, root_on_path: None) -> None:
    with pytest.raises(UsageError, match="factory raised FileNotFoundError: labels.csv is missing"):
        load_workload("tests.workloads_for_tests:broken_factory", reg)


def test_unknown_name_lists_the_known_ones(reg: Registry) -> None:
    with pytest.raises(UsageError, match="unknown workload 'nope'.*digits"):
        load_workload("nope", reg)


# --- through the CLI: a folder named autotune, batches larger than the data, empty data ------


def test_3_and_4_a_folder_named_autotune_does_not_shadow_it_and_modules_there_are_found(
    cli_home: CliHome, tmp_path: Path
) -> None:
    here = tmp_path / "work"
    (here / "autotune").mkdir(parents=True)  # as in the folder above a checkout named autotune
    (here / "autotune" / "README").write_text("not the package")
    (here / "mine.py").write_text(
        "from autotune.plugins.workloads.catalog import digits\n\ndef factory():\n    return digits()\n"
    )
    env = dict(cli_home.env)
    env.pop("PYTHONPATH", None)
    autotune = str(Path(sys.executable).with_name("autotune"))
    run = [autotune, "trial", "run", "--workload", "mine:factory", "--budget-steps", "2", "--json"]
    trial = subprocess.run(run, cwd=here, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert trial.returncode == 0, trial.stderr[-2000:]
    study = subprocess.run([autotune, "study", "start", "--name", "here", "--workload", "mine:factory",
                            "--n-trials", "2", *QUICK], cwd=here, env=env, capture_output=True, text=True,
                           timeout=TIMEOUT)
    assert study.returncode == 0, study.stderr[-2000:]
    trials = assert_sound(cli_home, "here", 2)
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.user_attrs.get("reason") for t in trials]


def test_14_out_of_range_batches_empty_data_and_optunas_warning(cli_home: CliHome, tmp_path: Path) -> None:
    huge = cli_home.run("trial", "run", "--set", "batch_size=1000000000", "--budget-steps", "2")
    assert huge.returncode == 1
    assert "batch_size 1,000,000,000 is larger than the training set (1,438 samples)" in huge.stderr
    empty = cli_home.run("trial", "run", "--workload", "tests.workloads_for_tests:empty_data", "--budget-steps", "2")
    assert empty.returncode == 2
    (line,) = error_lines(empty.stderr)
    assert "its training set is empty" in line
    space = tmp_path / "narrow.toml"  # the baseline's batch 64 lies outside: it runs as given, quietly
    space.write_text('extends = "quick"\n[knobs.batch_size]\nlow = 128\nhigh = 256\n')
    narrow = cli_home.run("study", "start", "--name", "narrow", "--n-trials", "1", "--space", str(space),
                          "--budget-steps", "2", "--confirm", "0", "--no-tui")
    assert narrow.returncode == 0, narrow.stderr
    assert "Warning" not in narrow.stderr and "out of range" not in narrow.stderr
