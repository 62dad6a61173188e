"""The layout's rules, read from the source with `ast` (imports inside functions included): imports point one
way between the stage packages (docs/architecture.md), no module imports itself back through others, and SQL
lives only in the store's repositories (flows/core/store).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

FLOWS = Path(__file__).resolve().parent.parent / "flows"

STAGES = ("core", "ingest", "render", "collect", "draft", "deliver", "publish", "edition", "status", "events")
# What each part of flows/ may import besides itself. `status` reports what `edition` decides (held back and
# why), so it reads the edition's rules rather than repeating them; `edition` never imports `status`.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "ingest": {"core"},
    "render": {"core"},
    "collect": {"core"},
    "draft": {"core"},
    "deliver": {"core", "render"},
    "publish": {"core", "render"},
    "edition": {"core", "render", "deliver"},
    "events": {"core", "render", "deliver", "prefect_session"},
    "status": {"core", "render", "deliver", "edition"},
    "prefect_session": {"core"},
    "pipeline": {*STAGES, "prefect_session"},
    "app": {*STAGES, "prefect_session", "pipeline"},
    "__main__": {"app"},
    "flows": set(),
}
SQL_BUILDERS = {"select", "insert", "update", "delete", "text", "table", "column", "literal_column", "Table"}


def module_name(path: Path) -> str:
    parts = path.relative_to(FLOWS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(FLOWS.rglob("*.py"))}


def part_of(module: str) -> str:
    """The top-level part of flows/ a module belongs to: flows.deliver.send → deliver, flows.edition → edition."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "flows"


def imported(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(module of flows imported, line) for every import in the file, at any depth; `from pkg import sub` is an
    import of the submodule when `sub` is one."""
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name, node.lineno


GRAPH = {module: sorted({name for name, _ in imported(module, path)}) for module, path in MODULES.items()}


def test_every_part_of_flows_has_a_rule() -> None:
    assert {part_of(m) for m in MODULES} <= set(ALLOWED), "a new part of flows/: add its arrows to ALLOWED"


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_imports_point_one_way(part: str) -> None:
    wrong = [
        f"{MODULES[module].relative_to(FLOWS.parent)}:{line} imports {name}"
        for module, path in MODULES.items()
        if part_of(module) == part
        for name, line in imported(module, path)
        if part_of(name) != part and part_of(name) not in ALLOWED[part]
    ]
    assert not wrong, f"{part} may import only {sorted(ALLOWED[part]) or 'nothing else of flows'}:\n" + "\n".join(wrong)


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), i.e. every import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, []):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_circles() -> None:
    assert cycles(GRAPH) == []


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {**GRAPH, "flows.core.models": [*GRAPH["flows.core.models"], "flows.app.cli"]}
    assert any("flows.core.models" in c and "flows.app.cli" in c for c in cycles(graph))


def test_sql_lives_in_the_store() -> None:
    """Every table is reached through flows.core.store's repositories: no SQL is built or sent elsewhere."""
    wrong = []
    for module, path in MODULES.items():
        if module.startswith("flows.core.store"):
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
                wrong += [f"{module}:{node.lineno} {a.name}" for a in node.names if a.name in SQL_BUILDERS]
                wrong += [f"{module}:{node.lineno} {node.module}" for _ in [0] if node.module == "sqlalchemy.sql"]
            elif isinstance(node, ast.Import):
                wrong += [f"{module}:{node.lineno} {a.name}" for a in node.names if a.name == "sqlalchemy"]
            elif isinstance(node, ast.Attribute) and node.attr in {"execute", "exec_driver_sql", "executescript"}:
                wrong.append(f"{module}:{node.lineno} .{node.attr}(...)")
    assert not wrong, "SQL outside flows/core/store:\n" + "\n".join(wrong)


def test_no_import_needs_a_noqa() -> None:
    """Imports sit at the top of their module: none needs a noqa for E402 (one hid an import circle once)."""
    roots = [FLOWS, FLOWS.parent / "tests", FLOWS.parent / "benchmarks"]
    marker = "noqa: " + "E402"  # split so this file does not match itself
    found = [str(p) for root in roots for p in root.rglob("*.py") if marker in p.read_text("utf-8")]
    assert found == []
