"""The docs cover every setting and every command, the generated files are fresh, and the README is honest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flows.app import docs_gen
from flows.core.settings import Settings

REPO = Path(__file__).resolve().parent.parent
COMMANDS = list(docs_gen.walk_commands(docs_gen.root_command()))


def test_app_has_commands() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"check", "run", "status", "preview"} <= names


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    text = (REPO / "docs" / "settings.md").read_text("utf-8")
    variable = f"BRIEFING_{name.upper()}"
    row = next((line for line in text.splitlines() if line.startswith(f"| `{variable}` |")), None)
    assert row is not None, f"{variable} is missing from docs/settings.md: run `python -m flows.app.docs_gen`"
    description = Settings.model_fields[name].description
    assert description, f"setting {name} has no description= help text"
    assert description.split("`")[0].strip()[:30] in row


@pytest.mark.parametrize("path", [" ".join(p) for p, _ in COMMANDS])
def test_every_command_is_documented_with_an_example(path: str) -> None:
    text = (REPO / "docs" / "cli.md").read_text("utf-8")
    assert f"\n## briefing {path}\n" in text, (
        f"`briefing {path}` is missing from docs/cli.md: run python -m flows.app.docs_gen"
    )
    command = dict((" ".join(p), c) for p, c in COMMANDS)[path]
    assert re.search(r"^\s*Example:\s*`?briefing ", command.help or "", re.MULTILINE), (
        f"the docstring of `briefing {path}` needs an 'Example: briefing …' line"
    )


@pytest.mark.parametrize("target", ["settings.md", "cli.md"])
def test_generated_docs_are_fresh(target: str) -> None:
    path = REPO / "docs" / target
    expected = docs_gen.generated()[path]
    assert path.read_text("utf-8") == expected, f"docs/{target} is stale: run `python -m flows.app.docs_gen`"


def test_readme_mentions_only_commands_that_exist() -> None:
    readme = (REPO / "README.md").read_text("utf-8")
    names = {p[0] for p, _ in COMMANDS}
    mentioned = set(re.findall(r"`briefing (?:--\w+ )*([a-z][a-z-]*)", readme))
    assert mentioned, "the README shows no command"
    assert mentioned <= names, f"README describes commands that do not exist: {sorted(mentioned - names)}"


def test_readme_and_docs_links_resolve() -> None:
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = re.sub(r"```.*?```|`[^`\n]*`", "", doc.read_text("utf-8"), flags=re.DOTALL)  # examples, not links
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            assert (doc.parent / target).exists(), f"{doc.relative_to(REPO)} links to missing {target}"


def test_readme_documents_every_exit_code() -> None:
    from flows.core import errors

    readme = (REPO / "README.md").read_text("utf-8")
    table = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    codes = {
        cls.exit_code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.BriefingError)
    }
    from flows.core.errors import TokenError

    codes.add(TokenError.exit_code)
    assert codes <= documented, f"exit codes missing from the README: {sorted(codes - documented)}"


# --- names the docs cite must exist in the code ---------------------------------------------------------------

DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FLOWS_SOURCES = sorted((REPO / "flows").rglob("*.py"))


def _python_sources() -> list[Path]:
    return [*FLOWS_SOURCES, *sorted((REPO / "tests").glob("*.py")), *sorted((REPO / "benchmarks").glob("*.py"))]


def _variables_the_code_reads() -> set[str]:
    """BRIEFING_* names that are settings, or string constants in the code (os.environ lookups), or
    `$NAME` references in prefect.yaml."""
    import ast

    names = {f"BRIEFING_{name.upper()}" for name in Settings.model_fields}
    for path in _python_sources():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and re.fullmatch(r"BRIEFING_[A-Z0-9_]+", node.value):
                names.add(node.value)
    names.update(re.findall(r"\$(BRIEFING_[A-Z0-9_]+)", (REPO / "prefect.yaml").read_text("utf-8")))
    return names


def test_every_briefing_variable_in_the_docs_exists_in_the_code() -> None:
    known = _variables_the_code_reads()
    for doc in DOC_FILES:
        cited = set(re.findall(r"BRIEFING_[A-Z0-9_]*[A-Z0-9]", doc.read_text("utf-8")))
        unknown = sorted(cited - known)
        assert not unknown, f"{doc.relative_to(REPO)} names variables the code does not read: {unknown}"


def _limit_names_in_the_code() -> set[str]:
    from flows.pipeline import SMTP_SLOTS

    return {SMTP_SLOTS, Settings.model_fields["send_rate_limit"].default}


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs; each row of a table on its own."""
    units: list[str] = []
    for block in text.split("\n\n"):
        units.extend(block.splitlines() if block.lstrip().startswith("|") else [block])
    return units


def test_every_prefect_limit_named_in_the_docs_exists_in_the_code() -> None:
    """Paragraphs about concurrency or rate limits (and `prefect gcl create` lines) may only name real limits."""
    known = _limit_names_in_the_code()
    for doc in DOC_FILES:
        for paragraph in _paragraphs(doc.read_text("utf-8")):
            cited = set(re.findall(r"gcl create ([\w-]+)", paragraph))
            if re.search(r"(concurrency|rate)\*? limit", paragraph):
                cited |= set(re.findall(r"`([a-z][a-z0-9]*(?:-[a-z0-9]+)+)`", paragraph))
            assert cited <= known, f"{doc.relative_to(REPO)} names Prefect limits that do not exist: {cited - known}"


def _resolve(dotted: str) -> bool:
    """Whether `flows.module[.attribute…]` names a module or an attribute that exists."""
    import importlib

    parts = dotted.split(".")
    for split in range(len(parts), 1, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_every_flows_name_cited_in_docs_and_docstrings_exists() -> None:
    cited: dict[str, set[str]] = {}
    for source in [*DOC_FILES, *FLOWS_SOURCES]:
        for name in re.findall(r"\bflows\.[a-z_]+(?:\.[A-Za-z_]\w*)*", source.read_text("utf-8")):
            cited.setdefault(name.rstrip("."), set()).add(str(source.relative_to(REPO)))
    missing = {name: sorted(where) for name, where in cited.items() if not _resolve(name)}
    assert len(cited) > 20 and not missing, f"cited but not in the code: {missing}"


def test_every_repository_path_cited_exists() -> None:
    folders = "flows|docs|tests|benchmarks|scripts|templates|content"
    pattern = rf"\b(?:{folders})/[\w./-]+\.(?:py|md|sh|yaml|j2|csv|xml|css)\b"
    for source in [*DOC_FILES, *FLOWS_SOURCES]:
        for cited in set(re.findall(pattern, source.read_text("utf-8"))):
            assert (REPO / cited).exists(), f"{source.relative_to(REPO)} cites {cited}, which does not exist"


def test_markdown_files_cited_in_the_code_exist() -> None:
    """A comment pointing at a guide (say HELPERS.md) is only useful if the guide is there."""
    for source in FLOWS_SOURCES:
        for cited in set(re.findall(r"(?<![\w/.])([A-Z][A-Z_-]+\.md)\b", source.read_text("utf-8"))):
            assert (REPO / cited).exists() or (REPO / "docs" / cited).exists(), f"{source.name} cites {cited}"


def test_functions_named_in_docstrings_exist() -> None:
    """A `snake_case` name in backticks in a docstring of flows/ is defined or used by the code of flows/ (a
    function, class, variable, attribute, parameter, or a library's name the code calls) or is a name of the
    standard library, so a docstring cannot describe a function that is gone."""
    import ast
    import sys

    defined = {
        name
        for module_name, module in list(sys.modules.items())
        if module_name.split(".")[0] in sys.stdlib_module_names
        for name in dir(module)
    }
    docstrings: list[tuple[str, str]] = []
    for path in FLOWS_SOURCES:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                defined.add(node.name)
            elif isinstance(node, ast.Name):
                defined.add(node.id)
            elif isinstance(node, ast.Attribute):
                defined.add(node.attr)
            elif isinstance(node, ast.arg | ast.keyword) and node.arg:
                defined.add(node.arg)
            if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                docstring = ast.get_docstring(node)
                if docstring:
                    docstrings.append((path.name, docstring))
    missing = {
        (module, name)
        for module, docstring in docstrings
        for name in re.findall(r"`([a-z_][a-z0-9]*_[a-z0-9_]*)(?:\(\))?`", docstring)
        if name not in defined
    }
    assert not missing, f"docstrings name things that do not exist: {sorted(missing)}"


def test_settings_doc_shows_real_defaults() -> None:
    text = (REPO / "docs" / "settings.md").read_text("utf-8")
    assert "Undefined" not in text and "<factory>" not in text and "Literal" not in text
