"""A study's speedup split in two factors that multiply to it: the same-training speedup
(systems knobs only: the training learns the same thing, faster per step) and the recipe speedup
(the statistical knobs: what is learned changes). The study records them at its end as the
"speedups" user attr; `study show`, `study export` and the terminal UI read them here.
Torch-free, Textual-free and Optuna-free."""

from __future__ import annotations

from typing import Any

# What a study's "speedups" attr (autotune.study) holds: its confirmed speedup (`total`) as the
# product of the same-training factor (systems knobs only) and the recipe factor.
SPEEDUP_KEYS = ("total", "same_training", "same_training_interval", "recipe", "systems", "how")


def speedup_factors(user_attrs: dict[str, Any], trial: int | None = None,
                    settings: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The study's speedup split in two, every key of SPEEDUP_KEYS present (None where not
    measured); None for a study that recorded none (older ones).

    With `trial` (a trial's number and `settings`), None unless that trial is what was confirmed:
    the confirmation's best and, where the study made an answer of it (autotune.study.answer:
    riders dropped, systems fitted), with the answer's settings. The factors are its, no other's."""
    stored = user_attrs.get("speedups")
    if not isinstance(stored, dict) or not any(stored.get(k) is not None for k in SPEEDUP_KEYS):
        return None
    if trial is not None:
        answer = (user_attrs.get("answer") or {}).get("settings")
        if trial != (user_attrs.get("confirmation") or {}).get("best_number"):
            return None
        if answer is not None and answer != settings:
            return None
    return {k: stored.get(k) for k in SPEEDUP_KEYS}
