"""The drafting stage: a model fills a briefing's empty sections and translation; an editor reviews every part.

Entry points: `draft_briefing` (fill the empty parts, marked as machine drafts) and `approve_sections`
(the editor's review: remove the markers). The review gate itself is a content rule (`flows.core.content`).
"""

from flows.core.errors import DraftError
from flows.draft.drafting import draft_briefing, resolve_briefing
from flows.draft.report import DraftReport, DraftStats, Failure
from flows.draft.review import Approval, approve_sections

__all__ = [
    "Approval",
    "DraftError",
    "DraftReport",
    "DraftStats",
    "Failure",
    "approve_sections",
    "draft_briefing",
    "resolve_briefing",
]
