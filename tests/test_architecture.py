"""The package's layering, read from its own imports (see docs/architecture.md).

The library (``pac``, ``trs``, ``data``, ``metrics``, ``models`` and the shared modules beside
them) never imports the applications layer (``pl_pac_trs.apps`` and the entry points); no
import circle between modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pl_pac_trs"
LIBRARY = ("pac", "trs", "data", "metrics", "models")
APPLICATIONS = ("pl_pac_trs.apps", "pl_pac_trs.demo", "pl_pac_trs.__main__")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, at any depth of the file (lazy ones too).

    ``from package import submodule`` depends on the submodule, ``from module import name`` on
    the module (a package's ``__init__`` when it re-exports ``name``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found & modules


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(modules)) for name, path in modules.items()}


def _is_application(module: str) -> bool:
    return any(module == app or module.startswith(app + ".") for app in APPLICATIONS)


def test_the_graph_is_read():
    graph = _graph()
    assert "pl_pac_trs.apps.cli" in graph
    assert "pl_pac_trs.pac.state" in graph["pl_pac_trs.pac"]  # re-exports are imports
    assert any(_is_application(m) for deps in graph.values() for m in deps)


@pytest.mark.parametrize("sub", LIBRARY)
def test_library_never_imports_the_applications(sub):
    graph = _graph()
    offending = {
        (module, dep)
        for module, deps in graph.items()
        if module.startswith(f"pl_pac_trs.{sub}")
        for dep in deps
        if _is_application(dep)
    }
    assert not offending


def test_shared_modules_never_import_the_applications():
    graph = _graph()
    shared = [m for m in graph if m.count(".") == 1 and not _is_application(m)]
    shared = [m for m in shared if m.split(".")[1] not in LIBRARY]
    assert "pl_pac_trs.serialization" in shared
    assert not {(m, d) for m in shared for d in graph[m] if _is_application(d)}


def test_no_import_circle():
    edges = _graph()
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for dep in edges[node]:
            if dep == node:
                continue
            if state.get(dep) == 1:
                cycle.extend([*path[path.index(dep) :], dep] if dep in path else [node, dep])
                return True
            if state.get(dep) is None and visit(dep, [*path, dep]):
                return True
        state[node] = 2
        return False

    for module in sorted(edges):
        if state.get(module) is None and visit(module, [module]):
            break
    assert not cycle, " -> ".join(cycle)


#: The layers of ``pl_pac_trs.pac``, top first (docs/architecture.md, "Inside pl_pac_trs.pac").
PAC_LAYERS = (
    ("pruning", "gradient_mask", "transfer", "checkpoint", "baselines", "lora", "artifacts"),
    ("callback",),
    ("mask_rules", "masked_optimizer"),
    ("state", "checks"),
)


def test_pac_imports_go_down_its_layers():
    """Every module of ``pl_pac_trs.pac`` is in one layer, and imports only lower layers (the
    callbacks also each other)."""
    graph = _graph()
    layer = {f"pl_pac_trs.pac.{m}": i for i, names in enumerate(PAC_LAYERS) for m in names}
    modules = {m for m in graph if m.startswith("pl_pac_trs.pac.")}
    assert modules == set(layer), "a pac module missing from PAC_LAYERS, or one that is gone"
    upward = {
        (module, dep)
        for module in modules
        for dep in graph[module]
        if dep in layer and (layer[dep] < layer[module] or (layer[dep] == layer[module] > 0))
    }
    assert not upward
