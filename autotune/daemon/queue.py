"""Where a queued study waits for the daemon, read from autotune's store rows alone.

The daemon starts queued studies oldest first (the store lists its rows by creation time) as its
workers free up, so a queued study's place is one plus the queued rows before it, and what holds
it back is every study the daemon is working on (running, stopping, or paused: a paused study
keeps its workers) and every study queued before it. Neither Textual nor Optuna here: `autotune study start` and the terminal UI both read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from autotune.statuses import StudyStatus

BUSY = (StudyStatus.RUNNING, StudyStatus.STOPPING, StudyStatus.PAUSED)


@dataclass(frozen=True)
class QueuePlace:
    """A queued study's place: `position` 1 is the next study the daemon starts; `ahead` holds
    (name, status) of the studies the daemon works on now, then those queued before it, oldest
    first."""

    position: int
    ahead: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        """"1st in the daemon's queue, behind 'other' (running)"; "2nd ..., behind 'a' (running),
        'b' (queued)"; "..., next to start" when nothing is ahead of it."""
        where = f"{ordinal(self.position)} in the daemon's queue"
        if not self.ahead:
            return f"{where}, next to start"
        return f"{where}, behind " + ", ".join(f"'{name}' ({status})" for name, status in self.ahead)


def queue_place(rows: Iterable[dict[str, Any]], name: str) -> QueuePlace | None:
    """The place of study `name` among the store's `rows` (oldest first, as Store.list_studies
    returns them); None when it has no row or its status is not queued."""
    return queue_places(rows).get(name)


def queue_places(rows: Iterable[dict[str, Any]]) -> dict[str, QueuePlace]:
    """The place of every queued study among the store's `rows` (oldest first), in one pass."""
    rows = list(rows)
    busy = tuple((row["name"], row["status"]) for row in rows if row["status"] in BUSY)
    queued = [row["name"] for row in rows if row["status"] == StudyStatus.QUEUED]
    return {name: QueuePlace(i, busy + tuple((q, StudyStatus.QUEUED.value) for q in queued[:i - 1]))
            for i, name in enumerate(queued, start=1)}


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th ... 11th, 12th, 13th ... 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
