"""The package's shape: layers that only import downwards, no import circles, modules and functions a reader can hold.

Read from the source with ``ast`` (every import, those inside functions too), so nothing is imported here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bertfit

PACKAGE = Path(bertfit.__file__).parent
# Lowest first. A module may import its own layer and those below, never one above.
LAYERS = {
    "core": 0,  # the modules at the package's top: config, errors, record, model, backends, metrics, ...
    "data": 1,
    "reporting": 2,  # reads saved folders and data; training writes its report through it
    "training": 3,
    "export": 4,  # compress distils, so export sits above training
    "serving": 4,
    "batch": 4,  # prediction on Ray: the saved model and data reading, like serving
    "auditing": 4,  # out-of-fold evidence uses training's baseline and backbone
    "tuning": 4,  # trials are training runs
    "cli": 5,
    "": 5,  # the package root (bertfit/__init__.py): the public names, loaded lazily
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
LONG_REASON = "long because"  # said in a docstring or comment of a function allowed past the limit


def modules() -> dict[str, Path]:
    """Dotted name (without 'bertfit.') to file, for every module; a package's __init__ is the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def layer(name: str) -> int:
    if name in ("", "__main__"):
        return LAYERS[""]
    top = name.split(".")[0]
    return LAYERS[top] if (PACKAGE / top).is_dir() else LAYERS["core"]


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package's modules this file imports (``from bertfit import x`` resolves to module x where it is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from bertfit import __version__` reads a constant the root sets before importing anything
            names = [node.module] * (node.module != "bertfit") + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == "bertfit" or name.startswith("bertfit."):
                inner = name.removeprefix("bertfit").removeprefix(".")
                if inner in known:
                    found.add(inner)
    return found


GRAPH = {name: imports_of(path, set(modules())) - {name} for name, path in modules().items()}


def test_layer_table_covers_every_subpackage():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(LAYERS), f"add {sorted(packages - set(LAYERS))} to LAYERS with its place"


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_no_module_imports_a_higher_layer(name):
    if name in ("", "__main__"):
        return  # the package root and ``python -m bertfit`` sit above everything
    upward = sorted(other for other in GRAPH[name] if other and layer(other) > layer(name))
    assert not upward, f"bertfit.{name} (layer {layer(name)}) imports higher layers: {upward}"


def test_no_import_circles():
    # Tarjan's strongly connected components: any component of two or more modules is a circle.
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in GRAPH.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            # A subpackage's __init__ re-exporting its own modules is not a circle of the code.
            if len(component) > 1 and not _only_reexport(component):
                circles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert circles == []


def _only_reexport(component: list[str]) -> bool:
    """The package root, or a subpackage with its modules, joined only through the package's __init__."""
    packages = [name for name in component if name == "" or (PACKAGE / name.replace(".", "/")).is_dir()]
    if len(packages) != 1:
        return False
    rest = [name for name in component if name not in packages]
    return all(packages[0] not in GRAPH[name] or name == packages[0] for name in rest) and _acyclic(rest)


def _acyclic(names: list[str]) -> bool:
    remaining = {name: GRAPH[name] & set(names) for name in names}
    while remaining:
        free = [name for name, deps in remaining.items() if not deps]
        if not free:
            return False
        for name in free:
            del remaining[name]
        for deps in remaining.values():
            deps.difference_update(free)
    return True


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_and_functions_stay_readable(name):
    path = modules()[name]
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    assert len(lines) <= MAX_MODULE_LINES, f"{path.name}: {len(lines)} lines; split it by what its parts do"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            body = "\n".join(lines[node.lineno - 1:node.end_lineno]).lower()
            assert length <= MAX_FUNCTION_LINES or LONG_REASON in body, (
                f"{path.name}: {node.name} is {length} lines; split it, or say in it why not ('{LONG_REASON} ...')")


@pytest.mark.parametrize("name", sorted(modules()))
def test_comments_explain_why_not_history(name):
    """Issue numbers and measured figures belong in the tracker, bench/ and the README, not in the code."""
    import re

    source = modules()[name].read_text(encoding="utf-8")
    assert not re.search(r"\bissues? #?\d+", source, re.IGNORECASE), "an issue number in the code"
