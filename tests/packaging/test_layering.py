"""Who may import whom, read from the source with ``ast`` (nothing is imported): the core
(``fedlora.*`` outside server, client, simulations and cli) imports nothing above it;
server and client never import each other; the device runtime imports numpy, cryptography,
the standard library and itself; simulations do not import the CLI; no import cycles.
Imports inside functions count; imports under ``if TYPE_CHECKING:`` do not.

An import is an edge to the module it names: ``import fedlora.x.y`` and
``from fedlora.x import y`` (when ``fedlora/x/y.py`` exists) point at ``fedlora.x.y``;
``from fedlora.x import name`` points at ``fedlora.x``. The parent packages' ``__init__``
that Python runs on the way are not edges.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not (REPOSITORY / "pyproject.toml").is_file(), reason="needs the source checkout")

#: parts of fedlora that sit above the core
ABOVE_CORE = ("fedlora.server", "fedlora.client", "fedlora.simulations", "fedlora.cli")
#: what the device runtime may import besides the standard library and itself
DEVICE_THIRD_PARTY = ("numpy", "cryptography")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module imported (dotted name)
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.module} imports {self.target} ({self.path.relative_to(REPOSITORY)}:{self.line})"


def within(module: str, *packages: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def package_modules(repository: Path) -> dict[str, Path]:
    """Module name → file, for every .py file of the distribution (pyproject's package-dir)."""
    setuptools = tomllib.loads((repository / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = sorted(setuptools["package-dir"].items(), key=lambda item: len(Path(item[1]).parts), reverse=True)
    modules = {}
    for package, folder in roots:
        for path in sorted((repository / folder).rglob("*.py")):
            parts = path.relative_to(repository / folder).with_suffix("").parts
            name = ".".join((package, *parts[:-1], *([] if parts[-1] == "__init__" else [parts[-1]])))
            modules.setdefault(name, path)  # a deeper root claimed it first
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_statements(node: ast.AST):
    """Every import statement in ``node``, at any depth, except in ``if TYPE_CHECKING:`` bodies."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    elif isinstance(node, ast.If) and _is_type_checking(node.test):
        for statement in node.orelse:
            yield from _import_statements(statement)
    else:
        for child in ast.iter_child_nodes(node):
            yield from _import_statements(child)


def imports_of(module: str, path: Path, source: str, known: set[str]) -> list[Import]:
    """The imports of ``module`` (whose source is ``source``), resolved against ``known`` modules."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in _import_statements(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, path, node.lineno) for alias in node.names]
            continue
        base = node.module or ""
        if node.level:  # relative: from . import x, from ..y import z
            anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            base = f"{anchor}.{node.module}" if node.module else anchor
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            found.append(Import(module, submodule if submodule in known else base, path, node.lineno))
    return found


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    modules = package_modules(REPOSITORY)
    assert "fedlora.server" in modules and "fedlora.device_runtime" in modules, sorted(modules)
    known = set(modules)
    return [found for name, path in modules.items() for found in imports_of(name, path, path.read_text(), known)]


def listing(found: list[Import]) -> str:
    return "".join(f"\n  {i}" for i in found)


def refuse(found: list[Import], rule: str) -> None:
    if found:
        pytest.fail(f"{rule}:{listing(found)}", pytrace=False)


# -- the rules ------------------------------------------------------------------------------


def test_the_core_imports_nothing_above_it(imports):
    found = [i for i in imports if not within(i.module, *ABOVE_CORE) and within(i.target, *ABOVE_CORE)]
    refuse(found, "the core (fedlora.* outside server, client, simulations, cli) imports from above it")


def test_server_and_client_never_import_each_other(imports):
    found = [
        i for i in imports
        if (within(i.module, "fedlora.server") and within(i.target, "fedlora.client"))
        or (within(i.module, "fedlora.client") and within(i.target, "fedlora.server"))
    ]  # fmt: skip
    refuse(found, "server and client import each other")


def test_the_device_runtime_imports_numpy_cryptography_the_stdlib_and_itself(imports):
    def allowed(target: str) -> bool:
        top = target.split(".")[0]
        return within(target, "fedlora.device_runtime") or top in DEVICE_THIRD_PARTY or top in sys.stdlib_module_names

    found = [i for i in imports if within(i.module, "fedlora.device_runtime") and not allowed(i.target)]
    refuse(found, "the device runtime imports more than numpy, cryptography, the stdlib and itself")


def test_simulations_do_not_import_the_cli(imports):
    found = [i for i in imports if within(i.module, "fedlora.simulations") and within(i.target, "fedlora.cli")]
    refuse(found, "simulations import the CLI (only the CLI may import simulations)")


def strongly_connected(graph: dict[str, list[str]]) -> list[set[str]]:
    """Groups of nodes that reach each other (Tarjan), each with more than one node or a self-loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:  # node is the root of a group: pop the group
            group = {stack.pop()}
            while node not in group:
                group.add(stack.pop())
            if len(group) > 1 or node in graph[node]:
                groups.append(group)

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def shortest_cycle(start: str, graph: dict[str, list[str]]) -> list[str]:
    """The modules of a shortest cycle from ``start`` back to it (breadth first)."""
    parents = {start: start}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in graph[node]:
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return path[::-1]
            if successor not in parents:
                parents[successor] = node
                queue.append(successor)
    raise ValueError(f"{start} is on no cycle")


def import_cycles(imports: list[Import]) -> list[list[Import]]:
    """Cycles among fedlora modules, as their import statements: a shortest one through each module on a cycle."""
    first: dict[tuple[str, str], Import] = {}
    for i in imports:
        first.setdefault((i.module, i.target), i)  # an edge's first import statement
    modules = {i.module for i in imports}
    graph = {m: sorted({t for (source, t) in first if source == m and t in modules}) for m in sorted(modules)}
    cycles, seen = [], set()
    for group in strongly_connected(graph):
        for module in sorted(group):  # a shortest cycle through each module, each cycle once
            path = shortest_cycle(module, graph)
            edges = list(zip(path, path[1:] + path[:1]))
            if frozenset(edges) not in seen:
                seen.add(frozenset(edges))
                cycles.append([first[edge] for edge in edges])
    return cycles


def test_no_import_cycles(imports):
    cycles = import_cycles(imports)
    if cycles:
        message = "".join(f"\n{' → '.join([c[0].module, *(i.target for i in c)])}{listing(c)}" for c in cycles)
        pytest.fail(f"{len(cycles)} import cycle(s) among fedlora modules:{message}", pytrace=False)


# -- the reader itself, on small sources ----------------------------------------------------


def test_imports_in_functions_count_and_type_checking_imports_do_not():
    source = """
from __future__ import annotations
from typing import TYPE_CHECKING
import fedlora.cli.app
from fedlora import tasks
from fedlora.server import SomeName
from .sibling import thing
from . import other
from ..cache import cache_root
if TYPE_CHECKING:
    from fedlora.client import planner
else:
    import fedlora.client.fallback
def late():
    from fedlora.simulations.driver import run
"""
    known = {"fedlora", "fedlora.cache", "fedlora.cli.app", "fedlora.tasks", "fedlora.server", "fedlora.export",
             "fedlora.export.sibling", "fedlora.export.other", "fedlora.simulations.driver", "fedlora.client.fallback"}  # fmt: skip
    path = REPOSITORY / "fedlora" / "export" / "here.py"
    found = {(i.target, i.line) for i in imports_of("fedlora.export.here", path, source, known)}
    assert found == {
        ("__future__", 2), ("typing", 3), ("fedlora.cli.app", 4), ("fedlora.tasks", 5), ("fedlora.server", 6),
        ("fedlora.export.sibling", 7), ("fedlora.export.other", 8), ("fedlora.cache", 9),
        ("fedlora.client.fallback", 13), ("fedlora.simulations.driver", 15),
    }  # fmt: skip


def test_a_cycle_is_reported_with_its_lines():
    path = REPOSITORY / "x.py"
    edges = [Import("a", "b", path, 1), Import("b", "c", path, 2), Import("c", "a", path, 3), Import("c", "d", path, 4), Import("d", "d", path, 5)]
    assert [[(i.module, i.target, i.line) for i in cycle] for cycle in import_cycles(edges)] in (
        [[("a", "b", 1), ("b", "c", 2), ("c", "a", 3)], [("d", "d", 5)]],
        [[("d", "d", 5)], [("a", "b", 1), ("b", "c", 2), ("c", "a", 3)]],
    )
