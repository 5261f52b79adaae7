"""The shape of the package: imports follow the stages, nothing imports in a circle.

Stages, in the order data flows through them, after the base modules (version, errors):
``data`` -> ``experiment`` -> ``models`` ->
``policy`` -> ``reports`` -> ``loop`` -> ``serve`` -> ``cli``. A module may import its own stage and
earlier ones, never a later one; ``uplift/__init__.py`` (the public API) and
``uplift/__main__.py`` may import anything. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "uplift"
STAGES = (
    "base",
    "data",
    "experiment",
    "models",
    "policy",
    "reports",
    "loop",
    "serve",
    "spark",
    "cli",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str) -> set[str]:
    """The package's modules that ``name`` imports (``from pkg import submodule`` included)."""
    tree = ast.parse(MODULES[name].read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from pkg import submodule` depends on the submodule; `from pkg import name`
            # on the package's __init__.
            targets = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                for a in node.names
            ]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t.startswith("uplift")}
    return found - {name}


GRAPH = {name: imports(name) for name in MODULES}


#: Modules every stage may use: the version and the error tree.
BASE = ("uplift._version", "uplift.exceptions")


def stage(name: str) -> int:
    parts = name.split(".")
    if name in BASE:
        return 0
    if len(parts) < 2 or parts[1] not in STAGES:
        return len(STAGES)  # the package itself and __main__: the top
    return STAGES.index(parts[1])


def test_every_module_belongs_to_a_stage() -> None:
    loose = [
        n for n in MODULES if stage(n) == len(STAGES) and n not in ("uplift", "uplift.__main__")
    ]
    assert loose == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_stages(name: str) -> None:
    later = sorted(m for m in GRAPH[name] if stage(m) > stage(name))
    assert later == [], f"{name} imports from a later stage: {later}"


def test_no_module_imports_itself_in_a_circle() -> None:
    circles = [sorted(c) for c in strongly_connected(GRAPH) if len(c) > 1]
    assert circles == []


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the strongly connected components of ``graph``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            components.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    return components


# What each module offers: its ``__all__``, read from the source with ``ast``, never imported.


def defines_names(tree: ast.Module) -> bool:
    """Whether a module binds any name of its own (a def, a class or an assignment)."""
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
    return any(isinstance(node, kinds) for node in tree.body)


def all_value(tree: ast.Module) -> ast.expr | None:
    """The expression assigned to the module's top-level ``__all__``, if it has one."""
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return value
    return None


def offered(tree: ast.Module) -> list[str]:
    """The string constants of a module's ``__all__`` list or tuple (none if it has none)."""
    value = all_value(tree)
    if not isinstance(value, ast.List | ast.Tuple):
        return []
    return [e.value for e in value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]


TREES = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}
OFFERED = {name: offered(tree) for name, tree in TREES.items()}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if defines_names(TREES[n])))
def test_every_module_declares_what_it_offers(name: str) -> None:
    """Every module that defines names says in ``__all__`` which ones other modules may use.

    Only modules that define nothing are exempt: the stage packages that hold just a
    docstring, and ``__main__``. ``__all__`` is a list or tuple of strings, except the
    package's own, which is built from its table of lazily loaded exports.
    """
    value = all_value(TREES[name])
    assert value is not None, f"{name} has no __all__"
    if name != "uplift":
        assert isinstance(value, ast.List | ast.Tuple), f"{name}: __all__ is not a list"
        assert all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts), (
            f"{name}: __all__ holds something other than strings"
        )
    private = [n for n in OFFERED[name] if n.startswith("_") and not n.startswith("__")]
    assert private == [], f"{name} offers private names: {private}"


def package_imports(name: str) -> list[tuple[str, str, int]]:
    """``(module, name, line)`` of every ``from uplift... import name`` in module ``name``.

    Imports inside functions and ``if TYPE_CHECKING:`` blocks count; a submodule imported
    from its package (``from uplift.models import serialize``) is not a name of the package.
    """
    found = []
    for node in ast.walk(TREES[name]):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        if node.module.split(".")[0] != "uplift":
            continue
        for alias in node.names:
            if f"{node.module}.{alias.name}" not in MODULES:
                found.append((node.module, alias.name, node.lineno))
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_import_only_what_others_offer(name: str) -> None:
    """A module imports from another module of the package only names in its ``__all__``."""
    unoffered = [
        f"line {line}: from {module} import {imported}"
        for module, imported, line in package_imports(name)
        if imported not in OFFERED.get(module, [])
    ]
    assert unoffered == [], f"{name} imports names their modules do not offer: {unoffered}"
