"""A home's two databases (autotune.storage.local, autotune.storage.rdb) through the real CLI: a
damaged file is one line and exit 1 and is left as it was, two studies may create a fresh home at
the same instant, no password is stored and the files are private.
"""

from __future__ import annotations

from autotune.storage.local import Store

from home_processes import QUICK, SLOW, CliHome, assert_sound, error_lines, finished


def test_a_damaged_database_is_one_line_and_exit_1(cli_home: CliHome) -> None:
    done = cli_home.run("study", "start", "--name", "ok", "--n-trials", "1", *SLOW)
    assert done.returncode == 0, done.stderr
    for name in ("studies.db", "autotune.db"):
        path = cli_home.path / name
        good = path.read_bytes()
        path.write_bytes(b"garbage!" * 512)
        for command in (["study", "list"], ["study", "show", "ok", "--json"],
                        ["study", "start", "--name", "again", "--n-trials", "1", *SLOW]):
            result = cli_home.run(*command)
            assert result.returncode == 1, (command, result.stdout, result.stderr)
            (line,) = error_lines(result.stderr)
            assert "damaged" in line and str(path) in line
        assert path.read_bytes() == b"garbage!" * 512  # nothing was overwritten
        path.write_bytes(good)
    assert_sound(cli_home, "ok", 1)


def test_two_studies_starting_at_once_on_a_fresh_home(cli_home: CliHome) -> None:
    procs = [cli_home.start("study", "start", "--name", f"twin{i}", "--n-trials", "2", *SLOW) for i in range(2)]
    for proc in procs:
        code, _, err = finished(proc)
        assert code == 0, err[-3000:]
    for i in range(2):
        assert_sound(cli_home, f"twin{i}", 2)


def test_11_no_password_is_stored_and_files_are_private(cli_home: CliHome) -> None:
    done = cli_home.run("study", "start", "--name", "secret", "--n-trials", "1", *QUICK)
    assert done.returncode == 0, done.stderr
    for path in [cli_home.path / "autotune.db", cli_home.path / "studies.db"]:
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert cli_home.path.stat().st_mode & 0o777 == 0o700
    store = Store(cli_home.path / "autotune.db")
    store.put_study("pg", storage="postgresql://tuner:s3cret@db:5432/autotune", workload="digits", space="quick",
                    objective="time-to-accuracy", n_trials=1, spec={"storage": "postgresql://tuner:s3cret@db/x"})
    store.close()
    raw = (cli_home.path / "autotune.db").read_bytes() + b"".join(
        p.read_bytes() for p in cli_home.path.glob("autotune.db-wal"))
    assert b"s3cret" not in raw
    assert Store(cli_home.path / "autotune.db").get_study("pg")["storage"] == "postgresql://tuner@db:5432/autotune"
