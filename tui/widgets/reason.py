"""Why a trial was pruned or failed, in full and wrapped: the trial under the cursor, or (while the
cursor is on one without a reason, the running trial say) the latest trial that has one. Hidden
while no trial has a reason."""

from __future__ import annotations

from rich.text import Text

from autotune.storage.trial_row import TrialRow
from autotune.tui import format as fmt
from autotune.tui.widgets.text_pane import TextPane


def reason_of(row: TrialRow) -> str | None:
    """A trial's reason, or its status when that says more than its state (killed, oom ...)."""
    if row.reason:
        return " ".join(row.reason.split())
    if row.autotune_status not in (None, "ok", row.state.lower()):
        return row.autotune_status
    return None


class ReasonPane(TextPane):
    DEFAULT_CSS = """
    ReasonPane { height: auto; max-height: 6; padding: 0 1; }
    """

    def show(self, selected: TrialRow | None, latest: TrialRow | None) -> None:
        """`selected`: the row under the cursor; `latest`: the newest row with a reason."""
        row = selected if selected is not None and reason_of(selected) else latest
        if self.display != (row is not None):
            self.display = row is not None
        if row is None:
            return
        title = {"PRUNED": f"why trial {row.number} was pruned", "FAIL": f"why trial {row.number} failed"}.get(
            row.state, f"trial {row.number}, {row.state.lower()}")
        title += "" if row is selected else " (the latest with a reason)"
        if title != self.border_title:
            self.border_title = title
        self.set(Text(reason_of(row) or "", style=fmt.STATE_STYLES.get(row.state, "")))
