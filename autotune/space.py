"""Search spaces: which settings a study searches, over what ranges, and which it pins.

A space is a TOML file (format documented at the top of search_spaces/default.toml) that lists
only the knobs it changes; every other available knob keeps the default space from
`Knob.params(hardware)`. Bundled spaces ship as package data in `autotune.search_spaces`.

Every problem in a space file raises SpaceError with one line naming file, knob and problem:
"search_spaces/cpu.toml: knob 'batch_size': low (512) > high (64)".
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from autotune.errors import SpaceError
from autotune.knob import Param, exclusion
from autotune.space_files import (
    SpaceSource,
    apply_override,
    check_document,
    locate,
    locate_parent,
    merge,
    read,
    show_value,
)

if TYPE_CHECKING:
    import optuna

    from autotune.hardware import Hardware
    from autotune.knob import Knob, Traits
    from autotune.registry import Registry


LEFT_OUT = "left out by the space"
NOT_IN_ONLY = "not in this space's `only` list"
KEPT_RECIPE = "changes what is learned; --keep-recipe keeps the baseline's"
FITTED_AFTER = "a systems knob: fitted to the best recipe after the search, by paired step time"


@dataclass
class SearchSpace:
    """A resolved search space for one registry on one machine.

    `params` are the searched settings in knob registration order (a knob's primary param before
    its conditional sub-params); `fixed` are settings pinned to one value; `excluded` maps each
    knob that is not searched to why (it keeps its baseline value); `knobs` maps every setting
    name to its knob.
    """

    source: str
    name: str
    params: list[Param]
    fixed: dict[str, Any] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    knobs: dict[str, str] = field(default_factory=dict)
    description: str = ""
    # Conditions of fixed settings, so a pin like momentum=0.9 is dropped when adam is chosen.
    fixed_when: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict, repr=False)
    # systems params the search leaves at the baseline's and a second stage fits to the best
    # recipe by paired step time (`staged`; autotune.study.systems)
    fitted: list[Param] = field(default_factory=list)

    def suggest(self, trial: "optuna.Trial", leave_out: Iterable[str] = ()) -> dict[str, Any]:
        """Suggest every searched param whose condition holds; return {**fixed, **suggested}.

        Params are suggested in order, so a conditional param sees the values chosen before it.
        Fixed settings whose condition does not hold on the result are left out, and so are the
        params in `leave_out` (the loop refuses them: they keep the baseline's value).
        """
        values = dict(self.fixed)
        left_out = set(leave_out)
        for param in self.params:
            if param.name not in left_out and param.active(values):
                values[param.name] = _suggest_one(trial, param)
        return {
            key: value for key, value in values.items() if _holds(self.fixed_when.get(key), values)
        }

    def record(self, trial: "optuna.Trial", values: dict[str, Any]) -> dict[str, Any]:
        """Record `values` as the trial's params, in the space's order and with its distributions.
        Only for values the trial was enqueued with (Optuna's fixed params): Optuna then stores
        each as given, out of range or not, and samples nothing (autotune.study.enqueued)."""
        return {param.name: _suggest_one(trial, param) for param in self.params if param.name in values}

    def keeping_recipe(self, registry: "Registry", recipe: dict[str, Any]) -> "SearchSpace":
        """This space with only its systems knobs searched (Knob.kind "systems": they change how
        fast a step runs, not what is learned), every statistical setting pinned to `recipe`'s
        (the baseline's) and each statistical knob excluded with why (--keep-recipe)."""
        statistical = {name for name, knob in registry.knobs.items() if knob.kind != "systems"}

        def learned(setting: str) -> bool:
            return self.knobs.get(setting, setting) in statistical

        fixed = {k: v for k, v in self.fixed.items() if not learned(k)}
        pinned = {k: v for k, v in recipe.items() if learned(k)}
        return dataclasses.replace(
            self,
            params=[p for p in self.params if not learned(p.name)],
            fixed={**fixed, **pinned},
            excluded={**self.excluded, **{name: KEPT_RECIPE for name in statistical if name not in self.excluded}},
            fixed_when={k: v for k, v in self.fixed_when.items() if k in fixed},
        )

    def staged(self, registry: "Registry") -> "SearchSpace":
        """This space in two stages: the search takes its statistical params, and its systems
        params (Knob.kind "systems": how fast a step runs, not what is learned) are `fitted`
        after it. Unchanged when either stage would be empty: there is nothing to separate."""
        systems = {name for name, knob in registry.knobs.items() if knob.kind == "systems"}
        later = [p for p in self.params if self.knobs.get(p.name, p.name) in systems]
        if not later or len(later) == len(self.params):
            return self
        return dataclasses.replace(self, params=[p for p in self.params if p not in later], fitted=later)

    def distributions(self) -> dict[str, "optuna.distributions.BaseDistribution"]:
        """Optuna distributions of the searched params (to enqueue or validate known settings)."""
        return {param.name: _distribution(param) for param in self.params}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "params": [self._param_dict(p) for p in self.params],
            "fixed": dict(self.fixed),
            "excluded": dict(self.excluded),
            **({"fitted": [self._param_dict(p) for p in self.fitted]} if self.fitted else {}),
        }

    def _param_dict(self, param: Param) -> dict[str, Any]:
        return {
            "name": param.name,
            "knob": self.knobs.get(param.name),
            "type": param.type,
            "low": param.low,
            "high": param.high,
            "log": param.log,
            "step": param.step,
            "choices": list(param.choices) if param.type in ("categorical", "bool") else None,
            "when": {k: list(v) for k, v in param.when.items()} if param.when else None,
        }

    def describe(self) -> str:
        """A readable table for `autotune space show`."""
        lines = [f"search space {self.name} ({self.source})"]
        if self.description:
            lines.append(f"  {self.description}")
        lines.append("searched:")
        rows = [_describe_row(p) for p in self.params]
        lines.extend(_table(rows) if rows else ["  (nothing)"])
        if self.fixed:
            lines.append("fixed:")
            lines.extend(_table([[k, "=", show_value(v)] for k, v in self.fixed.items()]))
        if self.excluded:
            lines.append("excluded (baseline value):")
            lines.extend(_table([[k, reason] for k, reason in self.excluded.items()]))
        return "\n".join(lines)


def _holds(when: dict[str, tuple[Any, ...]] | None, values: dict[str, Any]) -> bool:
    return all(values.get(key) in allowed for key, allowed in (when or {}).items())


def _suggest_one(trial: "optuna.Trial", param: Param) -> Any:
    if param.type == "int":
        step = int(param.step) if param.step else 1
        return trial.suggest_int(param.name, int(param.low), int(param.high), step=step, log=param.log)
    if param.type == "float":
        return trial.suggest_float(param.name, param.low, param.high, step=param.step, log=param.log)
    return trial.suggest_categorical(param.name, list(param.choices))


def _distribution(param: Param) -> "optuna.distributions.BaseDistribution":
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.type == "int":
        step = int(param.step) if param.step else 1
        return IntDistribution(int(param.low), int(param.high), log=param.log, step=step)
    if param.type == "float":
        return FloatDistribution(param.low, param.high, log=param.log, step=param.step)
    return CategoricalDistribution(list(param.choices))


def _describe_row(param: Param) -> list[str]:
    if param.type in ("int", "float"):
        span = f"{show_value(param.low)} .. {show_value(param.high)}"
        if param.step:
            span += f" step {show_value(param.step)}"
    else:
        span = ", ".join(map(show_value, param.choices))
    condition = ""
    if param.when:
        condition = "when " + "; ".join(
            f"{k} in ({', '.join(map(show_value, v))})" for k, v in param.when.items()
        )
    return [param.name, param.type, span, "log" if param.log else "", condition]


def _table(rows: list[list[str]]) -> list[str]:
    """Rows as aligned columns, indented two spaces (rich lays them out)."""
    from rich.console import Console
    from rich.padding import Padding
    from rich.table import Table

    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
    for row in rows:
        table.add_row(*row)
    console = Console(file=io.StringIO(), width=1000, color_system=None, highlight=False)
    console.print(Padding(table, (0, 0, 0, 2)))
    return [line.rstrip() for line in console.file.getvalue().splitlines()]


def load_space(
    name_or_path: str | None, registry: "Registry", hardware: "Hardware", traits: "Traits | None" = None
) -> SearchSpace:
    """Load a search space: None or "default", a bundled name, or a path to a TOML file.

    Raises SpaceError (one line naming file, knob and problem) for anything malformed. With the
    workload's `traits`, knobs that would do nothing for it are left out too, with why.
    """
    top = locate(name_or_path)
    document = _load_document(top, registry, hardware, chain=())
    return _build(top, document, registry, hardware, traits)


def _load_document(
    source: SpaceSource, registry: "Registry", hardware: "Hardware", chain: tuple[SpaceSource, ...]
) -> dict[str, Any]:
    """Read `source` and everything it extends; each file is checked on its own first, so an
    error names the file that holds it."""
    if source.key in {s.key for s in chain}:
        path = " -> ".join(s.label for s in (*chain, source))
        raise SpaceError(f"{chain[-1].label}: extends cycle: {path}")
    data = read(source)
    document = check_document(source.label, data, registry, hardware)
    _resolve_knobs(document, registry, hardware, partial=True)
    if "extends" not in data:
        return document
    parent = locate_parent(data["extends"], source)
    return merge(_load_document(parent, registry, hardware, (*chain, source)), document)


def _build(
    source: SpaceSource, document: dict[str, Any], registry: "Registry", hardware: "Hardware",
    traits: "Traits | None" = None,
) -> SearchSpace:
    params, fixed, fixed_when, excluded = _resolve_knobs(document, registry, hardware, traits=traits)
    params, fixed = _drop_unreachable(params, fixed, fixed_when)
    return SearchSpace(
        source=source.source,
        name=source.name,
        params=params,
        fixed=fixed,
        excluded=excluded,
        knobs={p.name: k.name for k in registry.knobs.values() for p in k.params(hardware)},
        description=document["description"],
        fixed_when={k: v for k, v in fixed_when.items() if k in fixed},
    )


def _resolve_knobs(
    document: dict[str, Any], registry: "Registry", hardware: "Hardware", partial: bool = False,
    traits: "Traits | None" = None,
) -> tuple[list[Param], dict[str, Any], dict[str, dict[str, tuple[Any, ...]]], dict[str, str]]:
    params: list[Param] = []
    fixed: dict[str, Any] = {}
    fixed_when: dict[str, dict[str, tuple[Any, ...]]] = {}
    excluded: dict[str, str] = {}
    for knob in registry.knobs.values():
        overrides = document["knobs"].get(knob.name, {})
        knob_params = knob.params(hardware)
        # Check every listed setting even when the knob is left out: a typo in gpu.toml should
        # fail on a CPU machine too.
        outcomes = [
            apply_override(
                _where(document, knob, p, i == 0), p, overrides.get(p.name, {}), partial
            )
            for i, p in enumerate(knob_params)
        ]
        reason = _exclusion(knob, document, overrides.get(knob_params[0].name, {}), hardware, traits)
        if reason is not None:
            excluded[knob.name] = reason
            continue
        for param, (searched, value) in zip(knob_params, outcomes):
            if searched is not None and not _single_choice(searched):
                params.append(searched)
            else:
                # one allowed value is a pin, not a dimension (data_parallel on CPU: "none")
                fixed[param.name] = value if searched is None else searched.choices[0]  # type: ignore[index]
                if param.when:
                    fixed_when[param.name] = param.when
    excluded.update(registry.disabled)
    return params, fixed, fixed_when, excluded


def _single_choice(param: Param) -> bool:
    return param.type in ("categorical", "bool") and len(param.choices or ()) == 1


def _where(document: dict[str, Any], knob: "Knob", param: Param, primary: bool) -> str:
    label = document["labels"].get((knob.name, param.name), "?")
    where = f"{label}: knob '{knob.name}'"
    return where if primary else f"{where}: setting '{param.name}'"


def _exclusion(
    knob: "Knob", document: dict[str, Any], primary: dict[str, Any], hardware: "Hardware",
    traits: "Traits | None" = None,
) -> str | None:
    reason = exclusion(knob, hardware, traits)
    if reason is not None:
        return reason
    only = document["only"]
    if only is not None and knob.name not in only:
        return NOT_IN_ONLY
    return None if primary.get("search", True) else LEFT_OUT


def _drop_unreachable(
    params: list[Param], fixed: dict[str, Any], fixed_when: dict[str, dict[str, tuple[Any, ...]]]
) -> tuple[list[Param], dict[str, Any]]:
    """Leave out conditional settings whose condition can never hold in this space (momentum
    when optimizer is pinned to adam), so `space show` lists only what a trial can use."""
    possible: dict[str, set[Any] | None] = {k: {v} for k, v in fixed.items()}
    for param in params:
        numeric = param.type in ("int", "float")
        possible[param.name] = None if numeric else set(param.choices)

    def reachable(when: dict[str, tuple[Any, ...]] | None) -> bool:
        for key, allowed in (when or {}).items():
            if key not in possible:
                return False
            values = possible[key]
            if values is not None and not values & set(allowed):
                return False
        return True

    kept = [p for p in params if reachable(p.when)]
    return kept, {k: v for k, v in fixed.items() if reachable(fixed_when.get(k))}
