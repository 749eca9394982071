"""Trials a study runs with settings given rather than sampled: the baseline, and the ones a
user asks for with `study start --enqueue 'KEY=VALUE,...'` (Optuna's `enqueue_trial`, Ray Tune's
`points_to_evaluate`).

An enqueued trial is the baseline with the named settings changed, nothing else, so that it
says what those settings do alone: every other setting keeps the baseline's value, and one the
change makes active (beta2 with optimizer=adamw) takes its baseline value as the knob or the
workload's recipe gives it. The settings it names must be searched by the study's space (a
setting the space fixes or leaves out would be overruled in the trial). They run right after the
baseline, before any sampled trial, count toward --n-trials like any trial, and are validated
before anything is written. Resuming a study with the same --enqueue adds nothing: a trial whose
params are already in the study is not enqueued again.

What Optuna records is what ran. The baseline and each enqueued trial are enqueued with their
searched settings as Optuna's fixed params (`trial_params`); an enqueued trial runs what those
resolve to (autotune.settings.resolve_settings: the given params, the baseline's value of the
rest). Their Optuna params are only the given values that ran (`recordable`). A value the
searched distribution cannot hold (weight_decay 0.0 on a log scale, a choice the space does not
offer), a param inactive under the settings and a given value the launcher changed (threads
capped for trials side by side) are no params at all, never a value sampled in their place; the
trial's settings (user attr "settings", from the trial process) hold every value that ran. A
value outside the searched range that the distribution can hold (a batch size below the space's
low) is recorded as it ran, with the space's own distribution, as Optuna does with any fixed
param: a narrower distribution of its own would take the param out of the sampler's joint search
space (Optuna's IntersectionSearchSpace) for the rest of the study.
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
    them and that Optuna can hold (a weight_decay of 0.0 cannot be on a log scale: such a value
    is no param, and the trial's settings hold it; see the module docstring)."""
    distributions = space.distributions()
    return {
        p.name: settings[p.name] for p in space.params
        if p.name in settings and p.active(settings) and _representable(distributions[p.name], settings[p.name])
    }


def given_params(study: "optuna.Study", number: int) -> dict[str, Any]:
    """The params trial `number` was enqueued with: Optuna's fixed params, or the params a trial
    Optuna's heartbeat retried was created with."""
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    return dict(frozen.system_attrs.get("fixed_params") or frozen.params)


def recordable(space: Any, ran: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The Optuna params of a trial enqueued with `given` params that ran `ran`: each searched
    value that ran, is active, can be held by its distribution and was given as it ran. Only
    given values, so that Optuna samples none (see the module docstring)."""
    return {k: v for k, v in trial_params(space, ran).items() if k in given and given[k] == v}


def parse_enqueued(spec: "StudySpec", registry: "Registry", hardware: "Hardware", workload: "Workload",
                   space: Any) -> list[dict[str, Any]]:
    """Each of `spec.enqueue`, validated: the params of the trial it asks for. UsageError for a
    malformed string, an unknown or unsearched setting, a value the knob refuses or one the
    space cannot hold, or more trials than --n-trials leaves after the baseline."""
    items = spec.enqueue
    if len(items) > spec.n_trials - 1:
        raise UsageError(f"--enqueue gives {len(items)} trials but --n-trials {spec.n_trials} leaves room "
                         f"for {spec.n_trials - 1} after the baseline")
    # a staged search's systems params (fitted after it) may be given too: they are no Optuna
    # param, the trial runs them as given
    fitted = {p.name for p in getattr(space, "fitted", [])}
    searched = {p.name for p in space.params} | fitted
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
        params = {**trial_params(space, settings), **{k: settings[k] for k in wanted if k in fitted}}
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
