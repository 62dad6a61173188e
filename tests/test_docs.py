"""The docs cover every setting and every command, the generated files are fresh, and the README is honest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flows import docs_gen
from flows.settings import Settings

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
    assert row is not None, f"{variable} is missing from docs/settings.md: run `python -m flows.docs_gen`"
    description = Settings.model_fields[name].description
    assert description, f"setting {name} has no description= help text"
    assert description.split("`")[0].strip()[:30] in row


@pytest.mark.parametrize("path", [" ".join(p) for p, _ in COMMANDS])
def test_every_command_is_documented_with_an_example(path: str) -> None:
    text = (REPO / "docs" / "cli.md").read_text("utf-8")
    assert f"\n## briefing {path}\n" in text, (
        f"`briefing {path}` is missing from docs/cli.md: run python -m flows.docs_gen"
    )
    command = dict((" ".join(p), c) for p, c in COMMANDS)[path]
    assert re.search(r"^\s*Example:\s*`?briefing ", command.help or "", re.MULTILINE), (
        f"the docstring of `briefing {path}` needs an 'Example: briefing …' line"
    )


@pytest.mark.parametrize("target", ["settings.md", "cli.md"])
def test_generated_docs_are_fresh(target: str) -> None:
    path = REPO / "docs" / target
    expected = docs_gen.generated()[path]
    assert path.read_text("utf-8") == expected, f"docs/{target} is stale: run `python -m flows.docs_gen`"


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
    from flows import errors

    readme = (REPO / "README.md").read_text("utf-8")
    table = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    codes = {
        cls.exit_code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.BriefingError)
    }
    from flows.tokens import TokenError

    codes.add(TokenError.exit_code)
    assert codes <= documented, f"exit codes missing from the README: {sorted(codes - documented)}"
