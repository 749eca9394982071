"""--keep-recipe: a study that searches only systems knobs, and the check that its best trains
what the baseline trains (autotune.study.recipe)."""

from __future__ import annotations

import functools

import optuna
import pytest

from autotune.budget import Budget
from autotune.errors import UsageError
from autotune.hardware import detect
from autotune.plugins.workloads.catalog import digits
from autotune.registry import load_registry
from autotune.run import engine
from autotune.settings import baseline_settings
from autotune.spec import StudySpec
from autotune.storage.local import Store
from autotune.study.prepare import prepare
from autotune.study.recipe import curve_values, recipe_check
from autotune.study.runner import StudyRunner


@functools.lru_cache(maxsize=None)
def _curve(settings_change: tuple, seed: int) -> list:
    """A real digits run's validation curve: 40 steps, validated every 10 (each run once)."""
    registry, hardware = load_registry(entry_points=False), detect("cpu")
    workload = digits()
    settings = {**baseline_settings(registry, hardware, workload), **dict(settings_change)}
    options = engine.RunOptions(seed=seed, metric="accuracy", eval_every_steps=10)
    result = engine.run(workload, settings, registry, hardware, Budget(steps=40), device="cpu", options=options)
    assert result.status == "ok", result.error
    return curve_values(result.to_dict())


def _pairs(change: dict) -> list[dict]:
    """Confirmation pairs as confirm_best records them: best and baseline on one seed each."""
    return [{"best": {"curve": _curve(tuple(change.items()), seed)}, "baseline": {"curve": _curve((), seed)}}
            for seed in (1, 2)]


def test_a_systems_change_keeps_the_curve_and_a_recipe_change_does_not() -> None:
    kept = recipe_check(_pairs({"threads": 1}), "accuracy")
    assert kept["agree"] is True and kept["validations"] == 4 and kept["pairs"] == 2
    assert kept["max_gap"] <= kept["noise"]
    changed = recipe_check(_pairs({"learning_rate": 0.2}), "accuracy")
    assert changed["agree"] is False and changed["max_gap"] > changed["noise"]


def test_too_few_pairs_say_why() -> None:
    one = [{"best": {"curve": [0.5, 0.6]}, "baseline": {"curve": [0.5, 0.6]}}]
    assert recipe_check(one, "accuracy") == {
        "agree": None, "metric": "accuracy", "why": "it takes 2 confirmation pairs with validations (--confirm 2 or more)"}


def test_keep_recipe_searches_systems_knobs_only_and_pins_the_baseline_recipe(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'k.db'}"
    spec = StudySpec(name="kept", workload="digits", device="cpu", keep_recipe=True, n_trials=3, confirm=2,
                     seed=0, storage=storage, budget={"steps": 20}, explain=False)
    prepared = prepare(spec)
    registry = prepared.registry
    searched = {prepared.space.knobs[p.name] for p in prepared.space.params}
    assert searched and all(registry.knobs[name].kind == "systems" for name in searched)
    assert prepared.space.excluded["learning_rate"].startswith("changes what is learned")
    runner = StudyRunner(prepared, Store())
    report = runner.run()
    assert report["keep_recipe"] is True
    recipe = {k: v for k, v in runner.baseline.items() if registry.knobs[prepared.space.knobs[k]].kind != "systems"}
    for trial in optuna.load_study(study_name="kept", storage=storage).trials:
        assert all(registry.knobs[prepared.space.knobs[p]].kind == "systems" for p in trial.params)
        ran = trial.user_attrs["settings"]
        assert {k: ran.get(k) for k in recipe} == recipe, f"trial {trial.number} changed the recipe"
    conf = report.get("confirmation")
    if conf is not None:  # the best was not the baseline: the check ran on its pairs
        assert conf["recipe_check"]["metric"] == "accuracy" and "agree" in conf["recipe_check"]
        # the answer changes systems settings only, and its whole speedup is the same training
        answer, speedups = report["answer"], report["speedups"]
        assert {k: answer["settings"].get(k) for k in recipe} == recipe
        assert speedups["recipe"] == 1.0 and speedups["same_training"] == conf["speedup_median"]
        assert speedups["systems"] and all(
            registry.knobs[prepared.space.knobs[k]].kind == "systems" for k in speedups["systems"])


def test_keep_recipe_refuses_what_would_change_the_recipe(tmp_path) -> None:
    with pytest.raises(UsageError, match="--keep-recipe keeps a training recipe"):
        StudySpec(name="x", task="inference", objective="latency", checkpoint=__file__, keep_recipe=True).validate()
    space = tmp_path / "stat.toml"
    space.write_text('only = ["batch_size", "learning_rate"]\n')
    with pytest.raises(UsageError, match="--keep-recipe: space .* searches no systems knob"):
        prepare(StudySpec(name="x", workload="digits", device="cpu", keep_recipe=True, space=str(space)))
    with pytest.raises(UsageError, match="learning_rate"):
        prepare(StudySpec(name="x", workload="digits", device="cpu", keep_recipe=True,
                          enqueue=("learning_rate=0.05",)))
