"""`autotune tui`: watch and steer studies.

Polling (dolphie's pattern): a thread worker fetches a Snapshot through data.Watcher and posts it
to the app as a SnapshotReady message; only when the worker has finished is the next poll armed
with set_timer, so polls never overlap however slow storage is. A worker's message is queued before
its final state change, so a snapshot reaches the app before the poll counts as finished. A screen
change asks for a poll at once (right after the one in flight, if any). The app routes each result
to the screen it was fetched for while that screen is the poll target and drops it otherwise.
Importances are slow on big studies and have their own worker, started when a study screen asks.

Screens get what they read from the app's constructor arguments and ask for everything else
(navigation, polls, importances) with the messages in tui/messages.py, which bubble up to here.
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

from autotune.errors import AutotuneError
from autotune.storage.local import Store
from autotune.tui.data import Snapshot, Watcher, one_line
from autotune.tui.messages import (
    ImportancesReady, ImportancesWanted, OpenStudy, PollNow, SnapshotReady, SwitchStudy,
)
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
        # The app thread's connections: one read-only (what it looks up), and one to steer (pause,
        # kill ...) opened on the first key that steers. Looking writes nothing: a damaged store
        # shows its line on screen and stays as it was.
        self.store = Store(store_path, read_only=True)
        self._steering: Store | None = None
        self.watcher = Watcher(self.store.path, first_page=table_cap)  # the poll workers' connection
        self.initial_study = study
        self.interval = interval
        self.table_cap = table_cap
        self.polls = 0  # polls routed to their screen, for tests and the benchmark
        self.last_snapshot: Snapshot | None = None
        self._timer: Timer | None = None
        self._polling = False
        self._poll_again = False
        self._importance_busy = False
        self._importance_next = 0.0

    def on_mount(self) -> None:
        self.push_screen(StudiesScreen())
        if self.initial_study:
            self.push_screen(self._study_screen(self.initial_study))

    def _study_screen(self, name: str) -> StudyScreen:
        return StudyScreen(name, store=self.store, steering=self.steering, watcher=self.watcher,
                           table_cap=self.table_cap)

    def steering(self) -> Store:
        """The writable store, opened on first use (a DataError if the file is damaged)."""
        if self._steering is None:
            self._steering = Store(self.store.path)
        return self._steering

    # polling -------------------------------------------------------------------------------------

    def poll_target(self) -> StudiesScreen | StudyScreen | None:
        """The screen polls feed: the topmost studies list or study screen (under trial details)."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, (StudiesScreen, StudyScreen)):
                return screen
        return None

    def _routed(self, target_key: int) -> StudiesScreen | StudyScreen | None:
        """The poll target if `target_key` is its key; None means a result for it is dropped (a
        screen no longer shown never has its key polled again)."""
        target = self.poll_target()
        return target if target is not None and target.poll_key == target_key else None

    def request_poll(self) -> None:
        """Poll now, or as soon as the poll in flight has finished (polls never overlap)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._polling:
            self._poll_again = True
            return
        target = self.poll_target()
        if target is not None and not target.is_mounted:
            # a screen just pushed has no widgets yet: what the poll brings would have nowhere to go
            self._timer = self.set_timer(0.05, self.request_poll)
            return
        if target is not None:
            self._polling = True
            self._poll(target.study_name, target.poll_key)

    def on_poll_now(self, message: PollNow) -> None:
        self.request_poll()

    @work(thread=True, exclusive=True, group="poll")
    def _poll(self, study_name: str | None, poll_key: int) -> None:
        try:
            snap = self.watcher.poll(study_name, target=poll_key)
        except Exception as exc:  # the store itself failed (damaged: its one line): show it, keep polling
            snap = Snapshot(studies=[], errors={"": one_line(exc)})
        self.post_message(SnapshotReady(snap, poll_key))  # a no-op once the app is closing

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        target = self._routed(message.target_key)
        if target is not None:
            self.last_snapshot = message.snapshot
            self.polls += 1
            target.post_message(message)
            if message.snapshot.study is not None and message.snapshot.study.reading is not None:
                self._poll_again = True  # a big study's first page: the rest at once, not in a second

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

    # importances ---------------------------------------------------------------------------------

    def on_importances_wanted(self, message: ImportancesWanted) -> None:
        if self._importance_busy or time.monotonic() < self._importance_next:
            return
        if self._routed(message.target_key) is None:
            return
        self._importance_busy = True
        self._importances(message.target_key, message.study_name, message.complete)

    @work(thread=True, exclusive=True, group="importance")
    def _importances(self, target_key: int, study_name: str, complete: int) -> None:
        started = time.monotonic()
        try:
            result = self.watcher.importances(study_name)
        except Exception:
            result = {}
        took = time.monotonic() - started
        self.post_message(ImportancesReady(target_key, study_name, complete, result, took))

    def on_importances_ready(self, message: ImportancesReady) -> None:
        # A 10,000-trial study takes ~1.5 s: recompute at most every 20x that.
        self._importance_next = time.monotonic() + max(IMPORTANCE_MIN_INTERVAL, 20 * message.took)
        target = self._routed(message.target_key)
        if target is not None:
            target.post_message(message)

    # navigation ----------------------------------------------------------------------------------

    def on_open_study(self, message: OpenStudy) -> None:
        self.push_screen(self._study_screen(message.name))

    def on_switch_study(self, message: SwitchStudy) -> None:
        try:
            names = [row["name"] for row in self.store.list_studies()]
        except AutotuneError as exc:
            self.notify(str(exc), severity="error")
            return
        if len(names) < 2 and message.current in names:
            self.notify("no other study", severity="warning")
            return
        index = names.index(message.current) if message.current in names else -message.step
        self._importance_next = 0.0
        self.switch_screen(self._study_screen(names[(index + message.step) % len(names)]))

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
        if self._steering is not None:
            self._steering.close()
