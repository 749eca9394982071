"""Write the docs' SVG screenshots of the terminal UI from real studies (docs/screenshots/).

    python -m autotune.tui.screenshots docs/screenshots            # about 3 minutes on 2 cores
    python -m autotune.tui.screenshots docs/screenshots --home DIR  # reuse DIR's studies if there

Runs two small real studies with `autotune study start` in a fresh AUTOTUNE_HOME (or in --home
DIR, kept): "digits" (time-to-accuracy on the digits workload, quick space, re-runs to confirm the
speedup) and "digits-pareto" (the pareto objective). Then drives the real app under Textual's
pilot at 140x45 cells and writes studies.svg (the list), study.svg (the digits study), trial.svg
(its latest pruned trial, or the best), pareto.svg, a .txt of each screen beside it, and
README.md saying when, on what machine and with which command they were made. Nothing is
fabricated: tui/demo.py's made-up studies are test data only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import io
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from autotune.tui.app import AutotuneApp
from autotune.tui.messages import OpenStudy
from autotune.tui.screens.study import StudyScreen
from autotune.tui.widgets.trials_table import TrialsTable

SIZE = (140, 45)
STUDIES = {
    "digits": ["--workload", "digits", "--space", "quick", "--n-trials", "10", "--budget-epochs", "2",
               "--confirm", "3", "--seed", "1"],
    "digits-pareto": ["--workload", "digits", "--space", "quick", "--objective", "pareto", "--n-trials", "8",
                      "--budget-epochs", "1", "--confirm", "0", "--seed", "1"],
}


def screen_text(app: AutotuneApp) -> str:
    """The current screen as plain text, as a terminal shows it (what the SVG draws). Textual has
    no public text export: this renders the screen as App.export_screenshot does (Textual 8),
    into a recording console, and takes its text instead of its SVG."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True,
                      color_system="truecolor", legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


def run_studies(home: Path) -> list[str]:
    """Run the studies that `home` does not hold yet; returns the commands run."""
    from autotune.storage.local import Store

    env = {**os.environ, "AUTOTUNE_HOME": str(home)}
    store = Store(home / "autotune.db")
    try:
        done = {row["name"] for row in store.list_studies() if row["status"] == "finished"}
    finally:
        store.close()
    commands = []
    for name, args in STUDIES.items():
        command = ["autotune", "study", "start", "--name", name, *args, "--no-tui"]
        commands.append(" ".join(command))
        if name in done:
            continue
        print(f"running: {' '.join(command)}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "autotune.cli", *command[1:]], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    return commands


async def _settle(app: AutotuneApp, pilot: Any, polls: int = 2, importances: bool = False) -> None:
    start = app.polls
    for _ in range(400):
        await pilot.pause(0.05)
        screen = app.screen
        waiting_importances = (
            importances and isinstance(screen, StudyScreen) and screen.importances_at < 0
            and screen.complete_count >= 3
        )
        if app.polls - start >= polls and not waiting_importances:
            break
    await app.workers.wait_for_complete()
    await pilot.pause()


def _save(app: AutotuneApp, out: Path, name: str, written: list[Path]) -> None:
    written.append(Path(app.save_screenshot(f"{name}.svg", str(out))))
    (out / f"{name}.txt").write_text(screen_text(app))


async def capture(home: Path, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    app = AutotuneApp(store_path=home / "autotune.db", interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(app, pilot)
        _save(app, out, "studies", written)
        app.post_message(OpenStudy("digits"))
        await _settle(app, pilot, polls=3, importances=True)
        table = app.screen.query_one(TrialsTable)
        # the trial shown in full: the latest one with a reason (pruned), else the best
        shown = table.latest_with_reason.number if table.latest_with_reason else table.best_number
        if shown is not None:
            table.move_cursor(row=table.get_row_index(str(shown)))
            await pilot.pause(0.2)
        _save(app, out, "study", written)
        if shown is not None:
            await pilot.press("enter")
            await pilot.pause(0.5)
            _save(app, out, "trial", written)
            await pilot.press("escape")
        await pilot.press("tab")
        await _settle(app, pilot, polls=3, importances=True)
        _save(app, out, "pareto", written)
    return written


def machine() -> str:
    """"2-core AMD EPYC 9B14, avx2 avx512f avx512_bf16 avx512_vnni, no GPU": what the figures ran on."""
    name, flags = platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16") if f in flags]
    try:
        gpu = "a GPU" if subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0 else "no GPU"
    except OSError:
        gpu = "no GPU"
    return f"{os.cpu_count()}-core {name}, {' '.join(shown) or 'no AVX flags'}, {gpu}"


def write_readme(out: Path, commands: list[str]) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    text = (
        "# Screenshots of the terminal UI\n\n"
        "Made from real studies, not fabricated data, by\n\n"
        f"    python -m autotune.tui.screenshots {out}\n\n"
        "which ran, in a fresh AUTOTUNE_HOME,\n\n"
        + "".join(f"    {c}\n" for c in commands)
        + f"\nand captured the app under Textual's pilot at {SIZE[0]}x{SIZE[1]} cells.\n\n"
        f"- when: {now} (load average {load:.1f} at the capture)\n"
        f"- where: {machine()}\n\n"
        "Each `.svg` has a `.txt` beside it: the same screen as plain text.\n"
        "The figures are this machine's on that day: another machine gives other times and speedups.\n"
    )
    (out / "README.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", default="docs/screenshots")
    parser.add_argument("--home", help="run the studies in (or reuse them from) this AUTOTUNE_HOME, kept")
    args = parser.parse_args(args_list)
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(args.home) if args.home else Path(tmp) / "home"
        home.mkdir(parents=True, exist_ok=True)
        commands = run_studies(home)
        for path in asyncio.run(capture(home, out)):
            print(path)
    write_readme(out, commands)
    return 0


if __name__ == "__main__":
    sys.exit(main())
