"""How readers' approved replies appear in the archive's discussion view (讨论归档).

Approved entries (flows/core/store/discussion.py) join the entries written in the briefing file
(`with_approved_entries`, called by the publish stage and the preview). The name shown follows
`discussion_name`: the sender's display name, their initials (J. D.; 张某 for a Chinese name), or only the
audience they read. The page's digest covers the discussion, so approving changes the page at the next publish,
rejecting removes the entry again, and publishing twice with no decision in between writes nothing.
"""

from __future__ import annotations

import re
import unicodedata

from flows.core.models import Briefing, Content, DiscussionEntry
from flows.core.settings import Settings
from flows.core.store import Store
from flows.core.store.discussion import APPROVED, Entry, list_entries

READER_SUFFIX = " 读者"


def initials(name: str) -> str:
    """`Jane van Doe` → `J. v. D.`; `张伟` → `张某` (the usual Chinese way to withhold a given name)."""
    name = " ".join(name.split())
    if not name:
        return ""
    if any(unicodedata.east_asian_width(ch) in ("W", "F") for ch in name):
        return name[0] + "某"
    parts = [p for p in re.split(r"[\s._-]+", name) if p]
    return " ".join(f"{p[0]}." for p in parts if p[0].isalnum())


def shown_name(entry: Entry, settings: Settings, audience_names: dict[str, str]) -> str:
    audience = audience_names.get(entry.audience, entry.audience) + READER_SUFFIX
    if settings.discussion_name == "audience" or not entry.sender_name:
        return audience
    if settings.discussion_name == "initials":
        return initials(entry.sender_name) or audience
    return entry.sender_name


def with_approved_entries(
    briefings: tuple[Briefing, ...], store: Store, content: Content, settings: Settings
) -> tuple[Briefing, ...]:
    """The briefings with their approved reader entries appended to the file's discussion entries, oldest first."""
    approved: dict[str, list[Entry]] = {}
    for entry in list_entries(store, status=APPROVED):
        approved.setdefault(entry.slug, []).append(entry)
    if not approved:
        return briefings
    names = {a.id: a.name for a in content.audiences}
    result = []
    for briefing in briefings:
        extra = tuple(
            DiscussionEntry(date=e.received_at.date(), author=shown_name(e, settings, names), text=e.text)
            for e in approved.get(briefing.slug, [])
        )
        result.append(briefing.model_copy(update={"discussion": briefing.discussion + extra}) if extra else briefing)
    return tuple(result)
