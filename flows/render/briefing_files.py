"""Per-audience Markdown briefings on disk: outputs/briefings/<slug>/<audience>.md, one file per rendered audience,
for editors to paste into chat tools. Written atomically and only when the bytes changed, so a rerun is a no-op."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from flows.core.errors import RenderError
from flows.core.files import atomic_write_bytes
from flows.render.email import RenderedBriefing

logger = logging.getLogger(__name__)

BRIEFINGS_DIR = "briefings"
# Slugs and audience ids are validated by the models already; this is the last guard before a path is built.
SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


@dataclass
class MarkdownFiles:
    """What one write did: the files whose bytes changed and the ones left as they were."""

    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)

    def extend(self, other: MarkdownFiles) -> None:
        self.written.extend(other.written)
        self.unchanged.extend(other.unchanged)


def markdown_path(output_dir: Path, slug: str, audience: str) -> Path:
    if not (SAFE_NAME.match(slug) and SAFE_NAME.match(audience)):
        raise RenderError(f"cannot name a Markdown briefing after {slug!r}/{audience!r}", slug=slug, audience=audience)
    return output_dir / BRIEFINGS_DIR / slug / f"{audience}.md"


def write_markdown_briefings(output_dir: Path, rendered: RenderedBriefing) -> MarkdownFiles:
    """Write each rendered audience's Markdown briefing (the unshortened one, without an unsubscribe link)."""
    result = MarkdownFiles()
    for audience, email in sorted(rendered.emails.items()):
        target = markdown_path(output_dir, rendered.briefing.slug, audience)
        data = email.markdown.encode("utf-8")
        try:
            if target.is_file() and target.read_bytes() == data:
                result.unchanged.append(target)
                continue
            atomic_write_bytes(target, data)
        except OSError as exc:
            raise RenderError(
                f"cannot write the Markdown briefing {target}: {exc.strerror or exc}",
                slug=rendered.briefing.slug,
                audience=audience,
                hint="make the output folder writable, or point BRIEFING_OUTPUT_DIR somewhere writable",
            ) from None
        result.written.append(target)
    slug = rendered.briefing.slug
    logger.info("%s: Markdown briefings %d written, %d unchanged", slug, len(result.written), len(result.unchanged))
    return result
