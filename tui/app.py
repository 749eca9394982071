"""`autotune tui`: watch and steer studies.

Polling (dolphie's pattern): a thread worker fetches a Snapshot through data.Watcher and hands
it to the app's thread with call_from_thread; only when the worker has finished is the next poll
armed with set_timer, so polls never overlap however slow storage is. A screen change asks for a
poll at once (right after the one in flight, if any); results meant for a screen no longer shown
are dropped. Importances are slow on big studies and have their own worker.
"""

from __future__ import annotations

import time
from pathlib import Path

import optuna
from textual import work
from textual.app import App
from textual.binding import Binding
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from autotune.store import Store
from autotune.tui.data import Snapshot, Watcher
from autotune.tui.screens.studies import StudiesScreen
from autotune.tui.screens.study import StudyScreen

FINAL_STATES = (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED)
IMPORTANCE_MIN_INTERVAL = 5.0  # seconds between importance computations, at least


class AutotuneApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "autotune"
    BINDINGS = [Binding("q", "quit", "Quit (studies keep running)")]

    def __init__(
        self,
        store_path: str | Path | None = None,
        study: str | None = None,
        interval: float = 1.0,
        table_cap: int = 500,
    ) -> None:
        super().__init__()
        # The app owns the terminal: a log line on stderr would tear the screen.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.store = Store(store_path)  # the app thread's connection: actions (pause, kill ...)
        self.watcher = Watcher(self.store.path)  # the poll workers' connection
        self.initial_study = study
        self.interval = interval
        self.table_cap = table_cap
        self.polls = 0  # completed polls, for tests and the benchmark
        self.last_snapshot: Snapshot | None = None
        self._timer: Timer | None = None
        self._polling = False
        self._poll_again = False
        self._importance_busy = False
        self._importance_next = 0.0

    def on_mount(self) -> None:
        self.push_screen(StudiesScreen())
        if self.initial_study:
            self.push_screen(StudyScreen(self.initial_study))

    # polling -------------------------------------------------------------------------------------

    def poll_target(self) -> StudiesScreen | StudyScreen | None:
        """The screen polls feed: the topmost studies list or study screen (under trial details)."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, (StudiesScreen, StudyScreen)):
                return screen
        return None

    def request_poll(self) -> None:
        """Poll now, or as soon as the poll in flight is applied (polls never overlap)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._polling:
            self._poll_again = True
            return
        target = self.poll_target()
        if target is not None:
            self._polling = True
            self._poll(target)

    @work(thread=True, exclusive=True, group="poll")
    def _poll(self, target: StudiesScreen | StudyScreen) -> None:
        try:
            snap = self.watcher.poll(target.study_name, target=target.poll_key)
        except Exception as exc:  # the store itself failed: show it, keep polling
            snap = Snapshot(studies=[], errors={"": f"{type(exc).__name__}: {exc}"})
        try:
            self.call_from_thread(self._apply, target, snap)
        except RuntimeError:  # the app is shutting down
            pass

    def _apply(self, target: StudiesScreen | StudyScreen, snap: Snapshot) -> None:
        # A result for a screen no longer shown is dropped; its key is never polled again.
        if target is self.poll_target():
            target.apply(snap)
            self.last_snapshot = snap
            self.polls += 1
            if isinstance(target, StudyScreen):
                self._maybe_importances(target)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Arm the next poll once the last one has finished, never while it runs."""
        if event.state not in FINAL_STATES:
            return
        if event.worker.group == "importance":
            self._importance_busy = False
            return
        if event.worker.group != "poll":
            return
        self._polling = False
        if self._poll_again:
            self._poll_again = False
            self.request_poll()
        else:
            if self._timer is not None:
                self._timer.stop()
            self._timer = self.set_timer(self.interval, self.request_poll)

    def _maybe_importances(self, screen: StudyScreen) -> None:
        if self._importance_busy or screen.complete_count == screen.importances_at:
            return
        if screen.complete_count < 3 or time.monotonic() < self._importance_next:
            return
        self._importance_busy = True
        self._importances(screen, screen.complete_count)

    @work(thread=True, exclusive=True, group="importance")
    def _importances(self, screen: StudyScreen, complete: int) -> None:
        started = time.monotonic()
        try:
            result = self.watcher.importances(screen.study_name)
        except Exception:
            result = {}
        took = time.monotonic() - started
        try:
            self.call_from_thread(self._importances_done, screen, complete, result, took)
        except RuntimeError:
            pass

    def _importances_done(self, screen: StudyScreen, complete: int, result: dict[str, float], took: float) -> None:
        # A 10,000-trial study takes ~1.5 s: recompute at most every 20x that.
        self._importance_next = time.monotonic() + max(IMPORTANCE_MIN_INTERVAL, 20 * took)
        if screen.is_attached:
            screen.show_importances(result, complete)

    # navigation ----------------------------------------------------------------------------------

    def open_study(self, name: str) -> None:
        self.push_screen(StudyScreen(name))

    def switch_study(self, current: str, step: int) -> None:
        names = [row["name"] for row in self.store.list_studies()]
        if len(names) < 2 and current in names:
            self.notify("no other study", severity="warning")
            return
        index = names.index(current) if current in names else -step
        self._importance_next = 0.0
        self.switch_screen(StudyScreen(names[(index + step) % len(names)]))

    async def action_quit(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.exit()

    def on_unmount(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.workers.cancel_all()  # a poll already inside the Store finishes first (its lock)
        self.watcher.close()
        self.store.close()

