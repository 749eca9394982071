"""A trial's row as every view reads it (autotune.storage.trial_row): the reason of a failed trial.
"""

from __future__ import annotations


def test_19_a_trial_failed_by_heartbeat_says_why() -> None:
    from autotune.storage.trial_row import make_row

    row = make_row(3, "FAIL", None, {}, {}, {"settings": {}}, {}, None, None)
    assert row.reason == "its runner stopped sending heartbeats (it died or hung) before recording a result"
    assert make_row(3, "FAIL", None, {}, {}, {"autotune_status": "oom", "reason": "out of memory"}, {},
                    None, None).reason == "out of memory"
