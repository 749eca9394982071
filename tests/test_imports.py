"""Import contracts: the terminal UI never imports torch; the core never imports Textual.

Each check runs in a fresh interpreter so modules other tests imported do not hide a violation.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def imported_after(*modules: str) -> set[str]:
    code = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def test_tui_does_not_import_torch() -> None:
    loaded = imported_after("autotune.tui.app", "autotune.tui.screenshots", "autotune.commands.tui")
    assert "textual" in loaded
    assert "torch" not in loaded


@pytest.mark.parametrize("module", ["autotune.storage.local", "autotune.storage.results", "autotune.storage.export", "autotune.commands.study"])
def test_read_api_imports_neither_torch_nor_textual(module: str) -> None:
    loaded = imported_after(module)
    assert "torch" not in loaded and "textual" not in loaded


def test_engine_does_not_import_textual() -> None:
    assert "textual" not in imported_after("autotune.run.engine")


def test_cli_imports_textual_only_when_the_tui_runs() -> None:
    assert "textual" not in imported_after("autotune.cli")


def test_tui_polls_without_sqlalchemy(tmp_path) -> None:  # noqa: ANN001
    """Polling a SQLite study reads Optuna's tables directly: SQLAlchemy (~1 s to import) is never
    loaded, which keeps `autotune tui` quick to open."""
    from autotune.tui.demo import build_demo_home

    build_demo_home(tmp_path, n_demo=3, n_pareto=3).close()
    code = (
        "import json, sys\n"
        "from autotune.tui.data import Watcher\n"
        f"w = Watcher({str(tmp_path / 'autotune.db')!r})\n"
        "a = w.poll(None)\n"
        "b = w.poll('demo', target=1)\n"
        "assert not a.errors and not b.errors and b.study.new_rows, (a.errors, b.errors)\n"
        "print(json.dumps('sqlalchemy' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) is False
