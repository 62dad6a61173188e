"""A real static site generator builds the Markdown archive as it is: `mkdocs build --strict`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from flows.publish.archive import mkdocs_config
from tests.publish_support import publish


def _build(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_mkdocs_builds_the_archive_strictly_with_no_warnings(settings, store, tmp_path) -> None:
    report = publish(settings, store)
    site = tmp_path / "site"
    config = tmp_path / "mkdocs.yml"
    config.write_text(mkdocs_config(settings, site), encoding="utf-8")
    result = _build(config)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "WARNING" not in log and "not found" not in log, log
    for path in report.pages.values():
        built = (site / path).with_suffix(".html").read_text(encoding="utf-8")
        assert 'id="bilingual"' in built and 'href="../../index.html"' in built
    assert (site / "feed.xml").is_file() and (site / "index.html").is_file()


def test_mkdocs_strict_build_fails_on_a_missing_link(settings, store, tmp_path) -> None:
    """The check above can fail: the same build with one dangling link is refused."""
    report = publish(settings, store)
    page = settings.archive_path / next(iter(report.pages.values()))
    page.write_text(page.read_text(encoding="utf-8") + "\n[gone](../../1999/01/gone.md)\n", encoding="utf-8")
    config = tmp_path / "mkdocs.yml"
    config.write_text(mkdocs_config(settings, tmp_path / "site"), encoding="utf-8")
    result = _build(config)
    assert result.returncode != 0
    assert "gone.md" in result.stdout + result.stderr
