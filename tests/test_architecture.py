"""The house rules, checked on the source: small modules and functions, no import cycles, the
core free of Textual and the UI free of torch, and docs/architecture.md naming every package.

The import graph is read with `ast`, so every import counts, those inside functions too; imports
under `if TYPE_CHECKING:` do not run and are left out, and so are imports of a package itself
(its `__init__`), which every import of one of its modules runs anyway.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# installed package name -> folder in the repository (see pyproject's package-dir)
PACKAGE_DIRS = {"autotune": ROOT / "autotune", "autotune.plugins": ROOT / "plugins", "autotune.tui": ROOT / "tui"}
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Every module of the three trees by its import name; packages end in `.__init__`."""
    found: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            found[".".join([package, *parts])] = path
    return found


MODULES = modules()
PACKAGES = {name.removesuffix(".__init__") for name in MODULES if name.endswith(".__init__")}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def imported_names(name: str) -> set[str]:
    """Every dotted name module `name` imports (absolute, relative ones resolved)."""
    path = MODULES[name]
    package = name.removesuffix(".__init__") if name.endswith(".__init__") else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(anchor + ([node.module] if node.module else []))
        out.add(base)
        out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def graph() -> dict[str, set[str]]:
    """autotune module -> the autotune modules it imports (package __init__s left out)."""
    plain = {n for n in MODULES if not n.endswith(".__init__")}
    edges: dict[str, set[str]] = {}
    for name in MODULES:
        source = name.removesuffix(".__init__")
        edges[source] = {n for n in imported_names(name) if n in plain and n != source}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def test_the_checks_see_the_tree() -> None:
    """The walk finds the modules and the imports it is meant to judge."""
    assert {"autotune.cli", "autotune.run.engine", "autotune.plugins.training.batch_size",
            "autotune.tui.app"} <= set(MODULES)
    assert "autotune.run.local" in graph()["autotune.run.engine"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_at_most_400_lines(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)} has {lines} lines; split it by concern"


def test_modules_do_not_import_each_other_in_a_cycle() -> None:
    assert cycles(graph()) == []


def test_functions_and_type_checking_blocks_are_read_as_they_run() -> None:
    code = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import autotune.hidden\n"
        "def f():\n    from autotune.run import engine\n"
    )
    imports = {n.module or n.names[0].name for n in _imports(ast.parse(code))}
    assert imports == {"typing", "autotune.run"}


def test_core_does_not_import_textual_and_the_ui_does_not_import_torch() -> None:
    wrong = []
    for name in MODULES:
        roots = {n.split(".")[0] for n in imported_names(name)}
        in_ui = name.startswith("autotune.tui")
        banned = {"torch", "torchvision"} if in_ui else {"textual", "textual_plotext"}
        if roots & banned:
            wrong.append(f"{name} imports {', '.join(sorted(roots & banned))}")
    assert wrong == []


def test_architecture_doc_names_every_package() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [p for p in sorted(PACKAGES) if f"`{p}`" not in text]
    assert missing == [], f"docs/architecture.md does not describe: {', '.join(missing)}"


def package_of(module: str) -> str:
    """The unit of the package-cycle check a module belongs to: its subpackage of autotune
    (`autotune.run`, `autotune.tui`), or itself for a top-level module (`autotune.api`)."""
    return ".".join(module.split(".")[:2])


def package_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """A module graph folded onto packages (package_of): one edge for every import from a module
    of one package to a module of another."""
    folded: dict[str, set[str]] = {}
    for source, targets in edges.items():
        unit = package_of(source)
        folded.setdefault(unit, set()).update(package_of(t) for t in targets if package_of(t) != unit)
    return folded


def import_graph_with_packages() -> dict[str, set[str]]:
    """The module graph plus imports of a package itself (`from autotune.objectives import
    get_objective` runs autotune/objectives/__init__.py and everything it imports): for the
    package check they count as an edge to that package. `autotune` itself is left out: its
    `__init__` is the public facade (Knob, TrainingPlan, apply ...) that plugins and users import,
    above every package it re-exports, and nothing inside imports it."""
    edges = graph()
    subpackages = PACKAGES - {"autotune"}
    for name in MODULES:
        source = name.removesuffix(".__init__")
        edges[source] = edges.get(source, set()) | {n for n in imported_names(name) if n in subpackages and n != source}
    return edges


def test_packages_do_not_import_each_other_in_a_cycle() -> None:
    """Layers import only downward (`autotune.launch` above `autotune.run` and
    `autotune.inference`, `autotune.workloads` below them): a cycle between packages can close
    without any between modules, which test_modules_do_not_import_each_other_in_a_cycle misses."""
    found = cycles(package_graph(import_graph_with_packages()))
    assert found == [], f"packages that import each other: {found}"


def test_nothing_inside_imports_from_the_public_facade() -> None:
    """autotune/__init__.py re-exports the public API from the layers below it; a module of the
    core that took a name from it (rather than a module, `from autotune import batches`) would
    depend on every layer at once."""
    core = [n for n in MODULES if not n.startswith(("autotune.plugins", "autotune.tui")) and n != "autotune.__init__"]
    facade = [f"{n}: {name}" for n in core for name in imported_names(n)
              if name.startswith("autotune.") and name.count(".") == 1
              and name not in MODULES and f"{name}.__init__" not in MODULES]
    assert facade == []


def test_the_package_check_catches_a_planted_cycle() -> None:
    # a.x -> b -> a.y: no cycle of modules, one of packages
    planted = {"autotune.a.x": {"autotune.b"}, "autotune.b": {"autotune.a.y"}, "autotune.a.y": set()}
    assert cycles(planted) == []
    assert cycles(package_graph(planted)) == [["autotune.a", "autotune.b"]]
    # the tree itself, with the import that closed the last real one (workloads -> run)
    edges = import_graph_with_packages()
    edges["autotune.workloads"] = edges["autotune.workloads"] | {"autotune.run.plan"}
    assert any({"autotune.run", "autotune.workloads"} <= set(c) for c in cycles(package_graph(edges)))
    # and an import of a package itself counts: spec -> objectives -> run -> workloads -> spec
    edges["autotune.workloads"] = edges["autotune.workloads"] | {"autotune.spec"}
    assert any({"autotune.objectives", "autotune.spec"} <= set(c) for c in cycles(package_graph(edges)))


MAX_FUNCTION_LINES = 60


def long_functions(path: Path, root: Path = ROOT, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """`path:line name (N lines)` for each function of a file, methods and nested functions
    included, longer than `limit` lines from its `def` to its last line (docstring counted)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            if lines > limit:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_over_60_lines() -> None:
    """A function longer than a screen does several things whose names the reader has to guess;
    split it where its parts have names (a class that owns the state they share, a helper)."""
    offenders = [entry for path in MODULES.values() for entry in long_functions(path)]
    assert offenders == [], f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(offenders)


def test_the_function_check_counts_from_def_to_the_last_line(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(58))
    path = tmp_path / "long.py"
    path.write_text(f'def fits():\n    """Doc."""\n{body}\n\nclass C:\n    def over(self):\n        """Doc."""\n'
                    + body.replace("    ", "        ") + "        return x0\n")
    assert long_functions(path, root=tmp_path) == ["long.py:64 over (61 lines)"]  # `fits` is 60


# Objectives and tasks are objects (autotune.objectives, autotune.tasks): code elsewhere asks them
# what differs instead of comparing their names. The names a comparison may hold are read from
# the registries, so a new objective or task is counted without editing this test.
NAME_OWNERS = ("autotune.objectives", "autotune.tasks")
MAX_NAME_COMPARISONS = 3


def _registered_names() -> set[str]:
    from autotune.objectives import OBJECTIVES
    from autotune.tasks import TASKS

    return set(OBJECTIVES) | set(TASKS)


def _constants(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [c for element in node.elts for c in _constants(element)]
    return []


# Names that are also other things' names: a metric called "accuracy", nn.Module.training. A
# comparison with one of these counts only when the other side speaks of a task or an objective.
SHARED_WORDS = {"accuracy", "training"}


def name_comparisons(path: Path, names: set[str], root: Path = ROOT) -> list[str]:
    """`path:line source` for each comparison (==, !=, in, not in) of an expression with an
    objective's or a task's name (for SHARED_WORDS, an expression that names a task or an
    objective)."""
    source = path.read_text()
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        compared = {c for o in operands for c in _constants(o)} & names
        if not compared:
            continue
        others = " ".join(ast.get_source_segment(source, o) or "" for o in operands if not _constants(o)).lower()
        if compared <= SHARED_WORDS and "task" not in others and "objective" not in others:
            continue
        found.append(f"{path.relative_to(root)}:{node.lineno} {ast.get_source_segment(source, node)}")
    return found


def all_name_comparisons() -> list[str]:
    names = _registered_names()
    return [entry for module, path in MODULES.items() if not module.startswith(NAME_OWNERS)
            for entry in name_comparisons(path, names)]


def test_objective_and_task_names_are_compared_only_in_their_own_modules() -> None:
    found = all_name_comparisons()
    assert len(found) <= MAX_NAME_COMPARISONS, "compare the objective or task object instead:\n" + "\n".join(found)


def test_the_name_check_sees_comparisons_and_leaves_metrics_alone(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text('if spec.task == "inference" or objective.name in ("throughput", "x"):\n    pass\n'
                    'if metric.name == "accuracy" or named != "accuracy" or attr == "training":\n    pass\n'
                    'if kwargs["task"] != "training" or mode == "latency":\n    pass\n')
    assert name_comparisons(path, {"inference", "throughput", "accuracy", "training", "latency"},
                            root=tmp_path) == [
        'm.py:1 spec.task == "inference"', 'm.py:1 objective.name in ("throughput", "x")',
        'm.py:5 kwargs["task"] != "training"', 'm.py:5 mode == "latency"',
    ]


if __name__ == "__main__":  # the count, for people: python tests/test_architecture.py
    listed = all_name_comparisons()
    print("\n".join(listed) or "(none)")
    print(f"{len(listed)} comparisons of objective or task names outside autotune.objectives and autotune.tasks")
