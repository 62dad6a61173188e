"""Template context drift: every `ctx.<name>` (and `ctx.labels.<key>`, loop variables over ctx tuples) used by
the email, text and Markdown briefing templates must exist on flows.render.email.EmailContext / the label tables."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import jinja2
import pytest
import yaml
from jinja2 import nodes

from flows.render.email import EmailContext, environment
from tests.render_support import TEMPLATES

CTX_TEMPLATES = sorted(
    [
        *TEMPLATES.glob("email/*.j2"),
        *TEMPLATES.glob("text/*.j2"),
        TEMPLATES / "markdown" / "briefing.md.j2",
        *TEMPLATES.glob("partials/email_*.j2"),
    ]
)
LABELS = yaml.safe_load((TEMPLATES / "labels.yaml").read_text(encoding="utf-8"))


def _fields(cls: type) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _attributes(cls: type) -> set[str]:
    """What a template may read from an instance: its fields and the properties its class defines."""
    return set(_fields(cls)) | {name for name, value in vars(cls).items() if isinstance(value, property)}


def _element_type(hint: object) -> type | None:
    """X for tuple[X, ...]; X itself for a dataclass X."""
    if dataclasses.is_dataclass(hint):
        return hint  # type: ignore[return-value]
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and args and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def _problems(source: str) -> list[str]:
    env = jinja2.Environment()
    tree = env.parse(source)
    ctx_fields = _fields(EmailContext)
    loop_types: dict[str, type] = {}
    for loop in tree.find_all(nodes.For):
        it = loop.iter
        if isinstance(it, nodes.Getattr) and isinstance(it.node, nodes.Name) and it.node.name == "ctx":
            element = _element_type(ctx_fields.get(it.attr))
            if element and isinstance(loop.target, nodes.Name):
                loop_types[loop.target.name] = element
    problems = []
    for node in tree.find_all(nodes.Getattr):
        base = node.node
        if isinstance(base, nodes.Name) and base.name == "ctx" and node.attr not in ctx_fields:
            problems.append(f"ctx.{node.attr} is not a field of EmailContext")
        in_loop = isinstance(base, nodes.Name) and base.name in loop_types
        if in_loop and node.attr not in _attributes(loop_types[base.name]):  # type: ignore[union-attr]
            problems.append(f"{base.name}.{node.attr} is not a field of {loop_types[base.name].__name__}")
        if isinstance(base, nodes.Getattr) and isinstance(base.node, nodes.Name) and base.node.name == "ctx":
            if base.attr == "labels":
                missing = [loc for loc, table in LABELS.items() if node.attr not in table]
                if missing:
                    problems.append(f"ctx.labels.{node.attr} is missing from labels.yaml for {missing}")
            else:
                nested = _element_type(ctx_fields.get(base.attr))
                if nested and node.attr not in _attributes(nested):
                    problems.append(f"ctx.{base.attr}.{node.attr} is not a field of {nested.__name__}")
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in {"ctx", "loop", "m", *loop_types, *_locals(tree)}:
            problems.append(f"{name.name} is used but not passed to the template (only `ctx` is)")
    return problems


def _locals(tree: nodes.Template) -> set[str]:
    targets = [loop.target for loop in tree.find_all(nodes.For)] + [a.target for a in tree.find_all(nodes.Assign)]
    names = {t.name for target in targets for t in (target, *target.find_all(nodes.Name)) if isinstance(t, nodes.Name)}
    names |= {arg.name for macro in tree.find_all(nodes.Macro) for arg in macro.args}
    names |= {macro.name for macro in tree.find_all(nodes.Macro)}
    return names


@pytest.mark.parametrize("path", CTX_TEMPLATES, ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_template_uses_only_documented_context(path: Path) -> None:
    assert not _problems(path.read_text(encoding="utf-8"))


def test_drift_is_detected() -> None:
    source = (
        "{{ ctx.verdict }}{{ ctx.no_such_field }}{% for p in ctx.core_points %}{{ p.lead }}{{ p.bogus }}{% endfor %}"
        "{{ ctx.own_note.meaning }}{{ ctx.own_note.nope }}{{ ctx.labels.brand }}{{ ctx.labels.not_a_label }}{{ x }}"
    )
    assert _problems(source) == [
        "ctx.no_such_field is not a field of EmailContext",
        "p.bogus is not a field of PointView",
        "ctx.own_note.nope is not a field of NoteView",
        "ctx.labels.not_a_label is missing from labels.yaml for ['zh-CN', 'en']",
        "x is used but not passed to the template (only `ctx` is)",
    ]


def test_every_context_field_is_documented_and_used() -> None:
    doc = EmailContext.__doc__ or ""
    used = "".join(p.read_text(encoding="utf-8") for p in CTX_TEMPLATES)
    for name in _fields(EmailContext):
        assert name in doc, f"EmailContext.{name} is not described in its docstring"
        assert f"ctx.{name}" in used, f"EmailContext.{name} is used by no template"


def test_templates_compile_in_their_environments() -> None:
    for path in CTX_TEMPLATES:
        name = str(path.relative_to(TEMPLATES))
        env = environment(TEMPLATES, not name.endswith((".txt.j2", ".md.j2")))
        env.get_template(name)
        assert env.undefined is jinja2.StrictUndefined
        assert env.autoescape is (not name.endswith((".txt.j2", ".md.j2")))
