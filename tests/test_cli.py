"""The command line's last line of defence (autotune.cli): a torch that cannot load is one line,
not a traceback.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from home_processes import CLI, REPO, TIMEOUT, CliHome, error_lines


def test_16_torch_that_cannot_load_is_one_line(cli_home: CliHome, tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ImportError('libtorch_cpu.so: failed to map segment from shared object')\n")
    env = {**cli_home.env, "PYTHONPATH": str(fake.parent)}
    result = subprocess.run([*CLI, "trial", "run", "--budget-steps", "2"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 1
    (line,) = error_lines(result.stderr)
    assert line.startswith("autotune: error: cannot import torch: libtorch_cpu.so: failed to map segment")
