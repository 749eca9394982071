"""TOML on Python 3.10: without the standard library's tomllib, autotune reads TOML through tomli.

Checked on any Python by hiding tomllib in a fresh interpreter, so the 3.10 path is tested
wherever the suite runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_without_tomllib_spaces_and_configs_read_through_tomli(tmp_path: Path) -> None:
    config = tmp_path / "best.toml"
    config.write_text('workload = "digits"\n[settings]\nbatch_size = 128\noptimizer = "adam"\n')
    code = (
        "import json, sys\n"
        "sys.modules['tomllib'] = None  # what Python 3.10 has: no tomllib\n"
        "from autotune import tomlfile\n"
        "from autotune.settings import load_config_file\n"
        "from autotune.space_files import bundled_names, locate, read\n"
        f"config = load_config_file({str(config)!r})\n"
        "space = read(locate('quick'))\n"
        "print(json.dumps({'backend': tomlfile.tomllib.__name__, 'config': config,\n"
        "                  'space_keys': sorted(space), 'bundled': bundled_names()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    assert data["backend"] == "tomli"
    assert data["config"] == {"workload": "digits", "settings": {"batch_size": 128, "optimizer": "adam"}, "run": {}}
    assert "knobs" in data["space_keys"] and "quick" in data["bundled"]


def test_with_tomllib_the_standard_library_is_used() -> None:
    from autotune import tomlfile

    assert tomlfile.tomllib.__name__ == ("tomllib" if sys.version_info >= (3, 11) else "tomli")
