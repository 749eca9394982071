"""What a study's spec accepts (autotune.spec): a name by one rule, an accuracy target between 0
and 1; anything else is one line, exit 2, and nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from autotune.cli import cli

from home_processes import QUICK, CliHome, error_lines


def test_an_accuracy_target_outside_0_1_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli, ["study", "start", "--name", "x", "--target", "accuracy>=1.5", "--no-tui"])
    assert result.exit_code == 2 and "between 0 and 1" in result.output
    assert not (tmp_path / "home" / "studies.db").exists()  # nothing written


@pytest.mark.parametrize("name", ["x" * 500, ".", "..", "a\nb", "", "-x", "a/b", "a b"])
def test_8_study_names_follow_one_rule(cli_home: CliHome, name: str) -> None:
    result = cli_home.run("study", "start", "--name", name, "--n-trials", "1", *QUICK)
    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    assert "a study name is 1 to 100 letters, digits, '.', '_' or '-'" in line
    assert not (cli_home.path / "studies.db").exists()  # nothing written on bad input
