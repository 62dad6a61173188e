"""`approve`: an editor's review of machine drafts, recorded by deleting their markers (the text stays)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from flows.core.briefing_format import DRAFTABLE_SECTIONS, SECTION_ALIASES, parse_briefing_file
from flows.core.errors import ContentError
from flows.core.models import MachineDraft
from flows.draft.fileupdate import read_exact, replace_if_unchanged

logger = logging.getLogger(__name__)


@dataclass
class Approval:
    path: str
    slug: str
    approved: list[str] = field(default_factory=list)  # parts whose markers were removed
    remaining: list[str] = field(default_factory=list)  # parts still marked

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "slug": self.slug, "approved": self.approved, "remaining": self.remaining}


def _selected(draft: MachineDraft, names: set[str]) -> bool:
    """`translation` approves every block, `notes` every note, `notes.atou` / `translation.p01-…` just one."""
    return draft.section in names or draft.name in names


def _canonical(name: str) -> str:
    """`core-points`, `Core points` and `核心观点` all mean `core_points`; an item after the dot is kept as written."""
    head, dot, item = name.strip().partition(".")
    key = head.lower().replace("-", " ").replace("_", " ")
    section = SECTION_ALIASES.get(key, head.lower())
    return f"{section}{dot}{item.lower() if section == 'notes' else item}"


def approve_sections(path: Path, sections: list[str]) -> Approval:
    """Delete the machine-draft markers of the named sections (every one with `all`); nothing else changes."""
    names = {_canonical(s) for s in sections}
    unknown = [n for n in names if n != "all" and n.split(".")[0] not in DRAFTABLE_SECTIONS]
    if unknown or not names:
        raise ContentError(
            path,
            f"cannot approve {', '.join(sorted(unknown)) or 'nothing'}",
            field="--section",
            hint=f"name one of {', '.join(DRAFTABLE_SECTIONS)} (or notes.<audience>, translation.<block id>, all)",
        )
    for _ in range(3):
        text = read_exact(path)
        briefing, partial, problems = parse_briefing_file(path)
        found = briefing or partial
        if found is None:
            raise ContentError(path, f"cannot be read: {problems[0].message if problems else 'unknown'}")
        chosen = [d for d in found.machine_drafts if "all" in names or _selected(d, names)]
        approval = Approval(str(path), found.slug)
        approval.approved = sorted({d.name for d in chosen})
        approval.remaining = sorted({d.name for d in found.machine_drafts} - set(approval.approved))
        if not chosen:
            return approval
        newline = "\r\n" if "\r\n" in text else "\n"
        lines = text.split(newline)
        drop = {d.line for d in chosen}
        kept = [line for number, line in enumerate(lines, start=1) if number not in drop]
        if replace_if_unchanged(path, text, newline.join(kept)):
            logger.info("%s: approved %s", path, ", ".join(approval.approved))
            return approval
    raise ContentError(path, "the file kept changing while it was approved", hint="run `briefing approve` again")
