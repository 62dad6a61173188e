"""The preview app served by uvicorn on loopback: drafts, errors, archive links, test sends to the outbox."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpx import Client

from flows.app.preview import create_app
from flows.core.pages import assign_paths, html_link
from flows.core.settings import Settings
from flows.core.store import Store
from tests.asgi_support import serve_asgi


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[Client]:
    with serve_asgi(create_app(settings, store)) as http:
        yield http


def drop_note(path: Path, audience: str) -> None:
    text = path.read_text("utf-8")
    path.write_text(re.sub(rf"### {audience}\n.*?(?=\n###|\n## )", "", text, flags=re.DOTALL), "utf-8")


def test_a_draft_missing_one_note_still_shows_the_other_audiences(project: Path, client: Client) -> None:
    drop_note(project / "content" / "briefings" / "metr-task-horizons.md", "uota")
    page = client.get("/b/metr-task-horizons")
    assert page.status_code == 200
    errors = re.findall(r'class="render-error">([^<]*)', page.text)
    assert len(errors) == 1 and "uota" in errors[0] and "no note for this audience" in errors[0]
    assert set(re.findall(r'id="frame-([a-z]+)"', page.text)) == {"atou", "neta", "investors"}
    frame = client.get("/email/metr-task-horizons/uota.html")
    assert frame.status_code == 422 and "no note for this audience" in frame.text


def test_problems_from_the_checker_are_listed_with_their_briefing(project: Path, client: Client) -> None:
    path = project / "content" / "briefings" / "github-commit-flood.md"
    path.write_text(path.read_text("utf-8").replace("### neta\n", "### nobody\n"), "utf-8")
    page = client.get("/")
    row = page.text.split('data-slug="github-commit-flood"', 1)[1].split("</tr>", 1)[0]
    assert "unknown audience id &#39;nobody&#39;" in row
    assert re.search(r"[1-9]\d* errors", row)


def test_unknown_briefing_audience_or_part_is_404(client: Client) -> None:
    assert client.get("/b/no-such-briefing").status_code == 404
    assert client.get("/email/github-commit-flood/nobody.html").status_code == 404
    assert client.get("/email/github-commit-flood/atou.exe").status_code == 404
    assert client.get("/archive/no-such-briefing").status_code == 404


def test_email_parts_have_a_working_unsubscribe_link(client: Client, settings: Settings) -> None:
    html = client.get("/email/github-commit-flood/atou.html").text
    text = client.get("/email/github-commit-flood/atou.txt").text
    markdown = client.get("/email/github-commit-flood/atou.md")
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "unsubscribe.invalid" not in html + text
    link = re.search(r"/unsubscribe\?t=([\w.%-]+)", html)
    assert link, "the previewed email carries a real unsubscribe link"
    confirm = client.get("/unsubscribe", params={"t": link.group(1).replace("%3D", "=")})
    assert confirm.status_code == 200 and "preview@example.invalid" in confirm.text


def test_archive_links_to_the_published_html_when_it_exists(settings: Settings, store: Store, client: Client) -> None:
    rendered = client.get("/archive/github-commit-flood")
    assert rendered.status_code == 200 and "Not published as HTML yet" in rendered.text
    from flows.core.content import load_content

    briefing = next(b for b in load_content(settings.content_dir).content.briefings if b.slug == "github-commit-flood")
    relative = html_link(assign_paths(store, (briefing,))[briefing.slug])
    target = settings.archive_path / relative
    target.parent.mkdir(parents=True)
    target.write_text("<html><body>published page</body></html>", "utf-8")
    redirected = client.get("/archive/github-commit-flood", follow_redirects=False)
    assert redirected.status_code == 303 and redirected.headers["location"] == f"/published/{relative}"
    assert client.get(redirected.headers["location"]).text == "<html><body>published page</body></html>"


def test_test_send_without_smtp_writes_to_the_outbox_and_not_the_ledger(
    settings: Settings, store: Store, client: Client
) -> None:
    from flows.core.store import ledger

    form = {"slug": "github-commit-flood", "audience": "investors", "address": "editor@example.org"}
    response = client.post("/send-test", data=form, follow_redirects=False)
    assert response.status_code == 303 and "sent=" in response.headers["location"]
    written = list((settings.outbox_path / "_test" / "github-commit-flood" / "investors").glob("*.eml"))
    assert len(written) == 1
    raw = written[0].read_bytes()
    assert b"X-Briefing-Test: yes" in raw and b"editor@example.org" in raw
    assert ledger.counts(store) == {}
    unknown = client.post("/send-test", data={**form, "audience": "nobody"}, follow_redirects=False)
    assert "error=" in unknown.headers["location"] and "unknown%20audience" in unknown.headers["location"]


def test_send_test_refuses_cross_site_posts(settings: Settings, client: Client) -> None:
    form = {"slug": "github-commit-flood", "audience": "atou", "address": "victim@example.org"}
    refused = client.post("/send-test", data=form, headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert refused.status_code == 403
    assert not (settings.outbox_path / "_test").exists()
    same = client.post("/send-test", data=form, headers={"Origin": str(client.base_url)}, follow_redirects=False)
    assert same.status_code == 303 and "sent=" in same.headers["location"]
    assert list((settings.outbox_path / "_test").rglob("*.eml")), "the same-origin test send reaches the outbox"


def test_list_shows_what_the_ledger_holds(store: Store, client: Client) -> None:
    from flows.core.store import ledger

    ledger.enqueue(store, "github-commit-flood", "neta", "hash1", {"a@example.org": "<1@x>", "b@example.org": "<2@x>"})
    row = client.get("/").text.split('data-slug="github-commit-flood"', 1)[1].split("</tr>", 1)[0]
    assert "neta: queued 2" in row
    page = client.get("/b/github-commit-flood").text
    assert "sent: queued 2" in page.split('id="neta"', 1)[1].split("</h2>", 1)[0]


def test_each_audience_markdown_briefing_is_shown_for_copying(client: Client) -> None:
    """Issue 20 item 2: the chat Markdown of every audience, in a read-only box with copy and download."""
    import html as html_lib

    page = client.get("/b/github-commit-flood").text
    for audience in ("atou", "neta", "uota", "investors"):
        pattern = rf'<textarea class="markdown-part" id="md-{audience}" readonly[^>]*>(.*?)</textarea>'
        box = re.search(pattern, page, re.S)
        assert box, audience
        markdown = client.get(f"/email/github-commit-flood/{audience}.md").text
        assert html_lib.unescape(box.group(1)).strip() == markdown.strip()
        assert f'data-copy="md-{audience}"' in page
        assert f'href="/email/github-commit-flood/{audience}.md" download=' in page


def test_blocks_kept_in_english_are_listed_with_their_reason(project: Path, client: Client) -> None:
    sample = Path(__file__).parent / "data" / "fidelity" / "briefing.md"
    (project / "content" / "briefings" / "larkspur-review-queue.md").write_text(
        sample.read_text(encoding="utf-8"), encoding="utf-8"
    )
    page = client.get("/b/larkspur-review-queue").text
    start = page.index('<section class="untranslated"')
    section = page[start : page.index("</section>", start)]
    assert "<code>fn83-28f17e1c</code> — a bibliographic reference, kept as published" in section
    assert section.count("<li>") == 1
