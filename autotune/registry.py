"""Loading plugins and collecting what they register.

Order: built-in plugins (DEFAULT_PLUGINS), then installed distributions in the `autotune`
entry-point group (all, or those named in AUTOTUNE_LOAD_PLUGINS), then plugin files from
AUTOTUNE_PLUGINS_DIR and `--plugin PATH`. Built-ins go through the same `pm.register` path as
everything else; only their `source` label differs.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterable

import pluggy

from autotune import hookspecs
from autotune.errors import PluginError, UsageError
from autotune.knob import TASKS, Knob, apply_order

if TYPE_CHECKING:
    from autotune.workloads import Workload

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "autotune"

DEFAULT_PLUGINS: tuple[str, ...] = (
    "autotune.plugins.training.batch_size",
    "autotune.plugins.training.optimizer",
    "autotune.plugins.training.learning_rate",
    "autotune.plugins.training.workers",
    "autotune.plugins.training.precision",
    "autotune.plugins.training.pruning",
    "autotune.plugins.training.structured_pruning",
    "autotune.plugins.training.channels_last",
    "autotune.plugins.training.cudnn_benchmark",
    "autotune.plugins.training.torch_compile",
    "autotune.plugins.training.threads",
    "autotune.plugins.workloads.catalog",
    "autotune.plugins.training.data_parallel",
    "autotune.plugins.training.lr_schedule",
    "autotune.plugins.training.optimizer_impl",
    "autotune.plugins.training.matmul_precision",
    "autotune.plugins.training.activation_checkpointing",
    "autotune.plugins.training.micro_batches",
    # inference knobs (Knob.task "inference"): how a trained model is served (autotune.inference)
    "autotune.plugins.serving.serve_precision",
    "autotune.plugins.serving.int8_dynamic",
    "autotune.plugins.serving.int8_static",
    "autotune.plugins.serving.weight_only",
    "autotune.plugins.serving.serve_channels_last",
    "autotune.plugins.serving.serve_pruning",
    "autotune.plugins.serving.serve_batch_size",
    "autotune.plugins.serving.serve_threads",
    "autotune.plugins.serving.serve_compile",
    "autotune.plugins.serving.tensorrt",
)


@dataclass
class PluginInfo:
    """What `autotune plugins` shows about one loaded plugin."""

    name: str
    source: str  # "built-in", "entry point", "file"
    module: str
    path: str | None = None
    version: str | None = None
    knobs: list[str] = field(default_factory=list)
    workloads: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "module": self.module,
            "path": self.path,
            "version": self.version,
            "knobs": self.knobs,
            "workloads": self.workloads,
        }


@dataclass
class Registry:
    """Everything the loaded plugins registered, in registration order."""

    plugins: list[PluginInfo]
    knobs: dict[str, Knob]
    knob_plugins: dict[str, str]
    workloads: dict[str, Callable[[], "Workload"]]
    disabled: dict[str, str]  # knob name -> why it is off
    plugin_paths: tuple[str, ...] = ()
    disabled_knobs: tuple[str, ...] = ()
    entry_points: bool = True  # how it was loaded, so another process can load the same
    # whose knobs `knobs` holds: "training", "inference" (Knob.task), or None for every knob
    task: str | None = "training"

    def knob(self, name: str) -> Knob:
        try:
            return self.knobs[name]
        except KeyError:
            raise UsageError(f"unknown knob '{name}' (known: {', '.join(self.knobs)})") from None


def _entry_point_selection() -> set[str] | None:
    raw = os.environ.get("AUTOTUNE_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise PluginError(f"plugin file {path}: not found")
    module_name = f"autotune_plugin_{path.stem}_{abs(hash(str(path.resolve()))) % 10**8}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin file {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except _PLUGIN_FAULTS as exc:  # a plugin may raise anything on import, sys.exit() included
        sys.modules.pop(module_name, None)
        raise PluginError(f"plugin file {path}: failed to import: {_describe(exc)}") from exc
    return module


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# What a plugin's code may raise that must fail the plugin, not autotune: any Exception, and
# SystemExit (a plugin calling sys.exit() would otherwise end autotune with its code, silently).
# KeyboardInterrupt still interrupts.
_PLUGIN_FAULTS = (Exception, SystemExit)


def _plugin_files(plugin_paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    files: list[Path] = []
    plugins_dir = os.environ.get("AUTOTUNE_PLUGINS_DIR")
    if plugins_dir:
        directory = Path(plugins_dir)
        if not directory.is_dir():
            raise PluginError(f"AUTOTUNE_PLUGINS_DIR={plugins_dir}: not a directory")
        files.extend(sorted(p for p in directory.glob("*.py") if not p.name.startswith("_")))
    files.extend(Path(p) for p in plugin_paths)
    return files


def load_registry(
    plugin_paths: Iterable[str | os.PathLike[str]] = (),
    disabled_knobs: Iterable[str] = (),
    entry_points: bool = True,
    task: str | None = "training",
) -> Registry:
    """Load every plugin and collect their knobs and workloads.

    `knobs` holds the knobs of `task` only ("training" or "inference", Knob.task; None: all of
    them), so that a training run never sees an inference knob and the reverse; knob names are
    unique across both, and `--disable-knob` may name a knob of either.

    Raises PluginError naming the plugin when one fails to import, raises inside a hook, or
    registers a knob name another plugin already took.
    """
    plugin_paths = tuple(str(p) for p in plugin_paths)
    disabled_knobs = tuple(disabled_knobs)
    loader = _PluginLoader()
    loader.add_built_ins()
    if entry_points:
        loader.add_entry_points()
    loader.add_files(plugin_paths)
    loader.check_hooks()
    found = _Registrations(loader.infos)
    found.collect(loader.pm)
    disabled = found.select(disabled_knobs, task)
    try:
        apply_order(list(found.knobs.values()))
    except ValueError as exc:
        raise PluginError(f"{exc} (see Knob.after)") from None

    return Registry(
        plugins=list(loader.infos.values()),
        knobs=found.knobs,
        knob_plugins=found.knob_plugins,
        workloads=found.workloads,
        disabled=disabled,
        plugin_paths=plugin_paths,
        disabled_knobs=disabled_knobs,
        entry_points=entry_points,
        task=task,
    )


class _PluginLoader:
    """A plugin manager being filled, in load order, with what `autotune plugins` shows of each
    plugin (`infos`, by plugin name). A module registered twice is kept once."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("autotune")
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}

    def add(self, module: ModuleType, info: PluginInfo) -> None:
        if self.pm.is_registered(module):
            return
        try:
            self.pm.register(module, name=info.name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin '{info.name}' ({info.path or info.module}): {exc}") from exc
        self.infos[info.name] = info

    def add_built_ins(self) -> None:
        for dotted in DEFAULT_PLUGINS:
            module = importlib.import_module(dotted)
            self.add(module, PluginInfo(name=dotted, source="built-in", module=dotted))

    def add_entry_points(self) -> None:
        """The installed distributions' plugins: all, or those AUTOTUNE_LOAD_PLUGINS names."""
        selection = _entry_point_selection()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if selection is not None and ep.name not in selection:
                continue
            try:
                module = ep.load()
            except _PLUGIN_FAULTS as exc:
                raise PluginError(
                    f"plugin '{ep.name}' (entry point {ep.value}): failed to import: {_describe(exc)}"
                ) from exc
            dist = ep.dist
            self.add(
                module,
                PluginInfo(
                    name=ep.name,
                    source="entry point",
                    module=ep.value,
                    version=dist.version if dist else None,
                ),
            )

    def add_files(self, plugin_paths: Iterable[str]) -> None:
        """The files of AUTOTUNE_PLUGINS_DIR, then `plugin_paths`."""
        for path in _plugin_files(plugin_paths):
            module = _import_file(path)
            self.add(
                module,
                PluginInfo(
                    name=path.stem, source="file", module=module.__name__, path=str(path.resolve())
                ),
            )

    def check_hooks(self) -> None:
        """A misspelt hook name (register_knob) must fail loudly, naming the plugin, not be ignored."""
        pm = self.pm
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin) or "?"
            info = self.infos.get(name)
            where = f" ({info.path or info.module})" if info else ""
            unknown = [
                hook for hook, caller in vars(pm.hook).items()
                if not hook.startswith("_") and not caller.has_spec()
                and any(impl.plugin is exc.plugin for impl in caller.get_hookimpls())
            ]
            known = ", ".join(
                sorted(h for h, fn in vars(hookspecs).items() if hasattr(fn, "autotune_spec"))
            )
            raise PluginError(
                f"plugin '{name}'{where}: unknown hook '{', '.join(unknown)}' (autotune's hooks: {known})"
            ) from exc


class _Registrations:
    """What the plugins' register_knobs and register_workloads hooks registered, each name taken
    once, with the plugin that took it (also noted in that plugin's PluginInfo)."""

    def __init__(self, infos: dict[str, PluginInfo]) -> None:
        self.infos = infos
        self.knobs: dict[str, Knob] = {}
        self.knob_plugins: dict[str, str] = {}
        self.workloads: dict[str, Callable[[], Workload]] = {}
        self.workload_plugins: dict[str, str] = {}

    def collect(self, pm: pluggy.PluginManager) -> None:
        for impl in pm.hook.register_knobs.get_hookimpls():
            _call(impl, "register_knobs", register=self.knob_register(impl.plugin_name))
        for impl in pm.hook.register_workloads.get_hookimpls():
            _call(impl, "register_workloads", register=self.workload_register(impl.plugin_name))

    def knob_register(self, plugin: str) -> Callable[[Knob], None]:
        """The `register` that plugin `plugin`'s register_knobs is given."""

        def register_knob(knob: Knob) -> None:
            if not isinstance(knob, Knob) or not knob.name:
                raise PluginError(
                    f"plugin '{plugin}': register_knobs got {knob!r}, expected a Knob with a name"
                )
            if knob.task not in TASKS:
                raise PluginError(
                    f"plugin '{plugin}': knob '{knob.name}' has task {knob.task!r} "
                    f"(expected one of {', '.join(TASKS)})"
                )
            if knob.name in self.knobs:
                raise PluginError(
                    f"knob '{knob.name}' is registered by two plugins: "
                    f"'{self.knob_plugins[knob.name]}' and '{plugin}'"
                )
            self.knobs[knob.name] = knob
            self.knob_plugins[knob.name] = plugin
            self.infos[plugin].knobs.append(knob.name)

        return register_knob

    def workload_register(self, plugin: str) -> Callable[[str, Callable[[], Workload]], None]:
        """The `register` that plugin `plugin`'s register_workloads is given."""

        def register_workload(name: str, factory: Callable[[], Workload]) -> None:
            if name in self.workloads:
                raise PluginError(
                    f"workload '{name}' is registered by two plugins: "
                    f"'{self.workload_plugins[name]}' and '{plugin}'"
                )
            self.workloads[name] = factory
            self.workload_plugins[name] = plugin
            self.infos[plugin].workloads.append(name)

        return register_workload

    def select(self, disabled_knobs: tuple[str, ...], task: str | None) -> dict[str, str]:
        """Drop the knobs `disabled_knobs` names, and those of another task than `task` (None:
        keep every task's); returns the disabled knobs of `task`, each with why it is off."""
        disabled: dict[str, str] = {}
        disabled_tasks: dict[str, str] = {}
        for name in disabled_knobs:
            if name not in self.knobs:
                raise UsageError(f"--disable-knob: unknown knob '{name}' (known: {', '.join(self.knobs)})")
            disabled[name] = "disabled by --disable-knob"
            disabled_tasks[name] = self.knobs.pop(name).task
        if task is not None:
            if task not in TASKS:
                raise UsageError(f"unknown task {task!r} (tasks: {', '.join(TASKS)})")
            others = {name for name, knob in self.knobs.items() if knob.task != task}
            others |= {name for name in disabled if disabled_tasks[name] != task}
            self.knobs = {name: knob for name, knob in self.knobs.items() if name not in others}
            self.knob_plugins = {name: plugin for name, plugin in self.knob_plugins.items() if name not in others}
            disabled = {name: why for name, why in disabled.items() if name not in others}
        return disabled


def _call(impl: pluggy.HookImpl, hook: str, **kwargs: Any) -> None:
    """Call one plugin's implementation so a failure can be pinned on that plugin."""
    try:
        impl.function(**{name: kwargs[name] for name in impl.argnames})
    except PluginError:
        raise
    except _PLUGIN_FAULTS as exc:
        raise PluginError(f"plugin '{impl.plugin_name}' raised in {hook}: {_describe(exc)}") from exc
