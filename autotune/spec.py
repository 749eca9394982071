"""What a study was asked for. Torch-free: `study start --detach` validates and queues a spec
without paying for `import torch`; the daemon does the rest."""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from autotune.errors import UsageError
from autotune.metrics import Metric, Target, study_metric
from autotune.objectives import get_objective
from autotune.tasks import DEFAULT_TASK, get_task, task_of

DEFAULT_WORKLOAD = "digits"
# The run a study's answer is checked at when none is named (--run-steps / --run-epochs), as a
# multiple of the study's budget: long enough that a recipe that only wins a short run
# (short-horizon bias: Wu et al., ICLR 2018) falls behind, short enough to train twice
HORIZON = 10
# Study names: 1 to 100 characters, letters, digits, `.`, `_` and `-`, starting with a letter or a
# digit. They go into commands, URLs and log lines; files use autotune.home.study_folder.
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_name(name: str) -> None:
    """UsageError naming the rule when `name` breaks it."""
    if not NAME_RULE.fullmatch(name or ""):
        shown = repr(name) if len(name or "") <= 40 else repr(name[:40]) + f"... ({len(name)} characters)"
        raise UsageError(
            f"--name {shown}: a study name is 1 to 100 letters, digits, '.', '_' or '-', "
            f"starting with a letter or a digit"
        )


@dataclass
class StudySpec:
    """What `autotune study start` was asked for; stored with the study so it can be resumed."""

    name: str
    workload: str = DEFAULT_WORKLOAD  # None until an inference study's model names it (study.checkpoint)
    space: str | None = None
    objective: str = "time-to-accuracy"
    n_trials: int = 20
    timeout: float | None = None
    budget: dict[str, Any] = field(default_factory=lambda: {"epochs": 5})
    # How long the user's real run trains (--run-epochs / --run-steps; default: HORIZON x the
    # budget): the answer is checked at that length (autotune.study.horizon), and with an epochs
    # budget projected times scale to --run-epochs
    run_epochs: float | None = None
    run_steps: int | None = None
    target: float | None = None
    # --target NAME<=V names the metric and the direction the target is in; --metric NAME[:min|max]
    # judges the study by a metric other than the workload's primary one (a --script's)
    target_metric: str | None = None
    target_direction: str | None = None
    metric: str | None = None
    storage: str | None = None
    seed: int | None = None
    pruner: str = "median"
    confirm: int = 3
    # after a confirmed speedup, measure the path from the baseline to the best one knob at a
    # time (autotune.study.ablation)
    explain: bool = True
    device: str | None = None
    data_dir: str | None = None
    plugin_paths: tuple[str, ...] = ()
    disabled_knobs: tuple[str, ...] = ()
    workers: int = 1
    # Where the study was started: `--workload module:function` may name a module there, and
    # trials run there (their relative paths mean what they meant to the user).
    workdir: str | None = None
    # A trial that reports no progress for this long (or 10x its median step time if longer) is
    # killed and recorded as failed; 0 turns the watchdog off.
    stall_timeout: float = 60.0
    # The user's training script (an absolute path) and its arguments: trials run it instead of
    # a workload (autotune.launch.script); `workload` is then "script:PATH" as given.
    script: str | None = None
    script_args: tuple[str, ...] = ()
    # "inference": tune how a trained model is served (autotune.inference), from a model saved
    # by `trial run --save-model` (`checkpoint`) or the best configuration of a finished training
    # study, trained once into this study's folder (`from_study`). A trial whose metric is worse
    # than the unoptimized model's by more than `max_drop` (relative) is infeasible. `iterations`
    # timed calls measure each latency and throughput.
    task: str = DEFAULT_TASK
    checkpoint: str | None = None
    from_study: str | None = None
    max_drop: float = 0.01
    iterations: int = 30
    # trials to run with given settings after the baseline: 'KEY=VALUE,KEY=VALUE' each
    # (autotune.study.enqueued)
    enqueue: tuple[str, ...] = ()
    # search only systems knobs (Knob.kind): the recipe, what is learned, stays the baseline's
    # (autotune.space.SearchSpace.keeping_recipe; the report's recipe check, autotune.study.recipe)
    keep_recipe: bool = False
    # search the statistical knobs first and fit the systems knobs to the best recipe after, by
    # paired step time (autotune.study.systems); False: one search over every knob together
    staged: bool = True

    def validate(self) -> None:
        check_name(self.name)
        get_objective(self.objective)
        self._validate_task()
        if self.n_trials < 1:
            raise UsageError(f"--n-trials must be at least 1, got {self.n_trials}")
        if self.timeout is not None and self.timeout <= 0:
            raise UsageError(f"--timeout must be positive, got {self.timeout}")
        if self.script is not None and not os.path.isfile(self.script):
            raise UsageError(f"--script {self.script}: no such file")
        override = self.metric_override()
        named = self.target_metric or (override.name if override else None)
        if named == "accuracy":
            self.study_metric(Metric())  # the 0..1 check, before anything loads
        if self.pruner not in ("median", "hyperband", "none"):
            raise UsageError(f"--pruner {self.pruner!r}: choose median, hyperband or none")
        if self.confirm < 0:
            raise UsageError(f"--confirm cannot be negative, got {self.confirm}")
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.workers}")
        if not self.stall_timeout >= 0:  # nan fails this too
            raise UsageError(f"--stall-timeout must be 0 (off) or a number of seconds, got {self.stall_timeout}")
        get_task(self.task).check_budget(self)
        self._validate_run_length()

    def _validate_run_length(self) -> None:
        if self.run_epochs is not None and self.run_steps is not None:
            raise UsageError("give one run length: --run-epochs or --run-steps")
        if self.run_epochs is not None and (not math.isfinite(self.run_epochs) or self.run_epochs <= 0):
            raise UsageError(f"--run-epochs must be a positive number of epochs, got {self.run_epochs}")
        if self.run_steps is not None and self.run_steps < 1:
            raise UsageError(f"--run-steps must be a positive number of steps, got {self.run_steps}")
        (unit, length), = self.run_length.items()
        if unit in self.budget and length < self.budget[unit]:
            raise UsageError(f"--run-{unit} {length:g} is shorter than the study's budget ({self.budget_text}): "
                             f"the run you train is at least as long as a trial")

    def _validate_task(self) -> None:
        get_task(self.task).validate(self, get_objective(self.objective))
        if self.from_study is not None:
            check_name(self.from_study)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["plugin_paths"] = list(self.plugin_paths)
        data["disabled_knobs"] = list(self.disabled_knobs)
        data["script_args"] = list(self.script_args)
        data["enqueue"] = list(self.enqueue)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StudySpec":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["plugin_paths"] = tuple(known.get("plugin_paths", ()))
        known["disabled_knobs"] = tuple(known.get("disabled_knobs", ()))
        known["script_args"] = tuple(known.get("script_args", ()))
        known["enqueue"] = tuple(known.get("enqueue", ()))
        return cls(**known)

    def metric_override(self) -> Metric | None:
        return Metric.parse(self.metric) if self.metric else None

    def target_given(self) -> Target | None:
        if self.target is None:
            return None
        return Target(float(self.target), self.target_metric, self.target_direction)

    def study_metric(self, workload_metric: Metric) -> Metric:
        """The metric this study judges by, and a check that its target fits it."""
        target = self.target_given()
        metric = study_metric(workload_metric, target, self.metric_override())
        if target is not None and metric.name == "accuracy" and not 0.0 < target.value <= 1.0:
            raise UsageError(f"--target is a validation accuracy between 0 and 1, got {target.value}")
        return metric

    @property
    def run_scale(self) -> float:
        """The real run's length over the budget's: what projected times scale by (only an
        --run-epochs over an epochs budget: steps per epoch are the trial's to know)."""
        if self.run_epochs is None or "epochs" not in self.budget:
            return 1.0
        return self.run_epochs / self.budget["epochs"]

    @property
    def run_length(self) -> dict[str, float]:
        """How long the user's real run trains, as a budget: --run-steps, --run-epochs, or
        HORIZON times the study's budget when neither is given."""
        if self.run_steps is not None:
            return {"steps": self.run_steps}
        if self.run_epochs is not None:
            return {"epochs": self.run_epochs}
        (unit, value), = self.budget.items()
        return {unit: value * HORIZON}

    @property
    def run_length_given(self) -> bool:
        return self.run_steps is not None or self.run_epochs is not None

    @property
    def budget_text(self) -> str:
        return task_of({"task": self.task}).budget_text(self)
