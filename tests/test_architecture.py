"""The shape of the package: imports follow the stages, nothing imports in a circle.

Stages, in the order data flows through them, after the base modules (version, errors):
``data`` -> ``experiment`` -> ``models`` ->
``policy`` -> ``reports`` -> ``loop`` -> ``cli``. A module may import its own stage and
earlier ones, never a later one; ``uplift/__init__.py`` (the public API) and
``uplift/__main__.py`` may import anything. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "uplift"
STAGES = ("base", "data", "experiment", "models", "policy", "reports", "loop", "cli")


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
