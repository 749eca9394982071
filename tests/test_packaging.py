"""The wheel: top-level `plugins/`, `search_spaces/` and `tui/` ship inside `autotune`, and the
installed wheel works on its own (not only the editable checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package-dir roots in pyproject.toml: each is shipped as autotune or autotune.<name>
SOURCES = ("autotune", "plugins", "search_spaces", "tui")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a copy of the sources, so the real tree gets no build/ or egg-info."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", src)
    readme = ROOT / "README.md"
    if readme.exists():
        shutil.copy2(readme, src)
    else:
        (src / "README.md").write_text("# autotune\n")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp / "dist"), str(src)],
        cwd=tmp, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (built,) = (tmp / "dist").glob("autotune-*.whl")
    return built


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_wheel_has_only_autotune_at_top_level(wheel: Path) -> None:
    names = wheel_names(wheel)
    top = {name.split("/", 1)[0] for name in names}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert len(dist_info) == 1
    assert top - dist_info == {"autotune"}, sorted(top)

    assert "autotune/plugins/training/batch_size.py" in names
    assert "autotune/tui/__init__.py" in names
    for toml in sorted((ROOT / "search_spaces").glob("*.toml")):
        assert f"autotune/search_spaces/{toml.name}" in names
    for tcss in sorted((ROOT / "tui").glob("*.tcss")):
        assert f"autotune/tui/{tcss.name}" in names
    assert not any(name.startswith(("plugins/", "tui/", "search_spaces/")) for name in names)


def test_wheel_ships_every_package_in_the_tree(wheel: Path) -> None:
    names = wheel_names(wheel)
    missing = []
    for source in SOURCES:
        installed_as = Path("autotune") if source == "autotune" else Path("autotune", source)
        for init in sorted((ROOT / source).rglob("__init__.py")):
            if "__pycache__" in init.parts:
                continue
            shipped = (installed_as / init.relative_to(ROOT / source)).as_posix()
            if shipped not in names:
                missing.append(shipped)
    assert not missing, f"packages not listed in pyproject.toml [tool.setuptools] packages: {missing}"


def test_installed_wheel_imports_and_loads_its_plugins(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)  # a pure-Python wheel installed by hand
    # `-S`: no .pth files, so the editable install's finder cannot supply what the wheel lacks;
    # the venv's site-packages (torch, click, ...) goes on PYTHONPATH after the wheel instead.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]]))
    code = (
        "import autotune, autotune.cli, autotune.tui\n"
        "from autotune.registry import load_registry\n"
        "registry = load_registry(entry_points=False)\n"
        "print(autotune.__file__)\n"
        "print(','.join(sorted(registry.knobs)))\n"
    )
    proc = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    location, knobs = proc.stdout.split()
    assert Path(location).is_relative_to(site)
    assert {"batch_size", "precision", "pruning", "workers"} <= set(knobs.split(","))

    help_ = subprocess.run([sys.executable, "-S", "-m", "autotune.cli", "trial", "run", "--help"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0, help_.stderr[-3000:]
    assert "--budget-epochs" in help_.stdout
