"""How long a run trains. Torch-free, so the CLI can validate a budget without importing torch."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from autotune.errors import UsageError


@dataclass(frozen=True)
class Budget:
    """How long a run trains: exactly one of epochs, steps or seconds."""

    epochs: int | None = None
    steps: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        given = [(k, v) for k, v in asdict(self).items() if v is not None]
        if len(given) != 1:
            raise UsageError("give exactly one budget: --budget-epochs, --budget-steps or --budget-seconds")
        key, value = given[0]
        # not just `value <= 0`: nan passes that test, and nan or inf would train forever
        if not math.isfinite(value) or value <= 0:
            raise UsageError(f"budget {key} must be a positive finite number, got {value}")

    def describe(self) -> str:
        key, value = next((k, v) for k, v in asdict(self).items() if v is not None)
        return f"{value} {key}"
