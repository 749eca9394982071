"""Write SVG screenshots of the terminal UI on the demo studies (docs/screenshots/).

    python -m autotune.tui.screenshots docs/screenshots

Writes studies.svg (the list), study.svg (the running time-to-accuracy study), pareto.svg (the
Pareto study) and trial.svg (one trial's details), 140x45 cells each.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from autotune.tui.app import AutotuneApp
from autotune.tui.demo import build_demo_home
from autotune.tui.messages import OpenStudy
from autotune.tui.screens.study import StudyScreen

SIZE = (140, 45)


async def _settle(app: AutotuneApp, pilot, polls: int = 2, importances: bool = False) -> None:  # noqa: ANN001
    start = app.polls
    for _ in range(200):
        await pilot.pause(0.05)
        screen = app.screen
        waiting_importances = (
            importances and isinstance(screen, StudyScreen) and screen.importances_at < 0
        )
        if app.polls - start >= polls and not waiting_importances:
            break
    await app.workers.wait_for_complete()
    await pilot.pause()


async def write_screenshots(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        build_demo_home(home).close()
        app = AutotuneApp(store_path=home / "autotune.db", interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await _settle(app, pilot)
            written.append(Path(app.save_screenshot("studies.svg", str(out))))
            app.post_message(OpenStudy("demo"))
            await _settle(app, pilot, polls=3, importances=True)
            written.append(Path(app.save_screenshot("study.svg", str(out))))
            # The cursor follows the newest trial (the running one): show the last finished one.
            await pilot.press("up", "enter")
            await pilot.pause(0.2)
            written.append(Path(app.save_screenshot("trial.svg", str(out))))
            await pilot.press("escape", "tab")
            await _settle(app, pilot, polls=3, importances=True)
            written.append(Path(app.save_screenshot("pareto.svg", str(out))))
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "docs/screenshots")
    for path in asyncio.run(write_screenshots(out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
