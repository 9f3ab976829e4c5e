"""The package's imports point one way: base -> registries -> options -> engine -> cell API -> pytest glue.

Every module is parsed with ``ast`` (nothing is imported) and must sit in one
layer; a module may import its own layer and the layers below, never above, at
module level and inside functions alike, and the graph of our modules has no
cycle. ``options`` (settings, thresholds) sits above the registries because it
validates names against them: an option's value is looked up in a registry.

Inside functions, only heavy third-party libraries may be imported (so a warm,
fully cached run never loads them); our own modules only where a module of ours
imports TensorFlow or Keras at its top (``LAZY_OWN_MODULES``). Imports under
``if TYPE_CHECKING:`` never run and are not counted.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_robustness"

LAYERS = {
    "base": {"errors", "params", "metrics", "training", "classifiers", "keras_layers", "evidence",
             "versions", "model_uris", "mlflow_search", "progress", "hookspecs", "registry_scope", "statistics",
             "model_adapter", "model_loading", "server_health"},
    "registries": {"architectures", "attacks", "attacks.base", "attacks.fgm", "attacks.patch", "attacks.compiled",
                   "attacks.kernels", "attacks.fgm_kernel", "attacks.pgd_kernel", "attacks.patch_kernel",
                   "attacks.deepfool_kernel", "attacks.apgd_kernel", "attacks.apgd", "attacks.autoattack",
                   "attacks.defense_kernels", "attacks.adversarial_training", "patch_deployment", "defenses", "datasets",
                   "data_checks", "image_folders", "recipes", "attacks.define", "attacks.carlini", "attacks.deepfool",
                   "attacks.pgd", "attacks.square", "patch_training", "registry", "metric_names",
                   "cache"},  # the content-addressed store: settings' start-up data check asks it what is cached
    "options": {"settings", "model_settings", "thresholds"},
    "engine": {"tracking", "orphans", "model_registry", "model_checks", "model_files", "devices", "session", "memo", "predictors", "model_slots",
               "adversarial_sets", "training_claims"},
    "cell API": {"evaluation", "attack_result", "scoring", "cell_artifacts", "defended_cells", "baselines",
                 "transfer_cells", "masking", "patch_control", "randomised", "grid", "ensemble", "per_class", "targets", ""},  # "" is the package itself: the suites' API (attack_cases ...)
    "pytest glue": {"plugin", "robustness_plugin", "scope", "junit", "fixtures", "reporting", "gating", "sweeps",
                    "ordering", "transfer"},
}
RANK = {module: rank for rank, modules in enumerate(LAYERS.values()) for module in modules}
LAYER_NAME = {module: name for name, modules in LAYERS.items() for module in modules}

# Imported inside functions: these import TensorFlow or Keras at their top.
LAZY_OWN_MODULES = {"keras_layers", "model_adapter", "attacks.compiled", "attacks.kernels", "attacks.fgm_kernel",
                    "attacks.pgd_kernel", "attacks.patch_kernel", "attacks.deepfool_kernel", "attacks.defense_kernels",
                    "attacks.adversarial_training", "attacks.apgd_kernel"}
# Third-party libraries too heavy to import before they are needed.
HEAVY = {"tensorflow", "keras", "art", "mlflow", "sklearn", "PIL", "matplotlib", "scipy", "mlxtend"}


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
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # never runs: names for annotations only
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if isinstance(child, ast.ImportFrom) and child.module == "__future__":
                    continue
                found.extend((in_function, ours, name, child.lineno) for ours, name in resolve(module, child))
            visit(child, inner)

    visit(tree, False)
    return found


def test_every_module_has_a_layer():
    assert set(MODULES) - set(RANK) == set(), "put each new module into one of LAYERS"
    assert set(RANK) - set(MODULES) == set(), "LAYERS names modules that no longer exist"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    upward = [f"line {line}: {LAYER_NAME[module]} module imports {ours or 'the package'} ({LAYER_NAME[ours]})"
              for _, ours, _, line in imports(module)
              if ours is not None and ours != module and RANK[ours] > RANK[module]]
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
    probe = PACKAGE / "thresholds.py"
    monkeypatch.setitem(MODULES, "thresholds", tmp_path / "thresholds.py")
    (tmp_path / "thresholds.py").write_text(probe.read_text() + "\n\ndef late():\n    from .evaluation import Robustness\n")
    found = [(f, ours) for f, ours, _, _ in imports("thresholds") if ours == "evaluation"]
    assert found == [(True, "evaluation")] and RANK["evaluation"] > RANK["thresholds"]


MAX_MODULE_LINES = 400  # one module, one responsibility: past this, a module is doing two jobs


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_the_size_limit(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module}.py has {lines} lines; split it by responsibility"
