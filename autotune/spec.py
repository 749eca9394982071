"""What a study was asked for. Torch-free: `study start --detach` validates and queues a spec
without paying for `import torch`; the daemon does the rest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from autotune.budget import Budget
from autotune.errors import UsageError
from autotune.objectives import get_objective

DEFAULT_WORKLOAD = "digits"


@dataclass
class StudySpec:
    """What `autotune study start` was asked for; stored with the study so it can be resumed."""

    name: str
    workload: str = DEFAULT_WORKLOAD
    space: str | None = None
    objective: str = "time-to-accuracy"
    n_trials: int = 20
    timeout: float | None = None
    budget: dict[str, Any] = field(default_factory=lambda: {"epochs": 5})
    target: float | None = None
    storage: str | None = None
    seed: int | None = None
    pruner: str = "median"
    confirm: int = 3
    device: str | None = None
    data_dir: str | None = None
    plugin_paths: tuple[str, ...] = ()
    disabled_knobs: tuple[str, ...] = ()
    workers: int = 1

    def validate(self) -> None:
        if not self.name or "/" in self.name:
            raise UsageError(f"--name {self.name!r}: give a name without '/'")
        get_objective(self.objective)
        if self.n_trials < 1:
            raise UsageError(f"--n-trials must be at least 1, got {self.n_trials}")
        if self.timeout is not None and self.timeout <= 0:
            raise UsageError(f"--timeout must be positive, got {self.timeout}")
        if self.target is not None and not 0.0 < self.target <= 1.0:
            raise UsageError(f"--target is a validation accuracy between 0 and 1, got {self.target}")
        if self.pruner not in ("median", "hyperband", "none"):
            raise UsageError(f"--pruner {self.pruner!r}: choose median, hyperband or none")
        if self.confirm < 0:
            raise UsageError(f"--confirm cannot be negative, got {self.confirm}")
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.workers}")
        Budget(**self.budget)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["plugin_paths"] = list(self.plugin_paths)
        data["disabled_knobs"] = list(self.disabled_knobs)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StudySpec":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["plugin_paths"] = tuple(known.get("plugin_paths", ()))
        known["disabled_knobs"] = tuple(known.get("disabled_knobs", ()))
        return cls(**known)

    @property
    def budget_text(self) -> str:
        (key, value), = self.budget.items()
        return f"{value} {key}"
