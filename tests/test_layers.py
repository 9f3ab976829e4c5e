"""The package's folders are its layers, and imports point one way: down this list.

Every module is parsed with ``ast`` (nothing is imported). A module's layer is its
folder (``cells/scoring.py`` is in ``cells``), or its own name for the few modules at
the package's top. A module may import its own layer and the layers below, never
above, at module level, inside functions and under ``if TYPE_CHECKING:`` alike, and
the graph of our modules has no cycle, type-only imports included.

Inside functions, only heavy third-party libraries may be imported (so a warm,
fully cached run never loads them); our own modules only where a module of ours
imports TensorFlow or Keras at its top (``LAZY_OWN_MODULES``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_robustness"

# Bottom to top. ``options`` sits above the registries because it validates names against them.
LAYERS = [
    ("errors", "params", "registry_scope", "old_paths"),  # at the package's top: what every layer may use
    "metrics",
    "transforms",
    "strategies",  # the public module of Hypothesis strategies that draw transforms
    "data",
    "tracking",
    "models",
    "attacks",
    "defenses",
    "registry",  # the public extension API: every attack, defense, architecture and dataset by name
    "options",
    "engine",
    "cells",
    "reports",
    "plugin",
    "",  # the package's __init__: the suites' API (attack_cases, ...)
]
RANK = {unit: rank for rank, entry in enumerate(LAYERS) for unit in ((entry,) if isinstance(entry, str) else entry)}

# Imported inside functions: these import TensorFlow or Keras at their top.
LAZY_OWN_MODULES = {"models.keras_layers", "models.adapter", "attacks.compiled", "attacks.compiled.kernels",
                    "attacks.compiled.fgm", "attacks.compiled.pgd", "attacks.compiled.patch",
                    "attacks.compiled.deepfool", "attacks.compiled.apgd", "defenses.compiled.preprocessors", "defenses.compiled.pgd_training"}
# Third-party libraries too heavy to import before they are needed.
HEAVY = {"tensorflow", "keras", "art", "mlflow", "sklearn", "PIL", "matplotlib", "scipy", "mlxtend", "alembic", "h5py"}


def layer_of(module: str) -> str:
    """The folder a module lives in, or the module's own name at the package's top."""
    return module.split(".")[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(importer: str, node: ast.ImportFrom | ast.Import) -> list[tuple[str | None, str]]:
    """(our module or None, the absolute name) for each name the statement imports."""
    package = importer if MODULES[importer].name == "__init__.py" else importer.rpartition(".")[0]
    found = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif node.level == 0:
        names = [node.module or ""]
    else:
        base = package.split(".") if package else []
        base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
        target = ".".join([*base, *([node.module] if node.module else [])])
        names = [f"pytest_robustness.{target}".rstrip(".")]
        submodules = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
        if node.module is not None and submodules:  # ``from .attacks import compiled``: the submodule
            names = [f"pytest_robustness.{name}" for name in submodules]
        if node.module is None:  # ``from . import x``: a submodule, or a name of the package itself
            names = [f"pytest_robustness.{'.'.join([*base, a.name])}" if ".".join([*base, a.name]) in MODULES
                     else f"pytest_robustness.{'.'.join(base)}".rstrip(".") for a in node.names]
    for name in names:
        if name == "pytest_robustness" or name.startswith("pytest_robustness."):
            ours = name[len("pytest_robustness."):] if name != "pytest_robustness" else ""
            while ours not in MODULES:  # ``from .attacks.base import x`` names a module; ``x`` may be a class
                ours = ours.rpartition(".")[0]
            found.append((ours, name))
        else:
            found.append((None, name))
    return found


def imports(module: str) -> list[tuple[bool, str | None, str, int]]:
    """(inside a function?, our module or None, absolute name, line) for every import statement."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if isinstance(child, ast.ImportFrom) and child.module == "__future__":
                    continue
                found.extend((in_function, ours, name, child.lineno) for ours, name in resolve(module, child))
            visit(child, inner)

    visit(tree, False)
    return found


def test_every_module_has_a_layer():
    assert {m: layer_of(m) for m in MODULES if layer_of(m) not in RANK} == {}, "add the folder to LAYERS"
    folders = {p.parent.relative_to(PACKAGE).parts[0] for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE}
    assert folders - set(RANK) == set(), "every folder is a layer"


def test_every_folder_says_what_it_knows():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init.relative_to(PACKAGE)} has no docstring"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    upward = [f"line {line}: {layer_of(module) or 'the package'} module imports {ours or 'the package'} "
              f"({layer_of(ours) or 'the package'})"
              for _, ours, _, line in imports(module)
              if ours is not None and ours != module and RANK[layer_of(ours)] > RANK[layer_of(module)]]
    assert upward == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_function_level_imports_only_keep_heavy_things_lazy(module):
    wrong = []
    for in_function, ours, name, line in imports(module):
        if not in_function:
            continue
        if ours is not None and ours not in LAZY_OWN_MODULES:
            wrong.append(f"line {line}: {name} (ours; import it at the top)")
        elif ours is None and name.split(".")[0] not in HEAVY:
            wrong.append(f"line {line}: {name} ({'standard library' if name.split('.')[0] in sys.stdlib_module_names else 'light'}; import it at the top)")
    assert wrong == []


def test_our_modules_form_no_cycle():
    graph = {m: {ours for _, ours, _, _ in imports(m) if ours is not None and ours != m} for m in MODULES}
    # Importing a submodule runs the package's __init__ first: that is Python, not an import we wrote.
    graph = {m: deps - {""} if m != "" else deps for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*path[path.index(dep):], dep]))
            elif dep not in state:
                walk(dep, [*path, dep])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            walk(start, [start])
    assert cycles == []


def test_the_checker_sees_an_upward_import_inside_a_function(tmp_path, monkeypatch):
    """The checks above can fail: a cycle dodged by an import inside a function is caught."""
    probe = PACKAGE / "options" / "thresholds.py"
    monkeypatch.setitem(MODULES, "options.thresholds", tmp_path / "thresholds.py")
    (tmp_path / "thresholds.py").write_text(probe.read_text() + "\n\ndef late():\n    from ..cells.cell import Robustness\n")
    found = [(f, ours) for f, ours, _, _ in imports("options.thresholds") if ours == "cells.cell"]
    assert found == [(True, "cells.cell")] and RANK["cells"] > RANK["options"]


def test_the_checker_sees_a_type_only_import(tmp_path, monkeypatch):
    """An import under ``if TYPE_CHECKING:`` counts: it is a real dependency of the design."""
    probe = PACKAGE / "models" / "files.py"
    monkeypatch.setitem(MODULES, "models.files", tmp_path / "files.py")
    (tmp_path / "files.py").write_text(probe.read_text() + "\n\nif TYPE_CHECKING:\n    from ..engine.session import RobustnessSession\n")
    found = [(f, ours) for f, ours, _, _ in imports("models.files") if ours == "engine.session"]
    assert found == [(False, "engine.session")] and RANK["engine"] > RANK["models"]


MAX_MODULE_LINES = 400  # one module, one responsibility: past this, a module is doing two jobs


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_the_size_limit(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module}.py has {lines} lines; split it by responsibility"


def test_the_readme_draws_the_tree_in_layer_order():
    """README "How it works" lists every folder of the package, in LAYERS' order, and no folder that is gone."""
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme[readme.index("## How it works"):]
    section = section[:section.index("\n## ", 1)]
    listed = [row.split("|")[1].strip().strip("`").rstrip("/") for row in section.splitlines()
              if row.startswith("| `") and row.split("|")[1].strip().endswith("/`")]
    folders = [entry for entry in LAYERS if isinstance(entry, str) and (PACKAGE / entry).is_dir() and entry]
    assert listed == folders


def test_no_plugin_test_shares_a_basename_with_a_shipped_suite():
    """Inner runs collect the shipped suites in this process (README, journeys): a test module of the same
    basename already imported from tests/ would make their collection fail with 'import file mismatch'."""
    suites = {p.name for p in (PACKAGE.parent / "robustness_suites").glob("test_*.py")}
    ours = {p.name for p in (PACKAGE.parent / "tests").glob("test_*.py")}
    assert suites & ours == set()
