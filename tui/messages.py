"""The messages between the UI's parts.

Workers post `SnapshotReady` and `ImportancesReady` to the app from their threads; the app routes
each to the screen whose `poll_key` it carries while that screen is still the poll target, and drops
it otherwise. Those two do not bubble: the app has already seen them, and a bounce back would be
routed again.

Screens post the rest on themselves; they bubble up to the app, which owns navigation, polling and
the importance worker, so a screen never needs the app's internals.
"""

from __future__ import annotations

from textual.message import Message

from autotune.tui.data import Snapshot


class SnapshotReady(Message, bubble=False):
    """A poll finished: `snapshot` is what changed for the view keyed `target_key`."""

    def __init__(self, snapshot: Snapshot, target_key: int) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.target_key = target_key


class ImportancesReady(Message, bubble=False):
    """Importances of `study_name` over its first `complete` finished trials ({} when they could
    not be computed), for the view keyed `target_key`; computing them took `took` seconds."""

    def __init__(self, target_key: int, study_name: str, complete: int,
                 importances: dict[str, float], took: float) -> None:
        super().__init__()
        self.target_key = target_key
        self.study_name = study_name
        self.complete = complete
        self.importances = importances
        self.took = took


class ImportancesWanted(Message):
    """The view keyed `target_key` shows importances older than `complete` finished trials. The app
    computes them when no computation runs and the throttle allows; otherwise it ignores this, and
    the view asks again after its next poll."""

    def __init__(self, target_key: int, study_name: str, complete: int) -> None:
        super().__init__()
        self.target_key = target_key
        self.study_name = study_name
        self.complete = complete


class PollNow(Message):
    """Poll the current target now, or right after the poll in flight (polls never overlap)."""


class OpenStudy(Message):
    """Show the study `name` on top of the current screen."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class SwitchStudy(Message):
    """Replace the screen of study `current` with the study `step` places along the store's list
    (wrapping); a warning, and no change, when there is no other study."""

    def __init__(self, current: str, step: int) -> None:
        super().__init__()
        self.current = current
        self.step = step
