"""pyproject.toml declares what flows/ imports, and keeps nothing without a reason.

A package imported by flows/ but missing from [project.dependencies] works in a developer's venv (where the
dev extra or another package brings it in) and breaks on a clean install. The wheel itself is built and
installed in a fresh venv by scripts/check_wheel.sh."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = REPO / "pyproject.toml"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalise(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])


def _runtime_requirements() -> list[str]:
    return tomllib.loads(PYPROJECT.read_text("utf-8"))["project"]["dependencies"]


def imported_top_level_modules() -> dict[str, set[str]]:
    """Every module name flows/ imports (at the top or inside a function), with the files importing it."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "flows").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


def _third_party(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: files for m, files in modules.items() if m not in sys.stdlib_module_names and m != "flows"}


def test_every_import_in_flows_is_a_declared_dependency() -> None:
    owners = importlib.metadata.packages_distributions()
    declared = {_requirement_name(r) for r in _runtime_requirements()}
    modules = _third_party(imported_top_level_modules())
    assert {"yaml", "lxml", "markupsafe", "certifi", "cryptography"} <= set(modules), "the scan finds imports"
    unknown = sorted(m for m in modules if m not in owners)
    assert not unknown, f"imported but not installed at all: {unknown}"
    undeclared = {
        module: sorted(files)
        for module, files in modules.items()
        if not {_normalise(d) for d in owners[module]} & declared
    }
    assert not undeclared, f"imported by flows/ but not in [project.dependencies]: {undeclared}"


def test_every_dependency_flows_does_not_import_says_why() -> None:
    """A runtime dependency that flows/ never imports is either unused (remove it) or kept for a reason that
    its line in pyproject.toml gives as a comment (a pin for another package, a plug-in of a library)."""
    owners = importlib.metadata.packages_distributions()
    imported = {_normalise(d) for m in _third_party(imported_top_level_modules()) for d in owners.get(m, [])}
    lines = PYPROJECT.read_text("utf-8").splitlines()
    silent = []
    for requirement in _runtime_requirements():
        if _requirement_name(requirement) in imported:
            continue
        line = next(line for line in lines if line.strip().startswith(f'"{requirement}"'))
        if "#" not in line.split(f'"{requirement}"', 1)[1]:
            silent.append(requirement)
    assert not silent, f"declared, never imported by flows/, and no comment saying why: {silent}"


def test_type_stubs_and_checker_are_in_the_dev_extra() -> None:
    extras = tomllib.loads(PYPROJECT.read_text("utf-8"))["project"]["optional-dependencies"]
    dev = {_requirement_name(r) for r in extras["dev"]}
    assert {"mypy", "types-pyyaml", "types-lxml"} <= dev
