"""The publish stage: the archive of ready briefings (Markdown and HTML pages, indexes, an Atom feed).

Entry point: `publish_archive(content, store, settings, briefings) -> PublishReport` (flows/publish/archive.py);
git.py commits and pushes what changed when BRIEFING_ARCHIVE_GIT_REMOTE is set.
"""

from __future__ import annotations

from flows.publish.archive import PublishReport, publish_archive

__all__ = ["PublishReport", "publish_archive"]
