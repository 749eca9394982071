"""Trials a study runs with settings given rather than sampled: the baseline, and the ones a
user asks for with `study start --enqueue 'KEY=VALUE,...'` (Optuna's `enqueue_trial`, Ray Tune's
`points_to_evaluate`).

An enqueued trial is the baseline with the named settings changed, so that it says what those
settings do alone; the settings it names must be searched by the study's space (a setting the
space fixes or leaves out would be overruled in the trial). They run right after the baseline,
before any sampled trial, count toward --n-trials like any trial, and are validated before
anything is written. Resuming a study with the same --enqueue adds nothing: a trial whose
params are already in the study is not enqueued again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autotune.errors import UsageError
from autotune.settings import resolve_settings

if TYPE_CHECKING:
    import optuna

    from autotune.hardware import Hardware
    from autotune.registry import Registry
    from autotune.spec import StudySpec
    from autotune.workloads import Workload


def trial_params(space: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """The searched params a trial with `settings` fixes in Optuna: each param active under
    them and that Optuna can hold (a weight_decay of 0.0 cannot be on a log scale; such a param
    is left to the sampler in the trial's record rather than failing the study)."""
    distributions = space.distributions()
    return {
        p.name: settings[p.name] for p in space.params
        if p.name in settings and p.active(settings) and _representable(distributions[p.name], settings[p.name])
    }


def parse_enqueued(spec: "StudySpec", registry: "Registry", hardware: "Hardware", workload: "Workload",
                   space: Any) -> list[dict[str, Any]]:
    """Each of `spec.enqueue`, validated: the params of the trial it asks for. UsageError for a
    malformed string, an unknown or unsearched setting, a value the knob refuses or one the
    space cannot hold, or more trials than --n-trials leaves after the baseline."""
    items = spec.enqueue
    if len(items) > spec.n_trials - 1:
        raise UsageError(f"--enqueue gives {len(items)} trials but --n-trials {spec.n_trials} leaves room "
                         f"for {spec.n_trials - 1} after the baseline")
    searched = {p.name for p in space.params}
    queued = []
    for item in items:
        wanted = _assignments(item)
        for key in wanted:
            if key not in searched:
                raise UsageError(f"--enqueue {item!r}: '{key}' is not searched by space '{spec.space}' "
                                 f"(searched: {', '.join(searched) or 'nothing'})")
        try:
            settings = resolve_settings(registry, hardware, workload, wanted)
        except UsageError as exc:
            raise UsageError(f"--enqueue {item!r}: {exc}") from None
        params = trial_params(space, settings)
        for key in wanted:
            if key not in params:
                raise UsageError(f"--enqueue {item!r}: {key}={settings.get(key)} cannot be a trial of this space")
        queued.append(params)
    return queued


def enqueue_all(study: "optuna.Study", queued: list[dict[str, Any]]) -> None:
    from autotune.study import retries

    for params in queued:
        retries.enqueue(study, params, enqueued=True)


def _assignments(item: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for part in item.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"--enqueue {item!r}: expected KEY=VALUE[,KEY=VALUE...], e.g. "
                             "--enqueue 'int8_dynamic=true,serve_threads=1'")
        result[key.strip()] = value.strip()
    return result


def _representable(distribution: Any, value: Any) -> bool:
    try:
        distribution.to_internal_repr(value)
    except (ValueError, TypeError):
        return False
    return True
