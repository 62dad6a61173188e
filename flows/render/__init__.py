"""The render stage: one briefing becomes one email per audience (HTML through MJML, plain text, Markdown).

Entry point: `render_briefing(briefing, content, ...) -> RenderedBriefing` (flows/render/email.py, with the
jinja2 environment, the template context and the label tables). text_wrap.py wraps mixed Chinese and Latin text
for the plain-text part.
"""

from __future__ import annotations

from flows.render.email import RenderedBriefing, RenderedEmail, render_briefing

__all__ = ["RenderedBriefing", "RenderedEmail", "render_briefing"]
